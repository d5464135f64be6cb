"""The panels where no engine answers, for real (``DOCKER_HOST`` points nowhere, as on a
machine without Docker): each renders, says why it cannot run, shows the exact command, and
keeps its run buttons disabled; ManifestExplorer still reads a reachable registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.course import noengine
from grader.course.widgets import BinfmtPanel, BuilderPanel, BuildPanel, ManifestExplorer
from grader.engine.baseimages import RECIPES

#: The course registry's busybox stand-in: amd64, arm64 and arm/v7 (its recipe says).
BUSYBOX_PLATFORMS = next(r.platforms for r in RECIPES if r.name == "busybox")

CONTEXT = Path(__file__).parents[1] / "fixtures" / "rawjson" / "contexts" / "emulated"


@pytest.fixture
def unreachable_engine(monkeypatch):
    monkeypatch.delenv("COURSE_NO_ENGINE", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    noengine.engine_available.cache_clear()
    assert not noengine.engine_available()
    yield
    noengine.engine_available.cache_clear()


def test_panels_render_and_explain_with_no_engine(unreachable_engine):
    build = BuildPanel(context=str(CONTEXT), tag="127.0.0.1:5000/me/app:v1")
    builders = BuilderPanel(name="multi")
    binfmt = BinfmtPanel(platforms=["linux/arm64"])
    for panel in (build, builders, binfmt):
        assert "mp-notice--no-engine" in panel.notice.value
    assert build.build_button.disabled and build.builder.disabled
    assert "--platform linux/amd64,linux/arm64" in build.command.value
    assert all(b.disabled for b in builders.buttons.values())
    assert "docker buildx ls --format json" in builders.table.value
    assert binfmt.install_button.disabled and binfmt.verify_button.disabled
    # The command still follows the form: a learner can compose it and run it elsewhere.
    build.set_options(output="oci", oci_dest="out.tar")
    assert "type=oci,dest=out.tar" in build.command.value


@pytest.mark.registry
def test_manifest_explorer_needs_no_engine(unreachable_engine, registry_host):
    explorer = ManifestExplorer()
    root = explorer.explore(f"{registry_host}/library/busybox:latest")
    assert root is not None, explorer.status.value
    platforms = sorted(n.platform for n in root.walk() if n.kind == "image")
    assert platforms == sorted(BUSYBOX_PLATFORMS)
