"""The result model every check returns and every reporter formats.

A :class:`Report` holds one :class:`CriterionResult` per challenge criterion, each with the
:class:`Finding` objects that explain it. Reporters (text, json) only format this model;
the nbgrader cells and the batch grader use it directly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["pass", "fail", "error", "skipped"]
Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    hint: str = ""
    file: str | None = None
    line: int | None = None


@dataclass
class CriterionResult:
    id: str
    title: str
    status: Status
    points: float
    max_points: float
    findings: list[Finding] = field(default_factory=list)


@dataclass
class Report:
    submission: str
    criteria: list[CriterionResult] = field(default_factory=list)

    @property
    def score(self) -> float:
        return round(sum(c.points for c in self.criteria), 2)

    @property
    def max_score(self) -> float:
        return round(sum(c.max_points for c in self.criteria), 2)

    @property
    def passed(self) -> bool:
        """Every evaluated criterion passed (skipped ones are not evaluated)."""
        return all(c.status in ("pass", "skipped") for c in self.criteria)

    def criterion(self, id: str) -> CriterionResult:
        for c in self.criteria:
            if c.id == id:
                return c
        raise KeyError(id)

    def to_dict(self) -> dict:
        return {
            "submission": self.submission,
            "score": self.score,
            "max_score": self.max_score,
            "criteria": [asdict(c) for c in self.criteria],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        """The report :meth:`to_dict` wrote (``score`` and ``max_score`` are recomputed)."""
        criteria = [
            CriterionResult(**{**c, "findings": [Finding(**f) for f in c.get("findings", [])]})
            for c in data["criteria"]
        ]
        return cls(submission=data["submission"], criteria=criteria)
