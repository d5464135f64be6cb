"""The seeded build cache on real engines: ``grader cache seed`` builds the challenge's
reference solution on the course engine and exports its cache; a submission graded on a
freshly reset worker engine then finds the reference's apt-get steps CACHED in build.sh's
first run. Without a seed, grading works as before and the steps run. One learner's own
exported cache never reaches another learner's build (the scope proxy refuses the read)."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from grader.engine import rootless
from grader.engine.config import settings
from grader.grading.batch import seeded_cache
from grader.grading.checks import run as engine
from grader.grading.checks.run import claim_worker
from grader.grading.sandbox.limits import Limits
from grader.grading.sandbox.runner import default_work_root

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.qemu]

REPO = Path(__file__).parents[2]
REFERENCE = REPO / "source" / "07-challenge" / "reference-solution"
PLATFORMS = ("linux/amd64", "linux/arm64")


@pytest.fixture(scope="module")
def worker():
    why = rootless.rootless_problem()
    if why:
        pytest.fail(f"worker engines cannot run here: {why}")
    with claim_worker(settings().registry_host) as eng:
        yield eng


@pytest.fixture(scope="module")
def seeded() -> str:
    """A seeded cache of the reference under an assignment name of the test's own, seeded
    through the command line an instructor uses (twice: the second finds it up to date)."""
    assignment = f"t-seed-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-m", "grader.cli", "cache", "seed", str(REFERENCE),
            "--assignment", assignment]  # fmt: skip
    first = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "build 2/5] RUN case" in first.stdout and "exporting cache" in first.stdout
    again = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert again.returncode == 0 and "is up to date" in again.stdout, again.stdout
    assert seeded_cache.lookup(settings().registry_host, assignment)
    return assignment


def _grade(
    submission: Path, worker, tmp_path: Path, cache: str | None, seconds: float = 600,
    namespace: str | None = None,
):  # fmt: skip
    """Grade ``submission`` on the freshly reset ``worker``: (results by id, run 1's log)."""
    worker.reset()
    logs = tmp_path / f"logs-{uuid.uuid4().hex[:6]}"
    opts = engine.EngineOptions(
        namespace=namespace or f"t-seed-{uuid.uuid4().hex[:8]}/learner",
        limits=Limits(seconds=seconds, command_seconds=seconds),
        build_timeout=seconds,
        run_timeout=60,
        work_root=default_work_root() / f"t-seed-{uuid.uuid4().hex[:8]}",
        log_dir=logs,
        engine=worker,
        seeded_cache=cache,
    )
    outcome = engine.check_engine(submission, None, PLATFORMS, opts=opts)
    return {r.id: r for r in outcome.results}, (logs / "run1.log").read_text(errors="replace")


def _apt_steps(log: str) -> list[str]:
    """How each apt-get step of the build ended: CACHED, DONE ... or ERROR."""
    numbers = re.findall(r"^#(\d+) \[[^\]]*build[^\]]*\] RUN .*apt-get update", log, re.M)
    ends = []
    for n in dict.fromkeys(numbers):
        end = re.search(rf"^#{n} (CACHED|DONE|ERROR)", log, re.M)
        ends.append(end.group(1) if end else "?")
    return ends


def test_a_graded_build_imports_the_seeded_cache(seeded: str, worker, tmp_path: Path) -> None:
    results, log = _grade(REFERENCE, worker, tmp_path, seeded)
    shown = {k: (r.status, [f.message[:200] for f in r.findings]) for k, r in results.items()}
    assert all(r.status == "pass" for r in results.values()), shown
    assert "--cache-from" not in log  # the gate adds it to the command it runs, unseen
    assert _apt_steps(log) == ["CACHED", "CACHED"], log[-4000:]


def test_without_a_seed_grading_works_and_builds_cold(worker, tmp_path: Path) -> None:
    results, log = _grade(REFERENCE, worker, tmp_path, None)
    shown = {k: (r.status, [f.message[:200] for f in r.findings]) for k, r in results.items()}
    assert all(r.status == "pass" for r in results.values()), shown
    assert _apt_steps(log) == ["DONE", "DONE"], log[-4000:]


LEAKY = """\
#!/usr/bin/env bash
set -euo pipefail
docker buildx build --platform linux/amd64 --progress=plain --build-arg SALT={salt} \\
  --cache-to "type=registry,ref=$GRADER_REPOSITORY/cache,mode=max" {cache_from} .
"""
SALTED = 'FROM busybox:latest\nARG SALT\nRUN echo "step of $SALT" > /made\n'


def test_one_learners_cache_never_reaches_another(worker, tmp_path: Path) -> None:
    """A exports its cache into its own namespace (allowed); B names it in --cache-from:
    the proxy refuses the read (RN409) and B's step runs instead of coming from A's cache."""
    salt = uuid.uuid4().hex
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "Dockerfile").write_text(SALTED)
    (a / "build.sh").write_text(LEAKY.format(salt=salt, cache_from=""))
    a_ns = f"t-seed-{uuid.uuid4().hex[:8]}/a"
    results_a, log_a = _grade(a, worker, tmp_path, None, seconds=120, namespace=a_ns)
    assert results_a["idempotent"].status == "pass", log_a[-2000:]
    assert "exporting cache to registry" in log_a, log_a[-2000:]
    a_cache = f"{settings().registry_host}/{a_ns}/cache"
    (b / "build.sh").write_text(
        LEAKY.format(salt=salt, cache_from=f"--cache-from type=registry,ref={a_cache}")
    )
    results_b, log_b = _grade(b, worker, tmp_path, None, seconds=120)
    assert "RN409" in {f.rule for f in results_b["idempotent"].findings}, log_b[-2000:]
    step = re.search(r"^#(\d+) \[[^\]]*\] RUN echo", log_b, re.M)
    assert step and re.search(rf"^#{step.group(1)} DONE", log_b, re.M), log_b[-3000:]


def test_batch_says_whether_it_found_a_seeded_cache(seeded: str, tmp_path: Path) -> None:
    from grader.grading.batch.run import Batch, BatchOptions

    for assignment, use, found in ((seeded, True, True), ("t-seed-none", True, False),
                                   (seeded, False, False)):  # fmt: skip
        said: list[str] = []
        opts = BatchOptions(out=tmp_path, assignment=assignment, use_seeded_cache=use,
                            progress=said.append)  # fmt: skip
        Batch(tmp_path, opts)._find_seeded_cache()
        assert opts.seeded_cache == (assignment if found else None)
        if found:
            assert said and f"/cache/{assignment}:latest (sha256:" in said[0], said
        elif use:
            assert said and "every build starts cold" in said[0], said


def test_a_rebuilt_base_image_makes_the_seed_stale(seeded: str) -> None:
    """The seed records its base images' digests; one that changed since is named (the
    batch warns, `grader cache status` exits 1) and the next seed is not "up to date"."""
    import json

    registry = settings().registry_host
    path = seeded_cache.record_path(seeded)
    record = json.loads(path.read_text())
    assert record["bases"]["debian:bookworm-slim"].startswith("sha256:")
    assert seeded_cache.changed_bases(registry, seeded) == []
    record["bases"]["debian:bookworm-slim"] = "sha256:" + "0" * 64  # as if seeded before
    path.write_text(json.dumps(record))
    assert seeded_cache.changed_bases(registry, seeded) == ["debian:bookworm-slim"]
    status = subprocess.run(
        [sys.executable, "-m", "grader.cli", "cache", "status", "--assignment", seeded],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert status.returncode == 1 and "stale: debian:bookworm-slim" in status.stdout
