"""How long the labs take to run, release and grade: the numbers CI's 90 minutes depend on.

    .venv/bin/python benchmarks/bench_labs.py [--labs 00-welcome,07-challenge] [--skip-engine]
                                              [--runs N]

Prints one table: per lab, its source notebook (solutions) run by papermill on the engine
and its released notebook run with COURSE_NO_ENGINE=1 (with ``--runs N``: the median and
range of N runs after one uncounted warm-up); then `scripts/release-labs --check`,
the challenge's reference solution graded statically and fully (warm cache: the build
cache holds its layers after the first run, as on an instructor's machine), and the
overhead of one labkit.sh() call.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "labs"))

from labs_nbtools import errors, execute, work_copy  # noqa: E402

import grader  # noqa: E402
from grader import proc  # noqa: E402
from grader.course import labkit  # noqa: E402
from grader.course.release import RELEASE, SOURCE, assignments, check_up_to_date  # noqa: E402


def timed(fn) -> tuple[float, object]:
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def run_lab(path: Path, tmp: Path, *, solution: bool, no_engine: bool) -> tuple[float, int]:
    work = work_copy(path, tmp / f"{path.name}-{'src' if solution else 'rel'}", solution=solution)
    old = os.environ.get("COURSE_NO_ENGINE")
    if no_engine:
        os.environ["COURSE_NO_ENGINE"] = "1"
    try:
        total, raised = 0.0, 0
        for nb in sorted(work.glob("*.ipynb")):
            seconds, out = timed(lambda nb=nb: execute(nb, work))
            total += seconds
            raised += len(errors(out))
        return total, raised
    finally:
        if no_engine:
            os.environ.pop("COURSE_NO_ENGINE")
            if old is not None:
                os.environ["COURSE_NO_ENGINE"] = old


def repeat(run, runs: int) -> tuple[str, int]:
    """One run, or a warm-up then ``runs`` timed runs: ``"median (min-max)"`` and the last
    run's count of raised cells."""
    if runs <= 1:
        seconds, raised = run(0)
        return f"{seconds:.1f}", raised
    run("warm")
    times = []
    for k in range(runs):
        seconds, raised = run(k)
        times.append(seconds)
    times.sort()
    return f"{times[len(times) // 2]:.1f} ({times[0]:.1f}-{times[-1]:.1f})", raised


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labs", default="", help="comma-separated ids (default: all)")
    parser.add_argument("--skip-engine", action="store_true", help="only no-engine timings")
    parser.add_argument("--runs", type=int, default=1, help="timed runs per lab (after a warm-up)")
    opts = parser.parse_args()
    labs = [x for x in opts.labs.split(",") if x] or assignments()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-labs-") as tmp_dir:
        tmp = Path(tmp_dir)
        for aid in labs:
            if not opts.skip_engine:
                s, n = repeat(
                    lambda k, aid=aid: run_lab(
                        SOURCE / aid, tmp / f"s{k}", solution=True, no_engine=False
                    ),
                    opts.runs,
                )
                rows.append((f"{aid}: source notebook, engine", s, f"{n} cells raised"))
            if (RELEASE / aid).is_dir():
                s, n = repeat(
                    lambda k, aid=aid: run_lab(
                        RELEASE / aid, tmp / f"r{k}", solution=False, no_engine=True
                    ),
                    opts.runs,
                )
                rows.append((f"{aid}: released, no engine", s, f"{n} unanswered cells raised"))
        s, problems = timed(check_up_to_date)
        rows.append(
            (
                "scripts/release-labs --check (all labs)",
                f"{s:.1f}",
                "up to date" if not problems else f"{len(problems)} differences",
            )
        )
        ref = tmp / "ref" / "07-challenge"
        shutil.copytree(SOURCE / "07-challenge" / "reference-solution", ref)
        s, report = timed(lambda: grader.check(ref, static=True))
        rows.append(
            (
                "challenge reference: grader.check static",
                f"{s:.2f}",
                f"{report.score:g}/{report.max_score:g} (static part 7)",
            )
        )
        if not opts.skip_engine:
            s, report = timed(lambda: grader.check(ref))
            rows.append(
                (
                    "challenge reference: grader.check full",
                    f"{s:.1f}",
                    f"{report.score:g}/{report.max_score:g}",
                )
            )
        n = 50
        with contextlib.redirect_stdout(io.StringIO()):
            s_sh, _ = timed(lambda: [labkit.sh(["true"]) for _ in range(n)])
        s_run, _ = timed(lambda: [proc.run(["true"], timeout=10) for _ in range(n)])
        rows.append(
            (
                "labkit.sh(['true']) per call",
                f"{1000 * s_sh / n:.1f} ms",
                f"proc.run: {1000 * s_run / n:.1f} ms",
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'seconds':>9}  result")
    for what, secs, result in rows:
        print(f"{what:<{width}}  {secs:>9}  {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
