"""Static grading benchmarks: one submission in-process, one as a CLI process, and a batch.

    .venv/bin/python benchmarks/bench_grader_static.py [--runs 20] [--batch 200] [--jobs 2]

Targets (issue 3): in-process <= 0.15 s, CLI process <= 0.5 s, 200 submissions with two
processes <= 10 s. The batch mixes every fixture submission (tests/fixtures/submissions/),
copied so that each grade reads its own files.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "submissions"
SUBJECT = FIXTURES / "solution-c-cross"
TARGETS = {"in-process": 0.15, "cli": 0.5, "batch": 10.0}


def in_process(runs: int) -> tuple[float, float, float]:
    """(first call including imports, median warm call, worst warm call) in seconds."""
    start = time.perf_counter()
    import grader

    grader.check(SUBJECT, static=True)
    first = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        grader.check(SUBJECT, static=True)
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), max(times)


def cli(runs: int, fmt: str) -> tuple[float, float, float]:
    """(median wall, worst wall, median CPU) seconds of `grader check --static` as a new
    process. CPU time (user + system) is what the process costs even when other work on
    the machine stretches its wall time."""
    argv = [sys.executable, "-m", "grader.cli", "check", str(SUBJECT), "--static",
            "--format", fmt]  # fmt: skip
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode not in (0, 1):
            raise SystemExit(f"grader check failed: {done.stderr}")
    return statistics.median(walls), max(walls), statistics.median(cpus)


def _grade(path: str) -> float:
    import grader

    return grader.check(path, static=True).score


def batch(count: int, jobs: int) -> tuple[float, int]:
    """Seconds to grade ``count`` submissions with ``jobs`` processes (imports included)."""
    sources = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory(prefix="bench-grader-") as tmp:
        paths = []
        for k in range(count):
            dest = Path(tmp) / f"{k:03d}-{sources[k % len(sources)].name}"
            shutil.copytree(sources[k % len(sources)], dest, symlinks=True)
            paths.append(str(dest))
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            scores = list(pool.map(_grade, paths, chunksize=max(1, count // (jobs * 4))))
        return time.perf_counter() - start, len(scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("COURSE_NO_ENGINE", "1")

    first, warm, worst = in_process(args.runs)
    cli_runs = max(3, args.runs // 4)
    json_wall, json_worst, json_cpu = cli(cli_runs, "json")
    text_wall, text_worst, text_cpu = cli(cli_runs, "text")
    batch_secs, graded = batch(args.batch, args.jobs)
    rows = [
        ("static check, in-process (warm median)", warm, TARGETS["in-process"],
         f"worst {worst:.3f} s of {args.runs}"),
        ("static check, in-process (first call)", first, None, "includes imports"),
        ("static check, CLI --format json (median)", json_wall, TARGETS["cli"],
         f"worst {json_worst:.3f} s; CPU {json_cpu:.3f} s"),
        ("static check, CLI --format text (median)", text_wall, TARGETS["cli"],
         f"worst {text_worst:.3f} s; CPU {text_cpu:.3f} s"),
        (f"{graded} submissions, {args.jobs} processes", batch_secs, TARGETS["batch"],
         f"{batch_secs / graded * 1000:.1f} ms per submission"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'seconds':>8}  {'target':>6}  ok    note")
    failed = False
    for name, secs, target, note in rows:
        ok = "-" if target is None else ("yes" if secs <= target else "NO")
        failed |= ok == "NO"
        tgt = "" if target is None else f"{target:g}"
        print(f"{name:<{width}}  {secs:>8.3f}  {tgt:>6}  {ok:<4}  {note}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average while measuring: {load} on {os.cpu_count()} CPUs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
