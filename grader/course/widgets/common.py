"""What every panel shares: the CSS and its DOM class names, the command block, the
no-engine notice, known-error explanations, and the throttled log.

DOM class names (stable, used by the browser test and by anyone styling the labs):
``mp-panel`` on each panel, ``mp-command`` on the exact command, ``mp-notice``
(``mp-notice--no-engine``), ``mp-known-error``, ``mp-log``; the rest are per panel.
"""

from __future__ import annotations

import html
import shlex
import threading
import time
from collections.abc import Callable, Sequence

import ipywidgets as widgets

from grader.course.noengine import engine_available
from grader.known_errors import KnownError

#: Colours per step kind: the same in the lanes (CSS) and in the timing chart.
KIND_COLOURS = {
    "emulated": "#d1242f",
    "cross": "#1a7f37",
    "native": "#0969da",
    "internal": "#8c959f",
}

CSS = """
<style>
.mp-panel { font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; }
.mp-panel h4 { margin: 4px 0; }
.mp-command { background: #f6f8fa; color: #1f2328; border: 1px solid #d0d7de;
  border-radius: 4px; padding: 6px 8px; margin: 2px 0; white-space: pre-wrap;
  word-break: break-all; user-select: all; font-family: var(--jp-code-font-family, monospace);
  font-size: 12px; }
.mp-command-label { color: #57606a; font-size: 12px; }
.mp-notice { border-left: 4px solid #0969da; background: #ddf4ff; color: #1f2328;
  padding: 6px 10px; margin: 4px 0; }
.mp-notice--no-engine { border-left-color: #bf8700; background: #fff8c5; }
.mp-problems { color: #cf222e; margin: 2px 0; }
.mp-known-error { border-left: 4px solid #cf222e; background: #ffebe9; color: #1f2328;
  padding: 6px 10px; margin: 4px 0; }
.mp-warning { border-left: 4px solid #bf8700; background: #fff8c5; color: #1f2328;
  padding: 4px 8px; margin: 2px 0; }
.mp-lane-body { border: 1px solid #d0d7de; border-left-width: 5px; border-radius: 4px;
  margin: 3px 0; padding: 3px 8px; }
.mp-lane-body[data-state="done"] { border-left-color: #2da44e; }
.mp-lane-body[data-state="running"] { border-left-color: #bf8700; }
.mp-lane-body[data-state="error"] { border-left-color: #cf222e; }
.mp-lane-body[data-state="cancelled"] { border-left-color: #6e7781; }
.mp-lane-title { font-weight: bold; }
.mp-lane-summary { color: #57606a; margin-left: 8px; }
.mp-steps { border-collapse: collapse; width: 100%; }
.mp-step td { padding: 1px 6px; font-size: 12px; vertical-align: top; }
.mp-step-state { white-space: nowrap; }
.mp-step-label { font-family: var(--jp-code-font-family, monospace); word-break: break-all; }
.mp-step-duration { text-align: right; white-space: nowrap; }
.mp-step--error .mp-step-label { color: #cf222e; }
.mp-step--cached .mp-step-label, .mp-step--queued .mp-step-label { color: #6e7781; }
.mp-kind { border-radius: 3px; padding: 0 4px; color: white; font-size: 11px;
  white-space: nowrap; }
.mp-kind--emulated { background: #d1242f; }
.mp-kind--cross { background: #1a7f37; }
.mp-kind--native { background: #0969da; }
.mp-kind--internal { background: #8c959f; }
.mp-shared { color: #57606a; font-size: 11px; }
.mp-table { border-collapse: collapse; }
.mp-table th, .mp-table td { border-bottom: 1px solid #d0d7de; padding: 2px 8px;
  text-align: left; font-size: 12px; }
.mp-flag-F { background: #ffd33d; color: #1f2328; font-weight: bold; padding: 0 2px; }
.mp-missing { color: #cf222e; }
.mp-json { max-height: 420px; overflow: auto; background: #f6f8fa; color: #1f2328;
  font-size: 12px; padding: 6px; border: 1px solid #d0d7de; }
</style>
"""

NO_ENGINE_TEXT = (
    "No Docker engine answers here (on Binder there is none), so this panel cannot run "
    "anything. It still shows the exact command it would run: copy it into a terminal on a "
    "machine with Docker, or start the course engine with <code>grader engine up</code>."
)


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def style() -> widgets.HTML:
    return widgets.HTML(CSS)


def panel_box(children: Sequence[widgets.Widget], *classes: str) -> widgets.VBox:
    box = widgets.VBox([style(), *children])
    for cls in ("mp-panel", *classes):
        box.add_class(cls)
    return box


def command_html(argv: Sequence[str] | None, label: str = "Command") -> str:
    """The exact command, one click selects all of it (``user-select: all``) for copying."""
    if not argv:
        return ""
    return (
        f'<div class="mp-command-label">{esc(label)} (click to select, then copy):</div>'
        f'<pre class="mp-command">{esc(shlex.join(argv))}</pre>'
    )


def notice_html(text: str, cls: str = "") -> str:
    return f'<div class="mp-notice {cls}">{text}</div>'


def no_engine_html(what: str) -> str:
    return notice_html(f"<b>{esc(what)}</b> {NO_ENGINE_TEXT}", "mp-notice--no-engine")


def known_error_html(known: KnownError | None, message: str = "") -> str:
    """A failed command: its message, and the course's explanation when the text is known."""
    parts = []
    if message:
        tail = "\n".join(message.strip().splitlines()[-8:])
        parts.append(f"<pre style='white-space:pre-wrap;margin:0'>{esc(tail)}</pre>")
    if known is not None:
        parts.append(
            f"<b>{esc(known.title)}</b><br>{esc(known.cause)}<br><b>Fix:</b> {esc(known.fix)}"
        )
    if not parts:
        return ""
    return f'<div class="mp-known-error" data-known="{esc(known.id if known else "")}">' + (
        "".join(parts) + "</div>"
    )


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def can_run() -> bool:
    """Engine-backed actions are possible (False on Binder or with COURSE_NO_ENGINE=1)."""
    return engine_available()


class ThrottledLog:
    """Lines from any thread, appended to an Output widget at most every ``interval`` s.

    One ``append_stdout`` per flush: the front end appends text, nothing else re-renders.
    """

    def __init__(
        self,
        output: widgets.Output,
        interval: float = 0.1,
        *,
        max_lines_per_flush: int = 4000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.output = output
        self.interval = interval
        self.max_lines = max_lines_per_flush
        self.clock = clock
        self.appends = 0
        self._lines: list[str] = []
        self._last = float("-inf")
        self._lock = threading.Lock()

    def add(self, lines: Sequence[str]) -> None:
        if lines:
            with self._lock:
                self._lines.extend(lines)

    def flush(self, force: bool = False) -> bool:
        """Append what is buffered, if ``interval`` has passed (or ``force``)."""
        with self._lock:
            now = self.clock()
            if not self._lines or (not force and now - self._last < self.interval):
                return False
            lines, self._lines = self._lines, []
            self._last = now
        if len(lines) > self.max_lines:
            skipped = len(lines) - self.max_lines
            lines = [f"... {skipped} lines skipped ...", *lines[-self.max_lines :]]
        self.output.append_stdout("\n".join(lines) + "\n")
        self.appends += 1
        return True

    def text(self) -> str:
        """Everything appended so far (for tests and for copying)."""
        return "".join(
            o.get("text", "") for o in self.output.outputs if o.get("output_type") == "stream"
        )


def log_output() -> widgets.Output:
    out = widgets.Output(layout=widgets.Layout(max_height="260px", overflow="auto"))
    out.add_class("mp-log")
    return out


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
