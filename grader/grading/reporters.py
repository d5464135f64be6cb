"""Reporters only format a :class:`grader.grading.report.Report`: ``json`` (the public contract,
``Report.to_dict``) and ``text`` (rich, grouped by criterion, with hints and file:line)."""

from __future__ import annotations

import sys
from typing import TextIO

from grader.grading.report import CriterionResult, Finding, Report

_MARK = {"pass": ("PASS", "green"), "fail": ("FAIL", "red"), "error": ("ERROR", "magenta"),
         "skipped": ("SKIP", "dim")}  # fmt: skip
_SEVERITY = {"error": "red", "warning": "yellow", "info": "cyan"}


def render_json(report: Report) -> str:
    return report.to_json()


def write_text(report: Report, out: TextIO | None = None, *, color: bool | None = None,
               width: int | None = None) -> None:  # fmt: skip
    from rich.console import Console
    from rich.text import Text

    out = out if out is not None else sys.stdout
    if color is None:
        color = out.isatty()
    console = Console(file=out, no_color=not color, color_system="auto" if color else None,
                      highlight=False, emoji=False, width=width, force_terminal=color,
                      soft_wrap=False)  # fmt: skip
    head = Text()
    head.append(f"{report.submission}", style="bold")
    head.append(f"   score {_num(report.score)}/{_num(report.max_score)}")
    console.print(head)
    for c in report.criteria:
        console.print(_criterion_line(c))
        for f in c.findings:
            text, hint = _finding_text(f)
            _indented(console, text, 6)
            if hint is not None:
                _indented(console, hint, 12)
    summary = Text()
    counts = {s: sum(1 for c in report.criteria if c.status == s) for s in _MARK}
    summary.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    console.print(summary)


def _indented(console, text, indent: int) -> None:
    """Print ``text`` wrapped to the console, every line indented (no trailing blanks)."""
    from rich.text import Text

    for line in text.wrap(console, max(20, console.width - indent)):
        line.rstrip()
        console.print(Text(" " * indent) + line)


def _num(x: float) -> str:
    return f"{x:g}"


def _criterion_line(c: CriterionResult):
    from rich.text import Text

    mark, style = _MARK.get(c.status, (c.status.upper(), ""))
    t = Text()
    t.append(f"{mark:<5} ", style=f"bold {style}")
    t.append(f"{c.id:<14}", style="bold")
    t.append(f"{_num(c.points)}/{_num(c.max_points)}  ")
    t.append(c.title)
    return t


def _finding_text(f: Finding):
    """(the finding, its hint or None) as rich Text; padding keeps wrapped lines indented."""
    from rich.text import Text

    t = Text()
    t.append(f"{f.rule} ", style="bold")
    t.append(f"{f.severity}: ", style=_SEVERITY.get(f.severity, ""))
    if f.file:
        t.append(f"{f.file}:{f.line}: " if f.line else f"{f.file}: ", style="underline")
    t.append(f.message)
    if not f.hint:
        return t, None
    hint = Text("hint: ", style="dim")
    hint.append(f.hint)
    return t, hint
