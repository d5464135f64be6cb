"""Rule cases of kind ``gate`` (RN41x): docker command lines a sandboxed build.sh sends, and
what the gate's policy decides. Pure decisions: no engine, no sandbox."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
import yaml

from grader.grading.sandbox.policy import Policy

CASES = Path(__file__).parents[1] / "rules" / "cases"
REGISTRY = "127.0.0.1:5000"
NAMESPACE = "cases/alice"


def _load() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(CASES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if data.get("kind") == "gate":
            out += [(data["rule"], case) for case in data["cases"]]
    return out


def _fill(text: str, policy: Policy) -> str:
    return (
        text.replace("{registry}", policy.registry)
        .replace("{port}", policy.registry.rsplit(":", 1)[1])
        .replace("{repository}", policy.repository)
        .replace("{prefix}", policy.name_prefix)
    )


@pytest.mark.parametrize(
    ("rule", "case"), _load(), ids=lambda v: v if isinstance(v, str) else v["name"]
)
def test_gate_rule_case(rule: str, case: dict, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    (root / "docker").mkdir(parents=True)
    for rel, content in (case.get("files") or {}).items():
        target = root / rel
        if isinstance(content, dict) and "symlink" in content:
            os.symlink(content["symlink"], target)
        else:
            target.write_text(content)
    policy = Policy(namespace=NAMESPACE, registry=REGISTRY, label="case0001", host_root=root)
    commands = case.get("sequence") or [case["argv"]]
    decisions = [
        policy.decide([_fill(a, policy) for a in argv], case.get("cwd", "/submission"))
        for argv in commands
    ]
    fired = [f for d in decisions for f in d.findings if f.rule == rule]
    shown = [(d.argv, [(f.rule, f.message) for f in d.findings]) for d in decisions]
    if case["expect"] == "fail":
        assert fired, f"{rule} did not fire: {shown}"
        for f in fired:
            assert f.message and f.hint, f
            if f.severity == "error":
                # A refusal names the command it refused.
                assert "`docker " in f.message, f.message
    else:
        assert not fired, f"{rule} fired: {shown}"
        assert all(d.refused is None for d in decisions), shown
    if "argv_contains" in case:
        joined = " ".join(shlex.join(d.argv) for d in decisions if d.argv)
        assert _fill(case["argv_contains"], policy) in joined, joined
