"""bubblewrap command lines: the learner's sandbox, and the client jail the gate runs each
allowed docker command in.

The sandbox: every namespace unshared (no network at all: the gate's unix socket is the
only way out), an unprivileged uid, no capabilities, a read-only /usr, a few /etc files,
the submission copy at /submission, a private HOME and /tmp, and the docker shim in place
of every docker binary. The instructor's home, files and credentials are simply not there.

The client jail: the real docker client as the run's unprivileged uid (a supplementary
group lets it reach the worker engine's socket, nothing else), seeing only /usr, the same
few /etc files, the submission copy at the same path, the submission's root-owned,
read-only DOCKER_CONFIG (only its ``buildx/`` state is the uid's), and the engine socket.
Whatever paths a validated command names, the client can read and write nothing else, so a
symlink the script swaps in after the gate checked a path still leads nowhere, and a file
only root may read (``/etc/ssl/private``) stays unread.
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
    seccomp_fd: int,
    engine_socket: str | None = None,
    docker_config: Path | None = None,
) -> list[str]:
    """The learner's sandbox around ``command`` (run as an unprivileged uid).

    ``seccomp_fd``: a descriptor holding the seccomp filter (:func:`seccomp.fd`), which
    the bwrap process must inherit; bwrap loads it just before it runs ``command``.

    With ``engine_socket`` (the gate switched off) the script gets the real docker client
    and the worker engine's socket at /run/docker.sock, and ``docker_config`` read-only:
    then only the kernel's wall (the rootless engine, the uid) stands between it and the
    machine."""
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
        "--seccomp", str(seccomp_fd),
    ]  # fmt: skip
    if engine_socket is None:
        for path in DOCKER_PATHS:
            if os.path.exists(path):
                args += ["--ro-bind", shim, path]
    else:
        args += ["--bind", engine_socket, "/run/docker.sock"]
        if docker_config is not None:
            args += [*_config_binds(docker_config)]
    args += ["--chdir", SANDBOX_ROOT, "--", *command]
    return args


def _config_binds(docker_config: Path) -> list[str]:
    """DOCKER_CONFIG read-only (root's: no plugins, no credential helpers, no login
    written), with its ``buildx/`` folder (builder state) the run uid's own."""
    args = ["--ro-bind", str(docker_config), CLIENT_CONFIG]
    if (docker_config / "buildx").is_dir():
        args += ["--bind", str(docker_config / "buildx"), f"{CLIENT_CONFIG}/buildx"]
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
    uid: int | None = None,
    groups: Sequence[int] = (),
    seccomp_fd: int | None = None,
) -> list[str]:
    """The real docker client with ``argv``, jailed to the submission copy; as ``uid``
    (with ``groups``: the engine socket's) when given, else as root without capabilities
    (no worker engine: the shared root engine's socket). ``seccomp_fd``: the filter
    (:func:`seccomp.fd`, passed on to the command) that bwrap loads before the client."""
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
    drop: list[str] = []
    if uid is not None:
        joined = ",".join(map(str, groups)) or str(uid)
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", f"--groups={joined}",
                "--inh-caps=-all", "--"]  # fmt: skip
    config = _config_binds(docker_config) if uid is not None else [
        "--bind", str(docker_config), CLIENT_CONFIG]  # fmt: skip
    return [
        *cap,
        *drop,
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
        *config,
        "--bind", str(copy), SANDBOX_ROOT,
        *(["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []),
        "--chdir", cwd,
        "--", docker, *argv,
    ]  # fmt: skip
