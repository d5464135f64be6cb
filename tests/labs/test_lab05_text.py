"""Lab 05 as released: task 1 shows RUNS_ON's shape outside the solution block (the released
cell is only a stub), and the timing claim names the versions it was measured on."""

from __future__ import annotations

import nbformat
from labs_nbtools import RELEASE

LAB = RELEASE / "05-cross-compile" / "05-cross-compile.ipynb"


def test_task_1_shows_the_shape_of_runs_on():
    nb = nbformat.read(LAB, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for key in ('("build", "linux/amd64")', '("final", "linux/arm64")'):
        assert key in text, f"the task text must show {key}"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert '("final", "linux/arm64"): TARGET_MACHINE' not in code  # no solution released


def test_the_timing_claim_names_its_versions():
    nb = nbformat.read(LAB, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "buildx 0.13.1" in text and "Docker\n26.1.5" in text.replace("Docker 26", "Docker\n26")
