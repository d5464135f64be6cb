"""A class, for real: `./course hub up` (docs/jupyterhub.md section 0, run from the page), then
an instructor and two learners of hub/class.example.txt through the hub's login page in
Debian's chromium, each learner with their own rootless engine and registry namespace.

The instructor releases the challenge; ada and alan log in and fetch it; ada fixes it, alan
leaves the starter's bugs; each builds (ada's per-platform lanes appear in her JupyterLab) and
submits; the instructor collects, grades (`grader autograde` for the cells, `grader batch` for
the artefacts) and releases feedback; each learner sees their own. Then the walls: alan cannot
read ada's files, push into ada's repository, or reach the host's docker socket or the
registry's own port. Shell steps run as the user, in their server's environment, as they would
type them in their JupyterLab terminal. Screenshots of every step: test-output/hub/.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pwd
import re
import shutil
from pathlib import Path

import guide
import pytest

from grader import proc
from grader.classroom import classlist, hub
from grader.course.labs import LABS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.engine,
    pytest.mark.qemu,
]

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "hub"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip
CLASS = classlist.load(ROOT / "hub" / "class.example.txt")
ADA, ALAN = CLASS.learners[:2]
TEACHER = CLASS.instructor
CHALLENGE = next(lab for lab in LABS if lab.endswith("-challenge"))
BASE = hub.hub_url(8000)


def server_env(login: str) -> dict[str, str]:
    """The environment JupyterHub gave ``login``'s running server (what their terminal has)."""
    found = proc.run(["pgrep", "-u", login, "-f", "jupyterhub-singleuser"], timeout=10,
                     check=False).stdout.split()  # fmt: skip
    assert found, f"{login}'s server is not running"
    raw = Path(f"/proc/{found[0]}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    keep = ("PATH", "DOCKER_HOST", "COURSE_REGISTRY", "JUPYTERHUB_USER", "LANG")
    user = pwd.getpwnam(login)
    return {k: env[k] for k in keep if k in env} | {"HOME": user.pw_dir, "USER": login}


def as_user(login: str, script: str, timeout: float = 900, check: bool = True):
    env = server_env(login)
    argv = ["runuser", "-u", login, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
            "bash", "-euo", "pipefail", "-c", f"cd ~ && {script}"]  # fmt: skip
    done = proc.run(argv, timeout=timeout, check=False)
    if check:
        assert done.ok, f"as {login}: {script}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def class_hub():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    fresh_round()
    guide.run("hub-up", env={}, cwd=ROOT, timeout=1800)
    yield hub.passwords(hub.HubPaths())
    guide.run("hub-down", env={}, cwd=ROOT, timeout=300)
    assert not hub.hub_answers(8000)


def fresh_round() -> None:
    """A class that ran before on this machine leaves its round behind (and the instructor's
    course copy of that day): start a new one; `hub up` copies the course again."""
    shutil.rmtree(hub.HubPaths().exchange / "multiplatform-builds", ignore_errors=True)
    for who in CLASS.everyone:
        with contextlib.suppress(KeyError):
            home = Path(pwd.getpwnam(who).pw_dir)
            for name in ("course", CHALLENGE, "lanes.ipynb"):
                target = home / name
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def log_in(browser, login: str, password: str):
    """A fresh browser context, logged in through the hub's form, on the user's JupyterLab."""
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.goto(f"{BASE}/hub/login")
    page.fill("#username_input", login)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url(re.compile(rf".*/user/{login}/lab.*"), timeout=180_000)
    page.locator(".jp-LabShell").wait_for(timeout=120_000)
    page.locator(".jp-NotebookPanel, .jp-DirListing-item").first.wait_for(timeout=120_000)
    shot(page, f"{login}-lab")
    menu = page.locator(".lm-MenuBar-item", has_text="Nbgrader")
    tools = page.locator(".jp-SideBar .lm-TabBar-tab", has_text="Create Assignment").count()
    assert (tools > 0) == (login == TEACHER), "instructor tools: the instructor's only"
    assert menu.count() <= 1
    return page


def shot(page, name: str) -> None:
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def run_first_cell(page) -> None:
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first
    cell.wait_for(timeout=120_000)
    for _attempt in range(5):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:
            cell.locator(".jp-InputPrompt").filter(has_not_text="[ ]").first.wait_for(
                timeout=30_000
            )
            return
        except Exception:
            continue
    pytest.fail("the cell never started running")


def lanes_in_browser(page, login: str) -> None:
    """A BuildPanel of the learner's own build in their JupyterLab: a lane per platform."""
    notebook = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "lanes", "metadata": {},
                   "outputs": [], "source": (
                       "from grader.course.labkit import registry_host\n"
                       "from grader.course.widgets import BuildPanel\n"
                       f"BuildPanel(context='{CHALLENGE}', "
                       f"tag=f'{{registry_host()}}/{login}/lanes:1')")}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    as_user(login, f"cat > lanes.ipynb <<'EOF'\n{json.dumps(notebook)}\nEOF")
    page.goto(f"{BASE}/user/{login}/lab/workspaces/lanes/tree/lanes.ipynb")
    run_first_cell(page)
    page.locator(".mp-build-panel .mp-build-button").click(timeout=180_000)
    for platform in ("linux-amd64", "linux-arm64"):
        page.locator(f".mp-lane-{platform}").wait_for(timeout=180_000)
    ended = ".mp-build-state[data-state='succeeded'], .mp-build-state[data-state='failed']"
    # Running lanes, unless the build already ended (a warm cache can be that quick).
    page.locator(f".mp-lane-body[data-state='running'], {ended}").first.wait_for(timeout=300_000)
    shot(page, f"{login}-lanes-running")
    page.locator(ended).first.wait_for(timeout=900_000)
    shot(page, f"{login}-lanes-done")
    log = page.locator(".mp-build-panel .mp-log").inner_text()[-2000:]
    assert page.locator(".mp-build-state[data-state='succeeded']").count() == 1, log


def test_a_class_on_the_hub(class_hub, browser) -> None:
    passwords = class_hub
    assert set(CLASS.everyone) <= set(passwords), "hub up gives every login a password"
    teacher = log_in(browser, TEACHER, passwords[TEACHER])
    as_user(TEACHER, f"cd course && nbgrader generate_assignment {CHALLENGE} --force "
            f"&& nbgrader release_assignment {CHALLENGE} --force")  # fmt: skip

    pages = {who: log_in(browser, who, passwords[who]) for who in (ADA, ALAN)}
    for who in (ADA, ALAN):
        as_user(who, f"nbgrader fetch_assignment {CHALLENGE}")
    fixed = Path(pwd.getpwnam(TEACHER).pw_dir) / "course" / "source" / CHALLENGE
    for name in ("build.sh", "Dockerfile"):  # ada fixes it; alan leaves the starter's bugs
        text = (fixed / "reference-solution" / name).read_text()
        as_user(ADA, f"cat > {CHALLENGE}/{name} <<'EOF'\n{text}EOF")

    lanes_in_browser(pages[ADA], ADA)
    for who in (ADA, ALAN):
        built = as_user(who, f'cd {CHALLENGE} && IMAGE="$COURSE_REGISTRY/{who}/hello:latest" '
                        "bash build.sh", check=False)  # fmt: skip
        # The starter's bugs give a wrong image, not a failing script: only ada's must work.
        assert built.ok or who != ADA, built.stderr[-2000:]
        as_user(who, f"nbgrader submit {CHALLENGE}")

    course = "cd course && "
    as_user(TEACHER, course + f"nbgrader collect {CHALLENGE}")
    autograde_behind_the_wall()
    grades = as_user(TEACHER, course + "nbgrader export --to grades.csv && cat grades.csv").stdout
    scores = {row["student_id"]: float(row["score"] or 0)
              for row in csv.DictReader(io.StringIO(grades))}  # fmt: skip
    # The notebook cells, each learner's kernel jailed with a worker engine: ada's fix earns
    # more than alan's starter, whose criteria count once cross-compile passes.
    assert scores[ADA] > scores[ALAN], grades
    batch_artefacts(teacher)
    as_user(TEACHER, course + f"nbgrader generate_feedback {CHALLENGE} && "
            f"nbgrader release_feedback {CHALLENGE}")  # fmt: skip
    shot(teacher, f"{TEACHER}-after-grading")

    for who in (ADA, ALAN):
        as_user(who, f"nbgrader fetch_feedback {CHALLENGE}")
        html = as_user(who, f"ls {CHALLENGE}/feedback/*/{CHALLENGE}.html").stdout.strip()
        home = pwd.getpwnam(who).pw_dir
        rel = os.path.relpath(html if html.startswith("/") else f"{home}/{html}", home)
        page = pages[who]
        page.goto(f"{BASE}/user/{who}/files/{rel}")
        page.get_by_text(CHALLENGE).first.wait_for(timeout=60_000)
        shot(page, f"{who}-feedback")
        assert page.url.startswith(f"{BASE}/user/{who}/")

    walls(passwords)


def autograde_behind_the_wall() -> None:
    """root runs `grader autograde` on the instructor's course (docs/jupyterhub.md section 0):
    nbgrader as usual, each learner's kernel in the wall; what it writes is the instructor's."""
    course = Path(pwd.getpwnam(TEACHER).pw_dir) / "course"
    done = proc.run(["grader", "autograde", CHALLENGE, "--course", str(course)],
                    timeout=1800, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "autograded 2/2 students" in done.stdout, done.stdout[-3000:]
    teacher = pwd.getpwnam(TEACHER).pw_uid
    for who in (ADA, ALAN):
        graded = course / "autograded" / who / CHALLENGE
        assert graded.stat().st_uid == teacher, graded
        assert all(p.lstat().st_uid == teacher for p in graded.rglob("*")), graded


def batch_artefacts(page) -> None:
    """root grades the collected build.sh files and pushed images (`grader batch`, worker
    engines): ada's fix earns every point, alan's starter does not; the results page opens."""
    results = OUTPUT / "batch"
    shutil.rmtree(results, ignore_errors=True)
    submitted = Path(pwd.getpwnam(TEACHER).pw_dir) / "course" / "submitted"
    done = proc.run(["grader", "batch", str(submitted), "--out", str(results), "--workers", "2"],
                    timeout=1800, check=False)  # fmt: skip
    assert (results / "grades.csv").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    rows = {r["student"]: r for r in csv.DictReader((results / "grades.csv").open())}
    assert float(rows[ADA]["score"]) == float(rows[ADA]["max_score"]), rows[ADA]
    assert float(rows[ALAN]["score"]) < float(rows[ALAN]["max_score"]), rows[ALAN]
    page.goto((results / "index.html").as_uri())
    page.locator("td.id", has_text=ALAN).first.wait_for(timeout=30_000)
    assert page.locator("td.id").first.inner_text() == ALAN  # lowest score first
    shot(page, "results-page")


def walls(passwords: dict[str, str]) -> None:
    ada_home = pwd.getpwnam(ADA).pw_dir
    peek = as_user(ALAN, f"ls {ada_home}", check=False)
    assert not peek.ok and "Permission denied" in peek.stderr
    push = as_user(ALAN, f"cd {CHALLENGE} && docker buildx build --platform linux/amd64 "
                   f"--provenance=false -t \"$COURSE_REGISTRY/{ADA}/hello:latest\" --push .",
                   check=False)  # fmt: skip
    assert not push.ok and "403" in push.stderr
    port = hub.settings().registry_port
    for who in (ADA, ALAN):  # a name the labs share (lab04/run-1): each learner's own copy
        lab = as_user(who, "docker buildx build --platform linux/amd64 --provenance=false "
                      f'--label who={who} -t "$COURSE_REGISTRY/lab04/run-hub:1" --push - '
                      "<<'EOF'\nFROM busybox:latest\nEOF", check=False)  # fmt: skip
        assert lab.ok, lab.stderr[-2000:]
    for who in (ADA, ALAN):
        url = f"http://127.0.0.1:{port}/v2/{who}/lab04/run-hub/tags/list"
        assert '"1"' in proc.run(["curl", "-sS", "-m", "5", url], timeout=30).stdout, who
    sock = as_user(ALAN, "DOCKER_HOST=unix:///var/run/docker.sock docker ps", check=False)
    assert not sock.ok and "permission denied" in sock.stderr.lower()
    direct = as_user(ALAN, f"curl -sS -m 5 http://127.0.0.1:{port}/v2/", check=False)
    assert not direct.ok, "the registry's own port answers a learner"
    exchange = as_user(ALAN, f"ls {hub.HubPaths().exchange}/*/inbound", check=False)
    assert not exchange.ok or ADA not in exchange.stdout, "alan lists others' submissions"
    assert shutil.which("runuser")
