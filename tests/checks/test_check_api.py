"""`grader.check(path, ...)`, the Python API nbgrader cells use: same model as the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from submission_kit import materialise

import grader
from grader.grading import api as checker
from grader.grading.checks import image as image_checks
from grader.grading.checks import run as run_checks
from grader.grading.checks.run import EngineOutcome
from grader.grading.criteria import CRITERIA
from grader.grading.report import CriterionResult, Report

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "submissions"


def test_static_report_model() -> None:
    report = grader.check(FIXTURES / "solution-c-cross", static=True)
    assert isinstance(report, Report)
    assert report.passed  # skipped criteria are not evaluated
    assert report.score == 7 and report.max_score == sum(c.points for c in CRITERIA)
    assert report.criterion("cross-compile").points == 2
    assert json.loads(report.to_json())["criteria"][0]["id"] == "buildx"


def test_accepts_str_paths_and_platform_strings() -> None:
    report = grader.check(str(FIXTURES / "missing-platform"), static=True,
                          platforms="linux/arm64/v8")  # fmt: skip
    assert report.criterion("platforms").status == "pass"


def test_bad_platforms_raise_value_error() -> None:
    with pytest.raises(ValueError):
        grader.check(FIXTURES / "starter", static=True, platforms=["arm64"])


def test_unreadable_submission_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(checker.SubmissionUnreadable, match="no such directory"):
        grader.check(tmp_path / "nope", static=True)


def test_registry_check_gets_the_static_tag_when_the_engine_ran_none(monkeypatch) -> None:
    calls = {}

    def fake_check_image(ref, platforms, client):
        calls["registry"] = (ref, platforms, client)
        return [CriterionResult("manifest", "t", "pass", 1.0, 1.0),
                CriterionResult("image-arch", "t", "fail", 0.0, 1.0)]  # fmt: skip

    def fake_check_engine(submission, image, platforms, info, opts):
        calls["engine"] = (submission, image, platforms, info)
        return EngineOutcome(
            [CriterionResult(c, "t", "pass", 1.0, 1.0) for c in ("build", "runs", "idempotent")]
        )

    monkeypatch.setattr(image_checks, "check_image", fake_check_image)
    monkeypatch.setattr(run_checks, "check_engine", fake_check_engine)
    client = object()
    report = grader.check(FIXTURES / "solution-c-cross", registry_client=client)
    ref, platforms, got_client = calls["registry"]
    assert ref == "127.0.0.1:5000/07-challenge/hello:latest"
    assert platforms == ("linux/amd64", "linux/arm64") and got_client is client
    submission, image, _, info = calls["engine"]
    # no --image: the engine run picks what build.sh pushes; the registry falls back to the
    # tag build.sh pushes, read statically
    assert Path(submission) == FIXTURES / "solution-c-cross" and image is None
    assert info.dockerfile == "Dockerfile" and info.context == "."
    assert report.criterion("image-arch").status == "fail"
    assert report.score == 7 + 4 and not report.passed


def test_image_argument_overrides_the_static_tag(monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(image_checks, "check_image", lambda *a: seen.append(a[0]) or [])
    monkeypatch.setattr(
        run_checks, "check_engine", lambda *a: seen.append(a[1]) or EngineOutcome([])
    )
    report = grader.check(FIXTURES / "solution-go", image="127.0.0.1:5000/x/y:1")
    assert seen == ["127.0.0.1:5000/x/y:1", "127.0.0.1:5000/x/y:1"]  # engine, then registry
    # the stubs returned nothing: those criteria are errors, never passes
    assert {report.criterion(c).status for c in ("manifest", "build")} == {"error"}


def test_a_check_module_that_cannot_be_imported_is_an_error(monkeypatch) -> None:
    """GR001: the registry checks' module missing from the installation: error, not pass."""
    monkeypatch.setitem(sys.modules, "grader.grading.checks.image", None)
    monkeypatch.setattr(run_checks, "check_engine", lambda *a: EngineOutcome([]))
    report = grader.check(FIXTURES / "solution-go", image="127.0.0.1:5000/x/y:1")
    for cid in ("manifest", "image-arch"):
        (f,) = report.criterion(cid).findings
        assert (report.criterion(cid).status, f.rule) == ("error", "GR001")
        assert "grader.grading.checks.image" in f.message


def test_grade_returns_what_the_engine_run_did(monkeypatch) -> None:
    """No hand-back through shared state: the batch gets the outcome check_engine returned."""
    got = {}

    def fake_check_engine(submission, image, platforms, info, opts):
        got["opts"] = opts
        return EngineOutcome([], pushed=["reg/ns/app:1"], image="reg/ns/app:1")

    monkeypatch.setattr(run_checks, "check_engine", fake_check_engine)
    monkeypatch.setattr(image_checks, "check_image", lambda *a: [])
    opts = run_checks.EngineOptions(namespace="ns")
    report, outcome = grader.grading.api.grade(FIXTURES / "solution-go", engine=opts)
    assert got["opts"] is opts
    assert outcome is not None and outcome.pushed == ["reg/ns/app:1"]
    assert report.criterion("build").status == "error"  # the fake returned no results
    assert grader.grading.api.grade(FIXTURES / "solution-go", static=True)[1] is None


def test_dockerfile_and_context_follow_build_sh(tmp_path: Path) -> None:
    root = materialise(tmp_path, {
        "Dockerfile": None,
        "build.sh": "cd app\ndocker buildx build --builder default -f ../docker/app.Dockerfile "
                    "--platform linux/amd64,linux/arm64 --provenance=false --push -t r/a src\n",
        "docker/app.Dockerfile": "FROM busybox:latest\n",
    })  # fmt: skip
    from grader.grading.checks import buildscript as static

    a = static.analyse(root, ("linux/amd64", "linux/arm64"))
    assert a.dockerfile == "docker/app.Dockerfile" and a.context == "app/src"
    assert grader.check(root, static=True).criterion("cross-compile").status == "pass"


def test_registry_check_reads_the_image_the_engine_run_pushed(monkeypatch) -> None:
    seen = {}

    def fake_check_engine(submission, image, platforms, info, opts):
        return EngineOutcome([], image="reg/pushed:by-run")

    def fake_check_image(ref, platforms, client):
        seen["ref"] = ref
        return []

    monkeypatch.setattr(image_checks, "check_image", fake_check_image)
    monkeypatch.setattr(run_checks, "check_engine", fake_check_engine)
    grader.check(FIXTURES / "solution-go")
    assert seen["ref"] == "reg/pushed:by-run"
