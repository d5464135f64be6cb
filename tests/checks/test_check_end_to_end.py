"""`grader check` without --static on the real engine and registry: build.sh runs (in the
sandbox), the grader builds and runs the image on both platforms, and the registry checks
read what build.sh pushed. One small Go submission keeps it under a minute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "submissions"


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.qemu
def test_go_solution_passes_every_criterion() -> None:
    env = {k: v for k, v in os.environ.items() if k != "COURSE_NO_ENGINE"}
    done = subprocess.run(
        [sys.executable, "-m", "grader.cli", "check", str(FIXTURES / "solution-go"),
         "--format", "json"],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    report = json.loads(done.stdout)
    statuses = {c["id"]: c["status"] for c in report["criteria"]}
    assert statuses == dict.fromkeys(statuses, "pass"), json.dumps(report, indent=1)[:6000]
    assert done.returncode == 0
    assert report["score"] == report["max_score"] == 12
    image_arch = next(c for c in report["criteria"] if c["id"] == "image-arch")
    text = " ".join(f["message"] for f in image_arch["findings"])
    assert "x86-64" in text and "aarch64" in text  # the ELF of each platform's binary
