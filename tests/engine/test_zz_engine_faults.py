"""Faults of the engine itself: the course's dockerd dies, the registry stops, `down` + `up`.

These stop and restart the shared engine, so they run last in this folder (zz) and are marked
``faults``. They need the engine the course started (not Docker Desktop's).
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from grader import proc
from grader.docker import registry
from grader.engine import baseimages, services
from grader.engine.config import settings

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.faults]


def _doctor() -> dict:
    done = proc.run(["grader", "engine", "doctor", "--json"], timeout=120, check=False)
    data = json.loads(done.stdout)
    data["exit"] = done.returncode
    data["by_name"] = {c["name"]: c for c in data["checks"]}
    return data


@pytest.fixture
def course_engine():
    cfg = settings()
    if services.owned_pid(cfg, "dockerd") is None:
        pytest.skip("the running engine was not started by the course (Docker Desktop?)")
    yield cfg
    # Whatever happened, leave a working engine behind for the tests that follow.
    proc.run(["grader", "engine", "up"], timeout=900, check=False)


def test_dockerd_dies_doctor_says_so_and_up_restarts_it(course_engine):
    pid = services.owned_pid(course_engine, "dockerd")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while services.docker_answers(timeout=3) and time.monotonic() < deadline:
        time.sleep(0.5)
    report = _doctor()
    assert report["exit"] == 1 and report["ready"] is False
    engine = report["by_name"]["engine"]
    assert engine["ok"] is False
    assert "has stopped" in engine["detail"] and "grader engine up" in engine["remedy"]
    up = proc.run(["grader", "engine", "up"], timeout=600, check=False)
    assert up.returncode == 0, up.stderr[-2000:]
    assert services.owned_pid(course_engine, "dockerd") not in (None, pid)
    # The restarted engine still builds from the mirror and runs arm64.
    out = proc.run(
        ["docker", "run", "--rm", "--platform", "linux/arm64", "busybox:latest", "uname", "-m"],
        timeout=300,
    )
    assert out.stdout.strip() == "aarch64"


def test_down_stops_what_the_course_started_and_up_brings_it_back(course_engine):
    down = proc.run(["grader", "engine", "down"], timeout=120)
    assert "registry" in down.stdout and "dockerd" in down.stdout
    assert not registry.registry_answers(course_engine.registry_host)
    report = _doctor()
    assert report["ready"] is False
    assert report["by_name"]["registry"]["ok"] is False
    up = proc.run(["grader", "engine", "up"], timeout=600, check=False)
    assert up.returncode == 0, up.stderr[-2000:]
    assert _doctor()["ready"] is True
    # Base images survived: stored under the state dir, not rebuilt.
    assert up.stderr.count("up to date") == len(baseimages.RECIPES)
