"""What a worker engine costs: starting one, resetting it (what the batch does between two
submissions), and pulling the smallest base image into the fresh engine.

    .venv/bin/python benchmarks/bench_worker_engine.py [--runs 5]

Prints a table: mean, min, max and standard deviation over the runs (seconds). Needs root
and the rootless tools (`grader engine up` installs them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grader import proc
from grader.engine import rootless
from grader.engine.config import settings


def row(name: str, values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return (
        f"{name:<34} {len(values):>4} {statistics.mean(values):>7.2f} {min(values):>7.2f} "
        f"{max(values):>7.2f} {sd:>7.2f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    why = rootless.rootless_problem()
    if why:
        print(f"worker engines cannot run here: {why}", file=sys.stderr)
        return 2
    starts, resets, pulls = [], [], []
    for _ in range(args.runs):
        t = time.monotonic()
        with rootless.claimed(settings().registry_host) as eng:
            starts.append(time.monotonic() - t)
            env = {**os.environ, **eng.env()}
            for _ in range(2):
                t = time.monotonic()
                proc.run(["docker", "pull", "-q", "busybox:latest"], timeout=300, env=env)
                pulls.append(time.monotonic() - t)
                t = time.monotonic()
                eng.reset()
                resets.append(time.monotonic() - t)
    print(f"{'worker engine':<34} {'runs':>4} {'mean':>7} {'min':>7} {'max':>7} {'sd':>7}")
    print(row("start (claim + fresh fs + daemon)", starts))
    print(row("reset (kill, new fs, new daemon)", resets))
    print(row("pull busybox into a fresh engine", pulls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
