"""The rule catalogue's contract, for every rule module (BS, DF, GR here; MF, RN and any
later ones too).

Every rule registered in ``grader.grading.rules.all_rules()`` must have:

- docs: an id like ``BS150`` (two capitals, three digits), a kebab-case name, a criterion
  from ``grader.grading.criteria`` (the challenge's, or Lab 08's workflow criteria for GA
  rules; ``*``
  for grader-level rules), a severity, a message, a hint
  (errors and warnings; an info finding may have none), an anti-pattern and a
  best-practice example (docs/rules.md is generated from these);
- cases: ``tests/rules/cases/<ID>.yaml`` with ``rule: <ID>``, at least one case with
  ``expect: fail`` (the rule fires) and one with ``expect: pass`` (it stays silent). The
  file's ``kind`` (default ``static``) says who runs the cases: ``static`` and ``checker``
  run in tests/checks/test_rule_cases.py; for any other kind (``manifest``, ``run``...)
  the owning module adds ``tests/checks/test_rule_cases_<kind>.py``, which must exist.

A rule without cases or docs fails here by name; so does a case file for no rule.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from grader.grading.criteria import BY_ID, WORKFLOW_BY_ID
from grader.grading.rules import all_rules

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE.parent / "rules" / "cases"
RULES = all_rules()
OWN_KINDS = ("static", "checker")


def _case_file(rule_id: str) -> dict | None:
    path = CASES_DIR / f"{rule_id}.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_has_docs(rule_id: str) -> None:
    r = RULES[rule_id]
    assert re.fullmatch(r"[A-Z]{2}\d{3}", r.id)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.name), r.name
    assert r.criterion in BY_ID or r.criterion in WORKFLOW_BY_ID or r.criterion == "*", r.criterion
    assert r.severity in ("error", "warning", "info")
    for part in ("message", "anti_pattern", "best_practice"):
        assert getattr(r, part).strip(), f"{rule_id} has no {part}"
    if r.severity != "info":
        assert r.hint.strip(), f"{rule_id}: an error or warning needs a hint (what to change)"
    assert r.anti_pattern.strip() != r.best_practice.strip()


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_has_cases(rule_id: str) -> None:
    data = _case_file(rule_id)
    assert data is not None, f"add tests/rules/cases/{rule_id}.yaml (see its README.md)"
    assert data.get("rule") == rule_id
    expects = [c.get("expect") for c in data.get("cases", [])]
    assert "fail" in expects, f"{rule_id}: no case where the rule fires (expect: fail)"
    assert "pass" in expects, f"{rule_id}: no case where it stays silent (expect: pass)"
    assert set(expects) <= {"pass", "fail"}
    names = [c.get("name") for c in data["cases"]]
    assert all(names) and len(names) == len(set(names)), "cases need unique names"
    kind = data.get("kind", "static")
    if kind not in OWN_KINDS:
        runner = HERE / f"test_rule_cases_{kind}.py"
        assert runner.exists(), f"kind {kind!r} needs a runner: {runner.name}"


def test_no_case_file_without_a_rule() -> None:
    orphans = [p.stem for p in CASES_DIR.glob("*.yaml") if p.stem not in RULES]
    assert not orphans, f"case files for unknown rules: {orphans}"


def test_ids_are_unique_across_modules() -> None:
    names = [r.name for r in RULES.values()]
    dupes = {n for n in names if names.count(n) > 1}
    assert not dupes, f"rule names used twice: {dupes}"


# --- Rule.finding: the one way to make a finding ------------------------------------------

PLACEHOLDER = re.compile(r"\{(\w+)\}")


@pytest.mark.parametrize(
    "rule_id", sorted(r for r in RULES if PLACEHOLDER.search(RULES[r].hint)) or ["none"]
)
def test_a_hints_placeholders_are_filled(rule_id: str) -> None:
    rule = RULES[rule_id]
    names = set(PLACEHOLDER.findall(rule.message + rule.hint)) - {"line"}
    values = {n: f"<{n}-value>" for n in names}
    f = rule.finding("build.sh", 7, **values)
    for n in PLACEHOLDER.findall(rule.hint):
        assert "{" + n + "}" not in f.hint, f"{rule_id}: {{{n}}} left in the hint: {f.hint}"
        assert (values.get(n) or "7") in f.hint
    assert (f.file, f.line, f.rule, f.severity) == ("build.sh", 7, rule_id, rule.severity)


def test_finding_fills_the_message_and_the_hint() -> None:
    f = RULES["MF311"].finding(platform="linux/arm64", listed="linux/amd64")
    assert f.message == "the index has no linux/arm64 image (it lists: linux/amd64)"
    assert f.hint.startswith("Add linux/arm64 to `--platform`"), f.hint


def test_braces_that_are_not_placeholders_stay() -> None:
    """A workflow hint quotes GitHub expressions (``${{ ... }}``) and YAML maps literally."""
    rule = next(r for r in RULES.values() if "${{" in r.hint)
    assert rule.finding("ci.yml", 3).hint == rule.hint
    shell = next(r for r in RULES.values() if "${IMAGE:-" in r.hint)
    assert shell.finding("build.sh", 1).hint == shell.hint


def test_conversions_and_format_specs_are_applied_as_str_format_does() -> None:
    timeout = next(r for r in RULES.values() if "{seconds:g}" in r.message)
    assert "{" not in timeout.finding(seconds=600.0, run=1, platform="p", image="i").message
    assert "600 " in timeout.finding(seconds=600.0, run=1, platform="p", image="i").message + " "
    bad = RULES["MF305"].finding(ref="A/B", reason="upper case")
    assert bad.message == "'A/B' is not an image reference (upper case)"


def test_a_known_error_replaces_the_generic_hint() -> None:
    from grader.known_errors import explain

    known = explain("exec /app: exec format error")
    assert known is not None
    f = RULES["RN402"].finding("build.sh", known=known, run=1, status=1, tail="...")
    assert f.hint == f"{known.title}: {known.fix}"
    assert (
        RULES["RN402"].finding("build.sh", run=1, status=1, tail="...").hint == RULES["RN402"].hint
    )


def test_findings_are_made_only_by_rule_finding() -> None:
    """No check builds a ``Finding`` or formats a hint by hand (they drifted from the catalogue)."""
    import ast

    pkg = HERE.parents[1] / "grader"
    own = {pkg / "grading" / "rules" / "catalogue.py", pkg / "grading" / "report.py"}
    wrong = []
    for path in pkg.rglob("*.py"):
        if path in own:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", "")
                if name == "Finding" or (
                    name == "finding" and any(k.arg == "hint" for k in node.keywords)
                ):
                    wrong.append(f"{path.relative_to(pkg.parent)}:{node.lineno}")
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "hint"
                and path.parts[-3:-1]
                == (
                    "grading",
                    "checks",
                )
            ):
                wrong.append(f"{path.relative_to(pkg.parent)}:{node.lineno} reads a rule's hint")
    assert not wrong, wrong
