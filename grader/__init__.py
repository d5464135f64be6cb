"""The course's grader and engine tools. ``grader.check(path)`` grades a challenge submission
(see ``grader.grading.api``); imported on first use so that ``import grader.x`` stays cheap."""

from __future__ import annotations

from typing import Any

__all__ = ["check"]


def __getattr__(name: str) -> Any:
    if name == "check":
        from grader.grading.api import check

        return check
    raise AttributeError(f"module 'grader' has no attribute {name!r}")
