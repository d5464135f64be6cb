"""grader.course.labkit: what the lab notebooks call. Real commands (python3, sleep, docker); no
mocks of the engine: no-engine mode is the real COURSE_NO_ENGINE switch."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

from grader.course import labkit, noengine
from grader.grading.report import CriterionResult, Finding, Report

PY = sys.executable


@pytest.fixture
def no_engine(monkeypatch):
    monkeypatch.setenv("COURSE_NO_ENGINE", "1")
    noengine.engine_available.cache_clear()
    yield
    noengine.engine_available.cache_clear()


@dataclass
class Recording:
    command: str
    stdout: str
    stderr: str
    returncode: int
    recorded_at: str


@pytest.fixture
def recorded(monkeypatch):
    """The recordings store with two recordings, and a banner that says which lab it is for."""
    module = types.SimpleNamespace(saved=[])
    lookup = lambda key: {  # noqa: E731
        "uname-arm64": Recording(
            "docker run --rm --platform linux/arm64 busybox uname -m",
            "aarch64\n",
            "",
            0,
            "2025-11-25",
        ),
        "no-such-builder": Recording(
            "docker buildx create --name x",
            "",
            'ERROR: existing instance for "x" but no append mode, specify --node to make '
            "changes for existing instances",
            1,
            "2025-11-25",
        ),
    }.get(key)
    monkeypatch.setattr(labkit.recorded, "lookup", lookup)
    monkeypatch.setattr(labkit.recorded, "save", lambda key, r: module.saved.append((key, r)))
    monkeypatch.setattr(labkit.noengine, "banner", lambda lab_id: f"BANNER for {lab_id}")
    return module


def test_sh_runs_argv_and_separates_streams(capsys):
    r = labkit.sh([PY, "-c", "import sys; print('out line'); print('err line', file=sys.stderr)"])
    shown = capsys.readouterr().out
    assert r.ok and r.ran and r.returncode == 0
    assert r.stdout == "out line" and r.stderr == "err line"
    assert shown.startswith(f"$ {PY} -c ")
    assert "out line" in shown and "err line" in shown


def test_sh_splits_strings_like_a_shell_without_one(capsys):
    r = labkit.sh("echo 'two words' $HOME")
    assert r.argv == ("echo", "two words", "$HOME")
    assert r.stdout == "two words $HOME"  # no shell: no variable expansion


@pytest.mark.parametrize("cmd", ["ls | wc -l", "true && false", "echo x > f", "ls 2>&1"])
def test_sh_refuses_shell_operators_with_a_way_out(cmd):
    with pytest.raises(ValueError, match="without a shell"):
        labkit.sh(cmd)


def test_failure_does_not_raise_and_explains_a_known_error(capsys):
    script = "import sys; print('exec /bin/sh: exec format error', file=sys.stderr); sys.exit(1)"
    r = labkit.sh([PY, "-c", script])
    shown = capsys.readouterr().out
    assert not r.ok and r.returncode == 1
    assert "[exited with status 1]" in shown
    assert "Known error: exec format error" in shown
    assert "Fix:" in shown and "binfmt" in shown
    assert r.known is not None and r.known.id == "exec-format"


def test_missing_program_is_a_result_not_a_traceback(capsys):
    r = labkit.sh(["no-such-program-for-labkit", "x"])
    assert not r.ok and r.returncode == 127
    assert "not installed" in capsys.readouterr().out


def test_timeout_stops_the_command(capsys):
    r = labkit.sh(["sleep", "20"], timeout=0.5)
    assert not r.ok and r.duration < 10
    assert "timed out" in capsys.readouterr().out


def test_quiet_shows_output_only_on_failure(capsys):
    labkit.sh([PY, "-c", "print('chat' + 'ty')"], quiet=True)
    assert "chatty" not in capsys.readouterr().out
    labkit.sh([PY, "-c", "print('why it' + ' broke'); raise SystemExit(3)"], quiet=True)
    assert "why it broke" in capsys.readouterr().out


def test_no_engine_docker_commands_are_shown_not_run(no_engine, capsys):
    r = labkit.sh("docker version")
    shown = capsys.readouterr().out
    assert not r.ran and r.returncode is None and not r.ok
    assert "$ docker version" in shown and "needs a Docker engine" in shown
    assert "no recorded output" in shown


def test_no_engine_other_commands_still_run(no_engine):
    assert labkit.sh([PY, "-c", "print(1)"]).ok
    assert not labkit.sh([PY, "-c", "print(1)"], engine=True).ran


def test_no_engine_shows_recording_labelled_as_recorded(no_engine, recorded, capsys):
    r = labkit.sh("docker run --rm --platform linux/arm64 busybox uname -m", record="uname-arm64")
    shown = capsys.readouterr().out
    assert "recorded output" in shown and "2025-11-25" in shown and "not run now" in shown
    assert "aarch64" in shown
    assert r.stdout == "aarch64\n" and r.recording is not None
    assert not r.ran and not r.ok  # a recording never passes for a real run


def test_recorded_failure_is_explained(no_engine, recorded, capsys):
    r = labkit.sh("docker buildx create --name x", record="no-such-builder")
    shown = capsys.readouterr().out
    assert r.returncode == 1
    assert "Known error:" in shown and "buildx inspect" in shown


def test_course_record_hands_real_results_to_recorded_save(recorded, monkeypatch):
    monkeypatch.setenv("COURSE_RECORD", "1")
    labkit.sh([PY, "-c", "print('real')"], record="k1")
    labkit.sh([PY, "-c", "print('unkeyed')"])
    assert [(k, r.stdout) for k, r in recorded.saved] == [("k1", "real")]


def test_needs_engine_explains(no_engine, capsys):
    assert labkit.needs_engine("building the image") is False
    assert "Building the image needs a Docker engine" in capsys.readouterr().out


def test_require_engine_skips_with_the_reason(no_engine, capsys):
    with pytest.raises(labkit.CheckSkipped) as skipped:
        labkit.require_engine("the pushed image")
    why = str(skipped.value)
    assert why.startswith("The pushed image needs a Docker engine")
    assert "COURSE_NO_ENGINE=1" in why and "./course up" in why
    assert isinstance(skipped.value, AssertionError), "a skipped graded cell scores 0"

    def check():
        """the pushed image is right"""
        labkit.require_engine("the pushed image")

    labkit.self_check(check)
    out = capsys.readouterr().out
    assert "SKIP  the pushed image is right" in out and "0/1 checks pass." in out


def test_require_engine_is_quiet_with_an_engine(monkeypatch, capsys):
    monkeypatch.setattr(labkit, "_engine_available", lambda: True)
    assert labkit.require_engine("the pushed image") is None
    assert capsys.readouterr().out == ""


def test_self_check_reports_each_check_and_never_raises(capsys):
    def passes():
        """the answer is right"""

    def fails():
        """the platform is normalised"""
        raise AssertionError("write linux/arm64, not aarch64")

    def todo():
        raise NotImplementedError()

    def unanswered():
        """the answer exists"""
        return answer_that_was_never_written  # noqa: F821

    def broken():
        """a helper works"""
        return {}["missing"]

    labkit.self_check(passes)
    assert capsys.readouterr().out.endswith("1/1 checks pass.\n")
    labkit.self_check(passes, fails, todo, unanswered, broken)
    shown = capsys.readouterr().out
    assert "PASS  the answer is right" in shown
    assert "FAIL  the platform is normalised\n      hint: write linux/arm64, not aarch64" in shown
    assert "TODO  todo" in shown
    assert "FAIL  a helper works\n      error: KeyError" in shown
    assert "TODO  the answer exists\n      hint: name 'answer_that_was_never_written'" in shown
    assert "1/5 checks pass." in shown


def test_show_report_prints_scores_findings_and_hints(capsys):
    report = Report(
        "labs/07-challenge",
        [
            CriterionResult("buildx", "uses buildx", "pass", 1, 1),
            CriterionResult(
                "platforms",
                "two platforms",
                "fail",
                0,
                1,
                [
                    Finding(
                        "BS102",
                        "error",
                        "no --platform",
                        "add --platform linux/amd64,linux/arm64",
                        "build.sh",
                        4,
                    )
                ],
            ),
            CriterionResult("runs", "runs", "skipped", 0, 1),
        ],
    )
    labkit.show_report(report)
    shown = capsys.readouterr().out
    assert "1/3 points" in shown
    assert "FAIL  platforms" in shown and "SKIP  runs" in shown
    assert "build.sh:4: no --platform" in shown
    assert "hint: add --platform linux/amd64,linux/arm64" in shown


def test_lab_header_lists_needs_and_rejects_unknown_labs(no_engine, capsys):
    labkit.lab_header("03-builders")
    shown = capsys.readouterr().out
    assert labkit.lab_status("03-builders") == {"engine": False}
    assert "MISSING a Docker engine" in shown and "./course up" in shown
    with pytest.raises(ValueError, match="unknown lab"):
        labkit.lab_header("99-nope")


def test_lab_header_shows_the_no_engine_banner(no_engine, recorded, capsys):
    labkit.lab_header("00-welcome")
    assert "BANNER for 00-welcome" in capsys.readouterr().out


def test_unique_names_differ():
    a, b = labkit.unique_name("lab03"), labkit.unique_name("lab03")
    assert a != b and a.startswith("lab03-")


@pytest.mark.engine
def test_sh_runs_docker_for_real(capsys):
    noengine.engine_available.cache_clear()
    r = labkit.sh("docker buildx ls", record="never-used")
    assert r.ok and "default" in r.stdout and r.recording is None
    assert labkit.lab_status("03-builders") == {"engine": True}
    assert repr(r) == "<ShResult `docker buildx ls`: exit 0>"


def test_counted_zeroes_a_pass_whose_prerequisite_failed_and_totals_agree():
    """The challenge's graded cells read this one report: its total is the nbgrader total."""
    report = Report(
        "x",
        [
            CriterionResult("cross-compile", "cc", "fail", 0, 2),
            CriterionResult("build", "b", "pass", 1, 1),
            CriterionResult("runs", "r", "pass", 1, 1),
        ],
    )
    got = labkit.counted(report, {"build": ("cross-compile",)})
    assert [c.status for c in got.criteria] == ["fail", "fail", "pass"]
    assert got.score == 1 and report.score == 2  # the original is left alone
    assert "build counts once cross-compile passes" in got.criterion("build").findings[-1].message


def test_show_report_says_what_evaluates_skipped_rows(capsys):
    report = Report("x", [CriterionResult("runs", "r", "skipped", 0, 1)])
    labkit.show_report(report, skipped="run the full check in section 5")
    assert "not evaluated here: run the full check in section 5" in capsys.readouterr().out
