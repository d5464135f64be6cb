"""Every rule case of kind ``workflow`` (GA5xx, tests/rules/cases/GA*.yaml): build the
workflow, run ``grader.grading.checks.workflow.check_workflow`` and check that the rule fires
(``expect: fail``) or stays silent (``expect: pass``), with the given criterion statuses.

Case keys (besides ``name``, ``expect``, ``status``, ``line``):

- ``workflow``: the whole file's text; otherwise :data:`REFERENCE` is used, changed by
- ``edit``: a list of ``{replace: OLD, with: NEW}`` applied in order (OLD must occur);
- ``platforms``: the platforms required (default linux/amd64 + linux/arm64).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from grader.grading.checks.workflow import check_workflow
from grader.grading.criteria import WORKFLOW_CRITERIA

CASES_DIR = Path(__file__).resolve().parents[1] / "rules" / "cases"

#: A workflow that passes every GA rule: what Lab 08's solution looks like.
REFERENCE = """\
name: image
on:
  push:
    branches: [main]
  pull_request:
jobs:
  build:
    runs-on: ubuntu-latest
    permissions:
      contents: read
      packages: write
    steps:
      - uses: actions/checkout@v4
      - uses: docker/setup-qemu-action@v3
      - uses: docker/setup-buildx-action@v3
      - uses: docker/login-action@v3
        if: github.event_name != 'pull_request'
        with:
          registry: ghcr.io
          username: ${{ github.actor }}
          password: ${{ secrets.GITHUB_TOKEN }}
      - uses: docker/build-push-action@v6
        with:
          context: .
          platforms: linux/amd64,linux/arm64
          push: ${{ github.event_name != 'pull_request' }}
          tags: ghcr.io/${{ github.repository }}:latest
          cache-from: type=gha
          cache-to: type=gha,mode=max
          provenance: false
"""


def _params():
    for path in sorted(CASES_DIR.glob("GA*.yaml")):
        data = yaml.safe_load(path.read_text())
        if data.get("kind") != "workflow":
            continue
        for case in data["cases"]:
            yield pytest.param(data["rule"], case, id=f"{path.stem}-{case['name']}")


def _workflow(case: dict) -> str:
    if "workflow" in case:
        return case["workflow"] or ""
    text = REFERENCE
    for edit in case.get("edit", []):
        assert edit["replace"] in text, f"edit does not apply: {edit['replace']!r}"
        text = text.replace(edit["replace"], edit["with"], 1)
    return text


def test_reference_workflow_passes_everything() -> None:
    report = check_workflow(REFERENCE)
    assert [c.status for c in report.criteria] == ["pass"] * len(WORKFLOW_CRITERIA)
    assert not [f for c in report.criteria for f in c.findings]
    assert report.score == report.max_score == len(WORKFLOW_CRITERIA)


@pytest.mark.parametrize(("rule", "case"), list(_params()))
def test_rule_case(rule: str, case: dict) -> None:
    platforms = case.get("platforms", ["linux/amd64", "linux/arm64"])
    report = check_workflow(_workflow(case), platforms=platforms)
    fired = [f for c in report.criteria for f in c.findings if f.rule == rule]
    everything = [
        f"{f.rule} line {f.line}: {f.message}" for c in report.criteria for f in c.findings
    ]
    if case["expect"] == "fail":
        assert fired, f"{rule} did not fire; findings: {everything}"
        if "line" in case:
            assert case["line"] in [f.line for f in fired], [f.line for f in fired]
        assert all(f.hint for f in fired), "every finding tells what to do next"
    else:
        assert not fired, f"{rule} fired: {[f.message for f in fired]}"
    for cid, status in (case.get("status") or {}).items():
        assert report.criterion(cid).status == status, (cid, everything)
