"""A report cannot grow without bound (issue 12): findings per criterion and per report are
capped, a GR004 finding says how many were dropped, and each text is cut."""

from __future__ import annotations

import json
from pathlib import Path

import grader
from grader.grading import caps
from grader.grading.criteria import CRITERIA
from grader.grading.report import CriterionResult, Finding, Report


def _report(per_criterion: int, text: int = 10) -> Report:
    r = Report("x")
    m, h, f = "m" * text, "h" * text, "f" * text  # one string each, shared by every finding
    for c in CRITERIA:
        fs = [Finding("BS114", "error", m, h, f, i) for i in range(per_criterion)]
        r.criteria.append(CriterionResult(c.id, c.title, "fail", 0, c.points, fs))
    return r


def test_findings_per_criterion_are_capped_and_the_drop_is_counted() -> None:
    r = caps.limit_findings(_report(5000))
    total = 0
    for c in r.criteria:
        assert len(c.findings) <= caps.MAX_PER_CRITERION
        last = c.findings[-1]
        assert last.rule == "GR004"
        kept = len(c.findings) - 1
        assert last.message.startswith(f"{5000 - kept} more findings")
        total += len(c.findings)
    assert total <= caps.MAX_PER_REPORT


def test_long_texts_are_cut_and_the_report_stays_small() -> None:
    r = caps.limit_findings(_report(5000, text=1_000_000))
    size = len(r.to_json())
    assert size < 1_500_000  # was 11 * 5000 * 3 MB
    f = r.criteria[0].findings[0]
    assert len(f.message) < caps.MAX_TEXT + 50 and "more characters" in f.message


def test_a_report_under_the_caps_is_unchanged() -> None:
    r = _report(3)
    before = r.to_json()
    assert caps.limit_findings(r).to_json() == before


def test_end_to_end_a_script_with_thousands_of_findings(tmp_path: Path) -> None:
    flags = " ".join(f"--flag{i}" for i in range(3000))
    (tmp_path / "build.sh").write_text(f"#!/bin/sh\ndocker buildx build {flags} .\n")
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    report = grader.check(tmp_path, static=True)
    counts = [len(c.findings) for c in report.criteria]
    assert max(counts) <= caps.MAX_PER_CRITERION and sum(counts) <= caps.MAX_PER_REPORT
    assert any(f.rule == "GR004" for c in report.criteria for f in c.findings)
    assert len(json.dumps(report.to_dict())) < 200_000
