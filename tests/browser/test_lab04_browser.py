"""A learner does lab 04's build task in a real browser: JupyterLab opens the released lab,
the learner runs the setup cells, types a build command into the `%%docker build` cell and
runs it, sees one lane per platform RUNNING while the build runs and then done, and the
task's graded cells pass. Screenshots are kept under ``test-output/browser/`` (lab04-*.png)."""

from __future__ import annotations

import re
import shutil
import time

import pytest
from browserkit import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OUTPUT,
    jupyterlab_server,
    run_cell,
    wait_for_idle_kernel,
)

from grader.course.release import RELEASE

pytestmark = [
    pytest.mark.browser,
    pytest.mark.engine,
    pytest.mark.registry,
    pytest.mark.qemu,
    pytest.mark.slow,
]

LAB = "04-build-push"
#: What the learner types (--no-cache: the RUN steps really run, so there is something to
#: watch even when an earlier run cached them).
TYPED = (
    "%%docker build\n"
    "docker buildx build --builder default --platform linux/amd64,linux/arm64 "
    '--provenance=false --no-cache -t "$REPO:v1" --push app'
)
#: The graded cells of the build task, by the line that calls their check.
GRADED = ("check_buildx_platforms()", "check_push_provenance()", "check_builder()",
          "check_pushed_image()")  # fmt: skip


def _cell(page, first_line: str):
    """The code cell whose editor has a line that is exactly ``first_line``."""
    line = page.locator(".cm-line", has_text=re.compile(rf"^{re.escape(first_line)}$"))
    return page.locator(".jp-Notebook .jp-CodeCell").filter(has=line).first


def _run_and_wait(page, cell, timeout: float = 300) -> str:
    """Run a cell, wait until its prompt shows an execution count; return its output text."""
    run_cell(page, cell)
    prompt = cell.locator(".jp-InputPrompt").first
    deadline = time.monotonic() + timeout
    while not re.fullmatch(r"\[\d+\]:", (prompt.inner_text() or "").strip()):
        if time.monotonic() > deadline:
            pytest.fail(f"the cell did not finish in {timeout:g} s")
        time.sleep(0.2)
    return cell.locator(".jp-OutputArea").inner_text()


@pytest.fixture
def lab(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(RELEASE / LAB, root / LAB)
    # every cell in the DOM (JupyterLab 4 otherwise renders only the cells in view)
    settings = {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"}}
    with jupyterlab_server(root, tmp_path, settings) as server:
        yield server


def test_learner_types_a_build_and_watches_lanes_then_passes(lab):
    from playwright.sync_api import sync_playwright

    base, token, server_log = lab
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT.glob("lab04-*.png"):
        old.unlink()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        try:
            page.goto(f"{base}/lab/tree/{LAB}/{LAB}.ipynb?token={token}")
            page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=90_000)
            wait_for_idle_kernel(base, token)
            setup = _run_and_wait(page, _cell(page, "%load_ext grader.course.magics"))
            assert "your repository" in setup, setup
            _run_and_wait(page, _cell(page, "%%writefile app/Dockerfile"))

            # the learner replaces the stub with a build command of their own
            answer = _cell(page, "%%docker build")
            answer.locator(".jp-InputArea-editor").click()
            page.keyboard.press("Control+A")
            page.keyboard.insert_text(TYPED)
            assert "--no-cache" in answer.locator(".jp-InputArea-editor").inner_text()
            run_cell(page, answer)

            lanes = {
                plat: answer.locator(f".mp-lane-{plat} .mp-lane-body")
                for plat in ("linux-amd64", "linux-arm64")
            }
            for plat in lanes:
                answer.locator(f".mp-lane-{plat} .mp-lane-body[data-state='running']").wait_for(
                    timeout=120_000
                )
            # both lanes ran while the build was still going: the panel had not finished
            state = answer.locator(".mp-build-state").first.get_attribute("data-state")
            assert state == "running", f"lanes shown running only after the build ended ({state})"
            page.screenshot(path=str(OUTPUT / "lab04-running.png"), full_page=True)
            answer.locator(".mp-build-state[data-state='succeeded']").wait_for(timeout=300_000)
            for plat, lane in lanes.items():
                assert lane.get_attribute("data-state") == "done", plat
                assert lane.locator(".mp-step[data-state='done']").count() >= 2, plat
            assert answer.locator(".mp-lane-linux-arm64 [data-kind='emulated']").count() >= 1
            command = answer.locator(".mp-command").first.inner_text()
            assert command.startswith("docker buildx build --builder default --platform")
            assert "--no-cache" in command and "/lab04/run-" in command
            page.screenshot(path=str(OUTPUT / "lab04-done.png"), full_page=True)

            _run_and_wait(page, _cell(page, "def _criterion(report, cid):"))
            for call in GRADED:
                out = _run_and_wait(page, _cell(page, call))
                assert "Error" not in out, f"{call}: {out}"
            page.screenshot(path=str(OUTPUT / "lab04-checks.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(OUTPUT / "lab04-failure.png"), full_page=True)
            print("\n".join(server_log[-40:]))
            raise
        finally:
            browser.close()
