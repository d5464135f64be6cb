"""No-engine mode grades consistently (issue 13, item 8): every lab, with its solutions in
place and COURSE_NO_ENGINE=1, has each graded cell either pass for real (a static check) or
raise CheckSkipped with its reason. A solution never fails there, and no graded cell passes
while saying it could not check ("[no engine] ... checked when your work is graded" and a
pass: that is a point given for work nobody checked).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "labs"))
from labs_nbtools import SOURCE, assignments, execute, output_text, work_copy

#: What a graded cell may raise when the engine is missing: the check's own "cannot run here".
SKIPPED = "CheckSkipped"


def graded_outcomes(nb) -> list[tuple[str, str, str]]:
    """(grade id, "pass" | exception name, text) for every graded cell of an executed notebook."""
    out = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade") or cell.cell_type != "code":
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        kind = errors[0].get("ename", "?") if errors else "pass"
        text = (errors[0].get("evalue", "") if errors else output_text(cell)).strip()
        out.append((meta["grade_id"], kind, text))
    return out


def inconsistencies(outcomes: list[tuple[str, str, str]]) -> list[str]:
    found = []
    for grade_id, kind, text in outcomes:
        if kind == "pass" and "[no engine]" in text:
            found.append(f"{grade_id}: passes while saying it cannot check ({text[:160]!r})")
        elif kind == SKIPPED and len(text) < 20:
            found.append(f"{grade_id}: skipped without a reason ({text!r})")
        elif kind not in ("pass", SKIPPED):
            found.append(f"{grade_id}: the solution fails without an engine: {kind}: {text[:200]}")
    return found


@pytest.fixture
def no_engine(monkeypatch):
    monkeypatch.setenv("COURSE_NO_ENGINE", "1")
    monkeypatch.delenv("COURSE_RECORD", raising=False)
    assert os.environ["COURSE_NO_ENGINE"] == "1"


#: Graded cells whose answer is a measurement of the learner's own builds: without an engine
#: nothing was measured, so they must skip (a silent pass was a point for nobody's work).
MEASURED = {"05-cross-compile": {"test-slowdown"}}

#: Labs that still grade inconsistently without an engine (found by this test; their owner fixes
#: them). Strict: the day one is fixed, its xfail fails and comes off this list.
KNOWN: dict[str, str] = {}


def _params():
    return [
        pytest.param(a, marks=pytest.mark.xfail(reason=KNOWN[a], strict=True)) if a in KNOWN else a
        for a in assignments()
    ]


@pytest.mark.parametrize("aid", _params())
def test_graded_cells_pass_or_skip_with_reason(aid, tmp_path, no_engine):
    work = work_copy(SOURCE / aid, tmp_path / aid, solution=True)
    for nb_path in sorted(work.glob("*.ipynb")):
        nb = execute(nb_path, work, timeout=600)
        outcomes = graded_outcomes(nb)
        assert outcomes, f"{aid}: no graded cell ran (did an earlier cell stop the notebook?)"
        problems = inconsistencies(outcomes)
        problems += [
            f"{gid}: passes though it grades a measurement no build made"
            for gid, kind, _ in outcomes
            if gid in MEASURED.get(aid, ()) and kind != SKIPPED
        ]
        assert not problems, f"{aid} with COURSE_NO_ENGINE=1:\n" + "\n".join(problems)


def test_the_rules_catch_a_silent_pass_and_a_failure():
    outcomes = [
        ("a", "pass", "[no engine] mismatches is checked against the course registry"),
        ("b", "CheckSkipped", "the %%docker x cell did not run here (no engine); ..."),
        ("c", "AssertionError", "run your cell again"),
        ("d", "pass", ""),
        ("e", "CheckSkipped", ""),
    ]
    found = inconsistencies(outcomes)
    assert [f.split(":")[0] for f in found] == ["a", "c", "e"]
