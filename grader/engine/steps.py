"""Progress for long engine steps: what is happening now, and how long each step took."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from grader import proc


class StepFailed(Exception):
    """A bootstrap step failed; the message says what to do."""


@dataclass
class Timings:
    rows: list[tuple[str, float, str]] = field(default_factory=list)

    def table(self) -> str:
        width = max((len(r[0]) for r in self.rows), default=10)
        lines = [f"{'step':<{width}}  {'seconds':>8}  result"]
        lines += [f"{name:<{width}}  {secs:8.1f}  {res}" for name, secs, res in self.rows]
        return "\n".join(lines)


TIMINGS = Timings()


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def step(name: str):
    """Print the step, time it, record it; failures are recorded too."""
    say(f"-> {name} ...")
    start = time.monotonic()
    result = "ok"
    try:
        yield
    except BaseException:
        result = "FAILED"
        raise
    finally:
        secs = time.monotonic() - start
        TIMINGS.rows.append((name, secs, result))
        say(f"   {name}: {result} in {secs:.1f} s")


def run_streamed(
    argv: Sequence[str],
    *,
    timeout: float,
    show: Iterable[str] = (),
    keep=None,
    env: dict[str, str] | None = None,
    cwd=None,
) -> None:
    """Run a long command, echoing lines that start with one of ``show`` (or that ``keep``
    accepts; every line when neither is given) with the elapsed time, so the user sees it
    move."""
    prefixes = tuple(show)
    start = time.monotonic()
    s = proc.stream(argv, timeout=timeout, env=env, cwd=cwd)
    tail: list[str] = []
    for _, line in s:
        tail.append(line)
        del tail[:-40]
        if keep is not None:
            wanted = keep(line)
        else:
            wanted = not prefixes or line.lstrip().startswith(prefixes)
        if wanted:
            say(f"   [{time.monotonic() - start:6.1f}s] {line.strip()[:150]}")
    if s.error is not None:
        raise StepFailed(f"{s.error}\n--- last output ---\n" + "\n".join(tail[-15:]))
