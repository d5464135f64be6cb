"""Rule cases of kind ``engine`` (RN421, RN43x, RN44x, RN450): whole submissions through
``check_engine`` on the real engine: build.sh in the sandbox, the grader's own build, the
image run on each platform."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from rule_case_kit import PUSHING_BUILD_SH, load, make_submission, require_sandbox, unique_namespace

from grader.engine.config import settings
from grader.grading.checks.run import EngineOptions, check_engine
from grader.grading.sandbox.limits import Limits
from grader.grading.sandbox.runner import default_work_root


@pytest.mark.parametrize(("rule", "case"), load("engine"))
def test_engine_rule_case(rule: str, case: dict, tmp_path: Path) -> None:
    require_sandbox()
    sub = make_submission(tmp_path, case, PUSHING_BUILD_SH)
    platforms = case.get("platforms", ["linux/amd64", "linux/arm64"])
    work = default_work_root() / f"t-cases-{uuid.uuid4().hex[:8]}"
    limits = Limits(**{"seconds": 120.0, "command_seconds": 120.0, **(case.get("limits") or {})})
    opts = EngineOptions(
        namespace=unique_namespace(case),
        registry=case.get("registry", settings().registry_host),
        limits=limits,
        build_timeout=float(case.get("build_timeout", 120)),
        run_timeout=float(case.get("run_timeout", 60)),
        work_root=work,
    )
    results = {r.id: r for r in check_engine(sub, None, platforms, opts=opts).results}
    assert not any(work.glob("*")), "workspace left behind"
    if work.exists():
        work.rmdir()
    assert list(results) == ["idempotent", "build", "runs"]
    findings = [f for r in results.values() for f in r.findings]
    fired = [f for f in findings if f.rule == rule]
    shown = {cid: (r.status, [(f.rule, f.message[:160]) for f in r.findings])
             for cid, r in results.items()}  # fmt: skip
    for cid, status in (case.get("status") or {}).items():
        assert results[cid].status == status, shown
    for r in results.values():
        assert r.points == (r.max_points if r.status == "pass" else 0), r
    if case["expect"] == "fail":
        assert fired, f"{rule} did not fire: {shown}"
        if "message_contains" in case:
            assert any(case["message_contains"] in f.message for f in fired), shown
    else:
        assert not fired, f"{rule} fired: {shown}"
