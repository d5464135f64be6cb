"""Shared test fixtures. Tests marked ``engine``, ``registry`` or ``qemu`` need the real
engine; with COURSE_REQUIRE_ENGINE=1 (set by ``./course test`` and CI) a missing one is a
failure, never a skip."""

from __future__ import annotations

import functools
import os
import uuid

import pytest

from grader.course.noengine import engine_available
from grader.docker import registry
from grader.engine import services
from grader.engine.config import settings

REQUIRE = os.environ.get("COURSE_REQUIRE_ENGINE") == "1"


@functools.cache
def _missing(marker: str) -> str | None:
    if marker == "engine" and not engine_available():
        return "no Docker engine answers (run `grader engine up`)"
    if marker == "registry" and not registry.registry_answers(settings().registry_host):
        return f"the course registry {settings().registry_host} does not answer"
    if marker == "qemu":
        entries = services.binfmt_entries()
        if not any(k in entries for k in ("qemu-aarch64", "qemu-x86_64")):
            return "no QEMU emulator registered in binfmt_misc"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in ("engine", "registry", "qemu"):
        if item.get_closest_marker(marker) is None:
            continue
        why = _missing(marker)
        if why:
            if REQUIRE:
                pytest.fail(f"[{marker}] {why}: required in CI (COURSE_REQUIRE_ENGINE=1)")
            pytest.skip(f"[{marker}] {why}")


@pytest.fixture(scope="session")
def registry_host() -> str:
    """``127.0.0.1:5000`` (or the port ``grader engine up`` chose)."""
    return settings().registry_host


@pytest.fixture
def unique_repo(registry_host: str, request: pytest.FixtureRequest) -> str:
    """A registry repository no other test uses: ``HOST/test/<test-name>-<random>``."""
    name = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())[:40]
    return f"{registry_host}/test/{name.strip('-')}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def local_busybox() -> str:
    """busybox:latest in the shared engine's store for both course platforms: tests that
    create containers through the API (no implicit pull) or compare a run's whole output
    (no pull progress) must not depend on an earlier test having pulled it."""
    from grader import proc

    for platform in ("linux/amd64", "linux/arm64"):
        proc.run(["docker", "pull", "-q", "--platform", platform, "busybox:latest"], timeout=300)
    return "busybox:latest"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that stop or restart the shared engine run after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("faults") is not None)
