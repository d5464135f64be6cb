"""The challenge: the starter has exactly its three problems (and the undone tasks), the
reference solution passes every criterion, engine ones included."""

from __future__ import annotations

import shutil

import pytest
from labs_nbtools import RELEASE, SOURCE

import grader
from grader.grading.criteria import ASSIGNMENT

STARTER = RELEASE / ASSIGNMENT
REFERENCE = SOURCE / ASSIGNMENT / "reference-solution"
STATIC = ("buildx", "platforms", "push", "provenance", "builder", "cross-compile")
PROBLEMS = ("buildx", "platforms", "cross-compile")


def _statuses(report) -> dict[str, str]:
    return {c.id: c.status for c in report.criteria}


def _copy(src, tmp_path, name=ASSIGNMENT):
    """A copy in a folder of its own (the grader names the submission's registry
    namespace after the folder); no notebook, as in a learner's submission folder."""
    dest = tmp_path / name
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.ipynb", "reference-solution"))
    return dest


def test_app_sources_are_the_same_in_starter_and_solution():
    assert (STARTER / "app" / "hello.c").read_bytes() == (
        REFERENCE / "app" / "hello.c"
    ).read_bytes()


def test_starter_fails_exactly_its_problems_and_the_undone_tasks():
    got = _statuses(grader.check(STARTER, static=True))
    for cid in PROBLEMS:
        assert got[cid] == "fail", f"the starter's problem {cid} is not caught"
    # push, provenance and builder are tasks the starter has not done yet
    assert all(got[c] == "fail" for c in STATIC)
    assert all(got[c] == "skipped" for c in got if c not in STATIC)


def test_reference_passes_the_static_criteria():
    report = grader.check(REFERENCE, static=True)
    assert all(_statuses(report)[c] == "pass" for c in STATIC), _statuses(report)


def test_fixing_only_build_sh_still_fails_cross_compile(tmp_path):
    half = _copy(STARTER, tmp_path)
    shutil.copy(REFERENCE / "build.sh", half / "build.sh")
    got = _statuses(grader.check(half, static=True))
    assert got["cross-compile"] == "fail"
    assert all(got[c] == "pass" for c in STATIC if c != "cross-compile"), got


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.qemu
@pytest.mark.slow
def test_reference_passes_every_criterion(tmp_path):
    report = grader.check(_copy(REFERENCE, tmp_path))
    failed = {c.id: [f.message for f in c.findings] for c in report.criteria if c.status != "pass"}
    assert failed == {}
    assert report.score == report.max_score == 12


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.qemu
@pytest.mark.slow
def test_starter_full_check_fails_its_problems(tmp_path):
    report = grader.check(_copy(STARTER, tmp_path))
    got = _statuses(report)
    assert all(got[c] == "fail" for c in PROBLEMS), got
    assert got["manifest"] != "pass" and got["runs"] != "pass", "the starter pushes nothing"


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.qemu
@pytest.mark.slow
def test_reference_earns_full_marks_in_a_batch(tmp_path):
    """A class's batch confines pushes to each learner's namespace: the lab's own image name
    (127.0.0.1:5000/07-challenge/hello) is rewritten into it, never refused (RN414)."""
    import json
    import uuid

    from grader.grading.batch.run import BatchOptions, run_batch

    _copy(REFERENCE, tmp_path / "subs" / "ada")
    prefix = f"t-challenge-{uuid.uuid4().hex[:8]}"
    opts = BatchOptions(out=tmp_path / "out", workers=1, namespace_prefix=prefix)
    summary = run_batch(tmp_path / "subs", opts)
    rec = json.loads((opts.out / "reports" / "ada.json").read_text())
    assert summary.exit_code == 0 and rec["complete"], rec
    points = [(c["points"], c["max_points"]) for c in rec["report"]["criteria"]]
    assert sum(p for p, _ in points) == sum(m for _, m in points) == 12, rec
