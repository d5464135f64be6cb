"""dockerd restarted in the middle of a batch (through the course's own engine code, so it
comes back configured). This disrupts everything else using the engine: it is marked
``faults`` and runs last."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from batchkit import make_good, records, unique_prefix

from grader import proc
from grader.engine import rootless, services
from grader.engine.config import settings
from grader.grading.batch.run import BatchOptions, run_batch
from grader.grading.sandbox.limits import Limits

# The poll's sleep is a value no other process on the machine uses: the test restarts the
# engine once it sees that sleep running, so the restart always falls inside d2's build.sh.
POLL_SLEEP = "0.317"
POLL = f"for i in $(seq 1 20); do docker buildx ls >/dev/null || exit 1; sleep {POLL_SLEEP}; done"


def _wait_for_poll(deadline_s: float = 150) -> None:
    """Wait until d2's build.sh is polling the engine (its unique sleep is running)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = proc.run(["pgrep", "-x", "-f", f"sleep {POLL_SLEEP}"], timeout=10, check=False)
        if found.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"d2's build.sh never started polling within {deadline_s} s")


pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.faults]


def _kill_worker_daemons() -> None:
    """SIGKILL the dockerd of every worker engine now running (CI runs no hub)."""
    for n in range(rootless.SLOTS):
        for pid in rootless._cgroup_pids(n):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd":
                    os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("isolate", [False, True], ids=["shared-engine", "worker-engine"])
def test_dockerd_restarted_mid_batch(tmp_path: Path, isolate: bool) -> None:
    """Shared engine: restarted through the course's code. Worker engine: its dockerd is
    killed; the next submission's reset starts a fresh one. Either way the submission that
    met it is an ERROR, retried in the same batch, and the batch ends complete."""
    cfg = settings()
    if not isolate and services.owned_pid(cfg, "dockerd") is None:
        pytest.skip("the running engine was not started by the course (Docker Desktop?)")
    if isolate and rootless.rootless_problem():
        pytest.fail(f"worker engines cannot run here: {rootless.rootless_problem()}")
    subs = tmp_path / "subs"
    make_good(subs / "d1", "restart 1")
    # d2 talks to the engine every ~0.3 s for 20 rounds; the restart waits until it polls.
    make_good(subs / "d2", "restart 2", pre=POLL)
    make_good(subs / "d3", "restart 3")
    lines: list[str] = []
    restarted = threading.Event()
    errors: list[BaseException] = []

    def restart() -> None:
        try:
            _wait_for_poll()
            if isolate:
                _kill_worker_daemons()
            else:
                services.stop_service(cfg, "dockerd")
                services.ensure_dockerd(cfg)
            restarted.set()
        except BaseException as e:
            errors.append(e)

    def progress(line: str) -> None:
        lines.append(line)
        if line.startswith("[1/3]") and not restarted.is_set():
            threading.Thread(target=restart, daemon=True).start()

    opts = BatchOptions(
        out=tmp_path / "out",
        workers=1,
        platforms=("linux/amd64",),
        namespace_prefix=unique_prefix(),
        limits=Limits(seconds=180, command_seconds=180),
        build_timeout=180,
        run_timeout=60,
        engine_wait=240,
        retries=1,
        progress=progress,
        isolate=isolate,
    )
    summary = run_batch(subs, opts)
    assert not errors, errors
    assert restarted.is_set()
    # The affected submission was reported as an error, then retried in the same batch.
    assert any(ln.startswith("[2/3]") and "ERROR" in ln for ln in lines), lines
    assert any("retrying 1 with infrastructure errors" in ln for ln in lines), lines
    assert summary.exit_code == 0, lines
    recs = records(opts.out)
    assert set(recs) == {"d1", "d2", "d3"} and all(r["complete"] for r in recs.values())
    # The engine came back configured: containerd image store and the registry mirror.
    info = proc.run(["docker", "info", "--format", "{{json .DriverStatus}}"], timeout=30).stdout
    assert "io.containerd.snapshotter" in info
    mirrors = proc.run(
        ["docker", "info", "--format", "{{json .RegistryConfig.Mirrors}}"], timeout=30
    ).stdout
    assert cfg.registry_host in mirrors


def test_a_dead_scope_proxy_is_the_machines_fault_not_the_learners(tmp_path: Path) -> None:
    """The proxy stops while a worker engine waits for the next submission: every engine
    criterion is an infrastructure `error` (regraded later), never a learner's `fail`."""
    from grader.engine import scope
    from grader.grading.checks import run as engine
    from grader.grading.sandbox.runner import default_work_root

    sub = tmp_path / "sub"
    make_good(sub, "proxy down")
    with engine.claim_worker(settings().registry_host) as worker:
        assert worker.registry != worker.registry_upstream  # behind the proxy
        scope.stop()
        try:
            opts = engine.EngineOptions(
                namespace=f"{unique_prefix()}/proxy-down",
                limits=Limits(seconds=60, command_seconds=60),
                build_timeout=60,
                run_timeout=30,
                work_root=default_work_root() / f"t-proxy-{os.getpid()}",
                engine=worker,
            )
            outcome = engine.check_engine(sub, None, ("linux/amd64",), opts=opts)
        finally:
            scope.start()
    assert [r.status for r in outcome.results] == ["error", "error", "error"], outcome.results
    assert "scope proxy" in (outcome.infrastructure or ""), outcome.infrastructure
