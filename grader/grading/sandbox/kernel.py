"""The jailed notebook kernel: what ``grader autograde`` runs instead of a plain ipykernel.

``grader autograde`` installs a kernelspec (:func:`install_kernelspec`) whose argv is this
module: ``python -m grader.grading.sandbox.kernel --config RUN/jail.json -f {connection_file}``.
nbclient starts it (as root, in the notebook's folder autograded/<student>/<assignment>);
it never runs learner code itself. It

- copies the notebook's folder into a scratch copy owned by a fresh per-run uid (links that
  leave the folder are dropped), so the graded folder nbgrader (root) writes into is never
  the learner's: a link planted there cannot make root write elsewhere;
- then becomes, by ``exec`` (the same pid nbclient holds, so its kill reaches it), ``prlimit``
  (memory, processes, file size, open files) -> ``setpriv`` (the run uid, the worker
  engine's socket group as its only supplementary group, no capabilities, no new
  privileges) -> ``bwrap`` (``--die-with-parent``, a seccomp filter: :mod:`.seccomp`)
  around the real ipykernel.

Inside the jail: /usr, a few /etc files, a passwd/group of its own, the interpreter (the venv
and its base Python, read-only at their own paths), the ``grader`` package read-only, the
connection file (a read-only copy), the scratch copy at the notebook folder's path, a private
/tmp and HOME, and the worker engine's socket at :data:`ENGINE_SOCKET` (DOCKER_HOST) with a
root-owned read-only DOCKER_CONFIG, and for the challenge the report ``grader autograde``
graded outside the jail (a read-only copy at :data:`handoff.KERNEL_PATH`). The root
filesystem is read-only. The course root, the
gradebook, source/, release/, other students' folders and /root are not there. The host's
network is shared (the kernel's ZMQ sockets listen on loopback for nbclient).

bwrap itself runs as root (it must walk to the base Python under /root and the course's
folders); the uid switch is the jail's last step (setpriv, inside), so nothing of root's
reaches the kernel: no capabilities (bounding set emptied), no_new_privs, its own uid.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grader import proc
from grader.engine import rootless
from grader.engine.rootless import KERNEL_UIDS
from grader.grading import handoff
from grader.grading.sandbox import jail, registry_scope, seccomp

MiB = 1024 * 1024
KERNEL_NAME = "grader-jail"
ENGINE_SOCKET = "/run/grader-engine/docker.sock"
HOME = "/home/learner"
CONNECTION = "/run/kernel/connection.json"


@dataclass
class KernelLimits:
    memory: int = 2048 * MiB  # address space (RLIMIT_AS) of every process in the jail
    processes: int = 256  # tasks (processes and threads) of the run uid (RLIMIT_NPROC)
    file_size: int = 512 * MiB  # largest file it may write (RLIMIT_FSIZE)
    open_files: int = 1024
    tmp_size: int = 512 * MiB  # /tmp and HOME (tmpfs) each


@dataclass
class JailConfig:
    """What the launcher needs (written by ``grader autograde`` into a root-only folder)."""

    run_dir: str  # root-only: scratch copies live here
    allowed: str  # the course's autograded/ folder: the only place a kernel may start in
    engine_socket: str | None = None
    engine_group: int | None = None
    registry: str | None = None
    #: root-only file: the docker config.json with the student's registry credential, which
    #: ``grader autograde`` rewrites before each student (the kernel's clients send it)
    registry_auth: str | None = None
    #: root-only file: the challenge's report ``grader autograde`` graded outside the jail for
    #: the student being graded (absent: none); the kernel reads it at handoff.KERNEL_PATH
    report: str | None = None
    limits: KernelLimits = field(default_factory=KernelLimits)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.chmod(path, 0o600)

    @classmethod
    def read(cls, path: Path) -> JailConfig:
        data = json.loads(Path(path).read_text())
        data["limits"] = KernelLimits(**data.get("limits", {}))
        return cls(**data)


def install_kernelspec(share: Path, config: Path) -> Path:
    """``share/kernels/grader-jail/kernel.json``: put ``share`` first on JUPYTER_PATH and
    select the kernel with ``--Execute.kernel_name=grader-jail``.

    ``interrupt_mode: message``: nbclient interrupts a cell past its timeout with an
    ``interrupt_request`` the kernel handles itself; a SIGINT to the launcher's process group
    would reach bwrap (which would die, taking the kernel along), not the kernel, which runs
    in a session of its own."""
    spec = share / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    argv = [*launcher_argv(), "--config", str(config), "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": argv,
                "display_name": "Python 3 (grading wall)",
                "language": "python",
                "interrupt_mode": "message",
                "metadata": {"debugger": False},
            },
            indent=2,
        )
        + "\n"
    )
    return spec


def jail_problem() -> str | None:
    """Why jailed kernels cannot run here (what to install or run), or None."""
    if os.uname().sysname != "Linux":
        return "jailed kernels need Linux"
    if os.geteuid() != 0:
        return "run it as root (sudo grader autograde ...): each kernel gets a uid of its own"
    for tool, package in (("bwrap", "bubblewrap"), ("setpriv", "util-linux"),
                          ("prlimit", "util-linux"), ("iptables", "iptables")):  # fmt: skip
        if proc.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    return seccomp.problem()


KERNEL_CHAIN = "GRADER-KERNELS"


@rootless.iptables_locked()
def firewall(registry: str, proxy: str) -> None:
    """The kernels share the host's network (their ZMQ sockets listen on loopback), so the
    kernel uids (:data:`KERNEL_UIDS`) are walled off by ``iptables -m owner``: they may
    answer connections made to them (nbclient's) and reach the registry scope proxy; a
    connection to the course registry's address is sent to the proxy (a DNAT), so the labs'
    image names stay as they are and the proxy decides; the registry's own port, every other
    host, loopback or LAN service (JupyterLab, the hub, a database) is refused, IPv6 too.
    Rules are only added, never flushed, except a port other than the proxy's (an earlier
    proxy's, or an earlier version's rule for the registry's own port); the whole sequence
    runs under the host-wide :func:`rootless.iptables_locked`, so concurrent graders neither
    add a rule twice nor delete one another adds."""
    phost, _, pport = proxy.rpartition(":")
    owners = ["-m", "owner", "--uid-owner", f"{KERNEL_UIDS[0]}-{KERNEL_UIDS[1] - 1}"]
    allow = [
        ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-d", f"{phost}/32", "-p", "tcp", "-m", "tcp", "--dport", pport, "-j", "ACCEPT"],
    ]
    ipt = rootless._iptables
    registry_scope.route_to_proxy(KERNEL_UIDS, registry, proxy)
    if not ipt("-n", "-L", KERNEL_CHAIN, check=False):
        ipt("-N", KERNEL_CHAIN)
    for rule in allow:
        if not ipt("-C", KERNEL_CHAIN, *rule, check=False):
            ipt("-A", KERNEL_CHAIN, *rule)
    _drop_other_ports(f"{phost}/32", pport)
    # OUTPUT: the jump first, then the REJECT (each inserted at the top, REJECT before)
    if not ipt("-C", "OUTPUT", *owners, "-j", "REJECT", check=False):
        ipt("-I", "OUTPUT", "1", *owners, "-j", "REJECT")
    if not ipt("-C", "OUTPUT", *owners, "-j", KERNEL_CHAIN, check=False):
        ipt("-I", "OUTPUT", "1", *owners, "-j", KERNEL_CHAIN)
    if proc.which("ip6tables"):
        rule6 = ["OUTPUT", *owners, "-j", "REJECT"]
        if not proc.run(["ip6tables", "-w", "5", "-C", *rule6], timeout=30, check=False).ok:
            proc.run(["ip6tables", "-w", "5", "-I", *rule6], timeout=30, check=False)


def _drop_other_ports(host: str, port: str) -> None:
    """Every ACCEPT of a port in the chain but the proxy's one address."""
    listed = proc.run(["iptables", "-w", "5", "-S", KERNEL_CHAIN], timeout=30, check=False)
    for line in listed.stdout.splitlines():
        rule = line.split()[2:]
        if not line.startswith(f"-A {KERNEL_CHAIN} ") or "--dport" not in rule:
            continue
        if rule[rule.index("--dport") + 1] != port or (
            "-d" in rule and rule[rule.index("-d") + 1] != host
        ):
            rootless._iptables("-D", KERNEL_CHAIN, *rule, check=False)


# --- the launcher ----------------------------------------------------------------------


def _data_fd(data: bytes) -> int:
    """A descriptor bwrap reads a file's content from (--ro-bind-data)."""
    fd = os.memfd_create("grader-kernel")  # close-on-exec unless made inheritable
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    return fd


def _python_roots() -> list[str]:
    """The interpreter: the venv and the Python it was made from (same paths inside)."""
    roots: list[str] = []
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        real = os.path.realpath(p)
        if real.startswith("/usr/") or real == "/usr":
            continue
        if not any(real == r or real.startswith(r + "/") for r in roots):
            roots.append(real)
    return roots


def launcher_argv() -> list[str]:
    """How nbclient starts the launcher: as root, in the notebook's folder, which holds the
    learner's files. ``-I`` keeps that folder (and every PYTHON* variable) off ``sys.path``,
    so a submitted ``json.py`` or ``grader/`` is never imported as root (``-m`` would put the
    folder first); the grader package this process runs (a checkout or a worktree) is put
    first explicitly."""
    code = (
        f"import sys; sys.path.insert(0, {_grader_root()!r}); "
        "from grader.grading.sandbox.kernel import main; main(sys.argv[1:])"
    )
    return [sys.executable, "-I", "-c", code]


def _grader_root() -> str:
    """The folder holding the ``grader`` package (the labs import grader.labkit)."""
    import grader

    return os.path.dirname(os.path.dirname(os.path.realpath(grader.__file__)))


def _scratch(cwd: Path, cfg: JailConfig, uid: int) -> Path:
    from grader.grading.sandbox.runner import copy_submission

    kdir = Path(cfg.run_dir) / "kernels" / secrets.token_hex(6)
    kdir.mkdir(parents=True, mode=0o700)
    copy = kdir / "copy"
    copy_submission(cwd, copy)
    for path in [copy, *copy.rglob("*")]:
        with contextlib.suppress(OSError):
            os.lchown(path, uid, uid)
    config = kdir / "docker-config"
    config.mkdir(mode=0o755)
    auth = Path(cfg.registry_auth).read_text() if cfg.registry_auth else "{}\n"
    (config / "config.json").write_text(auth)
    os.chmod(config / "config.json", 0o644)
    (config / "buildx").mkdir(mode=0o700)
    os.chown(config / "buildx", uid, uid)
    return kdir


def kernel_argv(cwd: Path, connection: bytes, cfg: JailConfig, uid: int, kdir: Path) -> list[str]:
    """The exec chain around ipykernel (the memfds made here are inherited).

    ``bwrap`` runs as root (no user namespace): it builds the view with root's right to
    walk every path (the venv's base Python may live under /root, the course under a
    0700 folder), and the last step inside is ``setpriv`` to the run uid, dropping every
    capability (bounding set included) with no_new_privs. ``prlimit`` sets the limits
    first; RLIMIT_NPROC counts the run uid's tasks once setpriv has switched to it."""
    lim = cfg.limits
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"learner:x:{uid}:{uid}:learner:{HOME}:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\nlearner:x:{uid}:\nnogroup:x:65534:\n"
    env = {
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
        "HOME": HOME,
        "USER": "learner",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PYTHONPATH": _grader_root(),
        "MALLOC_ARENA_MAX": "2",  # glibc's per-thread arenas eat address space (RLIMIT_AS)
        "JUPYTER_RUNTIME_DIR": f"{HOME}/.local/share/jupyter/runtime",
        "MPLBACKEND": "Agg",
    }
    binds: list[str] = []
    made: set[str] = {"/", "/run", "/tmp", "/var", "/var/tmp", "/usr", "/etc", HOME}

    def parents(path: str) -> list[str]:
        """``--dir`` with mode 0755 for each folder above ``path`` (privileged bwrap makes
        the ones it adds by itself 0700: the run uid could not pass)."""
        args: list[str] = []
        for parent in reversed(Path(path).parents):
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        return args

    if cfg.engine_socket:
        env |= {"DOCKER_HOST": f"unix://{ENGINE_SOCKET}", "DOCKER_CONFIG": jail.CLIENT_CONFIG}
        binds += [*parents(ENGINE_SOCKET), *parents(f"{jail.CLIENT_CONFIG}/buildx"),
                  "--bind", cfg.engine_socket, ENGINE_SOCKET,
                  "--ro-bind", str(kdir / "docker-config"), jail.CLIENT_CONFIG,
                  "--bind", str(kdir / "docker-config" / "buildx"),
                  f"{jail.CLIENT_CONFIG}/buildx"]  # fmt: skip
    if cfg.registry:
        env["COURSE_REGISTRY"] = cfg.registry
    binds += _report_binds(cfg, parents)
    for root in _python_roots():
        binds += [*parents(root), "--ro-bind", root, root]
    grader_pkg = os.path.join(_grader_root(), "grader")
    binds += [*parents(grader_pkg), "--ro-bind", grader_pkg, grader_pkg]
    binds += [*parents(str(cwd)), "--bind", str(kdir / "copy"), str(cwd)]
    groups = str(cfg.engine_group) if cfg.engine_group is not None else str(uid)
    return [
        proc.which("prlimit") or "prlimit",
        f"--as={lim.memory}", f"--nproc={lim.processes}", f"--fsize={lim.file_size}",
        f"--nofile={lim.open_files}", "--core=0", "--",
        "/usr/bin/env", "-i", "PATH=/usr/bin:/bin",
        jail.bwrap() or "bwrap",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session",
        # only what setpriv needs to become the run uid; it drops them all again
        "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
        "--clearenv", *[a for k, v in env.items() for a in ("--setenv", k, v)],
        *jail._system_fs(),
        "--perms", "0444", "--ro-bind-data", str(_data_fd(passwd.encode())), "/etc/passwd",
        "--perms", "0444", "--ro-bind-data", str(_data_fd(group.encode())), "/etc/group",
        "--size", str(lim.tmp_size), "--tmpfs", "/tmp",
        "--dir", "/var",
        "--size", str(lim.tmp_size), "--tmpfs", "/var/tmp",
        "--size", str(lim.tmp_size), "--tmpfs", HOME,
        # HOME: the only user in the jail is the run uid (a tmpfs is root's)
        "--chmod", "1777", "/tmp", "--chmod", "1777", "/var/tmp", "--chmod", "0777", HOME,
        "--tmpfs", "/run",
        "--perms", "0444", "--ro-bind-data", str(_data_fd(connection)), CONNECTION,
        *binds,
        "--remount-ro", "/",
        "--chdir", str(cwd),
        # the seccomp filter, loaded last: setpriv and everything after it run under it
        "--seccomp", str(_data_fd(seccomp.bpf())),
        "--", "/usr/bin/setpriv",
        f"--reuid={uid}", f"--regid={uid}", f"--groups={groups}",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
        sys.executable, "-m", "ipykernel_launcher", "-f", CONNECTION,
        "--HistoryManager.hist_file=:memory:",
    ]  # fmt: skip


def _report_binds(cfg: JailConfig, parents: Callable[[str], list[str]]) -> list[str]:
    """The report as a root-owned read-only file at handoff.KERNEL_PATH (a copy: the kernel
    never sees root's file), when ``grader autograde`` wrote one for this student."""
    try:
        data = Path(cfg.report).read_bytes() if cfg.report else None
    except FileNotFoundError:
        data = None
    if data is None:
        return []
    fd = str(_data_fd(data))
    return [*parents(handoff.KERNEL_PATH), "--perms", "0444", "--ro-bind-data", fd,
            handoff.KERNEL_PATH]  # fmt: skip


def launch(config: Path, connection_file: Path) -> None:
    """Become the jailed kernel (exec; returns only by raising)."""
    cfg = JailConfig.read(config)
    cwd = Path(os.getcwd()).resolve()
    allowed = Path(cfg.allowed).resolve()
    if allowed not in cwd.parents:
        raise SystemExit(f"grader kernel: {cwd} is not under {allowed}; refusing to start")
    why = jail_problem()
    if why:
        raise SystemExit(f"grader kernel: {why}")
    uid = KERNEL_UIDS[0] + secrets.randbelow(KERNEL_UIDS[1] - KERNEL_UIDS[0])
    kdir = _scratch(cwd, cfg, uid)
    argv = kernel_argv(cwd, connection_file.read_bytes(), cfg, uid, kdir)
    os.chdir("/")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m grader.grading.sandbox.kernel")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("-f", dest="connection_file", required=True, type=Path)
    args, _ = p.parse_known_args(argv)
    launch(args.config, args.connection_file)


if __name__ == "__main__":
    main()
