"""``grader autograde``: ``nbgrader autograde`` with every notebook kernel inside the wall.

Plain ``nbgrader autograde`` runs learners' cells as whoever runs it (the instructor, often
root), next to the gradebook and source/ (solutions, hidden tests). Here nbgrader runs as
usual (root: it reads source/ and writes the gradebook), but the kernel it starts for each
notebook is :mod:`grader.grading.sandbox.kernel`: a fresh unprivileged uid in a bubblewrap
jail with kernel-enforced limits, whose docker commands reach a rootless worker engine
(reset between students).

The registry: the kernel (on the host's network) and the worker engine reach it only
through the scope proxy (:mod:`grader.engine.scope`), with a credential per student whose
names are read inside ``autograde/<student>/``: the labs push to names every learner shares
(``lab04/run-…``, ``07-challenge/hello``), and each student gets their own copy of them;
``library/``, ``cache/`` and every other namespace are read-only or refused to them.

nbgrader runs as a subprocess of this Python, once per student: its traitlets config, its
gradebook session and its logging stay its own; a student whose grading crashes nbgrader
is reported and the next one is graded; every student's run has a time limit; and the
command line is exactly the documented ``nbgrader autograde`` plus two options
(``--Execute.kernel_name`` and ``JUPYTER_PATH``), so the course's nbgrader_config.py applies
unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from grader import proc
from grader.engine import rootless
from grader.engine.config import settings
from grader.grading import handoff
from grader.grading.checks.run import claim_worker, namespace_for
from grader.grading.criteria import ASSIGNMENT
from grader.grading.sandbox import kernel as jailed
from grader.grading.sandbox import registry_scope

MiB = 1024 * 1024
REPORT_FILE = "challenge-report.json"  # in the run folder: the handoff to the kernel launcher


class AutogradeError(Exception):
    """The grading machine cannot autograde behind the wall (what to install or run)."""


@dataclass
class StudentRun:
    student: str
    ok: bool
    seconds: float
    detail: str = ""
    refused: tuple[str, ...] = ()  # registry requests the proxy refused this student's kernel


def problem(need_engine: bool = True) -> str | None:
    why = jailed.jail_problem()
    if why:
        return why
    if need_engine:
        why = rootless.rootless_problem()
        if why:
            return f"no worker engine can run here: {why} (see docs/grading-safely.md)"
    return None


def students_of(course: Path, assignment: str) -> list[str]:
    submitted = course / "submitted"
    if not submitted.is_dir():
        return []
    return sorted(p.name for p in submitted.iterdir() if (p / assignment).is_dir())


def _nbgrader_argv(assignment: str, student: str, timeout: float | None) -> list[str]:
    argv = [sys.executable, "-m", "nbgrader", "autograde", assignment, "--student", student,
            "--force", f"--Execute.kernel_name={jailed.KERNEL_NAME}"]  # fmt: skip
    if timeout is not None:
        argv.append(f"--Execute.timeout={int(timeout)}")
    return argv


def _give_back(folder: Path, owner: tuple[int, int]) -> None:
    """Everything under ``folder``, the course owner's again: nbgrader wrote it as root, and on
    a hub the instructor who owns the course (not root) generates feedback from it. The walk
    holds each folder open (``os.fwalk``) and re-owns names relative to it, never following a
    symlink, so a folder swapped for a link mid-walk cannot send root's chown elsewhere."""
    if not folder.is_dir() or folder.is_symlink():
        return
    _chown(folder, owner)
    for _, dirnames, filenames, dirfd in os.fwalk(folder, follow_symlinks=False):
        for name in (*dirnames, *filenames):
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if (st.st_uid, st.st_gid) != owner:
                    os.chown(name, *owner, dir_fd=dirfd, follow_symlinks=False)
            except OSError:
                continue


def course_owner(course: Path) -> tuple[int, int]:
    """Who owns the course folder: root on a grading machine, the instructor on a hub."""
    st = course.stat()
    return st.st_uid, st.st_gid


def autograde(
    assignment: str,
    *,
    course: Path,
    students: Sequence[str] = (),
    limits: jailed.KernelLimits | None = None,
    timeout: float | None = None,
    student_timeout: float = 4 * 3600,
    engine: bool = True,
    say: Callable[[str], None] = print,
) -> list[StudentRun]:
    """Autograde ``students`` (default: every folder submitted/<student>/<assignment>)."""
    course = Path(course).resolve()
    why = problem(need_engine=engine)
    if why:
        raise AutogradeError(why)
    if not (course / "nbgrader_config.py").exists():
        raise AutogradeError(f"{course}: no nbgrader_config.py (pass --course COURSE_DIR)")
    names = list(students) or students_of(course, assignment)
    missing = [s for s in names if not (course / "submitted" / s / assignment).is_dir()]
    if missing:
        raise AutogradeError(
            f"no submission submitted/<student>/{assignment} for: {', '.join(missing)}"
        )
    if not names:
        raise AutogradeError(f"no submissions of {assignment} under {course / 'submitted'}")
    registry = settings().registry_host
    proxy = registry_scope.upstream(registry)  # the kernels and the engine reach only it
    if proxy is None:
        raise AutogradeError(f"{registry} is not the course registry the scope proxy serves")
    jailed.firewall(registry, proxy)
    run_dir = Path(tempfile.mkdtemp(prefix="grader-autograde-"))
    os.chmod(run_dir, 0o700)
    try:
        if engine:
            with claim_worker(registry) as eng:  # the proxy; build.sh's clients reach it too
                say(f"worker engine {eng.n} up ({eng.host})")
                return _grade_all(assignment, course, names, run_dir, limits, timeout,
                                  student_timeout, eng, say)  # fmt: skip
        return _grade_all(assignment, course, names, run_dir, limits, timeout,
                          student_timeout, None, say)  # fmt: skip
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        _give_back_gradebook(course)


def _give_back_gradebook(course: Path) -> None:
    """A gradebook nbgrader created as root belongs to the course's owner, like the course."""
    owner = course_owner(course)
    for db in course.glob("gradebook.db*"):
        _chown(db, owner)


def _chown(path: Path | str, owner: tuple[int, int]) -> None:
    try:
        st = os.lstat(path)
        if (st.st_uid, st.st_gid) != owner:
            os.lchown(path, *owner)
    except OSError:
        pass


def _grade_all(assignment, course, names, run_dir, limits, timeout, student_timeout, eng, say):
    config = run_dir / "jail.json"
    jailed.JailConfig(
        run_dir=str(run_dir),
        allowed=str(course / "autograded"),
        engine_socket=str(eng.socket) if eng else None,
        engine_group=eng.client_group if eng else None,
        registry=eng.registry if eng else None,
        registry_auth=str(run_dir / "registry-auth.json"),
        report=str(run_dir / REPORT_FILE),
        limits=limits or jailed.KernelLimits(),
    ).write(config)
    share = run_dir / "share"
    jailed.install_kernelspec(share, config)
    env = {"JUPYTER_PATH": os.pathsep.join([str(share), os.environ.get("JUPYTER_PATH", "")])}
    runs: list[StudentRun] = []
    for i, student in enumerate(names, 1):
        if eng is not None and i > 1:
            eng.reset()  # the next student finds nothing of this one's in the engine
        tag = f"[{i}/{len(names)}] {student}"
        say(f"{tag}: autograding {assignment} behind the wall")
        started = time.monotonic()
        try:
            run = _grade_one(assignment, course, student, run_dir, env, timeout,
                             student_timeout, eng, tag, say)  # fmt: skip
        except rootless.EngineError as e:  # this student only: the others are still graded
            run = StudentRun(student, False, time.monotonic() - started, str(e))
            say(f"{tag}: FAILED ({e})")
        runs.append(run)
    return runs


def _grade_one(assignment, course, student, run_dir, env, timeout, student_timeout, eng, tag,
               say):  # fmt: skip
    """One student's ``nbgrader autograde`` with their own registry credential; for the
    challenge, after the sandbox graded their build.sh (:func:`pregrade`)."""
    started = time.monotonic()
    report = run_dir / REPORT_FILE
    try:
        if assignment == ASSIGNMENT and eng is not None:
            pregrade(course / "submitted" / student / assignment, student, eng, report, tag, say)
        with student_credential(student, run_dir / "registry-auth.json") as refusals:
            stream = proc.stream(
                _nbgrader_argv(assignment, student, timeout),
                timeout=student_timeout, env=env, cwd=course,
            )  # fmt: skip
            tail: list[str] = []
            for _, line in stream:
                tail = [*tail[-40:], line]
    finally:
        report.unlink(missing_ok=True)  # the next student's kernel never sees this one's
    refused = tuple(refusals)
    if refused:
        say(f"{tag}: the registry refused {len(refused)} request(s): " + "; ".join(refused[:3]))
    _chown(course / "autograded", course_owner(course))
    _give_back(course / "autograded" / student, course_owner(course))
    shutil.rmtree(run_dir / "kernels", ignore_errors=True)
    seconds = time.monotonic() - started
    if stream.error is None:
        say(f"{tag}: done in {seconds:.0f} s")
        return StudentRun(student, True, seconds, refused=refused)
    detail = "\n".join(tail[-15:])
    say(f"{tag}: FAILED ({stream.error.reason})\n{detail}")
    return StudentRun(student, False, seconds, detail, refused)


def pregrade(
    submission: Path, student: str, eng: rootless.WorkerEngine, report: Path, tag: str, say
) -> None:
    """The challenge graded as ``grader batch`` grades it (build.sh run twice in the sandbox,
    on this worker engine, behind the proxy, its pushes confined to :func:`check_namespace`),
    written to ``report`` (root-only) for the kernel launcher (:mod:`grader.grading.handoff`).
    When it cannot be graded, no report: the notebook's own check says why."""
    started = time.monotonic()
    try:
        graded = _sandbox_grade(submission, student, eng)
    except Exception as e:  # this student's notebook is still graded, without the report
        say(f"{tag}: the sandbox could not grade build.sh: {type(e).__name__}: {e}")
        return
    handoff.write(graded, report)
    got = ", ".join(f"{c}: {graded.criterion(c).status}" for c in handoff.SANDBOX_CRITERIA)
    say(f"{tag}: build.sh graded in the sandbox ({got}) in {time.monotonic() - started:.0f} s")


def _sandbox_grade(submission: Path, student: str, eng: rootless.WorkerEngine):
    """``grader batch``'s grading of one submission; graded again once when the grading
    machine failed (a restarted proxy, a registry that stopped answering), as a batch does."""
    from grader.grading import api
    from grader.grading.batch.run import machine_faults
    from grader.grading.checks.run import EngineOptions

    opts = EngineOptions(namespace=check_namespace(student), engine=eng)
    graded, _ = api.grade(submission, engine=opts)
    if machine_faults(graded, settings().registry_host):
        graded, _ = api.grade(submission, engine=opts)
    return graded


def check_namespace(student: str) -> str:
    """Where :func:`pregrade` confines build.sh's pushes: ``autograde-check/<id>-<hash>``, a
    name no kernel reaches (a kernel's names are read inside ``autograde/<id>-<hash>``)."""
    return "autograde-check/" + student_namespace(student).split("/", 1)[1]


def student_namespace(student: str) -> str:
    """``autograde/<id>-<hash>``: one per student id (``Ada`` and ``ada`` differ)."""
    digest = hashlib.sha256(student.encode()).hexdigest()[:8]
    return f"autograde/{namespace_for(student)[:40].rstrip('._-') or 'student'}-{digest}"


@contextlib.contextmanager
def student_credential(student: str, path: Path):
    """The student's rooted registry credential, written to ``path`` (root-only) for the
    kernel launcher; yields a list that holds, afterwards, what the proxy refused them."""
    registry = settings().registry_host
    refusals: list[str] = []
    label = secrets.token_hex(5)
    with registry_scope.credential(student_namespace(student), registry, label, rooted=True) as (
        caller, config, since,
    ):  # fmt: skip
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(config, fh)
        try:
            yield refusals
        finally:
            path.unlink(missing_ok=True)
            refusals += [f.message for f in registry_scope.refused(caller, since)]


def add_subparser(sub) -> None:
    """``grader autograde``: registered by grader.cli."""
    p = sub.add_parser(
        "autograde",
        help="nbgrader autograde with every notebook kernel jailed (own uid, limits, "
        "a rootless worker engine); run as root",
    )
    p.add_argument("assignment", metavar="ASSIGNMENT")
    p.add_argument(
        "--student",
        action="append",
        default=[],
        metavar="ID",
        help="grade only this student (repeatable; default: every submission)",
    )
    p.add_argument(
        "--course",
        default=".",
        metavar="DIR",
        help="the course root (holds nbgrader_config.py; default: .)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per cell (default: the course's Execute.timeout)",
    )
    p.add_argument(
        "--memory",
        type=int,
        default=2048,
        metavar="MiB",
        help="address space of each process in a kernel's jail (default: %(default)s)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=256,
        help="processes and threads of a kernel's uid (default: %(default)s)",
    )
    p.add_argument(
        "--file-size",
        type=int,
        default=512,
        metavar="MiB",
        help="largest file a kernel may write (default: %(default)s)",
    )
    p.add_argument(
        "--no-engine",
        action="store_true",
        help="no worker engine: the kernels get no docker socket at all",
    )
    p.set_defaults(func=cli)  # fmt: skip


def cli(args) -> int:
    limits = jailed.KernelLimits(
        memory=args.memory * MiB, processes=args.processes, file_size=args.file_size * MiB
    )
    try:
        runs = autograde(
            args.assignment,
            course=Path(args.course),
            students=args.student,
            limits=limits,
            timeout=args.timeout,
            engine=not args.no_engine,
        )
    except (AutogradeError, rootless.EngineError) as exc:
        print(f"grader autograde: {exc}", file=sys.stderr)
        return 2
    failed = [r.student for r in runs if not r.ok]
    print(f"autograded {len(runs) - len(failed)}/{len(runs)} students"
          + (f"; failed: {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0
