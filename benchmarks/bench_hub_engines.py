"""How many learners one machine holds: start 2, 4 and 8 learners' rootless engines (the class
hub's, grader/engine/rootless.py) at once, then run a two-platform build (an emulated arm64 RUN)
in each at once. Prints, per class size: engine start time (median, max), memory per idle
engine (its cgroup), and the build's wall time (median, max) as concurrency grows.

    sudo .venv/bin/python benchmarks/bench_hub_engines.py [--sizes 2,4,8] [--runs 3]

With --runs N each class size is brought up N times; each figure is the median over the
runs of that run's median (or max) over the learners, with the lowest-highest run in brackets.

Needs the course engine up (`./course up`): the registry and the scope proxy serve the base
images. Uses slots 40.. (the hub counts down from 63, grading workers up from 0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grader import proc
from grader.engine import rootless, scope

FIRST = 40
DOCKERFILE = "FROM busybox:latest\nRUN for i in $(seq 1 200000); do :; done; uname -m > /arch\n"


def memory(engine: rootless.WorkerEngine) -> int:
    path = rootless.CGROUP_ROOT / "memory" / rootless.CGROUP_PARENT / f"w{engine.n}"
    try:
        return int((path / "memory.usage_in_bytes").read_text())
    except (OSError, ValueError):
        return 0


def build(engine: rootless.WorkerEngine, config_dir: str, context: str) -> float:
    start = time.monotonic()
    proc.run(
        ["docker", "buildx", "build", "--platform", "linux/amd64,linux/arm64",
         "--provenance=false", "--output", "type=cacheonly", context],
        timeout=1800,
        env={"DOCKER_HOST": engine.host, "DOCKER_CONFIG": config_dir},
    )  # fmt: skip
    return time.monotonic() - start


def one_size(n: int, upstream: str, context: str) -> dict:
    engines = [rootless.WorkerEngine(FIRST + i, upstream) for i in range(n)]
    with ThreadPoolExecutor(n) as pool:
        starts = list(pool.map(lambda e: e.start(), engines))
    time.sleep(3)
    mem = [memory(e) for e in engines]
    configs = []
    for e in engines:
        name = f"bench-w{e.n}"
        secret = scope.add_caller(name)
        folder = tempfile.mkdtemp(prefix=f"{name}-")
        (Path(folder) / "config.json").write_text(
            json.dumps(scope.docker_config(e.registry, name, secret))
        )
        configs.append(folder)
    try:
        with ThreadPoolExecutor(n) as pool:
            builds = list(
                pool.map(
                    lambda ec: build(ec[0], ec[1], context), zip(engines, configs, strict=True)
                )
            )
    finally:
        for e in engines:
            e.stop()
            scope.remove_caller(f"bench-w{e.n}")
    return {"learners": n, "start": starts, "memory": mem, "build": builds}


def spread(values: list[float], digits: int = 1) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def row(runs: list[dict]) -> str:
    cells = [
        spread([statistics.median(r["start"]) for r in runs]),
        spread([max(r["start"]) for r in runs]),
        spread([statistics.median(r["memory"]) / 2**20 for r in runs], 0),
        spread([statistics.median(r["build"]) for r in runs]),
        spread([max(r["build"]) for r in runs]),
    ]
    return f"| {runs[0]['learners']} | " + " | ".join(cells) + " |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2,4,8")
    ap.add_argument("--runs", type=int, default=1, help="bring-ups per class size")
    args = ap.parse_args()
    upstream = scope.start()["listen"][0]
    context = tempfile.mkdtemp(prefix="bench-hub-")
    (Path(context) / "Dockerfile").write_text(DOCKERFILE)
    print(f"{args.runs} run(s) per size; seconds (memory: MiB per idle engine)\n")
    print("| learners | start, median | start, max | idle MiB/engine | build, median | "
          "build, max |\n|---|---|---|---|---|---|")  # fmt: skip
    for n in (int(x) for x in args.sizes.split(",")):
        print(row([one_size(n, upstream, context) for _ in range(args.runs)]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
