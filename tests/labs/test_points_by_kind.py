"""scripts/points-by-kind: each graded cell's points go to the answer above it."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "points-by-kind"


def _load():
    loader = importlib.machinery.SourceFileLoader("points_by_kind", str(SCRIPT))
    spec = importlib.util.spec_from_loader("points_by_kind", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _cell(source, **nbgrader):
    meta = {"nbgrader": nbgrader} if nbgrader else {}
    return {"cell_type": "code", "source": source, "metadata": meta, "outputs": []}


def test_points_follow_the_nearest_answer_above(tmp_path):
    nb = tmp_path / "lab" / "lab.ipynb"
    nb.parent.mkdir()
    cells = [
        _cell("def f():\n    ### BEGIN SOLUTION\n    pass", solution=True),
        _cell('"""f."""\ncheck_f()', grade=True, points=2),
        _cell("%%docker build\n### BEGIN SOLUTION\ndocker buildx build .", solution=True),
        _cell('"""b."""\ncheck_b()', grade=True, points=3),
        _cell('"""again."""\ncheck_c()', grade=True, points=1),
        _cell("%%writefile Dockerfile\nFROM busybox", solution=True),
        _cell('"""d."""\ncheck_d()', grade=True, points=0.5),
    ]
    nb.write_text(json.dumps({"cells": cells}))
    assert _load().lab_points(nb) == {"docker": 4.0, "file": 0.5, "python": 2.0}


def test_a_files_lab_counts_graded_files_as_files(tmp_path):
    nb = tmp_path / "07-challenge" / "07-challenge.ipynb"
    (nb.parent / "reference-solution").mkdir(parents=True)
    nb.write_text(json.dumps({"cells": [_cell('"""x."""\ncheck()', grade=True, points=2)]}))
    assert _load().lab_points(nb) == {"docker": 0.0, "file": 2.0, "python": 0.0}


def test_the_table_covers_the_course_and_rejects_unknown_labs():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[0].split()[:4] == ["lab", "docker", "file", "python"]
    assert any(line.startswith("04-build-push") for line in done.stdout.splitlines())
    bad = subprocess.run([sys.executable, str(SCRIPT), "--labs", "nope"], capture_output=True,
                         text=True)  # fmt: skip
    assert bad.returncode == 2 and "nope" in bad.stderr
