"""``grader batch``: reports, grades.csv, resume after Ctrl-C / kill -9 / a full disk / a
stopped registry, and hostile submissions not disturbing the others in the same batch."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batchkit import PrivateRegistry, make_good, make_hostile, records, unique_prefix

from grader.docker.registry import RegistryClient, RegistryError
from grader.grading.batch.run import BatchOptions, run_batch
from grader.grading.criteria import CRITERIA
from grader.grading.sandbox.limits import Limits
from grader.grading.sandbox.runner import local_images

ENGINE_IDS = ("idempotent", "build", "runs", "manifest", "image-arch")


def _opts(out: Path, **kw) -> BatchOptions:
    lines: list[str] = kw.pop("lines", [])
    base = dict(
        out=out,
        workers=1,
        namespace_prefix=unique_prefix(),
        limits=Limits(seconds=60, command_seconds=60, output=1 << 20, processes=64),
        build_timeout=60,
        run_timeout=60,
        engine_wait=5,
        progress=lines.append,
    )
    base.update(kw)
    return BatchOptions(**base)


# --- no engine: static grading, resume decisions -----------------------------------------


def test_static_batch_resumes_without_regrading(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    for name in ("alice", "bob", "carol"):
        make_good(subs / name)
    out = tmp_path / "out"
    lines: list[str] = []
    prefix = unique_prefix()
    first = run_batch(subs, _opts(out, static_only=True, lines=lines, namespace_prefix=prefix))
    assert (first.total, first.graded, first.kept, first.exit_code) == (3, 3, 0, 0)
    assert any("[3/3]" in ln and "ETA" in ln and "errors 0" in ln for ln in lines)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "reports").iterdir()}
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert [r["student"] for r in rows] == ["alice", "bob", "carol"]
    assert all(r["buildx"] == "pass" and r["runs"] == "skipped" for r in rows)

    again = run_batch(subs, _opts(out, static_only=True, namespace_prefix=prefix))
    assert (again.graded, again.kept) == (0, 3)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "reports").iterdir()} == mtimes

    # A changed submission, a torn report and a missing one are graded again; nothing else.
    (subs / "alice" / "build.sh").write_text("#!/bin/sh\ndocker build .\n")
    (out / "reports" / "bob.json").write_text('{"student": "bob", "comp')
    (out / "reports" / "carol.json").unlink()
    third = run_batch(subs, _opts(out, static_only=True, namespace_prefix=prefix))
    assert (third.graded, third.kept) == (3, 0)
    recs = records(out)
    assert recs["alice"]["report"]["score"] < recs["carol"]["report"]["score"]


# --- the engine: a mixed batch -----------------------------------------------------------


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.qemu
def test_hostile_submissions_do_not_disturb_the_others(tmp_path: Path, registry_host: str) -> None:
    subs = tmp_path / "subs"
    make_good(subs / "alice", "alice")
    for name in ("host-mount", "fork-bomb", "huge-output", "binary-garbage", "symlink-outside",
                 "push-other-learner", "read-secrets"):  # fmt: skip
        make_hostile(subs / name, name)
    make_good(subs / "zed", "zed")
    other = f"{registry_host}/another-learner/app:latest"
    client = RegistryClient(timeout=10)

    def other_digest() -> str | None:
        try:
            return client.fetch_manifest(other).digest
        except RegistryError:
            return None

    before = other_digest()
    out = tmp_path / "out"
    opts = _opts(out, workers=2, limits=Limits(seconds=20, command_seconds=20, output=1 << 20,
                                               processes=64))  # fmt: skip
    summary = run_batch(subs, opts)
    assert summary.exit_code == 0, summary
    recs = records(out)
    assert set(recs) == {p.name for p in subs.iterdir()}
    for good in ("alice", "zed"):
        crit = {c["id"]: c for c in recs[good]["report"]["criteria"]}
        for cid in ENGINE_IDS:
            assert crit[cid]["status"] == "pass", (good, cid, crit[cid])
        assert recs[good]["image"].startswith(f"{registry_host}/{opts.namespace_prefix}/{good}/")
    for name, rec in recs.items():
        assert rec["complete"], name
        if name not in ("alice", "zed"):
            crit = {c["id"]: c for c in rec["report"]["criteria"]}
            assert crit["idempotent"]["status"] == "fail", name
            assert crit["idempotent"]["findings"], name
    assert other_digest() == before  # nobody's repository was overwritten
    # The engine keeps no local copy of the graded images (the registry has them).
    assert not [n for n in local_images() if f"/{opts.namespace_prefix}/" in n]
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert len(rows) == len(recs) and set(rows[0]) >= {c.id for c in CRITERIA}


# --- interruptions -----------------------------------------------------------------------


def _grader(*args: str) -> list[str]:
    return [sys.executable, "-m", "grader.cli", "batch", *args]


def _sigint_as_in_a_terminal() -> None:
    """Ctrl-C's SIGINT at its default in the child, as for a command typed in a terminal.
    A test run started in the background by a shell without job control (`cmd &` in a
    script, as CI runners may do) inherits SIGINT ignored, and so would the batch."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_reports(out: Path, n: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while len(list((out / "reports").glob("*.json"))) < n:
        assert proc.poll() is None, "the batch ended before it could be interrupted"
        assert time.monotonic() < deadline, "no report appeared"
        time.sleep(0.2)


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.parametrize(
    "how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "term", "kill-9"]
)
def test_interrupted_batch_resumes_and_loses_nothing(tmp_path: Path, how: signal.Signals) -> None:
    subs = tmp_path / "subs"
    # A sleep only this test runs, so other batches on the machine are not mistaken for ours.
    sleep = f"sleep 300.{int(hashlib.sha256(bytes(tmp_path)).hexdigest()[:6], 16)}"
    for i, name in enumerate(("s1", "s2", "s3", "s4")):
        # s2-s4 stall while a file named `slow` is there: the signal always lands while a
        # build.sh runs, and a batch that waited for it would outlive communicate()'s timeout.
        make_good(subs / name, f"resume {i}", pre=f"if [ -e slow ]; then {sleep}; fi")
        if name != "s1":
            (subs / name / "slow").write_text("")
    out = tmp_path / "out"
    args = [str(subs), "--out", str(out), "--namespace-prefix", unique_prefix(),
            "--platforms", "linux/amd64", "--timeout", "400"]  # fmt: skip
    p = subprocess.Popen(
        _grader(*args), stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_as_in_a_terminal
    )
    try:
        _wait_for_reports(out, 1, p)
        time.sleep(1)  # s2's build.sh is sleeping now
        p.send_signal(how)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:  # a failed test leaves no batch running into the next ones
            p.kill()
            p.wait()
    if how != signal.SIGKILL:  # Ctrl-C and `kill` stop it cleanly, at once
        word = "interrupted" if how == signal.SIGINT else "terminated"
        assert p.returncode == 128 + how and word in err, (p.returncode, err[-500:])
        rows = list(csv.DictReader((out / "grades.csv").open()))  # rewritten on the way out
        assert [r["student"] for r in rows] == ["s1"]
    else:
        assert p.returncode == -signal.SIGKILL
    done_before = records(out)  # every report on disk parses: no torn writes
    assert done_before and all(r["complete"] for r in done_before.values())
    mtimes = {n: (out / "reports" / f"{n}.json").stat().st_mtime_ns for n in done_before}
    assert set(done_before) == {"s1"}  # s2 was abandoned, not waited for
    time.sleep(2)  # sandboxes of the killed batch die with it (--die-with-parent)
    work = f"grader-sandbox/batch-{hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:10]}"
    leftovers = subprocess.run(["pgrep", "-f", work], capture_output=True)
    assert leftovers.stdout.strip() == b"", "sandboxes outlived the batch"
    sleepers = subprocess.run(["pgrep", "-x", "-f", sleep], capture_output=True)
    assert sleepers.stdout.strip() == b"", "build.sh outlived the batch"
    for name in ("s2", "s3", "s4"):
        (subs / name / "slow").unlink()

    start = time.monotonic()
    rerun = subprocess.run(_grader(*args), capture_output=True, text=True, timeout=600)
    resume_seconds = time.monotonic() - start
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(done_before)} already graded" in rerun.stderr
    after = records(out)
    assert set(after) == {"s1", "s2", "s3", "s4"} and all(r["complete"] for r in after.values())
    for n, m in mtimes.items():
        assert (out / "reports" / f"{n}.json").stat().st_mtime_ns == m, f"{n} was regraded"
    assert not list((out / "reports").glob(".*.tmp"))
    print(f"resume after {how.name}: {resume_seconds:.1f} s for {4 - len(done_before)} left")


# --- faults ------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 64 KB tmpfs as the results folder (a real full disk, not an injected error)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "out"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_results_disk_stops_cleanly_and_rerun_completes(
    tmp_path: Path, tiny_disk: Path
) -> None:
    subs = tmp_path / "subs"
    for i in range(30):
        make_good(subs / f"learner{i:02d}")
    lines: list[str] = []
    prefix = unique_prefix()
    first = run_batch(
        subs, _opts(tiny_disk, static_only=True, lines=lines, namespace_prefix=prefix)
    )
    assert first.exit_code == 3
    assert first.stopped and "No space left on device" in first.stopped
    assert first.unsaved, "the submission whose report could not be written is named"
    assert any("NOT SAVED" in ln for ln in lines)
    saved = records(tiny_disk)  # what is there is whole
    assert 0 < len(saved) < 30
    assert not list((tiny_disk / "reports").glob(".*.tmp"))

    subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_disk)], check=True)
    second = run_batch(subs, _opts(tiny_disk, static_only=True, namespace_prefix=prefix))
    assert second.exit_code == 0 and second.kept == len(saved)
    assert second.graded == 30 - len(saved)
    assert len(records(tiny_disk)) == 30
    assert len(list(csv.DictReader((tiny_disk / "grades.csv").open()))) == 30


@pytest.mark.engine
@pytest.mark.qemu
def test_registry_stopped_mid_batch(tmp_path: Path) -> None:
    registry = PrivateRegistry(tmp_path / "registry").start()
    try:
        subs = tmp_path / "subs"
        for i, name in enumerate(("r1", "r2", "r3")):
            make_good(subs / name, f"registry {i}")
        out = tmp_path / "out"
        lines: list[str] = []

        def progress(line: str) -> None:
            lines.append(line)
            if line.startswith("[1/3]"):
                registry.stop()  # after the first submission, before the second starts

        opts = _opts(out, registry=registry.host, retries=0, engine_wait=3, progress=progress)
        first = run_batch(subs, opts)
        assert first.exit_code == 3 and "does not answer" in (first.stopped or ""), lines
        recs = records(out)
        assert recs["r1"]["complete"] is True
        assert recs["r2"]["complete"] is False
        r2 = {c["id"]: c for c in recs["r2"]["report"]["criteria"]}
        assert r2["idempotent"]["status"] == "error"
        assert any(f["rule"] == "RN450" for f in r2["idempotent"]["findings"])
        assert "r3" not in recs  # the batch stopped instead of failing everyone

        registry.start()
        second = run_batch(subs, _opts(out, registry=registry.host,
                                       namespace_prefix=opts.namespace_prefix))  # fmt: skip
        assert second.exit_code == 0 and second.kept == 1 and second.graded == 2
        assert all(r["complete"] for r in records(out).values())
    finally:
        registry.stop()
