"""scripts/release-labs: labs/ is exactly what nbgrader generates from source/."""

from __future__ import annotations

import nbformat
import pytest
from labs_nbtools import ROOT

from grader import proc
from grader.course.release import check_up_to_date, clean, diff_trees, dirty_cells, release


def test_labs_regenerate_identically_from_source():
    problems = check_up_to_date()
    assert problems == [], "labs/ is stale: run scripts/release-labs\n" + "\n".join(problems)


def test_clean_strips_outputs_and_reports_dirt(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    cell.execution_count = 3
    cell.metadata["execution"] = {"iopub.status.busy": "2025-01-01"}
    nb.cells.append(cell)
    nb.metadata["papermill"] = {"duration": 1}
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert len(dirty_cells(path)) == 4
    assert clean(path) is True
    assert dirty_cells(path) == []
    assert clean(path) is False  # idempotent: a clean notebook is left byte for byte


def test_diff_trees_names_every_difference(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "sub").mkdir(parents=True)
        (d / "same").write_text("x")
    (a / "sub" / "f").write_text("1")
    (b / "sub" / "f").write_text("2")
    (a / "only-a").write_text("")
    assert diff_trees(a, b) == ["only in a: only-a", "differs: sub/f"]


def test_unknown_assignment_is_refused():
    with pytest.raises(ValueError, match="no such assignment"):
        release(["99-missing"])


def test_script_reports_a_bad_assignment_with_exit_2():
    done = proc.run([ROOT / "scripts" / "release-labs", "99-missing"], timeout=120, check=False)
    assert done.returncode == 2
    assert "no such assignment in source/: 99-missing" in done.stderr
