"""The engine's background services: binfmt emulators, dockerd and the course registry.

dockerd and the registry run in the background with their logs and pid files under the
state directory (there is no service manager on these machines); ``stop`` ends only what
the course itself started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

from grader import proc
from grader.docker import engine_api
from grader.docker.registry import registry_answers
from grader.engine.config import Settings
from grader.engine.steps import StepFailed, say, step

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
DAEMON_JSON = Path("/etc/docker/daemon.json")

# --- processes ---------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def owned_pid(cfg: Settings, name: str) -> int | None:
    """The pid of a service the course started, if it is still running."""
    pidfile = cfg.pidfile(name)
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def start_service(cfg: Settings, name: str, argv: list[str]) -> int:
    """Start a daemon the course owns (dockerd, the registry, JupyterLab): its output goes to
    ``cfg.logfile(name)``, its pid to ``cfg.pidfile(name)`` for :func:`stop_service`."""
    cfg.run.mkdir(parents=True, exist_ok=True)
    pid = proc.spawn_detached(argv, log_file=cfg.logfile(name)).pid
    cfg.pidfile(name).write_text(str(pid))
    return pid


def stop_service(cfg: Settings, name: str, timeout: float = 20) -> bool:
    """Stop a service the course started; True when one was running."""
    pid = owned_pid(cfg, name)
    if pid is None:
        cfg.pidfile(name).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    cfg.pidfile(name).unlink(missing_ok=True)
    return True


# --- binfmt_misc ---------------------------------------------------------------------------


def binfmt_entries() -> dict[str, dict[str, str]]:
    """Registered binfmt_misc handlers: name -> {enabled, interpreter, flags}."""
    entries: dict[str, dict[str, str]] = {}
    if not BINFMT_DIR.is_dir():
        return entries
    for path in sorted(BINFMT_DIR.iterdir()):
        if path.name in ("register", "status"):
            continue
        try:
            text = path.read_text()
        except OSError:
            continue
        info = {"enabled": "enabled" if text.startswith("enabled") else "disabled"}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key in ("interpreter", "flags:"):
                info[key.rstrip(":")] = value.strip()
        entries[path.name] = info
    return entries


def binfmt_mounted() -> bool:
    return (BINFMT_DIR / "status").exists()


def ensure_binfmt() -> None:
    """Mount binfmt_misc and register Debian's qemu-user-static handlers (flags PF)."""
    if not binfmt_mounted():
        proc.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], timeout=30)
    if not set(foreign_emulators()) <= set(binfmt_entries()):
        if proc.which("update-binfmts") is None:
            raise StepFailed("update-binfmts is missing: apt-get install binfmt-support")
        proc.run(["update-binfmts", "--enable"], timeout=120, check=False)
    for foreign in foreign_emulators():
        _require_fix_binary(foreign, binfmt_entries().get(foreign))


def foreign_emulators() -> tuple[str, ...]:
    """The emulators the course's platforms need here: arm64 (or amd64 on an arm64 host), and
    qemu-arm for linux/arm/v7 on amd64 (arm64 hosts usually run 32-bit ARM natively)."""
    if os.uname().machine == "aarch64":
        return ("qemu-x86_64",)
    return ("qemu-aarch64", "qemu-arm")


def _require_fix_binary(foreign: str, entry: dict[str, str] | None) -> None:
    if entry is None:
        raise StepFailed(
            f"{foreign} is not registered in binfmt_misc after update-binfmts --enable; "
            "reinstall qemu-user-static and binfmt-support"
        )
    if "F" not in entry.get("flags", ""):
        raise StepFailed(
            f"{foreign} is registered without the F flag (flags: {entry.get('flags')}); "
            "containers cannot use it. Use Debian's qemu-user-static >= 1:7 (static, PF)."
        )


# --- registry ------------------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def choose_registry_port(cfg: Settings) -> int:
    """5000 unless something that is not a registry holds it; then the next free port."""
    port = cfg.registry_port
    if owned_pid(cfg, "registry") or not port_in_use(port) or registry_answers(f"127.0.0.1:{port}"):
        return port
    say(f"   port {port} is taken by something that is not a registry; looking for another")
    for candidate in range(5001, 5030):
        if not port_in_use(candidate) or registry_answers(f"127.0.0.1:{candidate}"):
            return candidate
    raise StepFailed("ports 5000-5029 are all taken; set COURSE_REGISTRY_PORT to a free port")


def registry_config(cfg: Settings) -> Path:
    data = cfg.state / "registry" / "data"
    data.mkdir(parents=True, exist_ok=True)
    path = cfg.state / "registry" / "config.yml"
    path.write_text(
        "# Written by multiplatform-course: an anonymous registry on loopback only.\n"
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {cfg.registry_host}\n"
        "  headers:\n    X-Content-Type-Options: [nosniff]\n"
    )
    return path


def ensure_registry(cfg: Settings) -> str:
    """A registry answering on cfg.registry_host; returns how it is provided."""
    if registry_answers(cfg.registry_host):
        return "ours" if owned_pid(cfg, "registry") else "existing"
    binary = proc.which("docker-registry")
    if binary:
        start_service(cfg, "registry", [binary, "serve", str(registry_config(cfg))])
        how = "ours"
    elif docker_answers():
        # A learner's machine with an engine but no Debian registry: the official image.
        proc.run(["docker", "rm", "-f", "course-registry"], timeout=60, check=False)
        proc.run(
            [
                "docker",
                "run",
                "-d",
                "--restart=unless-stopped",
                "--name",
                "course-registry",
                "-p",
                f"{cfg.registry_host}:5000",
                "registry:2",
            ],
            timeout=300,
        )
        how = "container course-registry"
    else:
        raise StepFailed("no registry available: apt-get install docker-registry")
    _wait(
        lambda: registry_answers(cfg.registry_host),
        30,
        f"registry on {cfg.registry_host}",
        cfg.logfile("registry"),
    )
    return how


# --- dockerd -------------------------------------------------------------------------------


def docker_answers(timeout: float = 10) -> bool:
    """True when a daemon answers; a hung or half-started one (seen while dockerd restarts
    after a kill) counts as not answering, never as an error."""
    return engine_api.answers(timeout=timeout)


def write_daemon_json(cfg: Settings) -> bool:
    """Merge what the course needs into /etc/docker/daemon.json; True when it changed."""
    try:
        current = json.loads(DAEMON_JSON.read_text()) if DAEMON_JSON.exists() else {}
    except ValueError as e:
        raise StepFailed(f"{DAEMON_JSON} is not valid JSON ({e}); fix or remove it") from None
    wanted = json.loads(json.dumps(current))
    wanted.setdefault("features", {})["containerd-snapshotter"] = True
    mirror = cfg.registry_url
    mirrors = [m for m in wanted.get("registry-mirrors", []) if "127.0.0.1:" not in m]
    wanted["registry-mirrors"] = [mirror, *mirrors]
    if wanted == current:
        return False
    DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
    tmp = DAEMON_JSON.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(wanted, indent=2) + "\n")
    tmp.replace(DAEMON_JSON)
    return True


def ensure_dockerd(cfg: Settings) -> str:
    """A Docker engine that answers; starts (or restarts) the course's own dockerd.

    An engine the course did not start is used as it is: its daemon.json is not touched.
    """
    ours = owned_pid(cfg, "dockerd")
    if docker_answers() and not ours:
        return "existing"
    changed = write_daemon_json(cfg) if os.geteuid() == 0 else False
    if ours and changed:
        say("   daemon.json changed: restarting the course's dockerd")
        stop_service(cfg, "dockerd")
        ours = None
    if docker_answers():
        return "ours"
    binary = proc.which("dockerd")
    if binary is None:
        raise StepFailed("dockerd is not installed: run `grader engine up` as root to install it")
    if os.geteuid() != 0:
        raise StepFailed("dockerd is installed but not running, and starting it needs root")
    # A dockerd that died leaves its pid file behind, and a stale one blocks the next start.
    stale = Path("/var/run/docker.pid")
    try:
        if not _pid_alive(int(stale.read_text())):
            stale.unlink()
    except (OSError, ValueError):
        pass
    start_service(cfg, "dockerd", [binary])
    _wait(docker_answers, 90, "dockerd", cfg.logfile("dockerd"))
    return "ours"


def _wait(ready, timeout: float, what: str, logfile: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    tail = ""
    with contextlib.suppress(OSError):
        tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-15:])
    raise StepFailed(f"{what} did not come up within {timeout:g} s; log {logfile}:\n{tail}")


def start_all(cfg: Settings) -> dict[str, str]:
    with step("binfmt_misc emulators"):
        if os.uname().sysname == "Linux" and os.geteuid() == 0:
            ensure_binfmt()
    with step(f"registry on {cfg.registry_host}"):
        registry = ensure_registry(cfg)
    with step("dockerd"):
        engine = ensure_dockerd(cfg)
    return {"registry": registry, "engine": engine}
