"""Every released lab, run by papermill the way Binder runs it: no engine reachable.

The engine is made unreachable for real (``DOCKER_HOST=unix:///nonexistent``; the course
registry's port points nowhere, as on Binder), then each notebook in ``labs/`` runs top to
bottom. Checks: no cell fails except an answer cell the learner has not written yet (and
then only with NotImplementedError/NameError/AssertionError); the first cell shows the
no-engine banner; every engine cell says ``[no engine]``, and shows the recorded output
when the store has one (checked: a cell never says "no recorded output" for a key the
store has). Docker Hub names are served by a local registry that requires a
token (the anonymous token flow), so the manifest lab's public-registry cells run through
the same code path as on Binder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import papermill
import pytest
from authregistry import Registry, SigningKey, TokenServer, anonymous_pull, token_auth_yaml

from grader.course import recorded

ROOT = Path(__file__).resolve().parents[2]
LABS = sorted(ROOT.glob("labs/*/*.ipynb"))

#: Errors an unanswered exercise raises, and a check that cannot run without an engine
#: (CheckSkipped): anything else in a lab is a bug of no-engine mode.
LEARNER_ERRORS = {"NotImplementedError", "NameError", "AssertionError", "CheckSkipped"}

#: A cell that needs the engine: a `sh(...)` of a docker command, a `%%docker` cell, or an
#: explicit check.
_ENGINE_CALL = re.compile(
    r"""\bsh\(\s*[\[(]?\s*f?["']docker\b|\bneeds_engine\(|^%%docker\b""", re.M
)
_RECORD_KEY = re.compile(r"""record\s*=\s*["']([^"']+)["']""")


def _text(outputs: list[dict]) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("display_data", "execute_result"):
            parts.append(str(out.get("data", {}).get("text/plain", "")))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "".join(p if isinstance(p, str) else "".join(p) for p in parts)


@pytest.fixture(scope="module")
def hub_mirror(tmp_path_factory, registry_host):
    """Docker Hub as Binder sees it, here: a token-auth registry (anonymous pull tokens) that
    proxies the course registry, where the Docker Hub stand-ins live."""
    tmp = tmp_path_factory.mktemp("hub-mirror")
    key = SigningKey(tmp / "key")
    tokens = TokenServer(key, anonymous_pull)
    registry = Registry(
        tmp / "registry", token_auth_yaml(key, tokens), proxy_remote=f"http://{registry_host}"
    )
    yield registry.host, tokens
    registry.close()
    tokens.close()


@pytest.fixture
def no_engine_env(monkeypatch, hub_mirror):
    host, _ = hub_mirror
    monkeypatch.delenv("COURSE_NO_ENGINE", raising=False)
    monkeypatch.delenv("COURSE_RECORD", raising=False)
    monkeypatch.delenv("COURSE_RECORDINGS_DIR", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("COURSE_REGISTRY_PORT", "1")  # no course registry, as on Binder
    monkeypatch.setenv("COURSE_HUB_MIRROR", host)
    # nbgrader's tools (alembic) and `grader` are found on PATH, as in the course's venv
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def _run(lab: Path, tmp_path: Path) -> tuple[dict, str | None]:
    work = tmp_path / lab.parent.name
    shutil.copytree(lab.parent, work)
    out = tmp_path / f"{lab.stem}.out.ipynb"
    failure = None
    try:
        papermill.execute_notebook(
            str(work / lab.name),
            str(out),
            cwd=str(work),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=600,
        )
    except papermill.PapermillExecutionError as e:
        failure = f"cell {e.cell_index}: {e.ename}: {e.evalue}"
    return json.loads(out.read_text()), failure


@pytest.mark.registry
@pytest.mark.parametrize("lab", LABS, ids=[p.parent.name for p in LABS])
def test_released_lab_runs_without_engine(lab: Path, tmp_path, no_engine_env, hub_mirror):
    nb, failure = _run(lab, tmp_path)
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    problems = []
    for index, cell in enumerate(cells):
        source = "".join(cell["source"])
        tags = cell.get("metadata", {}).get("tags", [])
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        for err in errors:
            if "raises-exception" not in tags or err["ename"] not in LEARNER_ERRORS:
                problems.append(f"code cell {index} raised {err['ename']}: {err['evalue']}")
        text = _text(cell.get("outputs", []))
        if _ENGINE_CALL.search(source) and "[no engine]" not in text:
            problems.append(f"code cell {index} needs the engine but does not say [no engine]")
        # A command that was not run shows its recording when the store has one (commands
        # that need no engine, such as `bash build.sh`, run for real instead).
        for key in _RECORD_KEY.findall(source):
            if recorded.lookup(key) is not None and "(no recorded output" in text:
                problems.append(f"code cell {index}: recording {key!r} exists but is not shown")
    assert not problems, "\n".join(problems) + (f"\npapermill: {failure}" if failure else "")

    first = _text(cells[0].get("outputs", []))
    lab_id = lab.parent.name
    assert "NO DOCKER ENGINE" in first and f"lab {lab_id}" in first, first[:2000]
    assert "/nonexistent" in first, "the banner names why there is no engine"
    assert "./course up" in first, "the banner says how to get the full lab"


#: The manifest lab as released, or its source until it is released (same public cells).
MANIFEST_LAB = [p for p in LABS if "manifest" in p.parent.name] or sorted(
    ROOT.glob("source/*manifest*/*.ipynb")
)


@pytest.mark.registry
@pytest.mark.parametrize(
    "lab", MANIFEST_LAB, ids=[f"{p.parent.parent.name}/{p.parent.name}" for p in MANIFEST_LAB]
)
def test_manifest_lab_reads_public_images_through_the_token_flow(
    lab, tmp_path, no_engine_env, hub_mirror
):
    _, tokens = hub_mirror
    before = len(tokens.requests)
    nb, _ = _run(lab, tmp_path)
    asked = tokens.requests[before:]
    assert any(scope.endswith(":pull") and "library/" in scope for _, scope in asked), (
        "the manifest lab read no Docker Hub image through the registry API "
        f"(token requests: {asked})"
    )
    text = "".join(_text(c.get("outputs", [])) for c in nb["cells"] if c["cell_type"] == "code")
    assert "linux/arm64" in text and "linux/amd64" in text
