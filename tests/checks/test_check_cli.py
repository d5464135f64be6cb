"""`grader check` as learners and CI run it: exit codes, the JSON contract, text output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader.cli import main
from grader.grading.criteria import CRITERIA

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "submissions"
GRADER = [sys.executable, "-m", "grader.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COURSE_NO_ENGINE": "1"}
    return subprocess.run([*GRADER, *args], capture_output=True, text=True, timeout=60,
                          env=env)  # fmt: skip


def test_static_pass_exits_0() -> None:
    done = run_cli("check", str(FIXTURES / "solution-go"), "--static")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS  buildx" in done.stdout and "SKIP  build" in done.stdout
    assert "Traceback" not in done.stderr


def test_static_fail_exits_1_and_explains() -> None:
    done = run_cli("check", str(FIXTURES / "starter"), "--static")
    assert done.returncode == 1
    assert "BS111" in done.stdout and "build.sh:3" in done.stdout
    assert "hint:" in done.stdout
    assert "DF211" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["check", "/nonexistent/submission", "--static"],
        ["check", str(FIXTURES / "starter" / "build.sh"), "--static"],  # a file, not a folder
        ["check", str(FIXTURES / "starter"), "--static", "--platforms", "linux"],
        ["check", str(FIXTURES / "starter"), "--static", "--platforms", ""],
        ["check", str(FIXTURES / "starter"), "--format", "yaml"],
        ["check"],
    ],
    ids=["missing-dir", "not-a-dir", "bad-platform", "empty-platforms", "bad-format", "no-dir"],
)
def test_could_not_run_exits_2(args: list[str]) -> None:
    done = run_cli(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_unreadable_dir_exits_2(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    try:
        assert run_cli("check", str(locked), "--static").returncode == 2
    finally:
        locked.chmod(0o700)


def test_json_shape_is_the_public_contract() -> None:
    done = run_cli("check", str(FIXTURES / "starter"), "--static", "--format", "json")
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert set(data) == {"submission", "score", "max_score", "criteria"}
    assert isinstance(data["submission"], str)
    assert data["max_score"] == sum(c.points for c in CRITERIA)
    assert [c["id"] for c in data["criteria"]] == [c.id for c in CRITERIA]
    for c in data["criteria"]:
        assert set(c) == {"id", "title", "status", "points", "max_points", "findings"}
        assert c["status"] in ("pass", "fail", "error", "skipped")
        assert isinstance(c["points"], float) and isinstance(c["max_points"], float)
        for f in c["findings"]:
            assert set(f) == {"rule", "severity", "message", "hint", "file", "line"}
            assert f["severity"] in ("error", "warning", "info")
            assert f["file"] is None or isinstance(f["file"], str)
            assert f["line"] is None or isinstance(f["line"], int)
    assert data["score"] == sum(c["points"] for c in data["criteria"]) == 0


def test_platforms_option_changes_what_is_required(capsys) -> None:
    sub = str(FIXTURES / "missing-platform")  # builds linux/arm64 only
    assert main(["check", sub, "--static", "--format", "json"]) == 1
    capsys.readouterr()
    code = main(["check", sub, "--static", "--format", "json", "--platforms", "linux/arm64"])
    data = json.loads(capsys.readouterr().out)
    assert {c["id"]: c["status"] for c in data["criteria"]}["platforms"] == "pass"
    assert code == 0


def test_non_static_without_image_reports_errors_not_passes(capsys, monkeypatch) -> None:
    """An unresolvable image and unavailable checks are `error`, exit 1, never a pass."""
    monkeypatch.setitem(sys.modules, "grader.grading.checks.image", None)
    monkeypatch.setitem(sys.modules, "grader.grading.checks.run", None)
    code = main(["check", str(FIXTURES / "solution-go"), "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    statuses = {c["id"]: c["status"] for c in data["criteria"]}
    assert code == 1
    for cid in ("build", "manifest", "image-arch", "runs", "idempotent"):
        assert statuses[cid] == "error"
        assert data["criteria"][[c.id for c in CRITERIA].index(cid)]["points"] == 0


def test_output_piped_to_head_is_not_a_traceback() -> None:
    cmd = " ".join([*GRADER, "check", str(FIXTURES / "starter"), "--static", "|", "head", "-1"])
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert done.stdout.startswith(str(FIXTURES / "starter"))
