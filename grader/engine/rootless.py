"""Worker engines: one rootless Docker engine per grading worker, walled in by the kernel.

A learner's build.sh, Dockerfile and notebook cells are untrusted code. The gate
(``grader.grading.sandbox.policy``) is a teaching layer; the wall is this: each grading
worker ``n`` has its own ``dockerd`` started through Debian's ``dockerd-rootless.sh``
(rootlesskit + slirp4netns + newuidmap) under an engine uid of its own, so whatever a
submission makes the engine do (``--privileged``, host mounts, RUN steps) happens as that
uid in a user namespace, never as root. Around it, all enforced by the kernel:

- **uids clear of useradd's**: engine uid ``BASE + n`` (a system user ``grader-engine-n``),
  its subordinate range and the per-run client uids all lie above ``SUB_UID_MAX`` +
  ``SUB_UID_COUNT`` of ``/etc/login.defs``, where ``useradd`` never hands out ranges.
- **files**: the engine starts in a mount namespace of its own where ``/root``, ``/home``,
  ``/tmp``, ``/work`` and the like are empty tmpfs: host paths it may bind into containers
  are only what any unprivileged user may read of ``/usr`` and ``/etc``.
- **network**: slirp4netns with host loopback disabled, no published ports (port driver
  ``none``), and ``iptables`` rules matched on the engine uids (``-m owner``) that let the
  engine reach only the grading registry (a DNAT from :data:`REGISTRY_VIP`) and the Debian
  mirror (plus DNS); every other host, loopback or LAN service is refused.
- **limits**: the whole rootlesskit tree (daemons, RUN steps, containers) in cgroup v1
  ``memory``/``pids``/``cpu`` groups; the daemons' ``oom_score_adj`` is -1000 so a
  submission's process is what the OOM killer picks, and ``memory.oom_control`` says it
  happened; the data-root is an ext4 filesystem of fixed size (a loop file), container logs
  are capped by the daemon's ``log-opts``.
- **reset**: :meth:`WorkerEngine.reset` kills the cgroup, makes a new filesystem for the
  data-root (images, volumes, containers, build cache, plugins, credentials: all gone),
  writes the root-owned daemon config again and starts a fresh daemon.

The client side (a per-run uid in the socket's group, a root-owned read-only
``DOCKER_CONFIG``) is ``grader.grading.sandbox``'s.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import shlex
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from grader import proc

MiB = 1024 * 1024
GiB = 1024 * MiB

ROOT = Path("/var/lib/grader-engines")  # wN/: data.img, data/ (mount point), etc/
RUNTIME = Path("/run/grader-engines")  # wN/: the engine's XDG_RUNTIME_DIR (docker.sock)
#: A host address only the grading machine uses: the engine reaches the registry here, and
#: the nat table sends it to the registry (or the scoping proxy) on loopback.
REGISTRY_VIP = "10.233.0.1"
ROOTLESS_SH = Path("/usr/share/docker.io/contrib/dockerd-rootless.sh")
PACKAGES = ("rootlesskit", "slirp4netns", "uidmap", "socat")
CHAIN = "GRADER-ENGINES"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "grader-engines"
TUN_GROUP = "grader-tun"
#: Where the host's private directories are; empty in the engine's mount namespace.
MASKED = (
    "/root", "/home", "/tmp", "/var/tmp", "/work", "/srv", "/opt", "/mnt", "/media",
    "/var/lib/docker", "/var/lib/containerd", "/var/log", "/var/backups", "/var/mail",
    "/var/spool", "/etc/ssl/private", "/run",
)  # fmt: skip
DAEMONS = ("rootlesskit", "exe", "slirp4netns", "dockerd", "containerd", "socat")
#: Run by dockerd-rootless.sh (as ``$DOCKERD``) inside the engine's network namespace: the
#: course registry answers there on the same loopback address as on the host, so an image
#: name means one registry to the engine, its builders (``network=host``) and the client.
#: (buildx's ``imagetools`` speaks plain HTTP to loopback registries only.)
WRAPPER = """#!/bin/sh
socat -lf /dev/null "TCP4-LISTEN:$GRADER_REGISTRY_NAME_PORT,bind=127.0.0.1,reuseaddr,fork" \\
  "TCP4:$GRADER_REGISTRY_VIP:$GRADER_REGISTRY_PORT" &
exec dockerd "$@"
"""
SLOTS = 64  # workers per machine at most
RANGE = 65536  # subordinate ids per engine


# --- uids -----------------------------------------------------------------------------


def login_defs() -> dict[str, int]:
    values = {"SUB_UID_MAX": 600100000, "SUB_UID_COUNT": 65536}
    values |= {"SUB_GID_MAX": 600100000, "SUB_GID_COUNT": 65536}
    with contextlib.suppress(OSError):
        for line in Path("/etc/login.defs").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in values and parts[1].isdigit():
                values[parts[0]] = int(parts[1])
    return values


#: Above every range useradd can hand out (SUB_UID_MAX + SUB_UID_COUNT: 600,165,536 here).
BASE = 1_000_000_000


def base() -> int:
    defs = login_defs()
    top = max(
        defs["SUB_UID_MAX"] + defs["SUB_UID_COUNT"], defs["SUB_GID_MAX"] + defs["SUB_GID_COUNT"]
    )
    if top >= BASE:
        raise EngineError(
            f"/etc/login.defs lets useradd hand out subordinate ids up to {top}, over the "
            f"grader's own ids at {BASE}: lower SUB_UID_MAX/SUB_GID_MAX"
        )
    return BASE


def engine_uid(n: int) -> int:
    return base() + n


def subordinate_start(n: int) -> int:
    return base() + RANGE * (1 + n)


#: Per-run client uids (one per build.sh run): after every engine's subordinate range.
RUN_UIDS = (BASE + RANGE * (2 + SLOTS), BASE + RANGE * (2 + SLOTS) + 60_000)
#: Per-kernel uids (``grader autograde``: one per notebook kernel), right after the per-run
#: clients' in the same block; the firewall (grading.sandbox.kernel) matches on this range.
KERNEL_UIDS = (RUN_UIDS[1], RUN_UIDS[1] + 5_000)


class EngineError(Exception):
    """A worker engine could not be set up or started (never the learner's fault)."""


def rootless_problem() -> str | None:
    """Why worker engines cannot run here, or None when they can."""
    if os.uname().sysname != "Linux":
        return "worker engines need Linux"
    if os.geteuid() != 0:
        return "worker engines need root (to give each its own uid, cgroup and firewall rules)"
    tools = ("rootlesskit", "slirp4netns", "newuidmap", "dockerd", "iptables", "unshare", "socat")
    for tool in tools:
        if proc.which(tool) is None:
            return f"{tool} is not installed (apt-get install {' '.join(PACKAGES)} docker.io)"
    if not ROOTLESS_SH.exists():
        return f"{ROOTLESS_SH} is missing (Debian's docker.io >= 26 ships it)"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing (slirp4netns needs it)"
    try:
        limit = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        limit = 1
    if limit == 0:
        return "user namespaces are disabled (user.max_user_namespaces = 0)"
    with contextlib.suppress(OSError):
        if Path("/proc/sys/kernel/unprivileged_userns_clone").read_text().strip() == "0":
            return "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone)"
    return None


def _group(name: str, gid: int) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        proc.run(["groupadd", "--system", "--gid", str(gid), name], timeout=30)
        return gid


def _user(n: int) -> pwd.struct_passwd:
    name, uid = f"grader-engine-{n}", engine_uid(n)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _group(name, uid)
        proc.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", "--uid", str(uid), "--gid", str(uid), name],
            timeout=30,
        )  # fmt: skip
        entry = pwd.getpwnam(name)
    if entry.pw_uid != uid:
        raise EngineError(f"user {name} has uid {entry.pw_uid}, expected {uid}")
    return entry


def _subid(path: Path, name: str, start: int) -> None:
    """Exactly one ``name:start:RANGE`` line in /etc/subuid or /etc/subgid. Engines start
    in parallel (a batch's workers, the hub's learners, other graders): the read-modify-write
    holds a lock, so no writer loses another's line."""
    import fcntl

    want = f"{name}:{start}:{RANGE}"
    with open(path.with_name(path.name + ".grader-lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        kept = [ln for ln in lines if ln.split(":", 1)[0] != name]
        if len(kept) + 1 != len(lines) or want not in lines:
            tmp = path.with_name(f"{path.name}.grader-tmp-{os.getpid()}-{threading.get_ident()}")
            tmp.write_text("\n".join([*kept, want]) + "\n")
            os.chmod(tmp, 0o644)
            tmp.replace(path)


# --- the machine's share: firewall and /dev/net/tun -------------------------------------


def _iptables(*args: str, table: str = "filter", check: bool = True) -> bool:
    argv = ["iptables", "-w", "5", "-t", table, *args]
    return proc.run(argv, timeout=30, check=check).ok


#: Held around every check-then-change of the grader's iptables chains. iptables' own lock
#: orders single commands only: two graders that both find a rule missing both add it, and
#: one that then deletes "the other copy" may delete the last. One file for the machine (the
#: chains are the machine's), in root's 0711 folder, mode 0600: no one else can hold it.
IPTABLES_LOCK = RUNTIME / "iptables.lock"
_ipt_held = threading.local()


@contextlib.contextmanager
def iptables_locked() -> Iterator[None]:
    """The host-wide lock of :data:`IPTABLES_LOCK`, for a sequence of ``_iptables`` calls
    that must see no other grader's changes in between (threads and processes alike;
    re-entrant within a thread)."""
    import fcntl

    depth = getattr(_ipt_held, "depth", 0)
    if depth:
        _ipt_held.depth = depth + 1
        try:
            yield
        finally:
            _ipt_held.depth = depth
        return
    folder = IPTABLES_LOCK.parent
    folder.mkdir(mode=0o711, parents=True, exist_ok=True)
    st = folder.stat()
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise EngineError(f"{folder} must be root's and writable by root alone")
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(IPTABLES_LOCK, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        _ipt_held.depth = 1
        try:
            yield
        finally:
            _ipt_held.depth = 0
    finally:
        os.close(fd)  # releases the lock


def nameservers() -> list[str]:
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
                found.append(parts[1])
    return found


def mirror_addresses(host: str = "deb.debian.org") -> list[str]:
    with contextlib.suppress(OSError):
        return sorted({a[4][0] for a in socket.getaddrinfo(host, 80, socket.AF_INET)})
    return []


def _chain(table: str, rules: list[list[str]]) -> None:
    """Make CHAIN hold ``rules`` (added when missing, never flushed: graders beside this one
    may use another registry upstream, and their rules stay)."""
    if not _iptables("-n", "-L", CHAIN, table=table, check=False):
        _iptables("-N", CHAIN, table=table)
    for r in rules:
        if not _iptables("-C", CHAIN, *r, table=table, check=False):
            _iptables("-A", CHAIN, *r, table=table)


@iptables_locked()
def firewall(registry_upstream: str, n: int | None = None) -> None:
    """Rules for the engine uids (``--uid-owner BASE-BASE+SLOTS``): DNS and the Debian mirror
    for every engine (CHAIN), the registry upstream for engine ``n`` alone (its own chain,
    refilled at each start: the slot's lock makes it this grader's), the rest refused
    (loopback and the LAN included). IPv6 is refused outright.

    An engine whose upstream is the scope proxy can therefore not reach the registry's own
    port, whatever another slot was given. OUTPUT jumps to the slot's chain and CHAIN (ACCEPTs
    only), then REJECTs the engine uids. Shared rules are only added, never flushed; the
    host-wide :func:`iptables_locked` keeps two graders from adding one rule twice."""
    host, _, port = registry_upstream.rpartition(":")
    owners = ["-m", "owner", "--uid-owner", f"{base()}-{base() + SLOTS - 1}"]
    dnat = ["-p", "tcp", "-m", "tcp", "-d", f"{REGISTRY_VIP}/32", "--dport", port,
            "-j", "DNAT", "--to-destination", f"{host}:{port}"]  # fmt: skip
    # nat: the upstream's one address, for everyone on this host. It grants nothing: the
    # filter rules below decide who may reach the translated address.
    _chain("nat", [dnat])
    if not _iptables("-C", "OUTPUT", "-j", CHAIN, table="nat", check=False):
        _iptables("-I", "OUTPUT", "1", "-j", CHAIN, table="nat")
    allow = []
    for ns in nameservers():
        allow += [["-d", f"{ns}/32", "-p", p, "-m", p, "--dport", "53"] for p in ("udp", "tcp")]
    for addr in mirror_addresses():
        allow += [["-d", f"{addr}/32", "-p", "tcp", "-m", "tcp", "--dport", p]
                  for p in ("80", "443")]  # fmt: skip
    _chain("filter", [[*a, "-j", "ACCEPT"] for a in allow])
    _drop_loopback_accepts()
    reject = ["OUTPUT", *owners, "-j", "REJECT"]
    if not _iptables("-C", *reject, check=False):
        _iptables("-I", "OUTPUT", "1", *owners, "-j", "REJECT")
    jump = ["OUTPUT", *owners, "-j", CHAIN]
    if not _iptables("-C", *jump, check=False):
        _iptables("-I", "OUTPUT", "1", *owners, "-j", CHAIN)
    if n is not None:
        _slot_chain(n, host, port)
    if proc.which("ip6tables"):
        jump6 = ["OUTPUT", *owners, "-j", "REJECT"]
        if not proc.run(["ip6tables", "-w", "5", "-C", *jump6], timeout=30, check=False).ok:
            proc.run(["ip6tables", "-w", "5", "-I", *jump6], timeout=30, check=False)


def _drop_loopback_accepts() -> None:
    """Earlier versions let every engine uid reach the registry from the shared chain: such a
    rule would open the registry's own port to an engine meant to reach only the proxy."""
    listed = proc.run(["iptables", "-w", "5", "-S", CHAIN], timeout=30, check=False).stdout
    for line in listed.splitlines():
        if (
            line.startswith(f"-A {CHAIN} -d 127.")
            and "-j ACCEPT" in line
            and "--dport 53" not in line
        ):
            _iptables("-D", *line.split()[1:], check=False)


def _slot_chain(n: int, host: str, port: str) -> None:
    """Engine ``n``'s own chain: the registry upstream it was started with, nothing else."""
    chain = f"{CHAIN}-W{n}"
    if not _iptables("-n", "-L", chain, check=False):
        _iptables("-N", chain)
    _iptables("-F", chain)
    _iptables("-A", chain, "-d", f"{host}/32", "-p", "tcp", "-m", "tcp", "--dport", port,
              "-j", "ACCEPT")  # fmt: skip
    jump = ["OUTPUT", "-m", "owner", "--uid-owner", str(engine_uid(n)), "-j", chain]
    if not _iptables("-C", *jump, check=False):
        _iptables("-I", *jump[:1], "1", *jump[1:])


def _tun_group() -> int:
    """/dev/net/tun opened only by root and the engines' group (not 0666 for everyone)."""
    gid = _group(TUN_GROUP, base() - 1)
    tun = Path("/dev/net/tun")
    st = tun.stat()
    if st.st_gid != gid or (st.st_mode & 0o777) != 0o660:
        os.chown(tun, 0, gid)
        os.chmod(tun, 0o660)
    return gid


# --- cgroups ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineLimits:
    memory: int = 3 * GiB  # the daemons, BuildKit's RUN steps and containers together
    processes: int = 2048
    cpus: float = 2.0
    disk: int = 12 * GiB  # the data-root filesystem: images, build cache, volumes
    log_size: str = "1m"  # per container log file, two files kept
    start_timeout: float = 60.0


def _cgroup_dirs(n: int) -> dict[str, Path]:
    dirs = {}
    for ctl in ("memory", "pids", "cpu"):
        if (CGROUP_ROOT / ctl / "cgroup.procs").exists():
            dirs[ctl] = CGROUP_ROOT / ctl / CGROUP_PARENT / f"w{n}"
    return dirs


def _cgroup_setup(n: int, limits: EngineLimits) -> list[Path]:
    dirs = _cgroup_dirs(n)
    for ctl, d in dirs.items():
        d.mkdir(parents=True, exist_ok=True)
        if ctl == "memory":
            (d / "memory.limit_in_bytes").write_text(str(limits.memory))
            with contextlib.suppress(OSError):
                (d / "memory.memsw.limit_in_bytes").write_text(str(limits.memory))
        elif ctl == "pids":
            (d / "pids.max").write_text(str(limits.processes))
        elif ctl == "cpu":
            (d / "cpu.cfs_period_us").write_text("100000")
            (d / "cpu.cfs_quota_us").write_text(str(int(100000 * limits.cpus)))
    return [d / "cgroup.procs" for d in dirs.values()]


def _cgroup_pids(n: int) -> set[int]:
    found: set[int] = set()
    for d in _cgroup_dirs(n).values():
        with contextlib.suppress(OSError):
            found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
    return found


def _kill_cgroup(n: int, wait: float = 10.0) -> None:
    """SIGKILL everything in the worker's cgroup: daemons, shims, containers, leftovers."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        pids = _cgroup_pids(n)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    raise EngineError(f"worker engine {n}: processes {sorted(_cgroup_pids(n))} survive SIGKILL")


def _field(path: Path, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key and v.strip().isdigit():
                return int(v)
    return 0


# --- one worker's engine ---------------------------------------------------------------


@dataclass
class Usage:
    """What the engine's cgroup counted since the last mark (a limit hit is attributed)."""

    oom_kills: int = 0
    pids_refused: int = 0
    memory_peak: int = 0


class WorkerEngine:
    """The rootless engine of grading worker ``n``; ``registry_upstream`` is host:port of
    the registry (or the scoping proxy) on the host, which the engine reaches as
    ``REGISTRY_VIP:port``."""

    def __init__(
        self,
        n: int,
        registry_upstream: str,
        limits: EngineLimits | None = None,
        name: str | None = None,
    ) -> None:
        if not 0 <= n < SLOTS:
            raise ValueError(f"worker number {n} out of range 0..{SLOTS - 1}")
        self.n = n
        self.registry_upstream = registry_upstream
        port = registry_upstream.rpartition(":")[2]
        self._name = name or f"127.0.0.1:{port}"
        if not re.fullmatch(r"127\.0\.0\.1:\d{1,5}", self._name):
            raise ValueError(f"a worker engine names its registry 127.0.0.1:PORT, not {name!r}")
        self.limits = limits or EngineLimits()
        self.dir = ROOT / f"w{n}"
        self.image = self.dir / "data.img"
        self.data = self.dir / "data"
        self.etc = self.dir / "etc"
        self.runtime = RUNTIME / f"w{n}"
        self.log = self.dir / "dockerd.log"
        self.uid = engine_uid(n)
        self.gid = self.uid
        self.pid: int | None = None
        self._oom_mark = 0
        self._pids_mark = 0

    # -- what clients use --

    @property
    def socket(self) -> Path:
        return self.runtime / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def port(self) -> str:
        return self.registry_upstream.rpartition(":")[2]

    @property
    def registry(self) -> str:
        """The registry as this engine, its clients and the grader name it: the loopback
        address the host uses (inside the engine a forwarder to ``REGISTRY_VIP:port``, which
        the host sends on to ``registry_upstream``: the registry itself, or the scope proxy
        in front of it when ``name`` gave the registry's own address)."""
        return self._name

    @property
    def vip(self) -> str:
        """Where the engine's network namespace reaches the registry on the host."""
        return f"{REGISTRY_VIP}:{self.port}"

    @property
    def client_group(self) -> int:
        """The gid a per-run client needs (as a supplementary group) to reach the socket."""
        return self.gid

    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}

    # -- lifecycle --

    def prepare(self) -> None:
        """Everything root sets up once per machine for this worker (idempotent)."""
        why = rootless_problem()
        if why:
            raise EngineError(why)
        user = _user(self.n)
        _subid(Path("/etc/subuid"), user.pw_name, subordinate_start(self.n))
        _subid(Path("/etc/subgid"), user.pw_name, subordinate_start(self.n))
        self.tun_gid = _tun_group()
        firewall(self.registry_upstream, self.n)
        ROOT.mkdir(parents=True, exist_ok=True)
        os.chmod(ROOT, 0o711)
        self.dir.mkdir(exist_ok=True)
        os.chmod(self.dir, 0o711)
        RUNTIME.mkdir(parents=True, exist_ok=True)
        os.chmod(RUNTIME, 0o711)

    def _fresh_filesystem(self) -> None:
        """A new ext4 of ``limits.disk`` bytes on the data-root: nothing of the last run."""
        if os.path.ismount(self.data):
            proc.run(["umount", "-l", str(self.data)], timeout=60)
        self.image.unlink(missing_ok=True)
        with open(self.image, "wb") as fh:
            fh.truncate(self.limits.disk)
        os.chmod(self.image, 0o600)
        proc.run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
             "lazy_itable_init=1,lazy_journal_init=1,nodiscard", str(self.image)],
            timeout=120,
        )  # fmt: skip
        self.data.mkdir(exist_ok=True)
        proc.run(["mount", "-o", "loop,nodev,nosuid", str(self.image), str(self.data)], timeout=60)
        os.chown(self.data, self.uid, self.gid)
        os.chmod(self.data, 0o700)
        for sub in ("home", "docker"):
            (self.data / sub).mkdir()
            os.chown(self.data / sub, self.uid, self.gid)

    def _write_config(self) -> Path:
        """The daemon's configuration: root-owned, so the engine cannot change it."""
        self.etc.mkdir(exist_ok=True)
        os.chmod(self.etc, 0o755)
        config = {
            "features": {"containerd-snapshotter": True},
            "data-root": str(self.data / "docker"),
            # The forwarder's address: the same host name the client's credentials use.
            "registry-mirrors": [f"http://{self.registry}"],
            "log-driver": "json-file",
            "log-opts": {"max-size": self.limits.log_size, "max-file": "2"},
            "max-concurrent-uploads": 3,
        }
        path = self.etc / "daemon.json"
        path.write_text(json.dumps(config, indent=2) + "\n")
        os.chmod(path, 0o644)
        return path

    def _wrapper(self) -> Path:
        """The root-owned ``$DOCKERD`` wrapper (see :data:`WRAPPER`)."""
        path = ROOT / "dockerd-in-netns"
        if not path.exists() or path.read_text() != WRAPPER:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(WRAPPER)
            os.chmod(tmp, 0o755)
            tmp.replace(path)
        return path

    def _launcher(self, config: Path, procs: list[Path]) -> list[str]:
        """root: join the cgroups, a mount namespace with the host's private folders
        hidden, then the engine uid runs dockerd-rootless.sh."""
        # /run is hidden too; the engine's runtime folder is put back (its socket is there):
        # held open as fd 3 before the mask, bound back after it.
        masks = [f"exec 3< {shlex.quote(str(self.runtime))}"]
        for path in MASKED:
            if Path(path).is_dir() and not Path(path).is_symlink():
                mode = "size=64m,mode=1777" if path.endswith("tmp") else "size=1m,mode=755"
                masks.append(f"mount -t tmpfs -o {mode} grader-mask {shlex.quote(path)}")
        masks.append(f"mkdir -p {shlex.quote(str(self.runtime))}")
        masks.append(
            f"mount --no-canonicalize --bind /proc/self/fd/3 {shlex.quote(str(self.runtime))}"
        )
        masks.append("exec 3<&-")
        env = {
            "HOME": str(self.data / "home"),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(self.etc),
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER": "none",
            "DOCKERD_ROOTLESS_ROOTLESSKIT_DISABLE_HOST_LOOPBACK": "true",
            "DOCKERD": str(self._wrapper()),
            "GRADER_REGISTRY_PORT": self.port,
            "GRADER_REGISTRY_NAME_PORT": self.registry.rpartition(":")[2],
            "GRADER_REGISTRY_VIP": REGISTRY_VIP,
        }
        drop = [
            "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
            f"--groups={self.tun_gid}", "--inh-caps=-all", "--",
            "env", "-i", *(f"{k}={v}" for k, v in env.items()),
            "sh", str(ROOTLESS_SH), f"--config-file={config}",
            f"--pidfile={self.runtime}/docker.pid", f"--host={self.host}",
        ]  # fmt: skip
        script = "\n".join(
            [
                "set -e",
                *(f"echo $$ > {shlex.quote(str(p))}" for p in procs),
                "mount --make-rprivate /",
                *masks,
                "exec " + shlex.join(drop),
            ]
        )
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script]

    def start(self) -> float:
        """Start the engine on a fresh data-root; returns the seconds it took to answer."""
        started = time.monotonic()
        self.prepare()
        self.stop()
        self._fresh_filesystem()
        config = self._write_config()
        procs = _cgroup_setup(self.n, self.limits)
        # The runtime folder: the engine's own (XDG_RUNTIME_DIR must be its and 0700-ish);
        # its group (the per-run clients') may pass through to the socket only.
        if self.runtime.exists():
            proc.run(["rm", "-rf", "--one-file-system", str(self.runtime)], timeout=60)
        self.runtime.mkdir()
        os.chown(self.runtime, self.uid, self.gid)
        os.chmod(self.runtime, 0o710)
        self._proc = proc.spawn_detached(self._launcher(config, procs), log_file=self.log)
        self.pid = self._proc.pid
        self._wait_ready(started)
        self._protect_daemons()
        self.mark()
        return time.monotonic() - started

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.limits.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self.socket.exists() and self.answers():
                # dockerd gives the socket its "docker" group inside the user namespace (a
                # subordinate gid outside): the per-run clients' group is the engine's own.
                os.chown(self.socket, self.uid, self.gid)
                os.chmod(self.socket, 0o660)
                return
            time.sleep(0.1)
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        self.stop()
        raise EngineError(f"worker engine {self.n} did not start; {self.log}:\n{tail}")

    def answers(self, timeout: float = 10) -> bool:
        try:
            done = proc.run(
                ["docker", "version", "--format", "{{.Server.Version}}"],
                timeout=timeout,
                check=False,
                env={**os.environ, "DOCKER_HOST": self.host},
            )
        except proc.CommandError:
            return False
        return done.ok and bool(done.stdout.strip())

    def _protect_daemons(self) -> None:
        """The OOM killer picks a submission's process, never the daemons.

        Where root holds CAP_SYS_RESOURCE the daemons get -1000. Where it does not (this
        machine kind: lowering oom_score_adj below 0 is refused) every other process in the
        cgroup is raised to +1000 instead, by a thread that looks twice a second (raising
        needs no capability); a process hogging memory is the largest either way.
        """
        self._daemons = set()
        for pid in _cgroup_pids(self.n):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() in DAEMONS:
                    self._daemons.add(pid)
                    Path(f"/proc/{pid}/oom_score_adj").write_text("-1000")
        self._stop_guard = threading.Event()
        self._guard = threading.Thread(
            target=self._raise_others, name=f"engine-{self.n}-oom", daemon=True
        )
        self._guard.start()

    def _raise_others(self) -> None:
        done: set[int] = set()
        while not self._stop_guard.wait(0.5):
            for pid in _cgroup_pids(self.n) - self._daemons - done:
                with contextlib.suppress(OSError):
                    Path(f"/proc/{pid}/oom_score_adj").write_text("1000")
                done.add(pid)
            if len(done) > 100_000:
                done.clear()

    def stop(self) -> None:
        """Kill everything the engine runs and unmount its data-root (idempotent)."""
        if getattr(self, "_stop_guard", None) is not None:
            self._stop_guard.set()
        # No clean shutdown: everything the engine kept is thrown away with its filesystem,
        # and its mounts live in namespaces that die with its processes.
        _kill_cgroup(self.n)
        if getattr(self, "_proc", None) is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(5)
        self.pid = None
        if os.path.ismount(self.data):
            proc.run(["umount", "-l", str(self.data)], timeout=60, check=False)

    reset = start  # a reset is a fresh start: new filesystem, new config, new processes

    def remove(self) -> None:
        """Stop and delete the worker's files (the user and firewall rules stay)."""
        self.stop()
        for d in _cgroup_dirs(self.n).values():
            with contextlib.suppress(OSError):
                d.rmdir()
        proc.run(["rm", "-rf", "--one-file-system", str(self.dir), str(self.runtime)],
                 timeout=120, check=False)  # fmt: skip

    # -- accounting --

    def mark(self) -> None:
        dirs = _cgroup_dirs(self.n)
        if "memory" in dirs:
            self._oom_mark = _field(dirs["memory"] / "memory.oom_control", "oom_kill")
            with contextlib.suppress(OSError):
                (dirs["memory"] / "memory.max_usage_in_bytes").write_text("0")
        if "pids" in dirs:
            self._pids_mark = _field(dirs["pids"] / "pids.events", "max")

    def usage(self) -> Usage:
        dirs = _cgroup_dirs(self.n)
        u = Usage()
        if "memory" in dirs:
            u.oom_kills = _field(dirs["memory"] / "memory.oom_control", "oom_kill") - self._oom_mark
            with contextlib.suppress(OSError, ValueError):
                u.memory_peak = int((dirs["memory"] / "memory.max_usage_in_bytes").read_text())
        if "pids" in dirs:
            u.pids_refused = _field(dirs["pids"] / "pids.events", "max") - self._pids_mark
        return u


@contextlib.contextmanager
def claimed(
    registry_upstream: str,
    limits: EngineLimits | None = None,
    first: int = 0,
    name: str | None = None,
) -> Iterator[WorkerEngine]:
    """A worker engine on a slot no other grader holds (a lock file per slot), started
    fresh; stopped and removed on the way out."""
    import fcntl

    ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(ROOT, 0o711)
    for n in range(first, SLOTS):
        lock = open(ROOT / f"w{n}.lock", "a")  # noqa: SIM115 - held while the engine runs
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        engine = WorkerEngine(n, registry_upstream, limits, name)
        try:
            engine.start()
            yield engine
        finally:
            engine.remove()
            lock.close()
        return
    raise EngineError(f"all {SLOTS} worker engine slots are in use")
