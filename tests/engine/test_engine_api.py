"""grader.docker.engine_api on the real engine: what grading leaves behind is found by label
(or by the builder's name) and removed, and nothing else is touched; one client per socket;
a dead socket is "not answering", at once."""

from __future__ import annotations

import socket
import time
import uuid

import pytest

from grader import proc
from grader.docker import engine_api
from grader.grading.sandbox import runner

pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("local_busybox")]

IMAGE = "busybox:latest"
LABEL = "grader.grading.sandbox"


@pytest.fixture
def run_id() -> str:
    return "t-plumbing-" + uuid.uuid4().hex[:8]


def _names(label: str) -> set[str]:
    out = proc.run(["docker", "ps", "-a", "--filter", f"label={label}", "--format",
                    "{{.Names}}"], timeout=30).stdout  # fmt: skip
    return set(out.split())


def test_one_client_per_engine_socket(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert engine_api.client() is engine_api.client(engine_api.DEFAULT_HOST)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/worker-1.sock")  # a worker's engine
    with pytest.raises(engine_api.errors()):  # a client is made for that socket, not reused
        engine_api.client()
    monkeypatch.delenv("DOCKER_HOST")
    assert engine_api.client().ping()


def test_version_and_info_come_from_the_engine() -> None:
    cli = proc.run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=30)
    assert engine_api.version()["Version"] == cli.stdout.strip()
    info, why = engine_api.info()
    assert why == "" and info["ServerVersion"] == cli.stdout.strip()
    assert engine_api.answers()


def test_a_dead_socket_is_not_answering_at_once(tmp_path) -> None:
    path = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # bound, never listening: connections are refused
        start = time.monotonic()
        assert engine_api.version(f"unix://{path}", timeout=2) is None
        info, why = engine_api.info(f"unix://{path}", timeout=2)
        assert info is None and why
        assert not engine_api.answers(f"unix://{path}", timeout=2)
        assert time.monotonic() - start < 6


def test_a_hung_engine_is_not_answering_within_the_timeout(tmp_path) -> None:
    path = tmp_path / "hung.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen(8)  # accepts, never answers
        start = time.monotonic()
        assert not engine_api.answers(f"unix://{path}", timeout=1)
        assert time.monotonic() - start < 5


def test_cleanup_removes_what_the_submission_created_and_nothing_else(run_id) -> None:
    api = engine_api.client()
    mine = f"{LABEL}={run_id}"
    other = f"{LABEL}={run_id}-other"
    made = [
        api.containers.create(IMAGE, ["true"], name=f"{run_id}-a", labels={LABEL: run_id}),
        api.containers.run(
            IMAGE, ["sleep", "60"], name=f"{run_id}-b", labels={LABEL: run_id}, detach=True
        ),
        api.containers.create(IMAGE, ["true"], name=f"buildx_buildkit_g{run_id}0"),
        api.containers.create(
            IMAGE, ["true"], name=f"{run_id}-keep", labels={LABEL: f"{run_id}-other"}
        ),
    ]
    volume = api.volumes.create(f"{run_id}-vol", labels={LABEL: run_id})
    kept_volume = api.volumes.create(f"{run_id}-vol-keep", labels={LABEL: f"{run_id}-other"})
    try:
        assert _names(mine) == {f"{run_id}-a", f"{run_id}-b"}
        assert engine_api.remove_labelled(mine) == (2, 1)  # a running one too
        assert engine_api.remove_named(f"buildx_buildkit_g{run_id}") == 1
        assert _names(mine) == set()
        assert _names(other) == {f"{run_id}-keep"}
        assert {v.name for v in api.volumes.list(filters={"label": mine})} == set()
        assert kept_volume.name in {v.name for v in api.volumes.list(filters={"label": other})}
        assert engine_api.remove_labelled(mine) == (0, 0)  # idempotent
        assert not engine_api.remove_container(f"{run_id}-a")
    finally:
        for c in made:
            engine_api.remove_container(c.name)
        for v in (volume, kept_volume):
            engine_api._quietly(lambda v=v: v.remove(force=True))


def test_local_images_under_a_namespace_are_untagged_and_no_others(run_id) -> None:
    repo = f"127.0.0.1:5000/{run_id}"
    proc.run(["docker", "tag", IMAGE, f"{repo}/app:1"], timeout=60)
    proc.run(["docker", "tag", IMAGE, f"{repo}-other/app:1"], timeout=60)
    try:
        assert f"{repo}/app:1" in runner.local_images()
        assert engine_api.remove_images_under(repo) == [f"{repo}/app:1"]
        tags = runner.local_images()
        assert f"{repo}/app:1" not in tags and f"{repo}-other/app:1" in tags
        assert IMAGE in tags  # the image itself stays: only the tag went
    finally:
        proc.run(["docker", "image", "rm", f"{repo}-other/app:1"], timeout=60, check=False)


def test_the_doctor_asks_the_engine_through_the_api(tmp_path, monkeypatch) -> None:
    """The doctor's engine probe on the real engine, then on an engine that is gone: the
    engine is MISSING with why, and the probes that need it (builder) do not run."""
    from grader.engine import doctor

    ready = doctor.diagnose()
    engine = next(c for c in ready.checks if c.name == "engine")
    assert engine.ok and engine_api.version()["Version"] in engine.detail
    path = tmp_path / "gone.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        report = doctor.diagnose()
    by_name = {c.name: c for c in report.checks}
    detail = by_name["engine"].detail  # the course's own dockerd is named when it is ours
    assert not by_name["engine"].ok and ("no engine answers" in detail or "stopped" in detail)
    assert "builder" not in by_name and not report.ready
