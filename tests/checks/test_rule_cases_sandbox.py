"""Rule cases of kind ``sandbox`` (RN40x, RN420, RN422): build.sh scripts run in the real
sandbox, and the ``idempotent`` finding they end in."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from rule_case_kit import QUIET_BUILD_SH, load, make_submission, require_sandbox, unique_namespace

from grader.engine.config import settings
from grader.grading.checks.run import _idempotent
from grader.grading.sandbox import runner
from grader.grading.sandbox.limits import Cgroup, Limits


@pytest.mark.parametrize(("rule", "case"), load("sandbox"))
def test_sandbox_rule_case(rule: str, case: dict, tmp_path: Path, monkeypatch) -> None:
    for name, value in (case.get("override") or {}).items():
        monkeypatch.setattr(runner, name, value)
    for name, value in (case.get("env") or {}).items():
        monkeypatch.setenv(name, value)
    if not case.get("env"):
        require_sandbox()
    if case["_file"].get("needs_cgroup"):
        probe = Cgroup.create("t-probe", Limits())
        if probe is None:
            pytest.skip("no writable cgroup here: memory is limited by an rlimit only")
        probe.remove()
    sub = make_submission(tmp_path, case, QUIET_BUILD_SH)
    limits = Limits(**{"seconds": 30.0, "command_seconds": 30.0, **(case.get("limits") or {})})
    registry = settings().registry_host
    # Under /tmp: the sandbox's uid cannot pass through pytest's private tmp_path.
    work = runner.default_work_root() / f"t-cases-{uuid.uuid4().hex[:8]}"
    outcome = runner.run_build_sh(
        sub,
        namespace=unique_namespace(case),
        registry=registry,
        limits=limits,
        runs=case.get("runs", 1),
        work_root=work,
    )
    result = _idempotent(outcome, registry)
    fired = [f for f in result.findings if f.rule == rule]
    shown = [(f.rule, f.message) for f in result.findings]
    if case["expect"] == "fail":
        assert fired, f"{rule} did not fire ({result.status}): {shown}"
        assert result.status in ("fail", "error"), result.status
        assert result.points == 0
        for f in fired:
            if "tail_contains" in case:
                assert case["tail_contains"] in f.message, f.message
            if "hint_contains" in case:
                assert case["hint_contains"] in f.hint, f.hint
    else:
        assert not fired, f"{rule} fired: {shown}"
    # Whatever the script did, nothing of the run is left on the host.
    assert not any(work.glob("*")), "workspace left behind"
    if work.exists():
        work.rmdir()
