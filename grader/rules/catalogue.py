"""The rule catalogue's shape: one rule = id + name + criterion + message + hint + docs.

Rules live in one module per artefact (``buildsh`` BS1xx, ``dockerfile`` DF2xx, ``manifest``
MF3xx, ``run`` RN4xx) and register themselves here; ids are never renumbered.
``grader.rules.all_rules()`` returns the whole catalogue; docs/rules.md is generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from grader.report import Finding, Severity


@dataclass(frozen=True)
class Rule:
    id: str  # e.g. "BS101"; never renumbered
    name: str  # short kebab-case name, e.g. "plain-docker-build"
    criterion: str  # the criterion id it belongs to (grader.criteria)
    severity: Severity
    message: str  # what is wrong, may contain {placeholders}
    hint: str  # what to change
    anti_pattern: str  # doc example that triggers the rule
    best_practice: str  # doc example that passes
    doc: str = ""  # optional: why the rule exists and decisions behind it (docs/rules.md)

    def finding(
        self, file: str | None = None, line: int | None = None, hint: str | None = None, **fmt
    ) -> Finding:
        return Finding(
            rule=self.id,
            severity=self.severity,
            message=self.message.format(**fmt) if fmt else self.message,
            hint=hint if hint is not None else self.hint,
            file=file,
            line=line,
        )


_RULES: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    if rule.id in _RULES and _RULES[rule.id] != rule:
        raise ValueError(f"rule id {rule.id} registered twice")
    _RULES[rule.id] = rule
    return rule


def registered() -> dict[str, Rule]:
    return dict(_RULES)
