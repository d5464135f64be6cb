"""The course's notebooks as files: clean, nbgrader metadata right, nothing secret released,
and nbgrader_config.py loads (nbgrader ignores a broken one silently)."""

from __future__ import annotations

import re

import nbformat
import pytest
from labs_nbtools import RELEASE, ROOT, SOURCE, assignments
from traitlets.config.loader import PyFileConfigLoader

from grader import proc
from grader.course.hidden_tests import StripHiddenTests
from grader.course.labkit import LABS
from grader.course.release import dirty_cells
from grader.course.starters import starter

SOURCE_NBS = sorted(SOURCE.glob("*/*.ipynb"))
RELEASED_NBS = sorted(RELEASE.glob("*/*.ipynb"))


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def _nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


@pytest.mark.parametrize("path", SOURCE_NBS + RELEASED_NBS, ids=_ids(SOURCE_NBS + RELEASED_NBS))
def test_committed_notebooks_are_clean(path):
    assert dirty_cells(path) == [], "run `scripts/release-labs --clean`"


@pytest.mark.parametrize("path", SOURCE_NBS, ids=_ids(SOURCE_NBS))
def test_source_notebook_nbgrader_cells(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    grade_ids = [_nbgrader(c)["grade_id"] for c in nb.cells if _nbgrader(c)]
    assert len(grade_ids) == len(set(grade_ids)), "grade_id values must be unique"
    graded = [c for c in nb.cells if _nbgrader(c).get("grade")]
    assert graded, "every lab has autograded cells worth points"
    for cell in nb.cells:
        meta, src, tags = _nbgrader(cell), cell.source, cell.metadata.get("tags", [])
        cid = meta.get("grade_id", cell.get("id"))
        if meta.get("solution"):
            assert "### BEGIN SOLUTION" in src and "### END SOLUTION" in src, cid
            assert "raises-exception" in tags, f"{cid}: unanswered, it raises; Run All goes on"
        if meta.get("grade"):
            first = src.lstrip().splitlines()[0]
            assert re.fullmatch(r'"""[^"]+\."""', first), f"{cid}: open with a one-line docstring"
            assert meta.get("points", 0) > 0 and meta.get("locked"), cid
            assert "raises-exception" in tags, cid
        if "BEGIN HIDDEN TESTS" in src:
            assert meta.get("grade"), f"{cid}: hidden tests only in grade cells"
            assert "### END HIDDEN TESTS" in src, cid


@pytest.mark.parametrize("path", RELEASED_NBS, ids=_ids(RELEASED_NBS))
def test_released_notebooks_hold_no_solutions_or_hidden_tests(path):
    text = path.read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    source = nbformat.read(SOURCE / path.parent.name / path.name, as_version=4)
    released = nbformat.read(path, as_version=4)
    by_id = {c.get("id"): c for c in released.cells}
    for cell in source.cells:
        if _nbgrader(cell).get("solution"):
            answer = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            # a %%writefile cell's starter (the file to fix) is given: its lines may stay
            given = {ln.strip() for ln in (starter(cell) or "").splitlines()}
            for line in (ln.strip() for ln in answer.splitlines()):
                if len(line) > 25 and line not in given:
                    assert line not in by_id[cell.id].source, f"solution line released: {line}"
            if given:  # released as the magic line, then the starter in place of the solution
                magic = cell.source.split("\n", 1)[0]
                region = re.compile(r"### BEGIN SOLUTION.*?### END SOLUTION", re.S)
                text = starter(cell).rstrip("\n")
                want = region.sub(lambda _, text=text: text, cell.source)
                assert by_id[cell.id].source == want and want.startswith(magic), cell.id
                assert "course" not in by_id[cell.id].metadata, f"{cell.id}: course metadata"


def test_reference_solution_is_not_released():
    assert not list(RELEASE.rglob("reference-solution"))
    assert (SOURCE / "07-challenge" / "reference-solution" / "Dockerfile").is_file()


def test_every_assignment_has_a_lab_entry_and_a_release():
    for aid in assignments():
        assert aid in LABS, f"add {aid} to grader.course.labkit.LABS (lab_header needs it)"
        assert (RELEASE / aid).is_dir(), f"run scripts/release-labs {aid}"


def test_nbgrader_config_loads_with_the_course_settings():
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    assert cfg.CourseDirectory.root == str(ROOT)
    assert cfg.CourseDirectory.release_directory == "labs"
    assert "reference-solution" in cfg.CourseDirectory.ignore
    assert cfg.Execute.timeout >= 1800
    assert StripHiddenTests in cfg.GenerateFeedback.preprocessors
    assert {"build.sh", "Dockerfile", "app/hello.c"} <= set(
        cfg.Autograde.exclude_overwriting["07-challenge"]
    ), "autograde must grade the learner's files, not the starter's"
    assert cfg.CourseDirectory.db_url.endswith("/gradebook.db")


def test_gradebook_and_instructor_data_are_not_in_git():
    for path in ("gradebook.db", "submitted/x", "autograded/x", "feedback/x"):
        done = proc.run(["git", "check-ignore", "-q", path], cwd=ROOT, timeout=30, check=False)
        assert done.ok, f"{path} should be ignored by git"
