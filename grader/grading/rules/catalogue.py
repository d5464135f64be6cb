"""The rule catalogue's shape: one rule = id + name + criterion + message + hint + docs.

Rules live in one module per artefact (``buildscript`` BS1xx, ``dockerfile`` DF2xx,
``image`` MF3xx, ``run`` RN4xx, ``workflow`` GA5xx, ``grader`` GR0xx) and register themselves
here; ids are never renumbered. :meth:`Rule.finding` is the one way to make a finding.
``grader.grading.rules.all_rules()`` returns the whole catalogue; docs/rules.md is made from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from grader.grading.report import Finding, Severity
from grader.known_errors import KnownError


@dataclass(frozen=True)
class Rule:
    id: str  # e.g. "BS101"; never renumbered
    name: str  # short kebab-case name, e.g. "plain-docker-build"
    criterion: str  # the criterion id it belongs to (grader.grading.criteria)
    severity: Severity
    message: str  # what is wrong, may contain {placeholders}
    hint: str  # what to change
    anti_pattern: str  # doc example that triggers the rule
    best_practice: str  # doc example that passes
    doc: str = ""  # optional: why the rule exists and decisions behind it (docs/rules.md)

    def finding(
        self,
        file: str | None = None,
        line: int | None = None,
        *,
        known: KnownError | None = None,
        **fmt: object,
    ) -> Finding:
        """The one way to turn this rule into a finding at ``file:line``: ``{placeholders}`` in
        the message and the hint are filled from ``fmt`` (``{line}`` is ``line``). ``known``,
        the known error a failed command's output matched, replaces the generic hint: it names
        the actual cause."""
        values = {"line": line, **fmt}
        hint = f"{known.title}: {known.fix}" if known is not None else _fill(self.hint, values)
        return Finding(rule=self.id, severity=self.severity, message=_fill(self.message, values),
                       hint=hint, file=file, line=line)  # fmt: skip


def _fill(text: str, values: dict[str, object]) -> str:
    """``text`` with each ``{name}`` (``{name!r}``, ``{name:g}``) given in ``values`` filled as
    str.format would; other braces (a shell's ``${IMAGE:-...}``, a workflow's
    ``${{ github.actor }}``, a YAML ``{contents: read}``) stay as written."""

    def one(m: re.Match) -> str:
        name, conversion, spec = m.group("name", "conversion", "spec")
        if name not in values:
            return m.group(0)
        value = values[name]
        return format(repr(value) if conversion == "r" else value, spec or "")

    return _PLACEHOLDER.sub(one, text)


_PLACEHOLDER = re.compile(r"\{(?P<name>\w+)(?:!(?P<conversion>[rs]))?(?::(?P<spec>[^{}]*))?\}")


_RULES: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    if rule.id in _RULES and _RULES[rule.id] != rule:
        raise ValueError(f"rule id {rule.id} registered twice")
    _RULES[rule.id] = rule
    return rule


def registered() -> dict[str, Rule]:
    return dict(_RULES)
