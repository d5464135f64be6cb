"""BuildPanel in a real browser: JupyterLab in headless Debian chromium (Playwright from
PyPI, the browser from apt: never ``playwright install``). Open a notebook that displays
the panel, run its cell, click Build, wait for both lanes to finish, keep a screenshot under
``test-output/browser/``, and check the DOM the learner sees."""

from __future__ import annotations

import json
import secrets
import socket
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from grader import proc

pytestmark = [
    pytest.mark.browser,
    pytest.mark.engine,
    pytest.mark.registry,
    pytest.mark.qemu,
    pytest.mark.slow,
]

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

DOCKERFILE = """\
FROM busybox:latest
RUN echo "{nonce} on $(uname -m)"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(code: str) -> str:
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": "buildpanel",
                    "metadata": {},
                    "outputs": [],
                    "source": code,
                }
            ],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def jupyterlab(tmp_path, registry_host):
    """JupyterLab on a free port with a fixed token, a temp root and no news toast."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    root = tmp_path / "root"
    (root / "ctx").mkdir(parents=True)
    (root / "ctx" / "Dockerfile").write_text(DOCKERFILE.format(nonce=uuid.uuid4().hex))
    tag = f"{registry_host}/t-widgets/browser-{uuid.uuid4().hex[:8]}:v1"
    (root / "build.ipynb").write_text(
        _notebook(
            "from grader.widgets import BuildPanel\n"
            f"panel = BuildPanel(context='ctx', tag={tag!r})\n"
            "panel"
        )
    )
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # "false": never fetch news and never ask about it (the toast covers the page).
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
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
    yield base, token, log
    try:  # shuts its kernels down too
        req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
        urllib.request.urlopen(req, timeout=10).close()
    except OSError:
        pass
    drain.join(20)
    server.cancel()


def _wait_for_idle_kernel(base: str, token: str, timeout: float = 120) -> None:
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


def test_buildpanel_in_jupyterlab_builds_two_lanes(jupyterlab):
    from playwright.sync_api import sync_playwright

    base, token, server_log = jupyterlab
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "buildpanel-failure.png").unlink(missing_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{base}/lab/tree/build.ipynb?token={token}")
            cell = page.locator(".jp-Notebook .jp-Cell").first
            cell.wait_for(timeout=90_000)
            _wait_for_idle_kernel(base, token)
            run_cell(page, cell)
            button = page.locator(".mp-build-panel .mp-build-button")
            button.wait_for(timeout=120_000)
            command = page.locator(".mp-build-panel .mp-command").first.inner_text()
            assert command.startswith("docker buildx build --builder ")
            assert "--platform linux/amd64,linux/arm64" in command
            page.screenshot(path=str(OUTPUT / "buildpanel-before.png"), full_page=True)
            button.click()
            for platform in ("linux-amd64", "linux-arm64"):
                page.locator(f".mp-lane-{platform} .mp-lane-body[data-state='done']").wait_for(
                    timeout=300_000
                )
            page.locator(".mp-build-state[data-state='succeeded']").wait_for(timeout=60_000)
            page.locator(".mp-timing-chart").wait_for(timeout=30_000)
            page.wait_for_function(
                "() => { const i = document.querySelector('img.mp-timing-chart');"
                " return i && i.complete && i.naturalWidth > 0; }",
                timeout=30_000,
            )
            page.screenshot(path=str(OUTPUT / "buildpanel-done.png"), full_page=True)

            for platform, kind in (("linux-amd64", "native"), ("linux-arm64", "emulated")):
                lane = page.locator(f".mp-lane-{platform} .mp-lane-body")
                assert lane.get_attribute("data-platform") == platform.replace("-", "/", 1)
                done = lane.locator(".mp-step[data-state='done']")
                assert done.count() >= 2  # load metadata + the RUN step
                run = lane.locator(f".mp-step[data-state='done'][data-kind='{kind}']")
                assert "RUN echo" in run.first.inner_text()
            assert page.locator(".mp-lane-linux-arm64 [data-kind='emulated']").count() == 1
            assert page.locator(".mp-lane-linux-amd64 [data-kind='emulated']").count() == 0
            src = page.locator(".mp-timing-chart").get_attribute("src") or ""
            assert src.startswith("blob:") or src.startswith("data:image/png")
            assert " on aarch64" in page.locator(".mp-build-panel .mp-log").inner_text()
        except Exception:
            page.screenshot(path=str(OUTPUT / "buildpanel-failure.png"), full_page=True)
            print("\n".join(server_log[-40:]))
            raise
        finally:
            browser.close()
