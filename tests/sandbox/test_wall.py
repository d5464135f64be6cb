"""The wall between learners on one worker: submission A leaves everything it can behind
(an image named like a base image, a volume, a restart=always container, a builder, a
login, a CLI plugin, build cache), the worker is reset, and B finds none of it; gate on and
gate off. Without the reset B finds A's leftovers (the test can fail). And ``grader batch``
refuses learners' code where worker engines cannot run, unless the risk is named."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from grader.engine import rootless
from grader.engine.config import settings
from grader.grading.batch import run as batch
from grader.grading.checks import run as engine
from grader.grading.checks.run import claim_worker
from grader.grading.sandbox.limits import Limits
from grader.grading.sandbox.runner import default_work_root

WALL = Path(__file__).parents[1] / "fixtures" / "wall"


@pytest.fixture(scope="module")
def worker():
    why = rootless.rootless_problem()
    if why:
        pytest.fail(f"worker engines cannot run here: {why}")
    with claim_worker(settings().registry_host) as eng:
        yield eng


def _grade(name: str, worker, gated: bool, tmp_path: Path) -> str:
    """Grade one fixture on ``worker``; returns build.sh's first run's output."""
    logs = tmp_path / name
    opts = engine.EngineOptions(
        namespace=f"t-wall-{uuid.uuid4().hex[:8]}/{name}",
        limits=Limits(seconds=60, command_seconds=60),
        build_timeout=60,
        run_timeout=30,
        work_root=default_work_root() / f"t-wall-{uuid.uuid4().hex[:8]}",
        log_dir=logs,
        engine=worker,
        gate=gated,
    )
    platforms = ("linux/amd64", "linux/arm64")
    results = engine.check_engine(WALL / name, None, platforms, opts=opts).results
    assert all(r.status in ("pass", "fail") for r in results), results
    return (logs / "run1.log").read_text(errors="replace")


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.parametrize("gate", ["gate-on", "gate-off"])
def test_next_learner_finds_nothing(gate: str, worker, tmp_path: Path) -> None:
    worker.reset()
    _grade("leave-a", worker, gate == "gate-on", tmp_path)
    worker.reset()
    out = _grade("leave-b", worker, gate == "gate-on", tmp_path)
    assert "FOUND-" not in out, out


@pytest.mark.engine
@pytest.mark.registry
def test_without_reset_the_next_learner_finds_leftovers(worker, tmp_path: Path) -> None:
    """The control: the same two submissions with no reset between them."""
    worker.reset()
    _grade("leave-a", worker, False, tmp_path)
    out = _grade("leave-b", worker, False, tmp_path)
    assert "FOUND-IMAGE" in out and "FOUND-CONTAINER" in out, out


def test_batch_refuses_without_worker_engines(monkeypatch, tmp_path: Path, capsys) -> None:
    from grader import cli

    monkeypatch.setattr(rootless, "rootless_problem", lambda: "user namespaces are disabled (test)")
    subs = tmp_path / "subs"
    subs.mkdir()
    argv = ["batch", str(subs), "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "user namespaces are disabled" in err and "--unsafe-shared-engine" in err
    assert "take over this machine" in err
    # Naming the risk lets it run (here: an empty class).
    assert cli.main([*argv, "--unsafe-shared-engine"]) == 0
    assert batch.BatchOptions(out=tmp_path).isolate
