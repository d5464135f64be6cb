"""Batch grading benchmark: 50 real submissions with 1 and 2 workers, resume after kill -9,
and the hostile fixtures (tried / escapes / crashes).

    .venv/bin/python benchmarks/bench_batch.py [--count 50] [--skip-hostile]
    .venv/bin/python benchmarks/bench_batch.py --seeded-cache [--count 10] [--runs 2]

``--seeded-cache``: ``count`` copies of the challenge's reference solution (the real
apt-get path), 2 workers, graded cold and with the cache ``grader cache seed`` exports,
alternately, ``runs`` times each; prints a table with each run, the mean and the spread.

Submissions are generated: 40 variants of a tiny valid solution (busybox, a RUN on
$BUILDPLATFORM, both platforms, pushed) and 10 broken ones (one platform only, an
unguarded `buildx create`, a failing RUN, a script that exits 1, no push). Each run salts
the images so it cannot reuse the previous run's build results (base images stay cached,
as on an instructor's machine). Images go to REGISTRY/bench-batch-<random>/<student>/.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grader.grading.batch.run import BatchOptions, run_batch  # noqa: E402
from grader.grading.checks import run as engine  # noqa: E402
from grader.grading.sandbox.limits import Limits  # noqa: E402
from grader.grading.sandbox.runner import default_work_root  # noqa: E402

DOCKERFILE = """\
FROM --platform=$BUILDPLATFORM busybox:latest AS build
ARG TARGETARCH
RUN echo "{salt} {student} built for $TARGETARCH" > /msg
FROM busybox:latest
COPY --from=build /msg /msg
CMD ["cat", "/msg"]
"""
GOOD = """\
#!/usr/bin/env bash
set -euo pipefail
IMAGE=${{IMAGE:-{student}/hello:latest}}
docker buildx inspect multi >/dev/null 2>&1 || docker buildx create --name multi
docker buildx build --builder multi --platform linux/amd64,linux/arm64 --provenance=false \\
  -t "$IMAGE" --push .
"""
BROKEN = {
    "single-arch": GOOD.replace("--platform linux/amd64,linux/arm64 ", ""),
    "unguarded-create": GOOD.replace(
        "docker buildx inspect multi >/dev/null 2>&1 || docker buildx create --name multi",
        "docker buildx create --name multi",
    ),
    "failing-run": GOOD,  # with a Dockerfile whose RUN fails
    "exit-1": GOOD + "exit 1\n",
    "no-push": GOOD.replace(' \\\n  -t "$IMAGE" --push .', " ."),
}


def generate(root: Path, count: int, salt: str) -> None:
    broken = list(BROKEN)
    n_broken = max(1, count // 5)
    for i in range(count):
        student = f"learner{i:03d}"
        d = root / student
        d.mkdir(parents=True)
        kind = broken[i % len(broken)] if i < n_broken else "good"
        script = (GOOD if kind == "good" else BROKEN[kind]).format(student=student)
        dockerfile = DOCKERFILE.format(salt=salt, student=student)
        if kind == "failing-run":
            dockerfile = dockerfile.replace('RUN echo "', 'RUN exit 3; echo "')
        (d / "build.sh").write_text(script)
        (d / "Dockerfile").write_text(dockerfile)


def batch_run(
    subs: Path, out: Path, workers: int, prefix: str, isolate: bool = True, seeded: bool = False
) -> tuple[float, object]:
    opts = BatchOptions(
        out=out,
        workers=workers,
        namespace_prefix=prefix,
        isolate=isolate,
        use_seeded_cache=seeded,
        limits=Limits(seconds=300, command_seconds=300),
        progress=lambda line: None,
    )
    start = time.monotonic()
    summary = run_batch(subs, opts)
    return time.monotonic() - start, summary


def scores(out: Path) -> dict[str, float]:
    return {
        p.stem: json.loads(p.read_text())["report"]["score"]
        for p in sorted((out / "reports").glob("*.json"))
    }


def resume_after_kill(
    subs: Path, out: Path, prefix: str, kill_after: int, how: signal.Signals = signal.SIGKILL
) -> dict:
    cmd = [sys.executable, "-m", "grader.cli", "batch", str(subs), "--out", str(out),
           "--workers", "2", "--namespace-prefix", prefix, "--timeout", "300"]  # fmt: skip
    # SIGINT at its default, as in a terminal, even when this script runs in the background.
    first = subprocess.Popen(
        cmd,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    while len(list((out / "reports").glob("*.json"))) < kill_after:
        if first.poll() is not None:
            raise SystemExit("the batch ended before it could be killed")
        time.sleep(0.1)
    signalled = time.monotonic()
    first.send_signal(how)
    first.wait()
    exited = time.monotonic() - signalled  # Ctrl-C must not wait for running gradings
    before = {p.name: p.read_bytes() for p in (out / "reports").glob("*.json")}
    start = time.monotonic()
    second = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert second.stderr is not None
    first_new = skipped = None
    for line in second.stderr:
        if skipped is None and "already graded" in line:
            skipped = time.monotonic() - start  # started, checked every report, skipped
        if first_new is None and line.startswith("["):
            first_new = time.monotonic() - start
    second.wait()
    total = time.monotonic() - start
    after = {p.name: p.read_bytes() for p in (out / "reports").glob("*.json")}
    lost = [n for n, data in before.items() if after.get(n) != data]
    return {
        "exit_after_signal": exited,
        "kept": len(before),
        "ready_to_grade_after_restart": skipped or 0.0,
        "first_result_after_restart": first_new or 0.0,
        "resume_total": total,
        "lost_or_regraded": len(lost),
        "exit": second.returncode,
        "final_reports": len(after),
    }


def hostile_table() -> list[tuple[str, str, bool, bool, float]]:
    """(fixture, idempotent status, escaped, crashed, seconds) for every hostile fixture."""
    fixtures = REPO / "tests" / "fixtures" / "hostile"
    secret = f"CANARY-{uuid.uuid4().hex}"
    home = Path(tempfile.mkdtemp(prefix="bench-instructor-"))
    (home / ".docker").mkdir()
    auth = base64.b64encode(f"me:{secret}".encode()).decode()
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {"x": {"auth": auth}}}))
    os.environ.update(HOME=str(home), INSTRUCTOR_TOKEN=secret)
    targets = [Path(p) for p in ("/tmp/pwned-by-learner", "/root/pwned", "/etc/pwned", "/pwned")]
    rows = []
    for d in sorted(p for p in fixtures.iterdir() if (p / "expect.json").exists()):
        logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
        start = time.monotonic()
        crashed = escaped = False
        status = "?"
        try:
            opts = engine.EngineOptions(
                namespace=f"bench-hostile-{uuid.uuid4().hex[:6]}/{d.name}",
                limits=Limits(seconds=10, command_seconds=10, output=1 << 20, processes=64),
                build_timeout=10,
                run_timeout=30,
                log_dir=logs,
            )
            outcome = engine.check_engine(d, None, ("linux/amd64", "linux/arm64"), opts=opts)
            results = outcome.results
            status = results[0].status
            crashed = any(r.status == "error" for r in results)
            kept = json.dumps([r.__dict__ for r in results], default=str)
            kept += "".join(p.read_text(errors="replace") for p in logs.glob("*.log"))
            kept += json.dumps([e.__dict__ for e in outcome.sandbox.events])
            escaped = secret in kept or any(t.exists() for t in targets)
        except Exception as e:  # a crash of the grader itself
            crashed = True
            status = f"{type(e).__name__}"
        rows.append((d.name, status, escaped, crashed, time.monotonic() - start))
        shutil.rmtree(logs, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    return rows


def compare_wall(count: int) -> int:
    """Before/after the wall, same machine, same run: 2 workers, ``count`` submissions."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-wall-", dir=default_work_root().parent))
    prefix = f"bench-wall-{uuid.uuid4().hex[:6]}"
    rows = []
    try:
        for isolate, label in ((False, "shared root engine (before)"),
                               (True, "worker engines (after)")):  # fmt: skip
            subs = tmp / f"subs-{isolate}"
            generate(subs, count, salt=uuid.uuid4().hex)
            out = tmp / f"out-{isolate}"
            name = f"{prefix}-{'wall' if isolate else 'shared'}"
            secs, summary = batch_run(subs, out, 2, name, isolate=isolate)
            s = scores(out)
            full = sum(1 for v in s.values() if v == 12)
            rows.append((label, secs, f"{summary.complete}/{summary.total} complete, "
                         f"{full} full marks, exit {summary.exit_code}"))  # fmt: skip
            print(f"{label}: {secs:.1f} s ({rows[-1][2]})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n| batch of {count}, 2 workers | seconds | notes |\n|---|---:|---|")
    for name, secs, note in rows:
        print(f"| {name} | {secs:.1f} | {note} |")
    print(f"\nratio after/before: {rows[1][1] / rows[0][1]:.2f}")
    return 0


def seeded_batch(count: int, runs: int) -> int:
    """``count`` copies of the reference solution, 2 workers: cold vs the seeded cache."""
    from grader.grading.batch import seeded_cache

    reference = REPO / "source" / "07-challenge" / "reference-solution"
    seed = seeded_cache.seed(reference, say=lambda line: print(line, flush=True))
    tmp = Path(tempfile.mkdtemp(prefix="bench-seeded-", dir=default_work_root().parent))
    subs = tmp / "subs"
    for i in range(count):
        shutil.copytree(reference, subs / f"learner{i:02d}")
    times: dict[bool, list[float]] = {False: [], True: []}
    notes: dict[bool, str] = {}
    try:
        for n in range(runs):
            for use in (False, True):
                out = tmp / f"out-{n}-{use}"
                secs, summary = batch_run(subs, out, 2, f"bench-seeded-{uuid.uuid4().hex[:6]}",
                                          seeded=use)  # fmt: skip
                full = sum(1 for v in scores(out).values() if v == 12)
                times[use].append(secs)
                notes[use] = f"{summary.complete}/{summary.total} complete, {full} full marks"
                print(f"run {n + 1}, {'seeded' if use else 'cold'}: {secs:.1f} s "
                      f"({notes[use]})", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nseed: {seed.seconds:.1f} s{' (up to date, skipped)' if seed.skipped else ''}")
    runs_head = " | ".join(f"run {n + 1}" for n in range(runs))
    print(f"\n| {count} reference solutions, 2 workers | {runs_head} | mean | spread | notes |")
    print("|---|" + "---:|" * (runs + 2) + "---|")
    for use, label in ((False, "cold (no seeded cache)"), (True, "seeded cache")):
        t = times[use]
        mean = sum(t) / len(t)
        cells = " | ".join(f"{x:.1f}" for x in t)
        print(f"| {label} | {cells} | {mean:.1f} | {max(t) - min(t):.1f} | {notes[use]} |")
    print(f"\nratio seeded/cold (means): {sum(times[True]) / sum(times[False]):.2f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--skip-hostile", action="store_true")
    ap.add_argument("--compare-wall", action="store_true",
                    help="only: 2 workers on the shared root engine (before the wall) and "
                    "on worker engines (after), in one run; prints the ratio")  # fmt: skip
    ap.add_argument("--seeded-cache", action="store_true",
                    help="only: --count copies (default 10) of the reference solution, cold "
                    "vs the seeded cache")  # fmt: skip
    ap.add_argument("--runs", type=int, default=2, help="--seeded-cache: runs of each")
    args = ap.parse_args()
    if args.compare_wall:
        return compare_wall(args.count)
    if args.seeded_cache:
        count = args.count if "--count" in sys.argv else 10
        return seeded_batch(count, max(1, args.runs))
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-", dir=default_work_root().parent))
    prefix = f"bench-batch-{uuid.uuid4().hex[:6]}"
    rows = []
    try:
        for workers in (1, 2):
            subs = tmp / f"subs-w{workers}"
            generate(subs, args.count, salt=uuid.uuid4().hex)
            out = tmp / f"out-w{workers}"
            secs, summary = batch_run(subs, out, workers, f"{prefix}-w{workers}")
            s = scores(out)
            full = sum(1 for v in s.values() if v == 12)
            rows.append((f"batch of {args.count}, {workers} worker(s)", secs,
                         f"{summary.complete}/{summary.total} complete, {full} full marks, "
                         f"exit {summary.exit_code}"))  # fmt: skip
            print(f"{rows[-1][0]}: {secs:.1f} s ({rows[-1][2]})", flush=True)
        for how, label in ((signal.SIGKILL, "kill -9"), (signal.SIGINT, "Ctrl-C")):
            subs = tmp / f"subs-resume-{how.name}"
            generate(subs, args.count, salt=uuid.uuid4().hex)
            out = tmp / f"out-resume-{how.name}"
            r = resume_after_kill(subs, out, f"{prefix}-{how.name}", args.count // 3, how)
            kept = f"{r['kept']} kept, {r['lost_or_regraded']} lost or regraded"
            done = f"{r['final_reports']}/{args.count} reports, exit {r['exit']}"
            rows += [
                (f"{label} of a 2-worker batch: exit", r["exit_after_signal"],
                 "gradings in progress are abandoned, not waited for"),
                (f"resume after {label}: finished ones skipped", r["ready_to_grade_after_restart"],
                 "process start, every report and submission fingerprint checked"),
                (f"resume after {label}: first new result", r["first_result_after_restart"], kept),
                (f"resume after {label}: the rest", r["resume_total"], done),
            ]  # fmt: skip
            print(f"{label}: {r}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("\n| measurement | seconds | notes |\n|---|---:|---|")
    for name, secs, note in rows:
        print(f"| {name} | {secs:.1f} | {note} |")
    if not args.skip_hostile:
        table = hostile_table()
        print("\n| hostile fixture | idempotent | escaped | crashed | seconds |")
        print("|---|---|---|---|---:|")
        for name, status, esc, crash, secs in table:
            print(f"| {name} | {status} | {'YES' if esc else 'no'} | {'YES' if crash else 'no'} "
                  f"| {secs:.1f} |")  # fmt: skip
        tried = len(table)
        escapes = sum(1 for t in table if t[2])
        crashes = sum(1 for t in table if t[3])
        print(f"\nhostile cases tried {tried}, escapes {escapes}, crashes {crashes}")
        return 1 if escapes or crashes else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
