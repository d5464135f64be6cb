"""The challenge report ``grader autograde`` hands to the jailed kernel (grader.grading.handoff):
the kernel trusts only a root-owned file nobody else may write, at a fixed path, and takes
only the criteria its jail cannot grade from it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from grader.course import labkit
from grader.grading import handoff
from grader.grading.criteria import CRITERIA
from grader.grading.report import CriterionResult, Finding, Report
from grader.grading.sandbox import kernel

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="files of another uid need root")


def _report(status: str, where: str = "/submission") -> Report:
    finding = Finding("RN401", "error", "build.sh failed on its second run", hint="fix it")
    passed = status == "pass"
    results = [
        CriterionResult(
            c.id,
            c.title,
            status,
            c.points if passed else 0.0,
            c.points,
            [] if passed else [finding],
        )
        for c in CRITERIA
    ]
    return Report(where, results)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    return d


def test_a_report_survives_the_trip(folder: Path) -> None:
    sent = _report("fail")
    handoff.write(sent, folder / "r.json")
    assert (folder / "r.json").stat().st_mode & 0o777 == 0o600
    assert handoff.read(folder / "r.json") == sent


def test_only_a_file_root_alone_could_have_written_is_trusted(folder: Path) -> None:
    path = folder / "r.json"
    handoff.write(_report("pass"), path)
    os.chmod(path, 0o444)  # as the launcher binds it
    assert handoff.read(path) is not None
    os.chown(path, 4242, 4242)  # a learner's file
    assert handoff.read(path) is None
    os.chown(path, 0, 0)
    os.chmod(path, 0o666)  # anyone could have written it
    assert handoff.read(path) is None
    os.chmod(path, 0o444)
    os.chmod(folder, 0o777)  # anyone could have swapped it
    assert handoff.read(path) is None
    os.chmod(folder, 0o755)
    os.chown(folder, 4242, 4242)  # a learner's folder
    assert handoff.read(path) is None
    os.chown(folder, 0, 0)
    link = folder / "link.json"
    link.symlink_to(path)
    assert handoff.read(link) is None
    path.write_text("{not json")
    assert handoff.read(path) is None
    assert handoff.read(folder / "missing.json") is None


def test_only_the_criteria_the_jail_cannot_grade_are_taken(folder: Path) -> None:
    mine, trusted = _report("fail"), _report("pass", "/elsewhere")
    out = handoff.merged(mine, trusted)
    assert out.submission == "/submission"
    taken = {c.id for c in out.criteria if c.status == "pass"}
    assert taken == set(handoff.SANDBOX_CRITERIA) == {"idempotent", "runs"}
    assert [c.id for c in out.criteria] == [c.id for c in CRITERIA]


def test_the_lab_uses_the_report_only_when_there_is_one(folder: Path, monkeypatch, capsys):
    mine = _report("fail")
    monkeypatch.setattr(handoff, "KERNEL_PATH", str(folder / "absent.json"))
    assert labkit.from_autograde(mine) is mine
    monkeypatch.setattr(handoff, "KERNEL_PATH", str(folder / "r.json"))
    handoff.write(_report("pass"), folder / "r.json")
    got = labkit.from_autograde(mine)
    assert got.criterion("runs").status == "pass" and got.criterion("build").status == "fail"
    assert "graded by grader autograde" in capsys.readouterr().out


def test_the_launcher_binds_a_copy_read_only_at_the_fixed_path(folder: Path) -> None:
    cfg = kernel.JailConfig(run_dir=str(folder), allowed=str(folder),
                            report=str(folder / "r.json"))  # fmt: skip
    assert kernel._report_binds(cfg, lambda _: []) == []  # no report for this student
    handoff.write(_report("pass"), folder / "r.json")
    args = kernel._report_binds(cfg, lambda _: [])
    assert args[:2] == ["--perms", "0444"] and args[2] == "--ro-bind-data"
    assert args[4] == handoff.KERNEL_PATH == "/run/grader/challenge-report.json"
    fd = int(args[3])
    try:
        assert Report.from_dict(json.loads(os.read(fd, 1 << 20))) == _report("pass")
    finally:
        os.close(fd)
