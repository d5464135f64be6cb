"""Start and stop the course's JupyterLab in the background (``grader lab start|stop``)."""

from __future__ import annotations

import secrets
import sys
import time
import urllib.request
from pathlib import Path

from grader.engine import services
from grader.engine.config import settings


def _url(port: int, token: str) -> str:
    return f"http://127.0.0.1:{port}/lab?token={token}"


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2).close()
        return True
    except OSError:
        return False


def start(root: Path, port: int = 8888, wait: float = 90) -> str:
    """JupyterLab on ``root``; returns its URL with the token. Reuses a running one."""
    cfg = settings()
    token_file = cfg.run / "jupyterlab.token"
    port_file = cfg.run / "jupyterlab.port"
    if services.owned_pid(cfg, "jupyterlab") and token_file.exists() and port_file.exists():
        running_port = int(port_file.read_text())
        if _answers(running_port):
            return _url(running_port, token_file.read_text().strip())
    while services.port_in_use(port):
        port += 1
    token = secrets.token_hex(24)
    cfg.run.mkdir(parents=True, exist_ok=True)
    token_file.write_text(token)
    token_file.chmod(0o600)
    port_file.write_text(str(port))
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.root_dir={root.resolve()}",
        f"--IdentityProvider.token={token}",
        "--LabApp.news_url=",
        "--ServerApp.allow_root=True",
    ]
    services.start_service(cfg, "jupyterlab", argv)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if _answers(port):
            return _url(port, token)
        if not services.owned_pid(cfg, "jupyterlab"):
            break
        time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not start; see {cfg.logfile('jupyterlab')}")


def stop() -> bool:
    return services.stop_service(settings(), "jupyterlab")
