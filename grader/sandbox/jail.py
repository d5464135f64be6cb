"""bubblewrap command lines: the learner's sandbox, and the client jail the gate runs each
allowed docker command in.

The sandbox: every namespace unshared (no network at all: the gate's unix socket is the
only way out), an unprivileged uid, no capabilities, a read-only /usr, a few /etc files,
the submission copy at /submission, a private HOME and /tmp, and the docker shim in place
of every docker binary. The instructor's home, files and credentials are simply not there.

The client jail: the real docker client as root (it needs the engine socket) with no
capabilities, seeing only /usr, the same few /etc files, the submission copy at the same
path, the submission's own DOCKER_CONFIG, and the engine socket. Whatever paths a
validated command names, the client can read and write nothing else, so a symlink the
script swaps in after the gate checked a path still leads nowhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from grader import proc

#: /etc entries programs need (dynamic linker, name service, alternatives, certificates).
ETC = (
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "debian_version",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "profile",
    "ssl",
)
#: Where a docker client may be installed; each one is replaced by the shim in the sandbox.
DOCKER_PATHS = ("/usr/bin/docker", "/usr/local/bin/docker")
SANDBOX_ROOT = "/submission"
SANDBOX_HOME = "/home/learner"
GATE_DIR = "/run/grader"
CLIENT_CONFIG = "/run/docker-config"


def bwrap() -> str | None:
    return proc.which("bwrap")


def system_python() -> str | None:
    """A Python under /usr, which the sandbox can see (the grader's venv may live in a home)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate) and os.path.realpath(candidate).startswith("/usr/"):
            return candidate
    return None


def _system_fs() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), f"/{top}"]
        elif path.is_dir():
            args += ["--ro-bind", str(path), f"/{top}"]
    for name in ETC:
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", str(path), f"/etc/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev"]
    return args


def _env(env: Mapping[str, str]) -> list[str]:
    args = ["--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args


def sandbox_argv(
    *,
    copy: Path,
    home: Path,
    gate_dir: Path,
    passwd: Path,
    group: Path,
    env: Mapping[str, str],
    tmp_size: int,
    command: Sequence[str],
) -> list[str]:
    """The learner's sandbox around ``command`` (run as an unprivileged uid)."""
    exe = bwrap()
    if exe is None:
        raise FileNotFoundError("bwrap")
    shim = str(gate_dir / "bin" / "docker")
    args = [
        exe,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        *_env(env),
        *_system_fs(),
        "--ro-bind", str(passwd), "/etc/passwd",
        "--ro-bind", str(group), "/etc/group",
        "--size", str(tmp_size), "--tmpfs", "/tmp",
        "--dir", "/var",
        "--size", str(tmp_size), "--tmpfs", "/var/tmp",
        "--bind", str(home), SANDBOX_HOME,
        "--bind", str(copy), SANDBOX_ROOT,
        "--ro-bind", str(gate_dir), GATE_DIR,
    ]  # fmt: skip
    for path in DOCKER_PATHS:
        if os.path.exists(path):
            args += ["--ro-bind", shim, path]
    args += ["--chdir", SANDBOX_ROOT, "--", *command]
    return args


def client_argv(
    *,
    copy: Path,
    docker_config: Path,
    env: Mapping[str, str],
    cwd: str,
    argv: Sequence[str],
    engine_socket: str = "/run/docker.sock",
    max_file: int = 512 * 1024 * 1024,
) -> list[str]:
    """The real docker client with ``argv``, jailed to the submission copy."""
    exe = bwrap()
    docker = proc.which("docker")
    if exe is None or docker is None:
        raise FileNotFoundError("bwrap" if exe is None else "docker")
    docker = os.path.realpath(docker)
    base = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": CLIENT_CONFIG,
        "DOCKER_CONFIG": CLIENT_CONFIG,
        "LANG": "C.UTF-8",
    }
    # prlimit: files the client writes (build outputs in the copy) are capped in size;
    # `env -i`: bwrap's own process keeps no trace of the grader's environment either.
    prlimit = proc.which("prlimit")
    cap = [prlimit, f"--fsize={max_file}", "--"] if prlimit else []
    return [
        *cap,
        "/usr/bin/env",
        "-i",
        "PATH=/usr/bin:/bin",
        exe,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        *_env({**base, **env}),
        *_system_fs(),
        "--tmpfs", "/tmp",
        "--tmpfs", "/run",
        "--bind", os.path.realpath(engine_socket), "/run/docker.sock",
        "--symlink", "../run", "/var/run",
        "--bind", str(docker_config), CLIENT_CONFIG,
        "--bind", str(copy), SANDBOX_ROOT,
        "--chdir", cwd,
        "--", docker, *argv,
    ]  # fmt: skip
