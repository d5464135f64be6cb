"""The sandbox's and the batch's pure parts: copying a submission, judging build.sh,
Dockerfile RUN flags, names, the gate policy's rewriting, fingerprints, atomic writes,
resume decisions, grades.csv and the nbgrader gradebook export. No engine needed."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from grader.grading.batch.run import (
    BatchOptions,
    atomic_write,
    discover,
    fingerprint,
    is_finished,
    load_record,
    report_path,
    safe_name,
    write_grades_csv,
)
from grader.grading.checks.run import insecure_run_flag, namespace_for
from grader.grading.criteria import CRITERIA
from grader.grading.sandbox import runner
from grader.grading.sandbox.policy import Policy

# --- copying and judging a submission ----------------------------------------------------


def test_copy_drops_links_out_and_keeps_links_in(tmp_path: Path) -> None:
    src = tmp_path / "sub"
    (src / "app").mkdir(parents=True)
    (src / "build.sh").write_text("echo hi\n")
    (src / "app" / "main.go").write_text("package main\n")
    os.symlink("/etc/shadow", src / "secret")
    os.symlink("../../elsewhere/x", src / "app" / "up")
    os.symlink("../build.sh", src / "app" / "script")
    os.symlink("app", src / "applink")
    os.mkfifo(src / "pipe")
    findings = runner.copy_submission(src, tmp_path / "copy")
    dropped = sorted(f.file for f in findings)
    assert dropped == ["app/up", "secret"]
    assert all(f.rule == "RN420" for f in findings)
    copy = tmp_path / "copy"
    assert (copy / "app" / "main.go").read_text() == "package main\n"
    assert os.readlink(copy / "app" / "script") == "../build.sh"
    assert os.readlink(copy / "applink") == "app"
    assert not (copy / "secret").exists() and not (copy / "secret").is_symlink()
    assert not (copy / "pipe").exists()


def test_copy_refuses_huge_submissions(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "sub"
    src.mkdir()
    (src / "big").write_bytes(b"x" * 5000)
    monkeypatch.setattr(runner, "MAX_SUBMISSION", 4000)
    with pytest.raises(runner.SubmissionTooLarge):
        runner.copy_submission(src, tmp_path / "copy")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"#!/bin/bash\necho hi\n", None),
        (b"", None),
        (b"\x7fELF\x02\x01\x01\x00\x00", "binary"),
        ("#!/bin/sh\necho café\n".encode("latin-1"), "UTF-8"),
    ],
)
def test_script_problem(tmp_path: Path, content: bytes, problem: str | None) -> None:
    script = tmp_path / "build.sh"
    script.write_bytes(content)
    got = runner.script_problem(script)
    assert (got is None) if problem is None else (problem in got)


def test_script_problem_missing_and_linked_out(tmp_path: Path) -> None:
    assert "no build.sh" in runner.script_problem(tmp_path / "build.sh")
    outside = tmp_path / "outside.sh"
    outside.write_text("echo hi\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    os.symlink(outside, sub / "build.sh")
    assert "outside" in runner.script_problem(sub / "build.sh")


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        ("#!/bin/sh", "/bin/sh"),
        ("#!/usr/bin/env sh", "/bin/sh"),
        ("#!/bin/dash", "/bin/sh"),
        ("#!/usr/bin/env bash", "/bin/bash"),
        ("#!/bin/bash -e", "/bin/bash"),
        ("echo no shebang", "/bin/bash"),
        ("#!/usr/bin/python3", "/bin/bash"),
    ],
)
def test_interpreter(tmp_path: Path, first: str, expected: str) -> None:
    (tmp_path / "build.sh").write_text(first + "\necho hi\n")
    assert runner.interpreter(tmp_path / "build.sh") == expected


def test_clean_text_strips_escapes_and_controls() -> None:
    assert runner.clean_text("a\x1b[31mred\x1b[0m\x07b\r\nc\x00") == "aredb\nc"
    assert runner.tail_lines("1\n2\n\n3\n4\n5\n6", lines=3) == "4 | 5 | 6"


# --- Dockerfile RUN flags and names ------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "hit"),
    [
        ("FROM b\nRUN --security=insecure id\n", (2, "--security=insecure")),
        ("FROM b\nrun --network=host wget x\n", (2, "--network=host")),
        (
            "FROM b\nRUN --mount=type=cache,target=/c \\\n  --network=host make\n",
            (2, "--network=host"),
        ),
        ("FROM b\nRUN echo --network=host\n", None),
        ("FROM b\nRUN --network=none make\n", None),
        ("FROM b\nENV X=--security=insecure\n", None),
    ],
)
def test_insecure_run_flag(dockerfile: str, hit) -> None:
    assert insecure_run_flag(dockerfile) == hit


@pytest.mark.parametrize(
    ("student", "ns"),
    [("Alice", "alice"), ("bob smith", "bob-smith"), ("..", "submission"), ("a__b", "a-b"),
     ("a" * 59 + ".b", "a" * 59)],  # cut at 60: never ends in a separator
)  # fmt: skip
def test_namespace_for(student: str, ns: str) -> None:
    assert namespace_for(student) == ns


@pytest.mark.parametrize(
    ("student", "ns"),
    [("lab04", "lab04-learner"), ("Library", "library-learner"), ("autograde", "autograde-learner"),
     ("07-challenge", "07-challenge-learner"), ("cache", "cache-learner"), ("ada", "ada"),
     ("lab04x", "lab04x")],
)  # fmt: skip
def test_a_batch_student_never_gets_a_name_the_course_uses(student: str, ns: str) -> None:
    """A student folder named like the labs' repositories or a read-only namespace would
    claim them for every rooted caller (found in review: `autograde` read every kernel's)."""
    from grader.grading.batch.results import assign_ids

    assigned, _ = assign_ids([student])
    assert assigned[student].namespace == ns


# --- the policy beyond single rules ------------------------------------------------------


def _policy(tmp_path: Path, **kw) -> Policy:
    (tmp_path / "copy").mkdir(exist_ok=True)
    return Policy(
        namespace="b/alice",
        registry="127.0.0.1:5000",
        label="abcdef0123",
        host_root=tmp_path / "copy",
        **kw,
    )


def test_run_gets_the_graders_limits_and_label_whatever_the_script_asked(tmp_path: Path) -> None:
    p = _policy(tmp_path)
    d = p.decide(
        ["run", "-m", "64g", "--pids-limit=-1", "--name", "web", "busybox:latest", "echo", "-m"]
    )
    assert d.refused is None
    argv = d.argv
    image_at = argv.index("busybox:latest")
    options = argv[:image_at]
    assert "--memory=64g" not in options and "--pids-limit=-1" not in options
    assert f"--memory={p.limits.container_memory}" in options
    assert "--label=grader.grading.sandbox=abcdef0123" in options
    assert "--name=gabcdef0123-web" in options
    assert argv[image_at + 1 :] == ["echo", "-m"]  # the container's own arguments untouched


def test_rewritten_names_are_followed_by_later_commands(tmp_path: Path) -> None:
    p = _policy(tmp_path)
    p.decide(["buildx", "build", "-t", "hello", "--load", "."])
    run = p.decide(["run", "--rm", "hello:latest"])
    push = p.decide(["push", "hello"])
    inspect = p.decide(["buildx", "imagetools", "inspect", "docker.io/library/hello:latest"])
    own = "127.0.0.1:5000/b/alice/hello:latest"
    assert own in run.argv and push.argv[-1] == own and inspect.argv[-1] == own
    assert push.pushes == [own]


def test_unconfined_policy_keeps_any_grading_registry_repository(tmp_path: Path) -> None:
    p = _policy(tmp_path, confine=False)
    d = p.decide(
        ["buildx", "build", "-t", "127.0.0.1:5000/07-challenge/hello:latest", "--push", "."]
    )
    assert d.refused is None and d.pushes == ["127.0.0.1:5000/07-challenge/hello:latest"]


def test_scratch_policy_rewrites_the_learners_own_tag_into_its_namespace(tmp_path: Path) -> None:
    """A learner's own full check must not overwrite the tag their build.sh names."""
    p = _policy(tmp_path, confine=False, scratch=True)
    tag = "127.0.0.1:5000/07-challenge/hello:latest"
    d = p.decide(["buildx", "build", "-t", tag, "--push", "."])
    assert d.refused is None and d.pushes == ["127.0.0.1:5000/b/alice/hello:latest"]
    again = p.decide(["buildx", "imagetools", "inspect", tag])
    assert again.argv[-1] == "127.0.0.1:5000/b/alice/hello:latest"
    mine = p.decide(["buildx", "build", "-t", "127.0.0.1:5000/b/alice/x:1", "--push", "."])
    assert mine.pushes == ["127.0.0.1:5000/b/alice/x:1"]


def test_scratch_check_pushes_under_the_folder_name_plus_check() -> None:
    from grader.grading.checks.run import _own_namespace

    assert _own_namespace("07-challenge", False) == "07-challenge"
    assert _own_namespace("07-challenge", True) == "07-challenge-check"
    assert len(_own_namespace("x" * 200, True)) <= 60


def test_pushes_recorded_only_for_pushing_builds(tmp_path: Path) -> None:
    p = _policy(tmp_path)
    assert p.decide(["buildx", "build", "-t", "x", "--load", "."]).pushes == []
    out = p.decide(["buildx", "build", "-o", "type=image,name=y,push=true", "."])
    assert out.pushes == ["127.0.0.1:5000/b/alice/y:latest"]
    assert p.decide(["buildx", "build", "-t", "z", "--push=false", "."]).pushes == []


def test_bootstrap_is_dropped_and_names_prefixed_once(tmp_path: Path) -> None:
    p = _policy(tmp_path)
    d = p.decide(["buildx", "create", "--name", "multi", "--bootstrap", "--use"])
    assert "--bootstrap" not in d.argv and "--name=gabcdef0123-multi" in d.argv
    again = p.decide(["buildx", "inspect", "--bootstrap", "gabcdef0123-multi"])
    assert again.argv == ["buildx", "inspect", "gabcdef0123-multi"]


# --- batch files ------------------------------------------------------------------------


def test_discover_plain_and_nbgrader_layouts(tmp_path: Path) -> None:
    (tmp_path / "alice").mkdir()
    (tmp_path / "bob" / "07-challenge").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    subs = discover(tmp_path, "07-challenge")
    assert [(s.student, s.path.relative_to(tmp_path).as_posix()) for s in subs] == [
        ("alice", "alice"),
        ("bob", "bob/07-challenge"),
    ]


def test_discover_never_follows_a_learners_link_named_like_the_assignment(tmp_path: Path) -> None:
    (tmp_path / "mallory").mkdir()
    os.symlink("/root", tmp_path / "mallory" / "07-challenge")
    (subs,) = discover(tmp_path, "07-challenge")
    assert subs.path == tmp_path / "mallory"


def test_fingerprint_sees_contents_names_and_link_targets(tmp_path: Path) -> None:
    (tmp_path / "build.sh").write_text("a")
    os.symlink("build.sh", tmp_path / "link")
    first = fingerprint(tmp_path)
    assert fingerprint(tmp_path) == first
    (tmp_path / "build.sh").write_text("b")
    second = fingerprint(tmp_path)
    assert second != first
    (tmp_path / "link").unlink()
    os.symlink("Dockerfile", tmp_path / "link")
    assert fingerprint(tmp_path) != second


def test_atomic_write_replaces_whole_and_leaves_no_temp_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "r" / "a.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    blocker = tmp_path / "r" / "dir.json"
    blocker.mkdir()
    (blocker / "x").write_text("keep")
    with pytest.raises(OSError):
        atomic_write(blocker, b"cannot replace a non-empty directory")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["a.json", "dir.json"]


def test_resume_decision(tmp_path: Path) -> None:
    key = BatchOptions(out=tmp_path).settings_key()
    good = {"complete": True, "fingerprint": "f", "settings": key, "report": {}}
    assert is_finished(good, "f", key)
    assert not is_finished({**good, "complete": False}, "f", key)
    assert not is_finished(good, "changed", key)
    assert not is_finished(
        good, "f", BatchOptions(out=tmp_path, platforms=("linux/amd64",)).settings_key()
    )
    assert not is_finished(None, "f", key)
    # A report file holding another student's record is not theirs (ids told apart later).
    assert not is_finished({**good, "student": "bob"}, "f", key, "alice")
    path = report_path(tmp_path, safe_name("al/ice"))
    assert path.name == "al_ice.json" and safe_name("..x") == "x"
    path.parent.mkdir(parents=True)
    path.write_text('{"complete": tr')  # a torn write from a crash long ago
    assert load_record(path) is None


def _record(student: str, points: dict[str, float], complete: bool = True) -> dict:
    criteria = [
        {
            "id": c.id,
            "status": "pass" if points.get(c.id) else "fail",
            "points": points.get(c.id, 0.0),
            "max_points": c.points,
        }
        for c in CRITERIA
    ]
    score = sum(points.values())
    return {
        "student": student,
        "complete": complete,
        "report": {"score": score, "max_score": 12.0, "criteria": criteria},
    }


def test_grades_csv_has_a_row_per_report_and_a_status_per_criterion(tmp_path: Path) -> None:
    for student, pts in (("alice", {"buildx": 1, "runs": 1}), ("bob", {})):
        atomic_write(report_path(tmp_path, student), json.dumps(_record(student, pts)).encode())
    assert write_grades_csv(tmp_path) == 2
    rows = list(csv.DictReader((tmp_path / "grades.csv").open()))
    assert [r["student"] for r in rows] == ["alice", "bob"]
    assert rows[0]["score"] == "2" and rows[0]["buildx"] == "pass" and rows[0]["push"] == "fail"
    assert set(rows[0]) == {"student", "score", "max_score", "complete", *(c.id for c in CRITERIA)}


def test_gradebook_export_real_sqlite(tmp_path: Path, monkeypatch) -> None:
    """Into a real nbgrader gradebook, including a submission nbgrader made before."""
    import sys

    from nbgrader.api import Gradebook

    # nbgrader creates gradebooks with the `alembic` command installed next to Python.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    from grader.grading.batch.gradebook import export

    db = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(db) as gb:  # nbgrader autograde ran first for bob's notebook
        gb.add_assignment("07-challenge")
        gb.add_notebook("07-challenge", "07-challenge")
        gb.add_grade_cell("q1", "07-challenge", "07-challenge", max_score=2, cell_type="code")
        gb.add_student("bob")
        gb.add_submission("07-challenge", "bob")
    results = tmp_path / "results"
    atomic_write(
        report_path(results, "alice"),
        json.dumps(_record("alice", {"buildx": 1, "platforms": 1, "cross-compile": 2})).encode(),
    )
    atomic_write(report_path(results, "bob"), json.dumps(_record("bob", {"runs": 1})).encode())
    atomic_write(
        report_path(results, "carol"),
        json.dumps(_record("carol", {"runs": 1}, complete=False)).encode(),
    )
    assert export(results, db) == 2
    assert export(results, db) == 2  # idempotent
    with Gradebook(db) as gb:
        scores = {s["student"]: s["score"] for s in gb.submission_dicts("07-challenge")}
        assert scores == {"alice": 4.0, "bob": 1.0}
        assert gb.find_grade("runs", "grader", "07-challenge", "bob").score == 1.0
        assert gb.find_notebook("grader", "07-challenge").max_score == 12.0
    ids = [r["id"] for r in csv.DictReader((results / "students.csv").open())]
    assert ids == ["alice", "bob", "carol"]


def test_only_machine_faults_make_a_report_incomplete() -> None:
    from grader.grading.batch.run import machine_faults
    from grader.grading.report import CriterionResult, Finding, Report

    def report(rule: str) -> Report:
        f = Finding(rule=rule, severity="error", message="m")
        return Report("s", [CriterionResult("manifest", "t", "error", 0, 1, [f])])

    assert machine_faults(report("MF301")) and machine_faults(report("RN450"))
    # Docker Hub unreachable while the grading registry answers: not the machine's fault.
    from grader.docker.registry import registry_answers

    if registry_answers("127.0.0.1:5000"):
        assert not machine_faults(report("MF301"), "127.0.0.1:5000")
    assert machine_faults(report("MF301"), "127.0.0.1:5199")  # nothing listens there
    # No image pushed is the learner's doing: final, not graded again and again.
    assert not machine_faults(report("GR002")) and not machine_faults(report("MF302"))


def test_learner_text_in_findings_cannot_drive_a_terminal(tmp_path: Path) -> None:
    p = _policy(tmp_path)
    d = p.decide(["run", "--privileged", "busybox", "\x1b]0;pwned\x07\x1b[2J"])
    assert d.refused is not None and "\x1b" not in d.refused.message
    src = tmp_path / "sub"
    src.mkdir()
    os.symlink("/etc/\x1b[31mshadow", src / "evil\x1b[2Jlink")
    (finding,) = runner.copy_submission(src, tmp_path / "copy2")
    assert "\x1b" not in finding.message and "\x1b" not in (finding.file or "")
