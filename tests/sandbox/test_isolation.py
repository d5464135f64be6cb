"""What a script sees inside the sandbox, asked from inside: no network, no host files, no
privileges, a clean environment, and `docker` that is only the gate's shim. And the gate
itself: output streamed back, refusals, malformed requests, many calls at once."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from grader import proc
from grader.engine.config import settings
from grader.grading.sandbox import jail, runner
from grader.grading.sandbox.gate import Client, Gate
from grader.grading.sandbox.limits import Limits
from grader.grading.sandbox.policy import Policy

PROBE = r"""#!/bin/bash
say() { printf '%s=%s\n' "$1" "$2"; }
say uid "$(id -u)"
say capeff "$(awk '/CapEff/ {print $2}' /proc/self/status)"
say nonewprivs "$(awk '/NoNewPrivs/ {print $2}' /proc/self/status)"
say interfaces "$(ls /sys/class/net 2>/dev/null | tr '\n' ' ' || echo none)"
(exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null && say tcp open || say tcp refused
(exec 3<>/dev/tcp/deb.debian.org/80) 2>/dev/null && say internet open || say internet refused
for p in /root /work /home/learner/.. /var/run/docker.sock /run/docker.sock /run/containerd \
         /etc/shadow /etc/docker /tmp/grader-sandbox; do
  [ -e "$p" ] && say "seen:$p" yes || say "seen:$p" no
done
ls /home | tr '\n' ' ' | xargs -I{} printf 'homes=%s\n' "{}"
say userns "$(unshare -U true 2>/dev/null && echo yes || echo no)"
say userns_root "$(unshare -r true 2>/dev/null && echo yes || echo no)"
say seccomp "$(awk '/^Seccomp:/ {print $2}' /proc/self/status)"
say keyctl "$(python3 -c 'import ctypes as c, os; l = c.CDLL(None, use_errno=True)
print("ok" if l.syscall(250, 0, -3, 0) != -1 else os.strerror(c.get_errno()))')"
say bash_works "$(bash -c 'echo $((6 * 7))')"
say docker_is_shim "$(grep -c 'the gate decides' /usr/bin/docker)"
plugin=/usr/libexec/docker/cli-plugins/docker-buildx
say plugin "$($plugin du >/dev/null 2>&1 && echo reaches || echo isolated)"
say env_secret "${INSTRUCTOR_TOKEN:-unset}"
say pid1 "$(tr '\0' ' ' < /proc/1/environ)"
say writable_usr "$(touch /usr/x 2>/dev/null && echo yes || echo no)"
say docker_config "$DOCKER_CONFIG"
say repository "$GRADER_REPOSITORY"
docker version --format '{{.Server.Os}}' | sed 's/^/server=/'
"""


@pytest.fixture
def sandbox_ready():
    from grader.grading.sandbox import sandbox_problem

    if sandbox_problem():
        pytest.fail(f"the sandbox cannot run here: {sandbox_problem()}")


def _probe(tmp_path: Path, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("INSTRUCTOR_TOKEN", "s3cr3t-token")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "build.sh").write_text(PROBE)
    (sub / "Dockerfile").write_text("FROM busybox:latest\n")
    ws = runner.Workspace(sub, runner.default_work_root() / f"t-iso-{uuid.uuid4().hex[:6]}")
    try:
        ws.create()
        out = runner.run_build_sh(
            sub,
            namespace="t-sandbox/iso",
            registry=settings().registry_host,
            limits=Limits(seconds=60),
            runs=1,
            workspace=ws,
        )
        text = (ws.logs / "run1.log").read_text()
    finally:
        ws.remove()
        ws.work_root.rmdir()
    assert out.runs and out.runs[0].returncode == 0, text
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.mark.engine
def test_the_sandbox_from_inside(tmp_path: Path, monkeypatch, sandbox_ready) -> None:
    seen = _probe(tmp_path, monkeypatch)
    assert int(seen["uid"]) >= runner.UID_RANGE[0]
    assert seen["capeff"] == "0000000000000000" and seen["nonewprivs"] == "1"
    assert seen["interfaces"].split() in ([], ["lo"])
    assert seen["tcp"] == "refused" and seen["internet"] == "refused"
    for p in ("/root", "/work", "/var/run/docker.sock", "/run/docker.sock", "/run/containerd",
              "/etc/shadow", "/etc/docker", "/tmp/grader-sandbox"):  # fmt: skip
        assert seen[f"seen:{p}"] == "no", p
    assert seen["homes"].split() == ["learner"]
    assert seen["userns"] == "no" and seen["userns_root"] == "no"
    # the seccomp filter (bwrap --seccomp): mode 2, the keyring refused, bash still runs
    assert seen["seccomp"] == "2"
    assert seen["keyctl"] == "Operation not permitted"
    assert seen["bash_works"] == "42"
    assert seen["docker_is_shim"] == "1"
    assert seen["plugin"] == "isolated"
    assert seen["env_secret"] == "unset"
    assert "s3cr3t" not in seen["pid1"]
    assert seen["writable_usr"] == "no"
    assert seen["docker_config"] == "/home/learner/.docker"
    assert seen["repository"] == f"{settings().registry_host}/t-sandbox/iso"
    assert seen["server"] == "linux"  # the gate still reaches the engine


@pytest.mark.engine
def test_gate_protocol(tmp_path: Path, sandbox_ready) -> None:
    """The shim's protocol spoken directly: streamed output, exit codes, refusals, garbage."""
    ws = runner.Workspace(tmp_path, runner.default_work_root() / f"t-gate-{uuid.uuid4().hex[:6]}")
    ws.create()
    try:
        policy = Policy(namespace="t-sandbox/gate", registry=settings().registry_host,
                        label=ws.label, host_root=ws.copy)  # fmt: skip
        gate = Gate(policy, Client(ws.copy, ws.docker_config), ws.gate_dir / "gate.sock",
                    uid=os.getuid(), limits=Limits(parallel_commands=2))  # fmt: skip
        with gate:

            def call(payload: bytes) -> tuple[bytes, bytes, int | None]:
                import base64

                s = socket.socket(socket.AF_UNIX)
                s.connect(str(ws.gate_dir / "gate.sock"))
                s.sendall(payload)
                out = err = b""
                code = None
                for line in s.makefile("rb"):
                    msg = json.loads(line)
                    out += base64.b64decode(msg.get("out", ""))
                    err += base64.b64decode(msg.get("err", ""))
                    code = msg.get("exit", code)
                s.close()
                return out, err, code

            def req(argv: list[str]) -> bytes:
                return json.dumps({"argv": argv, "cwd": "/submission", "env": {}}).encode() + b"\n"

            out, err, code = call(req(["version", "--format", "{{.Client.Os}}"]))
            assert (out.strip(), code) == (b"linux", 0)
            out, err, code = call(req(["run", "--privileged", "busybox:latest"]))
            assert code == 1 and b"RN411" not in err and b"--privileged" in err
            assert gate.findings and gate.findings[-1].rule == "RN411"
            for garbage in (b"not json\n", b"[1,2]\n", b'{"argv": "ls"}\n', b"\n"):
                _, err, code = call(garbage)
                assert code == 1 and b"malformed" in err
            # Four calls at once through two slots all complete.
            import concurrent.futures as cf

            with cf.ThreadPoolExecutor(4) as pool:
                codes = list(pool.map(lambda _: call(req(["buildx", "version"]))[2], range(4)))
            assert codes == [0, 0, 0, 0]
            assert sum(e.allowed for e in gate.events) == 5
            # A client that connects and never speaks does not hold the gate open.
            silent = socket.socket(socket.AF_UNIX)
            silent.connect(str(ws.gate_dir / "gate.sock"))
            time.sleep(0.3)
            start = time.monotonic()
        assert time.monotonic() - start < 5
        silent.close()
    finally:
        ws.remove()
        ws.work_root.rmdir()


@pytest.mark.engine
def test_client_jail_sees_only_the_submission(tmp_path: Path, sandbox_ready) -> None:
    """A build whose Dockerfile the script swapped for a link to a host secret after the
    gate's check: the jailed client cannot follow it anywhere."""
    ws = runner.Workspace(tmp_path, runner.default_work_root() / f"t-jail-{uuid.uuid4().hex[:6]}")
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\n")
    ws.create()
    try:
        (ws.copy / "Dockerfile").unlink()
        os.symlink("/etc/shadow", ws.copy / "Dockerfile")
        res = Client(ws.copy, ws.docker_config).run(
            ["buildx", "build", "--builder=default", "--output=type=cacheonly", "."],
            timeout=60,
            max_output=1 << 20,
        )
        assert res.returncode != 0
        shadow = Path("/etc/shadow").read_text()
        hashes = [ln.split(":")[1] for ln in shadow.splitlines() if len(ln.split(":")) > 2]
        assert not any(h and len(h) > 3 and h in res.output for h in hashes)
        argv = jail.client_argv(
            copy=ws.copy, docker_config=ws.docker_config, env={}, cwd="/", argv=["--version"]
        )
        ls = proc.run(argv, timeout=30)
        assert ls.stdout.startswith("Docker version")
    finally:
        ws.remove()
        ws.work_root.rmdir()


@pytest.mark.parametrize("filtered", [True, False], ids=["seccomp", "control"])
def test_client_jail_refuses_new_namespaces(tmp_path: Path, monkeypatch, filtered) -> None:
    """The docker client's jail loads the jails' seccomp filter: `unshare -U` (a new user
    namespace, the first step of most container escapes) is refused in it, while the same
    jail without the filter (the control) allows it."""
    from grader.grading.sandbox import seccomp

    real = proc.which
    monkeypatch.setattr(proc, "which", lambda n: "/usr/bin/unshare" if n == "docker" else real(n))
    (tmp_path / "config").mkdir()
    fd = seccomp.fd() if filtered else None
    try:
        argv = jail.client_argv(copy=tmp_path, docker_config=tmp_path / "config", env={},
                                cwd="/", argv=["-U", "true"], seccomp_fd=fd)  # fmt: skip
        done = proc.run(argv, timeout=30, check=False, pass_fds=(fd,) if filtered else ())
    finally:
        if fd is not None:
            os.close(fd)
    if filtered:
        assert done.returncode != 0 and "Operation not permitted" in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr
