"""Worker engines (grader/engine/rootless.py) on the real kernel: one rootless dockerd,
started once for the module, then attacked the way a submission with the engine's socket
would (gate off): host files, host loopback and LAN services, memory, leftovers.

Slot 60 is used so a batch's workers (0, 1, ...) running beside the tests are untouched."""

from __future__ import annotations

import http.server
import json
import os
import pwd
import re
import socket
import threading
import uuid
from pathlib import Path

import pytest

from grader import proc
from grader.engine import rootless
from grader.engine.config import settings

pytestmark = [pytest.mark.engine, pytest.mark.registry]

SLOT = 60


def docker(engine, *argv: str, timeout: float = 120, check: bool = False) -> proc.Completed:
    env = {**os.environ, "DOCKER_HOST": engine.host}
    return proc.run(["docker", *argv], timeout=timeout, check=check, env=env)


@pytest.fixture(scope="module")
def engine():
    why = rootless.rootless_problem()
    if why:
        pytest.fail(f"worker engines cannot run here: {why}")
    limits = rootless.EngineLimits(memory=768 * rootless.MiB, disk=2 * rootless.GiB)
    eng = rootless.WorkerEngine(SLOT, settings().registry_host, limits)
    eng.start()
    docker(eng, "pull", "-q", "busybox:latest", check=True, timeout=300)
    yield eng
    eng.remove()


def test_uids_clear_of_useradd_ranges(engine) -> None:
    defs = rootless.login_defs()
    top = defs["SUB_UID_MAX"] + defs["SUB_UID_COUNT"]
    assert engine.uid > top and rootless.subordinate_start(SLOT) > top
    assert rootless.RUN_UIDS[0] > rootless.subordinate_start(rootless.SLOTS - 1) + rootless.RANGE
    name = pwd.getpwuid(engine.uid).pw_name
    line = f"{name}:{rootless.subordinate_start(SLOT)}:{rootless.RANGE}"
    assert line in Path("/etc/subuid").read_text().splitlines()
    # The daemon runs as the engine uid, not root.
    pids = rootless._cgroup_pids(SLOT)
    owners = {Path(f"/proc/{p}").stat().st_uid for p in pids if Path(f"/proc/{p}").exists()}
    assert owners == {engine.uid}


def test_engine_is_rootless_with_its_own_capped_store(engine) -> None:
    info = json.loads(docker(engine, "info", "--format", "{{json .}}", check=True).stdout)
    assert "name=rootless" in info["SecurityOptions"]
    assert info["DockerRootDir"].startswith(str(engine.data))
    assert info["Driver"] == "overlayfs"  # the containerd image store
    st = os.statvfs(engine.data)
    assert st.f_blocks * st.f_frsize <= engine.limits.disk
    config = engine.etc / "daemon.json"
    assert config.stat().st_uid == 0 and not config.stat().st_mode & 0o022
    assert json.loads(config.read_text())["log-opts"]["max-size"] == engine.limits.log_size
    # Filling the data-root stops at its size, not at the host's disk.
    done = docker(engine, "run", "--rm", "busybox", "sh", "-c",
                  "fallocate -l 3000000000 /big; echo rc=$?", timeout=120)  # fmt: skip
    assert "No space left" in done.stdout + done.stderr


def test_host_files_out_of_reach(engine, tmp_path: Path) -> None:
    """--privileged with / mounted: root in the container is the engine uid, and the
    host's private folders are empty in the engine's mount namespace."""
    canary = Path(f"/tmp/grader-wall-{uuid.uuid4().hex[:8]}")
    canary.write_text("CANARY")
    canary.chmod(0o644)
    try:
        script = (
            f"cat /host{canary}; cat /host/etc/shadow; touch /host/root/pwned; "
            "echo x >> /host/root/.bashrc; ls /host/root /host/work /host/home; "
            "cat /host/etc/ssl/private/*; echo END"
        )
        done = docker(engine, "run", "--rm", "--privileged", "-v", "/:/host", "busybox",
                      "sh", "-c", script)  # fmt: skip
        out = done.stdout + done.stderr
        assert "END" in out
        assert "CANARY" not in out
        assert ":$" not in out and "root:" not in out.replace("/host/root", "")
        assert not Path("/root/pwned").exists()
    finally:
        canary.unlink()


def _serve(host: str) -> tuple[http.server.HTTPServer, int]:
    srv = http.server.HTTPServer((host, 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


def _host_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((rootless.nameservers()[0] if rootless.nameservers() else "192.0.2.1", 53))
        return s.getsockname()[0]


def test_network_reaches_only_the_registry(engine) -> None:
    loop, loop_port = _serve("127.0.0.1")
    lan, lan_port = _serve("0.0.0.0")
    try:
        probes = {
            "registry": (rootless.REGISTRY_VIP, engine.registry.rpartition(":")[2]),
            "loopback-slirp": ("10.0.2.2", loop_port),
            "loopback-vip": (rootless.REGISTRY_VIP, loop_port),
            "lan": (_host_address(), lan_port),
        }
        script = "; ".join(
            f'if printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 3 {h} {p} | grep -q HTTP; '
            f"then echo {name}=open; else echo {name}=closed; fi"
            for name, (h, p) in probes.items()
        )
        out = docker(engine, "run", "--rm", "busybox", "sh", "-c", script).stdout
        assert "registry=open" in out, out
        for name in ("loopback-slirp", "loopback-vip", "lan"):
            assert f"{name}=closed" in out, out
        # A build's RUN steps are walled in the same way.
        ctx = Path(f"/tmp/wall-ctx-{uuid.uuid4().hex[:6]}")
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            f"FROM busybox\nRUN nc -w 3 {_host_address()} {lan_port} </dev/null && echo LEAK || "
            "echo refused\n"
        )
        try:
            build = docker(engine, "buildx", "build", "--progress=plain", "--no-cache", str(ctx))
        finally:
            for p in ctx.iterdir():
                p.unlink()
            ctx.rmdir()
        assert re.search(r"^#\d+ [\d.]+ refused$", build.stderr, re.M), build.stderr
        assert not re.search(r"^#\d+ [\d.]+ LEAK$", build.stderr, re.M), build.stderr
    finally:
        loop.shutdown()
        lan.shutdown()


def test_the_registry_has_its_host_name_inside_the_engine(engine) -> None:
    """127.0.0.1:PORT inside the engine's namespace is the registry (the forwarder), as on
    the host; other loopback ports there are nothing of the host's."""
    port = engine.registry.rpartition(":")[2]
    loop, loop_port = _serve("127.0.0.1")
    try:
        script = (
            f'printf "GET /v2/ HTTP/1.0\\r\\n\\r\\n" | nc -w 3 127.0.0.1 {port} | head -1; '
            f"nc -w 3 127.0.0.1 {loop_port} </dev/null && echo LEAK || echo refused"
        )
        out = docker(engine, "run", "--rm", "--network", "host", "busybox", "sh", "-c", script)
    finally:
        loop.shutdown()
    assert engine.registry == f"127.0.0.1:{port}"
    assert re.search(r"^HTTP/1\.\d 200", out.stdout, re.M), out.stdout + out.stderr
    assert "refused" in out.stdout and "LEAK" not in out.stdout, out.stdout


def test_memory_limit_kills_the_hog_not_the_daemon(engine) -> None:
    engine.mark()
    hog = "x=$(head -c 1500000000 /dev/zero | tr '\\0' a); echo survived"
    done = docker(engine, "run", "--rm", "busybox", "sh", "-c", hog, timeout=300)
    assert "survived" not in done.stdout
    assert engine.usage().oom_kills >= 1
    assert engine.answers(), "the OOM killer took the engine instead of the hog"


def test_reset_leaves_nothing_for_the_next_submission(engine) -> None:
    """A leaves an image, a volume, a running restart=always container, build cache and a
    file in the data-root; after reset B finds none of it and A's processes are gone."""
    docker(engine, "tag", "busybox:latest", "busybox:evil", check=True)
    docker(engine, "volume", "create", "left", check=True)
    docker(engine, "run", "-d", "--restart=always", "--name", "stay", "busybox", "sleep", "999",
           check=True)  # fmt: skip
    before = rootless._cgroup_pids(SLOT)
    engine.reset()
    after = rootless._cgroup_pids(SLOT)
    assert not before & after
    assert docker(engine, "image", "ls", "-q", check=True).stdout.strip() == ""
    assert "left" not in docker(engine, "volume", "ls", "-q", check=True).stdout
    assert docker(engine, "ps", "-aq", check=True).stdout.strip() == ""
