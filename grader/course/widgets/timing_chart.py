"""The after-build timing chart: one row per step, grouped by platform lane, coloured by
kind, and the busy seconds per platform split by kind.

Emulated steps are drawn red *and* hatched (so they differ in grey print and for colour-blind
readers too); cross-compiled green, native blue, BuildKit's own work grey; cached steps are an
open diamond at the moment they were reused. Pure matplotlib (no pyplot state), so it renders
from a worker thread and in tests.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from grader.course.widgets.common import KIND_COLOURS
from grader.docker.progress import CACHED, ERROR, KINDS, SHARED_LANE, BuildProgress, Step

#: Bar style per kind: what makes emulation visibly different.
KIND_STYLE = {
    "emulated": {"color": KIND_COLOURS["emulated"], "hatch": "///", "label": "emulated (QEMU)"},
    "cross": {"color": KIND_COLOURS["cross"], "hatch": "", "label": "cross-compiled"},
    "native": {"color": KIND_COLOURS["native"], "hatch": "", "label": "native"},
    "internal": {"color": KIND_COLOURS["internal"], "hatch": "", "label": "BuildKit internal"},
}


@dataclass(frozen=True)
class ChartRow:
    lane: str
    label: str
    kind: str
    state: str
    start: float  # seconds since the build's first step started
    duration: float
    shared: bool


def chart_rows(progress: BuildProgress) -> list[ChartRow]:
    """The rows the chart draws, lane by lane (platforms first, shared work last)."""
    origin = progress.started_at
    if origin is None:
        return []
    rows = []
    for name, lane in progress.lanes.items():
        for step in sorted(lane.steps, key=_start_key):
            if step.started is None:
                continue
            # A cached vertex may carry an older build's times: clamp it to this build.
            start = max(
                0.0,
                (step.completed or step.started) - origin if step.cached else step.started - origin,
            )
            rows.append(
                ChartRow(
                    lane=name,
                    label=_short(step),
                    kind=step.kind,
                    state=step.state,
                    start=start,
                    duration=0.0 if step.cached else (step.duration or 0.0),
                    shared=bool(step.shared_by),
                )
            )
    return rows


def _start_key(step: Step) -> tuple:
    return (step.cached, step.started or 0.0, step.order)


def _short(step: Step, width: int = 46) -> str:
    label = " ".join(step.label.split())
    return label if len(label) <= width else label[: width - 1] + "…"


def timing_figure(progress: BuildProgress, title: str = "Build timing") -> Figure:
    """Gantt rows per lane above, per-platform busy seconds by kind below."""
    rows = chart_rows(progress)
    platform_lanes = [lane for lane in progress.platform_lanes if lane.steps]
    height = 1.6 + 0.26 * max(len(rows), 1) + 0.45 * max(len(platform_lanes), 1)
    fig = Figure(figsize=(10, height), dpi=100)
    gantt, totals = fig.subplots(
        2,
        1,
        gridspec_kw={
            "height_ratios": [max(len(rows), 1) * 0.26, max(len(platform_lanes), 1) * 0.45 + 0.3]
        },
    )
    _draw_gantt(gantt, rows, title)
    _draw_totals(totals, progress)
    fig.legend(
        handles=[
            Patch(facecolor=s["color"], hatch=s["hatch"], edgecolor="white", label=s["label"])
            for s in KIND_STYLE.values()
        ],
        loc="upper right",
        ncols=4,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def _draw_gantt(ax, rows: list[ChartRow], title: str) -> None:
    ax.set_title(title, fontsize=10, loc="left")
    if not rows:
        ax.text(0.5, 0.5, "no steps started", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    labels = []
    previous_lane = None
    for y, row in enumerate(rows):
        if row.lane != previous_lane and y:
            ax.axhline(y - 0.5, color="#d0d7de", linewidth=0.8)
        previous_lane = row.lane
        lane_name = "shared" if row.lane == SHARED_LANE else row.lane
        labels.append(f"{lane_name} · {row.label}" + (" [shared]" if row.shared else ""))
        style = KIND_STYLE[row.kind]
        if row.state == CACHED:
            ax.plot(
                row.start,
                y,
                marker="D",
                markersize=6,
                markerfacecolor="white",
                markeredgecolor=style["color"],
                linestyle="none",
            )
            ax.text(row.start, y, "  cached", va="center", fontsize=7, color="#57606a")
            continue
        ax.barh(
            y,
            max(row.duration, 0.004),
            left=row.start,
            height=0.7,
            color=style["color"],
            hatch=style["hatch"],
            edgecolor="black" if row.state == ERROR else "white",
            linewidth=1.5 if row.state == ERROR else 0.5,
            alpha=0.55 if row.shared else 1.0,
        )
        note = f"  {row.duration:.2f} s" + (" ✗ failed" if row.state == ERROR else "")
        ax.text(row.start + row.duration, y, note, va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first step started", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    right = max(r.start + r.duration for r in rows)
    ax.set_xlim(-0.01 * right - 0.01, right * 1.18 + 0.05)


def _draw_totals(ax, progress: BuildProgress) -> None:
    lanes = [lane for lane in progress.platform_lanes if lane.steps]
    ax.set_title(
        "Per platform: busy seconds by kind (wall-clock span in brackets)", fontsize=9, loc="left"
    )
    if not lanes:
        ax.set_axis_off()
        return
    for y, lane in enumerate(lanes):
        seconds = lane.seconds_by_kind()
        left = 0.0
        for kind in KINDS:
            width = seconds[kind]
            if width <= 0:
                continue
            style = KIND_STYLE[kind]
            ax.barh(
                y,
                width,
                left=left,
                height=0.6,
                color=style["color"],
                hatch=style["hatch"],
                edgecolor="white",
                linewidth=0.5,
            )
            left += width
        ax.text(left, y, f"  {lane.busy:.2f} s ({lane.wall:.2f} s)", va="center", fontsize=8)
    ax.set_yticks(range(len(lanes)), [lane.platform for lane in lanes], fontsize=8)
    ax.invert_yaxis()
    ax.tick_params(axis="x", labelsize=8)
    right = max(lane.busy for lane in lanes)
    ax.set_xlim(0, right * 1.3 + 0.05)


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
