"""Batch results into nbgrader's gradebook (nbgrader 0.9 ``nbgrader.api.Gradebook``).

The grader's results become one notebook, ``grader`` by default, in the assignment (default
``07-challenge``), with one grade cell per criterion (``grader.grading.criteria``: id and max
points).
Each student's grade for a cell is the criterion's points as ``auto_score``, so
``nbgrader export`` and formgrader show them next to the notebooks' own grades; a manual
score an instructor sets in formgrader still wins, as usual in nbgrader.

Also writes ``students.csv`` for ``nbgrader db student import`` (the same students).

Keep the grader notebook's name different from the assignment's real notebooks:
``nbgrader generate_assignment`` refuses to change an assignment's notebooks once it has
submissions, and this notebook exists only in the gradebook.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
import warnings
from pathlib import Path

from grader.grading.criteria import ASSIGNMENT, CRITERIA


def _alembic_on_path() -> None:
    """nbgrader runs the `alembic` command to create a gradebook; it sits next to Python."""
    if shutil.which("alembic") is None:
        bindir = str(Path(sys.executable).parent)
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _records(results: Path) -> list[dict]:
    from grader.grading.batch.results import load_record

    out = []
    for path in sorted((results / "reports").glob("*.json")):
        rec = load_record(path)
        if rec is not None and rec.get("student"):
            out.append(rec)
    return out


def students_csv(results: Path) -> Path:
    """``students.csv`` (column ``id``) for ``nbgrader db student import``."""
    from grader.grading.batch.results import atomic_write

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id"])
    for rec in _records(results):
        w.writerow([rec["student"]])
    path = results / "students.csv"
    atomic_write(path, buf.getvalue().encode())
    return path


def export(
    results: Path, db_url: str, assignment: str = ASSIGNMENT, notebook: str = "grader"
) -> int:
    """Write every report's criterion points into the gradebook; returns how many students.

    Incomplete reports (an infrastructure error) are skipped: their grade is not known yet.
    """
    from nbgrader.api import Grade, Gradebook, MissingEntry, SubmittedNotebook

    _alembic_on_path()
    records = [r for r in _records(Path(results)) if r.get("complete")]
    students_csv(Path(results))
    with warnings.catch_warnings(), Gradebook(db_url) as gb:
        # nbgrader's own add_submission trips SQLAlchemy's "not in session" warning.
        warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in session")
        gb.update_or_create_assignment(assignment)
        gb.update_or_create_notebook(notebook, assignment)
        for c in CRITERIA:
            gb.update_or_create_grade_cell(
                c.id, notebook, assignment, max_score=float(c.points), cell_type="code"
            )
        for rec in records:
            student = rec["student"]
            gb.update_or_create_student(student)
            submission = gb.update_or_create_submission(assignment, student)
            try:
                nb = gb.find_submission_notebook(notebook, assignment, student)
            except MissingEntry:
                # The submission existed before the grader's notebook did (nbgrader
                # autograde ran first): give it the notebook and its grades.
                nb = SubmittedNotebook(
                    notebook=gb.find_notebook(notebook, assignment), assignment=submission
                )
                gb.db.add(nb)
                gb.db.commit()
            points = {c["id"]: float(c.get("points", 0)) for c in rec["report"]["criteria"]}
            for c in CRITERIA:
                try:
                    grade = gb.find_grade(c.id, notebook, assignment, student)
                except MissingEntry:
                    cell = gb.find_grade_cell(c.id, notebook, assignment)
                    grade = Grade(cell_id=cell.id, notebook=nb)
                    gb.db.add(grade)
                grade.auto_score = points.get(c.id, 0.0)
            gb.db.commit()
    return len(records)
