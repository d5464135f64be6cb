"""The challenge is `07-challenge` everywhere: folders, notebook, nbgrader assignment, the table
of labs, its place in the course order, recordings, the grader's defaults and image tags."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import nbformat
from labs_nbtools import RELEASE, ROOT, SOURCE, assignments

from grader.course import recorded
from grader.course.labs import LABS
from grader.grading.batch.run import BatchOptions, discover
from grader.grading.criteria import ASSIGNMENT

AID = ASSIGNMENT
# An old name: a quoted or path-like `challenge` not preceded by `07-`.
OLD_NAME = re.compile(r"""["'/]challenge["'/]|(?<![\w-])challenge\.(?:ipynb|json)""")


def test_the_assignment_id_is_07_challenge():
    assert AID == "07-challenge"


def test_folders_and_notebook_names_match_the_id():
    for root in (SOURCE, RELEASE):
        assert (root / AID / f"{AID}.ipynb").is_file(), root
        assert not (root / "challenge").exists(), f"{root}/challenge is the old name"
    assert AID in assignments()


def test_the_table_of_labs_lists_it_in_course_order_before_08():
    order = list(LABS)
    assert AID in order
    assert order == sorted(order), "LABS must be in course order (by number)"
    assert order.index(AID) + 1 == order.index("08-beyond")
    assert sorted(p.name for p in SOURCE.iterdir() if p.is_dir()) == order


def test_the_notebook_title_and_header_name_it():
    nb = nbformat.read(SOURCE / AID / f"{AID}.ipynb", as_version=4)
    assert nb.cells[0].source.startswith("# Lab 07 ")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert f'lab_header("{AID}")' in code


def test_recordings_are_filed_under_the_id():
    path = recorded.RECORDINGS_DIR / f"{AID}.json"
    keys = json.loads(path.read_text())["recordings"]
    assert keys and all(recorded.lab_for_key(k) == AID for k in keys), sorted(keys)


def test_batch_grading_defaults_to_the_id(tmp_path):
    assert BatchOptions(out=tmp_path).assignment == AID
    (tmp_path / "alice" / AID).mkdir(parents=True)
    (sub,) = discover(tmp_path)
    assert sub.path == tmp_path / "alice" / AID


def test_no_tracked_file_uses_the_old_name():
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    hits = []
    for name in files:
        path = ROOT / name
        if path.suffix in {".db", ".png"} or not path.is_file() or path.name == Path(__file__).name:
            continue
        text = path.read_text(errors="replace")
        hits += [f"{name}: {m.group(0)}" for m in OLD_NAME.finditer(text)]
    assert hits == []
