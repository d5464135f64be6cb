"""grader.grading.checks.workflow beyond the rule cases: files that are not workflows at all, the
required platforms, and the report's shape (Lab 08 shows it with labkit.show_report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_rule_cases_workflow import REFERENCE

from grader.grading.checks.workflow import MAX_WORKFLOW_BYTES, check_workflow, load_workflow
from grader.grading.criteria import WORKFLOW_CRITERIA


def _unreadable(report) -> str:
    valid = report.criterion("ga-valid")
    assert valid.status == "fail" and valid.findings[0].rule == "GA501"
    assert {c.status for c in report.criteria[1:]} == {"skipped"}
    assert report.score == 0
    return valid.findings[0].message


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"on: push\njobs: \xff\xfe\n", "not UTF-8"),
        (b"# pad\n" * (MAX_WORKFLOW_BYTES // 6 + 1), "larger than"),
        (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "not UTF-8"),
        (b"[" * 400 + b"]" * 400, "nests"),
        (b"on: push\njobs: [\n", "line"),
    ],
    ids=["latin1", "huge", "binary", "deep", "truncated"],
)
def test_files_that_are_not_workflows(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "build.yml"
    path.write_bytes(content)
    assert why in _unreadable(check_workflow(path))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "cannot open" in _unreadable(check_workflow(tmp_path / "nope.yml"))
    assert "cannot open" in _unreadable(check_workflow(tmp_path))


def test_on_key_stays_text_and_lines_are_kept() -> None:
    wf = load_workflow(REFERENCE)
    assert "on" in wf and True not in wf  # YAML 1.1 would read a bare `on` as true
    steps = wf["jobs"]["build"]["steps"]
    assert steps.item_lines[4] == 22 and steps[4].line_of("with") == 23


def test_required_platforms_are_a_parameter() -> None:
    report = check_workflow(REFERENCE, platforms=["linux/amd64", "linux/riscv64"])
    findings = report.criterion("ga-platforms").findings
    assert report.criterion("ga-platforms").status == "fail"
    assert [f.rule for f in findings] == ["GA521"] and "linux/riscv64" in findings[0].message
    assert check_workflow(REFERENCE, platforms=["linux/arm64/v8"]).passed


def test_report_shape_and_json() -> None:
    report = check_workflow(REFERENCE, name=".github/workflows/build.yml")
    assert [c.id for c in report.criteria] == [c.id for c in WORKFLOW_CRITERIA]
    data = json.loads(report.to_json())
    assert data["submission"] == ".github/workflows/build.yml"
    assert data["score"] == data["max_score"] == 6.0
