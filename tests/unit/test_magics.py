"""The %%docker magic's pure parts: what a cell's text becomes before it runs, and how a
build's argv is read. (Running it on the engine: tests/engine/test_magics_engine.py.)"""

from __future__ import annotations

import subprocess

import pytest

from grader.course import magics
from grader.parse import buildscript


def test_notebook_variables_become_assignments_the_analyser_resolves():
    text = 'docker buildx build --platform linux/amd64,linux/arm64 -t "$REPO:v1" --push app\n'
    ns = {"REPO": "reg.example:5000/me/app", "UNUSED": "x", "lower": "y", "FLAG": True}
    variables = magics._notebook_vars(text + "echo ${FLAG} $lower", ns)
    assert variables == {"REPO": "reg.example:5000/me/app"}  # used, upper case, str/int/path
    script = magics.compose_script(text, variables)
    assert script.endswith(text)
    build = buildscript.analyse(script).builds[0]
    assert [v.text for v in build.image_names()] == ["reg.example:5000/me/app:v1"]


def test_values_with_shell_metacharacters_are_quoted():
    script = magics.compose_script('echo "$NAME"\n', {"NAME": "a'b $(touch /tmp/x) c"})
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout == "a'b $(touch /tmp/x) c\n"


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["--platform", "linux/amd64,linux/arm64/v8,linux/arm64"], ["linux/amd64", "linux/arm64"]),
        (["--platform=linux/arm64", "--platform", "linux/x86_64"], ["linux/arm64", "linux/amd64"]),
        (["--platform", "linux/armhf, linux/riscv64,"], ["linux/arm/v7", "linux/riscv64"]),
    ],
)
def test_build_platforms_are_normalised_and_deduplicated(argv, want):
    assert magics.build_platforms(["docker", "buildx", "build", *argv, "."]) == want


def test_a_build_without_platform_gets_one_lane_for_this_machine():
    from grader.docker.progress import host_platform

    assert magics.build_platforms(["docker", "buildx", "build", "."]) == [host_platform()]


def test_build_record_reads_tags_and_push_like_buildx():
    rec = magics.BuildRecord(
        argv=["docker", "buildx", "build", "-t", "a:1", "--tag=b:2", "-tc:3", "--output",
              "type=image,push=true", "."],
        platforms=["linux/amd64"],
    )  # fmt: skip
    assert rec.tags == ["a:1", "b:2", "c:3"] and rec.pushed
    assert not magics.BuildRecord(argv=["docker", "buildx", "build", "--load", "."],
                                  platforms=[]).pushed  # fmt: skip


def test_an_unanswered_cell_raises_not_implemented_without_running(monkeypatch):
    monkeypatch.setenv("COURSE_NO_ENGINE", "1")
    with pytest.raises(NotImplementedError, match="%%docker answer"):
        magics.run_cell("answer", "# YOUR CODE HERE\nraise NotImplementedError()\n",
                        show=lambda _p: None)  # fmt: skip
    assert "answer" not in magics.CELLS


def test_no_engine_shows_the_recording_and_checks_skip(monkeypatch, tmp_path, capsys):
    from grader.course import noengine, recorded
    from grader.course.labkit import CheckSkipped

    monkeypatch.setenv("COURSE_NO_ENGINE", "1")
    monkeypatch.setenv("COURSE_RECORDINGS_DIR", str(tmp_path))
    noengine.engine_available.cache_clear()
    rec = recorded.Recording("99-demo", "%%docker demo (commands not shown)", "built ok", "",
                             0, "2026-12-01", lab="99-x", engine={"docker": "26.1.5"})  # fmt: skip
    recorded.write_lab_file(tmp_path / "99-x.json", {"99-demo": rec})
    try:
        cell = magics.run_cell("demo", "docker buildx build .\n", record="99-demo",
                               show=lambda _p: None)  # fmt: skip
    finally:
        noengine.engine_available.cache_clear()
    out = capsys.readouterr().out
    assert "[no engine]" in out and "built ok" in out and "recorded output" in out
    assert not cell.ran and cell.recording is not None
    with pytest.raises(CheckSkipped, match="did not run here"):
        cell.require_engine()
    assert magics.cell("demo") is cell


def test_cell_that_never_ran_says_which_cell_to_run():
    with pytest.raises(AssertionError, match="%%docker never-ran cell has not run yet"):
        magics.cell("never-ran")


def test_submission_copy_skips_big_files_and_keeps_the_script(tmp_path):
    src = tmp_path / "lab"
    (src / "app").mkdir(parents=True)
    (src / "app" / "Dockerfile").write_text("FROM busybox\n")
    (src / "big.tar").write_bytes(b"\0" * (magics.MAX_COPIED_BYTES + 1))
    (src / "build.sh").write_text("echo learner's old file\n")
    cell = magics.DockerCell("x", "docker buildx build app\n", "docker buildx build app\n", src)
    out = cell.write_submission(tmp_path / "sub")
    assert (out / "app" / "Dockerfile").read_text() == "FROM busybox\n"
    assert not (out / "big.tar").exists()
    assert (out / "build.sh").read_text().endswith("docker buildx build app\n")


def test_the_magic_registers_and_parses_its_options(monkeypatch):
    calls = []
    monkeypatch.setattr(magics, "run_cell", lambda *a, **k: calls.append((a, k)))

    class FakeShell:  # only the registration API: the magic itself is real
        def __init__(self):
            self.user_ns = {"APP": "app"}

        def register_magic_function(self, fn, magic_kind, magic_name):
            self.fn, self.kind, self.name = fn, magic_kind, magic_name

    ip = FakeShell()
    magics.load_ipython_extension(ip)
    assert (ip.kind, ip.name) == ("cell", "docker")
    ip.fn("build --cwd {APP} --record 04-x --timeout 5 --no-panel", "docker version\n")
    ((args, kwargs),) = calls
    assert args == ("build", "docker version\n")
    assert kwargs["cwd"] == "app" and kwargs["record"] == "04-x" and kwargs["timeout"] == 5
    assert kwargs["panels"] is False
    with pytest.raises(ValueError, match="usage"):
        ip.fn("build --nope", "true\n")


def test_limits_kept_output_copied_files_and_logged_calls(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(magics, "MAX_KEPT_LINES", 5)
    cell = magics.DockerCell("lim", "", "", tmp_path)
    runner = magics._Runner(cell, show=lambda _p: None, panels=False)
    for i in range(12):
        runner.line("stdout", f"line {i}")
    assert cell.output == [f"line {i}" for i in range(5)]  # kept: the first 5
    assert "line 11" in capsys.readouterr().out  # shown: all of them

    monkeypatch.setattr(magics, "MAX_COPIED_FILES", 3)
    for i in range(6):
        (tmp_path / f"f{i}").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "f0")
    out = cell.write_submission(tmp_path.parent / "sub-lim")
    assert len([p for p in out.iterdir() if p.name != "build.sh"]) == 3
    assert not (out / "link").exists()

    calls = tmp_path.parent / "calls.jsonl"
    calls.write_text('not json\n["docker", "run"]\n' + '["docker", "ps"]\n' * 1200)
    got = magics._read_calls(calls)
    assert got[0] == ["docker", "run"] and len(got) == 999  # 1000 lines read, one broken
