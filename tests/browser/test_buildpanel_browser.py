"""BuildPanel in a real browser: JupyterLab in headless Debian chromium (Playwright from
PyPI, the browser from apt: never ``playwright install``). Open a notebook that displays
the panel, run its cell, click Build, wait for both lanes to finish, keep a screenshot under
``test-output/browser/``, and check the DOM the learner sees."""

from __future__ import annotations

import json
import uuid

import pytest
from browserkit import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OUTPUT,
    jupyterlab_server,
    run_cell,
    wait_for_idle_kernel,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.engine,
    pytest.mark.registry,
    pytest.mark.qemu,
    pytest.mark.slow,
]

DOCKERFILE = """\
FROM busybox:latest
RUN echo "{nonce} on $(uname -m)"
"""


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


@pytest.fixture
def jupyterlab(tmp_path, registry_host):
    """JupyterLab on a temp root holding a notebook that displays a BuildPanel."""
    root = tmp_path / "root"
    (root / "ctx").mkdir(parents=True)
    (root / "ctx" / "Dockerfile").write_text(DOCKERFILE.format(nonce=uuid.uuid4().hex))
    tag = f"{registry_host}/t-widgets/browser-{uuid.uuid4().hex[:8]}:v1"
    (root / "build.ipynb").write_text(
        _notebook(
            "from grader.course.widgets import BuildPanel\n"
            f"panel = BuildPanel(context='ctx', tag={tag!r})\n"
            "panel"
        )
    )
    with jupyterlab_server(root, tmp_path) as server:
        yield server


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
            wait_for_idle_kernel(base, token)
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
