"""Shared by the RN rule-case runners (kinds ``sandbox`` and ``engine``): loading cases,
making their submissions, and the CI rule that a missing sandbox or engine fails."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
import yaml
from submission_kit import DEFAULT_FILES, materialise

CASES = Path(__file__).parents[1] / "rules" / "cases"
REQUIRE = os.environ.get("COURSE_REQUIRE_ENGINE") == "1"

#: The sandbox cases' build.sh unless a case sets one: runs nothing from docker.
QUIET_BUILD_SH = "#!/bin/sh\necho ok\n"
#: The engine cases' build.sh unless a case sets one: pushes into the submission's repository.
PUSHING_BUILD_SH = """\
#!/bin/sh
set -e
docker buildx build --platform linux/amd64,linux/arm64 --provenance=false \\
  -t "$GRADER_REPOSITORY/app:latest" --push .
"""


def load(kind: str) -> list:
    """pytest params (rule, case) of every case of ``kind``, with marks from ``needs``."""
    params = []
    for path in sorted(CASES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if data.get("kind") != kind:
            continue
        for case in data["cases"]:
            needs = case.get("needs", data.get("needs"))
            marks = []
            if kind == "engine" or needs == "engine":
                marks += [pytest.mark.engine, pytest.mark.registry]
            platforms = case.get("platforms", ["linux/amd64", "linux/arm64"])
            if kind == "engine" and "linux/arm64" in platforms:
                marks.append(pytest.mark.qemu)
            case = {**case, "_file": data}
            params.append(
                pytest.param(data["rule"], case, marks=marks, id=f"{data['rule']}-{case['name']}")
            )
    return params


def make_submission(tmp_path: Path, case: dict, default_build_sh: str) -> Path:
    spec = {"build.sh": default_build_sh, "Dockerfile": DEFAULT_FILES["Dockerfile"]}
    for key in ("build.sh", "Dockerfile"):
        if key in case:
            spec[key] = case[key]
    spec.update(case.get("files") or {})
    return materialise(tmp_path, spec)


def unique_namespace(case: dict) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", case["name"].lower())[:30].strip("-")
    return f"t-rncases-{uuid.uuid4().hex[:8]}/{slug}"


def require_sandbox() -> None:
    from grader.grading.sandbox import sandbox_problem

    why = sandbox_problem()
    if why:
        if REQUIRE:
            pytest.fail(f"[sandbox] {why}: required in CI (COURSE_REQUIRE_ENGINE=1)")
        pytest.skip(f"[sandbox] {why}")
