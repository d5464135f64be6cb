"""Every rule case in tests/rules/cases/*.yaml of kind ``static`` (BS, DF) or ``checker``
(GR): build the submission, grade it, and check the rule fires (``expect: fail``) or stays
silent (``expect: pass``), on the given line, with the given criterion statuses."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
import yaml
from submission_kit import describe, findings, materialise

import grader
from grader.grading.checks.run import EngineOutcome
from grader.grading.criteria import BY_ID
from grader.grading.report import CriterionResult
from grader.grading.rules import get as get_rule

CASES_DIR = Path(__file__).resolve().parents[1] / "rules" / "cases"
FILE_KEYS = ("build.sh", "Dockerfile")
KINDS = ("static", "checker")


def load_case_files() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(CASES_DIR.glob("*.yaml"))}


def _params():
    for stem, data in load_case_files().items():
        if data.get("kind", "static") not in KINDS:
            continue
        for case in data["cases"]:
            yield pytest.param(data["rule"], data.get("kind", "static"), case,
                               id=f"{stem}-{case['name']}")  # fmt: skip


#: The check families a ``checker`` case stubs: the module grader.check imports, its function.
FAMILIES = {
    "registry": ("grader.grading.checks.image", "check_image"),
    "engine": ("grader.grading.checks.run", "check_engine"),
}


def _stub(monkeypatch, family: str, how: str) -> None:
    """``missing``: the module cannot be imported (as when a dependency is not installed);
    ``crash``: the check raises; ``partial``: one result only; ``ok``: every criterion passes."""
    module, func = FAMILIES[family]
    if how == "missing":
        monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
        return
    ids = [c for c, crit in BY_ID.items() if crit.needs == family]

    def ok(*_args, **_kwargs):
        results = [CriterionResult(cid, BY_ID[cid].title, "pass", float(BY_ID[cid].points),
                                   float(BY_ID[cid].points)) for cid in ids]  # fmt: skip
        results = results[:1] if how == "partial" else results
        return EngineOutcome(results) if family == "engine" else results

    def crash(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(importlib.import_module(module), func, crash if how == "crash" else ok)


@pytest.mark.parametrize(("rule", "kind", "case"), list(_params()))
def test_rule_case(rule: str, kind: str, case: dict, tmp_path: Path, monkeypatch) -> None:
    spec = {k: case[k] for k in FILE_KEYS if k in case}
    spec.update(case.get("files", {}))
    root = materialise(tmp_path, spec)
    static = kind == "static" or case.get("static", False)
    if kind == "checker":
        for family in FAMILIES:
            _stub(monkeypatch, family, case.get("stubs", {}).get(family, "ok"))
    report = grader.check(root, static=static, image=case.get("image"))
    hits = findings(report, rule)
    if case["expect"] == "fail":
        assert hits, f"{rule} did not fire:\n{describe(report)}"
        if "line" in case:
            assert case["line"] in [f.line for f in hits], describe(report)
        template = get_rule(rule)
        for f in hits:
            for name in re.findall(r"\{(\w+)\}", template.message + template.hint):
                assert "{" + name + "}" not in f.message + f.hint, f"unfilled {{{name}}}"
            assert f.hint, f"{rule} finding without a hint"
    else:
        assert case["expect"] == "pass", case
        assert not hits, f"{rule} fired:\n{describe(report)}"
    for cid, status in case.get("status", {}).items():
        assert report.criterion(cid).status == status, f"{cid}:\n{describe(report)}"
