"""Rule cases of kind ``labkit`` (GR005, tests/rules/cases/GR005.yaml): a report with the
case's ``statuses`` goes through ``labkit.counted`` with the case's ``requires``; the rule
fires (``expect: fail``) or stays silent (``expect: pass``), and ``status`` holds after."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from grader.course import labkit
from grader.grading.report import CriterionResult, Report

CASES_DIR = Path(__file__).resolve().parents[1] / "rules" / "cases"


def _cases():
    for path in sorted(CASES_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if data.get("kind") == "labkit":
            for case in data["cases"]:
                yield pytest.param(data["rule"], case, id=f"{data['rule']}: {case['name']}")


@pytest.mark.parametrize(("rule", "case"), list(_cases()))
def test_labkit_rule_case(rule: str, case: dict) -> None:
    report = Report(
        "x",
        [
            CriterionResult(cid, cid, status, 1.0 if status == "pass" else 0.0, 1.0)
            for cid, status in case["statuses"].items()
        ],
    )
    got = labkit.counted(report, {k: tuple(v) for k, v in case["requires"].items()})
    fired = [f for c in got.criteria for f in c.findings if f.rule == rule]
    assert bool(fired) == (case["expect"] == "fail"), fired
    for cid, status in case.get("status", {}).items():
        assert got.criterion(cid).status == status
    assert all(f.hint and "first" in f.hint for f in fired)
