"""Where the course engine keeps its state, and the few settings a user may change."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PLATFORMS = ("linux/amd64", "linux/arm64")
#: 32-bit ARM (Debian's armhf): busybox and debian-slim only, for lab 05's TARGETVARIANT section.
ARM_V7 = "linux/arm/v7"


def state_dir() -> Path:
    """Logs, pid files, the registry's storage and the base-image cache.

    ``COURSE_STATE_DIR`` overrides; otherwise one directory per user, shared by every clone,
    so a second checkout reuses the engine, registry and base images the first one made.
    """
    if os.environ.get("COURSE_STATE_DIR"):
        return Path(os.environ["COURSE_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "multiplatform-course"


@dataclass(frozen=True)
class Settings:
    state: Path
    registry_port: int

    @property
    def registry_host(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @property
    def registry_url(self) -> str:
        return f"http://{self.registry_host}"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def run(self) -> Path:
        return self.state / "run"

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def settings() -> Settings:
    """Current settings: the registry port is the one ``up`` chose (recorded), else 5000."""
    state = state_dir()
    port = os.environ.get("COURSE_REGISTRY_PORT")
    if not port:
        try:
            port = (state / "run" / "registry.port").read_text().strip()
        except OSError:
            port = "5000"
    return Settings(state, int(port) if port.isdigit() else 5000)


def registry_host() -> str:
    """The course registry as ``host:port`` (what tags and Dockerfiles use):
    ``COURSE_REGISTRY`` where the engine reaches it under another name (a learner's engine on
    the class hub, a grading worker's engine), else the course engine's loopback registry."""
    named = os.environ.get("COURSE_REGISTRY", "").strip()
    return named or settings().registry_host


@contextmanager
def locked(path: Path, what: str, wait: float = 1800):
    """An exclusive lock so two ``up`` runs at once cannot corrupt the state."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    print(
                        f"waiting for another {what} to finish (lock {path}) ...", file=sys.stderr
                    )
                    told = True
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another {what} still holds {path}") from None
                time.sleep(0.5)
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
