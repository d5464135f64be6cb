"""The instructor's results page (results/index.html): its size and generation time for a
class of N submissions (default 50).

    .venv/bin/python benchmarks/bench_results_page.py [--learners 50] [--runs 10]

The class is a real static ``grader batch`` over copies of the fixture submissions
(tests/fixtures/submissions/). "cold" is a new process (imports, matplotlib included) that
writes the page once; "warm" is ``write_page`` again in one process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "submissions"
sys.path.insert(0, str(ROOT))


def make_class(root: Path, n: int) -> None:
    sources = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
    for k in range(n):
        shutil.copytree(sources[k % len(sources)], root / f"learner{k:03d}", symlinks=True)


def cold(out: Path, runs: int) -> list[float]:
    code = (
        "import sys, time; t = time.perf_counter(); "
        "from grader.grading.batch.page import write_page; write_page(__import__('pathlib')"
        ".Path(sys.argv[1])); print(time.perf_counter() - t)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    times = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                              text=True, env=env, check=True)  # fmt: skip
        times.append(float(done.stdout.strip()))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=50)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("COURSE_NO_ENGINE", "1")
    from grader.grading.batch.page import write_page
    from grader.grading.batch.run import BatchOptions, run_batch

    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        subs, out = Path(tmp) / "subs", Path(tmp) / "results"
        make_class(subs, args.learners)
        start = time.perf_counter()
        run_batch(subs, BatchOptions(out=out, static_only=True, progress=lambda _: None))
        batch = time.perf_counter() - start
        warm = []
        for _ in range(args.runs):
            t = time.perf_counter()
            path = write_page(out)
            warm.append(time.perf_counter() - t)
        size = path.stat().st_size
        colds = cold(out, max(3, args.runs // 3))
    rows = [
        (f"static batch of {args.learners} (page included)", f"{batch:.2f} s", "1 run"),
        ("page, warm (median)", f"{statistics.median(warm):.3f} s",
         f"min {min(warm):.3f}, max {max(warm):.3f} s, {len(warm)} runs"),
        ("page, cold process (median)", f"{statistics.median(colds):.3f} s",
         f"min {min(colds):.3f}, max {max(colds):.3f} s, {len(colds)} runs"),
        ("index.html size", f"{size / 1024:.1f} KiB", f"{args.learners} learners"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  spread")
    for name, value, spread in rows:
        print(f"{name:<{width}}  {value:>10}  {spread}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
