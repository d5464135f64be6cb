"""docs/jupyterhub.md's scope proxy blocks, run as written: the instructor adds a learner and
starts the proxy; the learner pushes a two-platform image through it into their own
namespace, and a push into another learner's namespace is refused."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import guide
import pytest

from grader import proc
from grader.engine import scope
from grader.engine.config import Settings

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.qemu]


def test_learner_pushes_through_the_scope_proxy_as_the_guide_says(tmp_path, registry_host):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
    from scopekit import free_port

    shim = tmp_path / "bin"
    shim.mkdir()  # `grader` as the guide writes it, from this checkout
    (shim / "grader").write_text(f'#!/bin/sh\nexec {sys.executable} -m grader.cli "$@"\n')
    (shim / "grader").chmod(0o755)
    state = tmp_path / "state"
    env = {
        "PATH": f"{shim}:{os.environ['PATH']}",
        "COURSE_STATE_DIR": str(state),
        "COURSE_REGISTRY_PORT": registry_host.rpartition(":")[2],
        "CLASS": f"scope/hub-{secrets.token_hex(3)}",
        "JUPYTERHUB_USER": "ada",
        "SCOPE": f"127.0.0.1:{free_port()}",
        "DOCKER_CONFIG": str(tmp_path / "ada-docker"),
        "LEARNER_UID": str(os.getuid()),
    }
    cfg = Settings(state, int(env["COURSE_REGISTRY_PORT"]))
    try:
        guide.run("scope-up", env, tmp_path)
        conf = Path(env["DOCKER_CONFIG"]) / "config.json"
        assert list(json.loads(conf.read_text())["auths"]) == [env["SCOPE"]]
        assert conf.stat().st_mode & 0o777 == 0o600
        (tmp_path / "Dockerfile").write_text(f"FROM busybox:latest\nRUN echo {env['CLASS']}\n")
        done = guide.run("scope-learner-push", env, tmp_path, timeout=900)
        assert "linux/arm64" in done.stdout
        other = f"{env['SCOPE']}/{env['CLASS']}/bob/app:1"
        argv = ["docker", "buildx", "build", "--platform", "linux/amd64", "-t", other, "--push"]
        refused = proc.run([*argv, "."], timeout=600, env=env, cwd=tmp_path, check=False)
        assert not refused.ok
        assert [r for r in scope.denied("ada", cfg=cfg) if f"{env['CLASS']}/bob/app" in r["target"]]
    finally:
        scope.stop(cfg)
        for ref in (
            f"{env['SCOPE']}/{env['CLASS']}/ada/app:1",
            f"{env['SCOPE']}/{env['CLASS']}/bob/app:1",
        ):
            proc.run(["docker", "image", "rm", ref], timeout=60, check=False)
