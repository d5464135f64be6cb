"""The course's build engine: Docker Engine + buildx + QEMU + a local registry.

``up()`` uses an engine that already answers and can build linux/amd64 + linux/arm64
(Docker Desktop, a configured Linux host); otherwise, on Debian-like Linux as root, it
installs one from Debian's packages, starts dockerd and the registry in the background and
fills the registry with base images. ``down()`` stops what ``up()`` started.
"""

from __future__ import annotations

import json
import os
import platform
import time

from grader.engine import baseimages, install, services
from grader.engine.config import Settings, locked, settings
from grader.engine.doctor import Report, diagnose
from grader.engine.steps import TIMINGS, StepFailed, say, step

__all__ = ["Report", "StepFailed", "diagnose", "down", "settings", "up"]


def up(*, extra_packages: tuple[str, ...] = (), base_images: bool = True) -> Report:
    """Bring the engine up (idempotent) and return the doctor's report afterwards."""
    cfg = settings()
    started = time.monotonic()
    with locked(cfg.state / "engine.lock", "`grader engine up`"):
        answering = services.docker_answers()
        desktop = platform.system() in ("Darwin", "Windows")
        if desktop or not install.is_debian_like() or os.geteuid() != 0:
            # Use what is there; never install on a machine that is not ours to change.
            if not answering:
                raise StepFailed(install.can_install() or "no Docker engine answers")
            say("-> using the Docker engine that is already running")
        else:
            with step("packages (Debian)"):
                # With an engine already answering, only what it lacks around it is installed.
                installed = install.install_packages(extra_packages, engine=not answering)
                say("   installed: " + (" ".join(installed) if installed else "nothing missing"))
        port = services.choose_registry_port(cfg)
        if port != cfg.registry_port or not (cfg.run / "registry.port").exists():
            cfg.run.mkdir(parents=True, exist_ok=True)
            (cfg.run / "registry.port").write_text(str(port))
            cfg = Settings(cfg.state, port)
        services.start_all(cfg)
        if base_images and baseimages.uses_course_mirror(cfg):
            with step("base images in the course registry"):
                baseimages.ensure_all(cfg)
    say("\nTimings:\n" + TIMINGS.table())
    _record_timings(cfg, time.monotonic() - started)
    return diagnose(cfg)


def _record_timings(cfg: Settings, total: float) -> None:
    """Append this run's step timings to logs/up-timings.jsonl (read by benchmarks/)."""
    cfg.logs.mkdir(parents=True, exist_ok=True)
    row = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "total": round(total, 2),
        "steps": [[n, round(s, 2), r] for n, s, r in TIMINGS.rows],
    }
    with open(cfg.logfile("up-timings").with_suffix(".jsonl"), "a") as fh:
        fh.write(json.dumps(row) + "\n")


def down() -> list[str]:
    """Stop the dockerd and registry the course started; returns what was stopped."""
    cfg = settings()
    stopped = []
    with locked(cfg.state / "engine.lock", "`grader engine down`"):
        for name in ("registry", "dockerd"):
            if services.stop_service(cfg, name):
                stopped.append(name)
    return stopped
