"""What the browser tests share: JupyterLab on a free port with its own settings, Debian's
chromium through Playwright, and running a notebook cell as a learner does (Shift+Enter)."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from grader import proc

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
OUTPUT = Path(__file__).parents[2] / "test-output" / "browser"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def jupyterlab_server(root: Path, tmp_path: Path, settings: dict[str, dict] | None = None):
    """JupyterLab on ``root`` (free port, fixed token, no news toast); ``settings`` are extra
    user settings by plugin (``{"@jupyterlab/notebook-extension/tracker": {...}}``).
    Yields ``(base_url, token, server_log)``."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    plugins = {
        # "false": never fetch news and never ask about it (the toast covers the page).
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        **(settings or {}),
    }
    for plugin, values in plugins.items():
        folder, name = plugin.rsplit("/", 1)
        path = tmp_path / "lab-settings" / folder / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    server = proc.stream(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
            f"--port={port}", f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={token}", "--LabApp.news_url=",
            "--ServerApp.allow_root=True",
        ],
        env=env,
        cwd=root,
    )  # fmt: skip
    log: list[str] = []
    drain = threading.Thread(target=lambda: log.extend(line for _src, line in server), daemon=True)
    drain.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while not _answers(f"{base}/api"):
        if time.monotonic() > deadline or not drain.is_alive():
            server.cancel()
            pytest.fail("JupyterLab did not start:\n" + "\n".join(log[-30:]))
        time.sleep(0.5)
    try:
        yield base, token, log
    finally:
        try:  # shuts its kernels down too
            req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(req, timeout=10).close()
        except OSError:
            pass
        drain.join(20)
        server.cancel()


def wait_for_idle_kernel(base: str, token: str, timeout: float = 120) -> None:
    """The notebook's kernel has started and is idle (asked over the REST API)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as r:
                sessions = json.load(r)
            if any(s.get("kernel", {}).get("execution_state") == "idle" for s in sessions):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    pytest.fail("the notebook's kernel never became idle")


def run_cell(page, cell) -> None:
    """Shift+Enter in the cell; once more if the front end was not ready for the first."""
    for _attempt in range(3):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:
            cell.locator(".jp-InputPrompt", has_text="[").filter(has_not_text="[ ]").first.wait_for(
                timeout=20_000
            )
            return
        except Exception:
            continue
    pytest.fail("the cell never started running")
