"""The instructor's results page in Debian's chromium (Playwright from PyPI, the browser
from apt): a real static batch of 50 submissions (the fixture submissions, and learners with
hostile ids), opened from disk on a laptop-sized screen. Keeps a screenshot under
``test-output/browser/``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grader.grading.batch.run import BatchOptions, run_batch

pytestmark = [pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
OUTPUT = Path(__file__).parents[2] / "test-output" / "browser"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "submissions"
HOSTILE_IDS = ["<script>alert(1)", 'x"><img src=x onerror=alert(2)>', "\x1b[2Jwipe"]


def _class(root: Path, n: int = 50) -> Path:
    subs = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
    for i in range(n):
        sid = HOSTILE_IDS[i] if i < len(HOSTILE_IDS) else f"learner{i:02d}"
        shutil.copytree(subs[i % len(subs)], root / sid, symlinks=True)
    return root


def test_results_page_reads_well_on_a_laptop(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    out = tmp_path / "results"
    opts = BatchOptions(out=out, static_only=True, progress=lambda _: None)
    summary = run_batch(_class(tmp_path / "subs"), opts)
    assert summary.total == 50
    page_path = out / "index.html"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            dialogs: list[str] = []
            console: list[str] = []
            requests: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("console", lambda m: console.append(m.text))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=str(OUTPUT / "results-page.png"), full_page=True)
            page.screenshot(path=str(OUTPUT / "results-page-fold.png"))
            facts = page.evaluate(
                """() => ({
                  overflow: document.documentElement.scrollWidth - window.innerWidth,
                  charts: [...document.querySelectorAll('svg')].map(
                    s => s.getBoundingClientRect().width),
                  rows: document.querySelectorAll('a[href^="reports/"]').length,
                  firstChart: document.querySelector('svg').getBoundingClientRect().top,
                  scripts: document.querySelectorAll('script, img, iframe').length,
                })"""
            )
            ids = page.locator("td.id").all_inner_texts()
        finally:
            browser.close()
    assert not dialogs, dialogs  # no hostile id ran as script
    assert requests == [page_path.as_uri()], requests  # nothing fetched but the page itself
    assert not [m for m in console if "Content Security Policy" in m], console
    assert facts["overflow"] <= 0, "the page scrolls sideways on a 1366 px screen"
    assert len(facts["charts"]) == 3 and all(w >= 300 for w in facts["charts"])
    assert facts["firstChart"] < 768, "the first chart is below the fold"
    assert facts["rows"] == 50 and facts["scripts"] == 0
    assert HOSTILE_IDS[0] in ids and "\\x1b[2Jwipe" in ids
