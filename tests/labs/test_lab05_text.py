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


def test_task_5_starts_from_the_cut_dockerfile_not_its_fix():
    nb = nbformat.read(LAB, as_version=4)
    (cell,) = [c for c in nb.cells if c.source.startswith("%%writefile {ARM}/Dockerfile")]
    assert "GOARCH=$(echo $TARGETPLATFORM | cut -d/ -f2)" in cell.source
    assert "TARGETVARIANT" not in cell.source and "GOARM" not in cell.source


def test_the_arm_variant_claims_name_what_they_were_seen_on():
    nb = nbformat.read(LAB, as_version=4)
    text = " ".join(" ".join(c.source.split()) for c in nb.cells if c.cell_type == "markdown")
    assert "Go 1.19.8" in text and "GOARM=5" in text  # the default, checked with go version -m
    assert "Docker Engine 26.1.5 (containerd image store)" in text  # the fallback's behaviour
