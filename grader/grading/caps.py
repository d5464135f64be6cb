"""Caps on what one report holds, so a hostile submission cannot grow a report (or a batch's
results folder) without bound: at most MAX_PER_CRITERION findings per criterion and
MAX_PER_REPORT in all, each text cut at MAX_TEXT characters. Dropped findings are counted in
a GR004 finding of the criterion they came from."""

from __future__ import annotations

import dataclasses

from grader.grading.report import CriterionResult, Finding, Report
from grader.grading.rules import grader as gr

MAX_PER_CRITERION = 50
MAX_PER_REPORT = 200
MAX_TEXT = 1000
MAX_FILE = 300


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _short(f: Finding) -> Finding:
    if len(f.message) <= MAX_TEXT and len(f.hint) <= MAX_TEXT and len(f.file or "") <= MAX_FILE:
        return f
    return dataclasses.replace(
        f,
        message=_cut(f.message, MAX_TEXT),
        hint=_cut(f.hint, MAX_TEXT),
        file=_cut(f.file, MAX_FILE) if f.file else f.file,
    )


def _keep(c: CriterionResult, limit: int) -> None:
    """Keep the first ``limit`` findings of ``c`` (errors first), and say how many went."""
    if len(c.findings) <= limit:
        return
    order = {"error": 0, "warning": 1, "info": 2}
    ranked = sorted(c.findings, key=lambda f: order.get(f.severity, 3))  # stable: script order
    kept, dropped = ranked[: max(0, limit - 1)], len(c.findings) - max(0, limit - 1)
    c.findings = [*kept, gr.FINDINGS_DROPPED.finding(dropped=dropped, limit=limit)]


def limit_findings(report: Report) -> Report:
    """Apply the caps to ``report`` in place; returns it."""
    limits = [min(len(c.findings), MAX_PER_CRITERION) for c in report.criteria]
    # Past the report's cap, the criteria with the most findings give them up first.
    while sum(limits) > MAX_PER_REPORT:
        k = max(range(len(limits)), key=limits.__getitem__)
        limits[k] -= 1
    for c, limit in zip(report.criteria, limits, strict=True):
        c.findings = [_short(f) for f in c.findings]
        _keep(c, limit)
    return report
