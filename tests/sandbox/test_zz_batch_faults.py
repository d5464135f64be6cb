"""dockerd restarted in the middle of a batch (through the course's own engine code, so it
comes back configured). This disrupts everything else using the engine: it is marked
``faults`` and runs last."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from batchkit import make_good, records, unique_prefix

from grader import proc
from grader.batch import BatchOptions, run_batch
from grader.engine import services
from grader.engine.config import settings
from grader.sandbox.limits import Limits

POLL = "sleep 1; for i in $(seq 1 20); do docker buildx ls >/dev/null || exit 1; sleep 0.3; done"

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.faults]


def test_dockerd_restarted_mid_batch(tmp_path: Path) -> None:
    cfg = settings()
    if services.owned_pid(cfg, "dockerd") is None:
        pytest.skip("the running engine was not started by the course (Docker Desktop?)")
    subs = tmp_path / "subs"
    make_good(subs / "d1", "restart 1")
    # d2 talks to the engine every 0.3 s for ~6 s: it certainly meets the restart.
    make_good(subs / "d2", "restart 2", pre=POLL)
    make_good(subs / "d3", "restart 3")
    lines: list[str] = []
    restarted = threading.Event()
    errors: list[BaseException] = []

    def restart() -> None:
        try:
            time.sleep(2)  # d2's build.sh is polling the engine by now
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
