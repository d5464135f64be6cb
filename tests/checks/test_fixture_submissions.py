"""The named fixture submissions (tests/fixtures/submissions/) grade as expected.yaml says."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from submission_kit import describe, findings

import grader

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "submissions"
EXPECTED = yaml.safe_load((FIXTURES / "expected.yaml").read_text())
STATIC = ("buildx", "platforms", "push", "provenance", "builder", "cross-compile")


def test_every_fixture_has_expectations() -> None:
    folders = {p.name for p in FIXTURES.iterdir() if p.is_dir()}
    assert folders == set(EXPECTED), "fixtures and expected.yaml disagree"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_statuses(name: str) -> None:
    want = EXPECTED[name]
    report = grader.check(FIXTURES / name, static=True)
    got = {c.id: c.status for c in report.criteria if c.id in STATIC}
    assert got == want["statuses"], describe(report)
    rules = {f.rule for f in findings(report)}
    assert set(want.get("rules", [])) <= rules, describe(report)
    for c in report.criteria:
        if c.id not in STATIC:
            assert c.status == "skipped" and c.points == 0
        elif c.status == "fail":
            assert c.points == 0 and any(f.severity == "error" for f in c.findings)
        else:
            assert c.points == c.max_points


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if "pushed" in EXPECTED[n]))
def test_pushed_tag_resolves(name: str) -> None:
    from grader.grading.checks import buildscript as static

    analysis = static.analyse(FIXTURES / name, ("linux/amd64", "linux/arm64"))
    assert analysis.pushed_image == EXPECTED[name]["pushed"]


def test_solutions_score_full_static_marks() -> None:
    for name in ("solution-c-cross", "solution-go", "solution-python"):
        report = grader.check(FIXTURES / name, static=True)
        static = [c for c in report.criteria if c.id in STATIC]
        assert sum(c.points for c in static) == sum(c.max_points for c in static) == 7
