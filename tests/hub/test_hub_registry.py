"""On the class hub a notebook's full check grades against the registry its server was given
(``COURSE_REGISTRY``: the scope proxy), not the course engine's own port, which the hub
closes to every uid but root's."""

from __future__ import annotations

import pytest

from grader.grading.checks.run import EngineOptions, check_engine

pytestmark = [pytest.mark.engine]


def test_the_full_check_uses_course_registry(monkeypatch, tmp_path) -> None:
    (tmp_path / "build.sh").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    monkeypatch.setenv("COURSE_REGISTRY", "127.0.0.1:9")  # discard: nothing answers there
    got = check_engine(tmp_path, None, opts=EngineOptions(isolate=False))
    assert got.infrastructure and "127.0.0.1:9" in got.infrastructure, got.infrastructure
