"""Every source notebook (with its solutions) runs end to end on the real engine, in a copy
of its folder, and no cell fails: not even a check. New labs in source/ are picked up
automatically."""

from __future__ import annotations

import pytest
from labs_nbtools import SOURCE, assignments, errors, execute, output_text, work_copy

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.qemu, pytest.mark.slow]


@pytest.mark.parametrize("aid", assignments())
def test_source_notebook_runs_clean(aid, tmp_path):
    work = work_copy(SOURCE / aid, tmp_path / aid, solution=True)
    for nb_path in sorted(work.glob("*.ipynb")):
        nb = execute(nb_path, work)
        assert errors(nb) == [], f"{aid}: cells raised with the solutions in place"
        self_checks = [c for c in nb.cells if "self_check(" in c.source and "def " not in c.source]
        for cell in self_checks:
            text = output_text(cell)
            assert "FAIL" not in text and "TODO" not in text, text
        graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
        assert graded and all(
            not any(o.get("output_type") == "error" for o in c.outputs) for c in graded
        )
