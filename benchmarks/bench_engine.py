"""Engine benchmarks: cold and warm bootstrap, doctor, and a two-platform build.

    .venv/bin/python benchmarks/bench_engine.py [--runs 3]

Cold bootstrap is read from the timings every `grader engine up` appends to
``<state>/logs/up-timings.jsonl`` (the last run that built the base images); warm bootstrap,
doctor and the builds are measured now, on the real engine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from grader import proc
from grader.engine.config import registry_host, settings

DOCKERFILE = """\
FROM busybox:latest
ARG TARGETPLATFORM
RUN echo "{nonce} $TARGETPLATFORM $(uname -m)" > /built-for
CMD ["cat", "/built-for"]
"""


def timed(argv: list[str], timeout: float = 900) -> float:
    start = time.monotonic()
    proc.run(argv, timeout=timeout)
    return time.monotonic() - start


def cold_bootstrap() -> tuple[str, float] | None:
    path = settings().logfile("up-timings").with_suffix(".jsonl")
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return None
    cold = [r for r in rows if any(s[0].startswith("build ") for s in r["steps"])]
    return (cold[-1]["date"], cold[-1]["total"]) if cold else None


def build_once(ctx: Path, platforms: str, cache: bool) -> float:
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(nonce=uuid.uuid4().hex))
    ref = f"{registry_host()}/bench/engine:{uuid.uuid4().hex[:8]}"
    argv = [
        "docker",
        "buildx",
        "build",
        "--builder",
        "default",
        "--platform",
        platforms,
        "--provenance=false",
        "-t",
        ref,
        "--push",
        str(ctx),
    ]
    if not cache:
        argv.insert(3, "--no-cache")
    return timed(argv)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rows: list[tuple[str, str, str]] = []
    cold = cold_bootstrap()
    rows.append(
        (
            "cold bootstrap (engine + registry + 4 base images)",
            f"{cold[1]:.1f}" if cold else "n/a",
            f"recorded {cold[0]}" if cold else "no cold run recorded",
        )
    )
    warm = [timed(["grader", "engine", "up"]) for _ in range(args.runs)]
    rows.append(
        (
            "warm bootstrap (`grader engine up`, nothing to do)",
            f"{statistics.median(warm):.2f}",
            f"median of {args.runs}",
        )
    )
    doc = [timed(["grader", "engine", "doctor"]) for _ in range(args.runs)]
    rows.append(("doctor", f"{statistics.median(doc):.2f}", f"median of {args.runs}"))
    with tempfile.TemporaryDirectory() as tmp:
        for platforms in ("linux/amd64", "linux/amd64,linux/arm64"):
            t = [build_once(Path(tmp), platforms, cache=True) for _ in range(args.runs)]
            note = " (arm64 RUN under QEMU)" if "arm64" in platforms else ""
            rows.append(
                (
                    f"build+push {platforms}, busybox + 1 RUN{note}",
                    f"{statistics.median(t):.2f}",
                    f"median of {args.runs}",
                )
            )
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'seconds':>8}  note")
    for name, secs, note in rows:
        print(f"{name:<{width}}  {secs:>8}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
