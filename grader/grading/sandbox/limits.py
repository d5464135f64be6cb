"""Resource limits for one sandboxed run, enforced by the kernel: a cgroup (v1 or v2) for
processes, memory and CPU when the machine lets us make one, and rlimits always.

``Cgroup.create`` returns None where cgroups cannot be written (a container, a non-root
user); the rlimits (RLIMIT_NPROC under a per-run uid, RLIMIT_FSIZE for output,
RLIMIT_AS for memory) still hold then.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The parent cgroup every sandbox run gets a child of.
PARENT = "grader-sandbox"

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one run of build.sh may use. Tests use seconds-long limits."""

    seconds: float = 600.0  # wall time of one build.sh run, docker commands included
    command_seconds: float = 600.0  # one docker command through the gate
    memory: int = 512 * MiB  # the script's own processes (builds run in the engine)
    processes: int = 128
    output: int = 16 * MiB  # build.sh's stdout + stderr, and any one file it writes
    cpus: float = 1.0
    tmp_size: int = 128 * MiB  # the sandbox's /tmp
    open_files: int = 1024
    command_output: int = 8 * MiB  # one docker command's output passed back to the script
    parallel_commands: int = 2  # docker commands of one script running at once
    container_memory: int = 512 * MiB  # containers build.sh starts with `docker run`
    container_pids: int = 256


def human(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", MiB), ("KB", 1024)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


def _write(path: Path, value: str) -> None:
    path.write_text(value)


@dataclass
class Cgroup:
    """One run's cgroup: ``dirs`` is one directory (v2) or one per controller (v1)."""

    version: int
    dirs: list[Path]

    @classmethod
    def create(cls, name: str, limits: Limits) -> Cgroup | None:
        try:
            if (CGROUP_ROOT / "cgroup.controllers").exists():
                return cls._create_v2(name, limits)
            if (CGROUP_ROOT / "pids" / "cgroup.procs").exists():
                return cls._create_v1(name, limits)
        except OSError:
            return None
        return None

    @classmethod
    def _create_v1(cls, name: str, limits: Limits) -> Cgroup:
        dirs = []
        try:
            for controller in ("pids", "memory", "cpu"):
                base = CGROUP_ROOT / controller
                if not (base / "cgroup.procs").exists():
                    continue
                d = base / PARENT / name
                d.mkdir(parents=True, exist_ok=True)
                dirs.append(d)
                if controller == "pids":
                    _write(d / "pids.max", str(limits.processes))
                elif controller == "memory":
                    _write(d / "memory.limit_in_bytes", str(limits.memory))
                    with contextlib.suppress(OSError):
                        _write(d / "memory.memsw.limit_in_bytes", str(limits.memory))
                elif controller == "cpu":
                    _write(d / "cpu.cfs_period_us", "100000")
                    _write(d / "cpu.cfs_quota_us", str(int(100000 * limits.cpus)))
        except OSError:
            cls(1, dirs).remove()
            raise
        return cls(1, dirs)

    @classmethod
    def _create_v2(cls, name: str, limits: Limits) -> Cgroup:
        parent = CGROUP_ROOT / PARENT
        parent.mkdir(exist_ok=True)
        for d in (CGROUP_ROOT, parent):
            enabled = (d / "cgroup.subtree_control").read_text().split()
            for ctl in ("pids", "memory", "cpu"):
                if ctl not in enabled:
                    _write(d / "cgroup.subtree_control", f"+{ctl}")
        d = parent / name
        d.mkdir(exist_ok=True)
        group = cls(2, [d])
        try:
            _write(d / "pids.max", str(limits.processes))
            _write(d / "memory.max", str(limits.memory))
            with contextlib.suppress(OSError):
                _write(d / "memory.swap.max", "0")
            _write(d / "cpu.max", f"{int(100000 * limits.cpus)} 100000")
        except OSError:
            group.remove()
            raise
        return group

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def _read(self, filename: str) -> str:
        for d in self.dirs:
            with contextlib.suppress(OSError):
                return (d / filename).read_text()
        return ""

    @staticmethod
    def _field(text: str, key: str) -> int:
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
                return int(parts[1])
        return 0

    def hit_process_limit(self) -> bool:
        return self._field(self._read("pids.events"), "max") > 0

    def hit_memory_limit(self) -> bool:
        if self.version == 2:
            return self._field(self._read("memory.events"), "oom_kill") > 0
        return self._field(self._read("memory.oom_control"), "oom_kill") > 0

    def pids(self) -> list[int]:
        found: set[int] = set()
        for f in self.procs_files:
            with contextlib.suppress(OSError):
                found.update(int(p) for p in f.read_text().split())
        return sorted(found)

    def kill_all(self, wait: float = 5.0) -> None:
        """SIGKILL everything still in the cgroup (processes a timed-out run left)."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(self.dirs[0] / "cgroup.kill", "1")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def remove_stale(min_age: float = 600) -> int:
    """Remove empty per-run cgroups older than ``min_age`` s (a crashed grader's)."""
    removed = 0
    parents = [CGROUP_ROOT / PARENT]
    parents += [CGROUP_ROOT / c / PARENT for c in ("pids", "memory", "cpu")]
    now = time.time()
    for parent in parents:
        if not parent.is_dir():
            continue
        for d in parent.iterdir():
            try:
                if not d.is_dir() or now - d.stat().st_mtime < min_age:
                    continue
                if not (d / "cgroup.procs").read_text().strip():
                    d.rmdir()
                    removed += 1
            except OSError:
                continue
    return removed
