"""The released labs as learners get them: nbval (--nbval-lax) on the real engine, and with
COURSE_NO_ENGINE=1 (the Binder switch) every lab runs without an exception other than an
unanswered exercise's."""

from __future__ import annotations

import re
import sys

import pytest
from labs_nbtools import RELEASE, errors, execute, output_text, venv_env, work_copy

from grader import proc

RELEASED = sorted(p.name for p in RELEASE.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))

#: What an unanswered exercise raises; anything else is a bug in the lab.
LEARNER_ERRORS = {"NotImplementedError", "NameError", "AssertionError", "CheckSkipped"}

#: A cell that runs an engine command: through labkit.sh (`sh("docker ...`, `sh(["docker", ...`
#: or `sh(..., engine=True)`), or a `%%docker` cell (grader.course.magics).
ENGINE_CALL = re.compile(
    r"""\bsh\(\s*\[?\s*["']docker\b|\bsh\([^\n]*engine=True|^%%docker\b""", re.M
)


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("aid", RELEASED)
def test_nbval_lax_on_released_lab(aid, tmp_path):
    work = work_copy(RELEASE / aid, tmp_path / aid, solution=False)
    done = proc.run(
        [sys.executable, "-m", "pytest", "-p", "nbval", "--nbval-lax", "-q", "-p",
         "no:cacheprovider", "--nbval-cell-timeout=1800", "-o", "addopts=", str(work)],
        timeout=3600, check=False, cwd=tmp_path, env=venv_env(),
    )  # fmt: skip
    assert done.ok, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout


@pytest.mark.parametrize("aid", RELEASED)
def test_released_lab_without_engine(aid, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_NO_ENGINE", "1")
    work = work_copy(RELEASE / aid, tmp_path / aid, solution=False)
    for nb_path in sorted(work.glob("*.ipynb")):
        nb = execute(nb_path, work, timeout=600)
        for cid, ename, evalue, tags in errors(nb):
            assert "raises-exception" in tags, f"{cid} raised {ename}: {evalue}"
            assert ename in LEARNER_ERRORS, f"{cid} raised {ename}: {evalue}"
        engine_cells = [
            c for c in nb.cells if c.cell_type == "code" and ENGINE_CALL.search(c.source)
        ]
        assert engine_cells or aid == "00-welcome", "no engine cell found: is ENGINE_CALL stale?"
        for cell in engine_cells:
            text = output_text(cell)
            assert "[no engine]" in text, f"{cell.id} ran an engine command without an engine"
