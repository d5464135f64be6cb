"""No-engine mode: is a Docker engine reachable, and what a lab shows a learner when not.

Labs and widgets ask :func:`engine_available` once and explain instead of failing. On Binder
(no Docker at all), with ``DOCKER_HOST`` pointing nowhere, or with ``COURSE_NO_ENGINE=1``,
the first cell of each lab (``labkit.lab_header``) displays :func:`banner`: which of the
lab's cells still run for real, which show recorded output from the course's own engine
(:mod:`grader.course.recorded`), and how to get the full lab.
"""

from __future__ import annotations

import functools
import html
import json
import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from grader import proc
from grader.course import recorded
from grader.course.labs import LABS

#: Where dockerd listens when neither DOCKER_HOST nor a docker context says otherwise.
DEFAULT_SOCKET = "/var/run/docker.sock"

#: How long a TCP DOCKER_HOST gets to accept a connection before we call it unreachable.
CONNECT_TIMEOUT = 2.0


@dataclass(frozen=True)
class EngineStatus:
    """Whether an engine answers; ``reason`` says why not, in words a learner can act on."""

    available: bool
    reason: str = ""
    server_version: str = ""


def _docker_context_configured() -> bool:
    """True when the docker CLI would use a context (Docker Desktop does) instead of the
    default socket: then only ``docker version`` can tell where the engine is."""
    if os.environ.get("DOCKER_CONTEXT", "default") != "default":
        return True
    config_dir = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        config = json.loads((config_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    current = config.get("currentContext") if isinstance(config, dict) else None
    return bool(current) and current != "default"


def _precheck_docker_host() -> str | None:
    """Why the engine cannot answer, found without running docker; None when unknown."""
    host = os.environ.get("DOCKER_HOST", "").strip()
    if not host:
        if _docker_context_configured() or os.path.exists(DEFAULT_SOCKET):
            return None
        return f"no Docker socket at {DEFAULT_SOCKET} and DOCKER_HOST is not set"
    url = urllib.parse.urlsplit(host)
    if url.scheme == "unix":
        path = url.path or url.netloc
        if not os.path.exists(path):
            return f"DOCKER_HOST={host}: there is no socket at {path}"
        return None
    if url.scheme == "tcp":
        try:
            port = url.port or 2375
        except ValueError:
            return f"DOCKER_HOST={host} is not a valid address"
        try:
            with socket.create_connection((url.hostname or "", port), timeout=CONNECT_TIMEOUT):
                return None
        except OSError as e:
            return f"DOCKER_HOST={host} does not answer ({e.strerror or e})"
    return None  # ssh://, npipe:// ...: the docker CLI knows best


def probe(timeout: float = 8.0) -> EngineStatus:
    """Ask for the engine now (uncached): the environment switch, the socket, ``docker version``."""
    if os.environ.get("COURSE_NO_ENGINE") == "1":
        return EngineStatus(False, "COURSE_NO_ENGINE=1 is set, so no-engine mode is forced")
    if proc.which("docker") is None:
        return EngineStatus(False, "the `docker` program is not installed here")
    why = _precheck_docker_host()
    if why:
        return EngineStatus(False, why)
    try:
        done = proc.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], timeout=timeout, check=False
        )
    except proc.CommandTimeout:
        return EngineStatus(False, f"`docker version` got no answer in {timeout:g} s")
    except proc.CommandError as e:
        return EngineStatus(False, f"`docker version` failed: {e.reason}")
    version = done.stdout.strip()
    if done.ok and version:
        return EngineStatus(True, "", version)
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return EngineStatus(False, lines[-1] if lines else "`docker version` found no engine")


_last_status: EngineStatus | None = None


@functools.lru_cache(maxsize=1)
def engine_available(timeout: float = 8.0) -> bool:
    """True when ``docker version`` reaches a daemon (socket or DOCKER_HOST) in time.

    ``COURSE_NO_ENGINE=1`` forces no-engine mode (tests, and Binder where it is the truth).
    Asked once per process (``engine_available.cache_clear()`` asks again).
    """
    global _last_status
    _last_status = probe(timeout)
    return _last_status.available


def engine_status() -> EngineStatus:
    """The answer :func:`engine_available` gave, with the reason when there is no engine."""
    engine_available()
    return _last_status if _last_status is not None else probe()


# --- the banner ------------------------------------------------------------------------------

#: Always true in every lab, engine or not.
_ALWAYS = "the explanations, your answers and their checks (self-check)"

FULL_EXPERIENCE = (
    "On your own Linux machine or with Docker Desktop: clone the course and run "
    "`./course up` (it sets up Docker, QEMU and a registry, then opens JupyterLab). "
    "In a class: your instructor's JupyterHub, where every cell runs for real."
)


@dataclass(frozen=True)
class Banner:
    """The no-engine notice for one lab; Jupyter shows it as HTML, a terminal as text."""

    lab_id: str
    reason: str
    for_real: tuple[str, ...]
    recorded: tuple[str, ...]  # commands with recorded output in this lab
    recorded_on: str  # "2025-11-25 (Docker 26.1.5, buildx v0.13.1)" or ""

    def _recorded_line(self) -> str:
        if not self.recorded:
            return "no recordings for this lab yet: engine cells only explain what they would do"
        return (
            f"{len(self.recorded)} engine commands show the real output they gave on the "
            f"course's own engine on {self.recorded_on}, labelled `recorded output`"
        )

    def __str__(self) -> str:
        lines = [
            f"NO DOCKER ENGINE here ({self.reason}): lab {self.lab_id} runs in no-engine mode.",
            "Runs for real: " + "; ".join((*self.for_real, _ALWAYS)) + ".",
            "Shows recorded output: " + self._recorded_line() + ".",
            "Cells that need an engine print `[no engine]` and what they would have run.",
            "The full lab: " + FULL_EXPERIENCE,
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        e = html.escape
        real = "".join(f"<li>{e(item)}</li>" for item in (*self.for_real, _ALWAYS))
        return (
            '<div style="border:2px solid #c77700;border-radius:6px;padding:8px 12px;'
            'background:#fff8e6;color:#222">'
            f"<b>No Docker engine here</b> ({e(self.reason)}): lab <code>{e(self.lab_id)}"
            "</code> runs in no-engine mode.<br>"
            f"<b>Runs for real:</b><ul>{real}</ul>"
            f"<b>Shows recorded output:</b> {e(self._recorded_line())}.<br>"
            "Cells that need an engine print <code>[no engine]</code> and what they would "
            "have run.<br>"
            f"<b>The full lab:</b> {e(FULL_EXPERIENCE)}</div>"
        )


def banner(lab_id: str) -> Banner:
    """The no-engine banner for ``lab_id`` (``labkit.lab_header`` displays it once per lab)."""
    entries = recorded.lab_recordings(lab_id)
    dates = sorted({r.recorded_at for r in entries})
    when = ""
    if entries:
        engine = entries[-1].engine
        versions = ", ".join(f"{k} {v}" for k, v in engine.items() if v)
        when = (dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}") + (
            f" ({versions})" if versions else ""
        )
    return Banner(
        lab_id=lab_id,
        reason=engine_status().reason or "no engine answers",
        for_real=LABS[lab_id].runs_for_real if lab_id in LABS else (),
        recorded=tuple(r.command for r in entries),
        recorded_on=when,
    )
