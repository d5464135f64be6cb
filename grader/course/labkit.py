"""What the lab notebooks import: run a command and show it, check your work, show the lab's needs.

The API is small and stable; notebooks in ``source/`` depend on it::

    from grader.course.labkit import sh, self_check, lab_header, needs_engine, unique_name

    lab_header("02-qemu-binfmt")          # what the lab needs, engine status (+ no-engine banner)
    lab_status("02-qemu-binfmt")          # the same as {need: met}, quietly
    r = sh("docker buildx ls")             # prints `$ docker buildx ls` and the output as it comes
    r = sh(["docker", "run", "--rm", "--platform", "linux/arm64", "busybox", "uname", "-m"],
           record="02-uname-arm64")        # no engine: shows the recorded real output instead
    r.ok, r.stdout, r.stderr, r.returncode, r.ran, r.recording
    if needs_engine("building the image"): ...   # False (and says why) when no engine answers
    require_engine("the pushed image")           # in a check: CheckSkipped (with why) if no engine
    self_check(check_platform, check_flags)      # runs check functions, prints hints, never raises
    show_report(grader.check(".", static=True))  # a grader Report as the learner should read it

Where the learner types the command, labs use a ``%%docker`` cell instead
(:mod:`grader.course.magics`: bash, live build lanes, the text kept for the checks);
:class:`CheckSkipped` is what an engine check raises where no engine runs.

``sh`` never uses a shell (argv lists, or a string split with :func:`shlex.split`), never
raises when the command fails: it prints the exit status and, for a known error message,
its cause and fix (:mod:`grader.known_errors`).

Recorded outputs (no-engine mode) come from :mod:`grader.course.recorded`: ``lookup(key)``
shows one instead of running the command, and ``save(key, result)`` stores every keyed command
that ran for real while ``COURSE_RECORD=1`` is set (how recordings are made). In no-engine mode
:func:`lab_header` displays :func:`grader.course.noengine.banner`.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from grader import proc
from grader.course import noengine, recorded
from grader.course.labs import LABS
from grader.known_errors import KnownError, explain

__all__ = [
    "LABS",
    "CheckSkipped",
    "ShResult",
    "counted",
    "from_autograde",
    "lab_header",
    "lab_status",
    "needs_engine",
    "registry_host",
    "require_engine",
    "self_check",
    "sh",
    "show_report",
    "unique_name",
]

#: Shell operators that would silently become plain arguments without a shell.
_SHELL_OPERATORS = frozenset({"|", "||", "&&", ";", ">", ">>", "<", "2>&1", "&", "2>", "$("})

#: Programs whose commands need a Docker engine (anything else runs in no-engine mode too).
_ENGINE_PROGRAMS = frozenset({"docker"})


_NEED_TEXT = {
    "engine": "a Docker engine with buildx",
    "qemu": "QEMU emulators registered in binfmt_misc (to run arm64 on amd64 or back)",
    "registry": "a registry to push to (the course's, on 127.0.0.1)",
}


@dataclass
class ShResult:
    """What :func:`sh` ran and saw. ``ran`` is False when no engine was there to run it."""

    argv: tuple[str, ...]
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    ran: bool = False
    recording: Any = None  # what grader.course.recorded.lookup returned, when output is recorded
    lines: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def __repr__(self) -> str:
        state = f"exit {self.returncode}" if self.ran else "not run (no engine)"
        return f"<ShResult `{self.command}`: {state}>"

    @property
    def ok(self) -> bool:
        """True only for a command that ran here and exited 0 (a recording is not ``ok``)."""
        return self.ran and self.returncode == 0

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def output(self) -> str:
        """stdout and stderr interleaved as they arrived."""
        if self.lines:
            return "\n".join(line for _, line in self.lines)
        return "\n".join(part for part in (self.stdout, self.stderr) if part)

    @property
    def known(self) -> KnownError | None:
        """The known error this command's output shows, if it failed with one."""
        if self.returncode in (0, None) and self.recording is None:
            return None
        return explain(self.stderr + "\n" + self.stdout)


def _argv(cmd: str | Sequence[Any]) -> tuple[str, ...]:
    argv = tuple(shlex.split(cmd)) if isinstance(cmd, str) else tuple(str(a) for a in cmd)
    if not argv:
        raise ValueError("sh() needs a command")
    operators = [a for a in argv if a in _SHELL_OPERATORS]
    if operators:
        raise ValueError(
            f"sh() runs one command without a shell, so {operators[0]!r} would be passed to "
            f"{argv[0]} as an argument. Run the commands one by one (and filter output in "
            "Python), or put them in a script and run `bash script.sh`."
        )
    return argv


def _engine_available() -> bool:
    return noengine.engine_available()


def _print(text: str = "") -> None:
    print(text, flush=True)


def _explain_failure(result: ShResult) -> None:
    known = result.known
    if known is not None:
        _print(f"\n>> Known error: {known.title}")
        _print(f">> Why: {known.cause}")
        _print(f">> Fix: {known.fix}")


def _show_recording(result: ShResult, key: str | None) -> None:
    recording = recorded.lookup(key) if key else None
    if recording is None:
        _print("(no recorded output for this command)")
        return
    result.recording = recording
    result.stdout = recording.stdout
    result.stderr = recording.stderr
    result.returncode = recording.returncode
    _print(
        f"--- recorded output: `{recording.command}` on {recording.recorded_at} "
        "on the course's own engine (not run now) ---"
    )
    for text in (recording.stdout, recording.stderr):
        if text.strip():
            _print(text.rstrip("\n"))
    _print(f"--- end of recorded output (exit status {recording.returncode}) ---")
    if recording.returncode != 0:
        _explain_failure(result)


def sh(
    cmd: str | Sequence[Any],
    *,
    record: str | None = None,
    engine: bool | None = None,
    timeout: float = 1800,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    quiet: bool = False,
) -> ShResult:
    """Run ``cmd`` (argv list, or a string split like a shell would, without one) and show it.

    Prints ``$ command`` then every output line as it arrives; on failure the exit status and,
    for a known error, its cause and fix. Never raises for a failing command. ``engine``:
    whether the command needs a Docker engine (default: it does when it starts with
    ``docker``); without one it is not run, and the output recorded under ``record`` is
    shown instead, labelled as recorded. ``quiet`` prints only the command and failures.
    """
    argv = _argv(cmd)
    result = ShResult(argv)
    needs = engine if engine is not None else os.path.basename(argv[0]) in _ENGINE_PROGRAMS
    _print(f"$ {result.command}")
    if needs and not _engine_available():
        _print(
            "[no engine] This command needs a Docker engine, and none answers here, so it "
            "was not run."
        )
        _show_recording(result, record)
        return result
    stream = proc.stream(argv, timeout=timeout, cwd=cwd, env=env)
    for source, line in stream:
        result.lines.append((source, line))
        if not quiet:
            _print(line)
    result.ran = True
    result.returncode = stream.returncode
    result.duration = stream.duration
    result.stdout = "\n".join(line for src, line in result.lines if src == "stdout")
    result.stderr = "\n".join(line for src, line in result.lines if src == "stderr")
    if stream.error is not None and not result.ok:
        if quiet:
            for _, line in result.lines[-20:]:
                _print(line)
        _print(f"\n[{stream.error.reason}]")
        _explain_failure(result)
    if record and os.environ.get("COURSE_RECORD") == "1":
        recorded.save(record, result)
    return result


def needs_engine(what: str = "this cell") -> bool:
    """True when a Docker engine answers; otherwise says that ``what`` needs one and returns
    False, so a cell can do ``if needs_engine("building the image"): ...``."""
    if _engine_available():
        return True
    _print(
        f"[no engine] {what[:1].upper() + what[1:]} needs a Docker engine; none answers "
        "here, so this part is skipped. Run the course locally (`./course up`) or on your "
        "instructor's hub for the full lab."
    )
    return False


def registry_host() -> str:
    """The course registry as ``host:port`` (``127.0.0.1:5000`` unless the engine chose
    another port): push to ``f"{registry_host()}/you/app:1"``."""
    from grader.engine.config import registry_host as _host

    return _host()


def unique_name(prefix: str) -> str:
    """``prefix-<6 hex>``: a name for a builder, container or tag nobody else uses."""
    return f"{prefix}-{secrets.token_hex(3)}"


def _qemu_ready() -> bool:
    from grader.engine.services import binfmt_entries

    machine = os.uname().machine
    foreign = "qemu-x86_64" if machine in ("aarch64", "arm64") else "qemu-aarch64"
    entry = binfmt_entries().get(foreign)
    return entry is not None and entry.get("enabled") == "enabled"


def _registry_ready() -> bool:
    from grader.docker.registry import registry_answers

    return registry_answers(registry_host())


def _status(need: str) -> bool:
    if need == "engine":
        return _engine_available()
    if need == "qemu":
        return _qemu_ready()
    if need == "registry":
        return _registry_ready()
    raise ValueError(f"unknown need {need!r}")


def lab_status(lab_id: str) -> dict[str, bool]:
    """``{need: met}`` for each thing the lab's engine cells need, without printing."""
    info = LABS.get(lab_id)
    if info is None:
        raise ValueError(f"unknown lab {lab_id!r}; known: {', '.join(LABS)}")
    return {need: _status(need) for need in info.needs}


def lab_header(lab_id: str) -> None:
    """Print the lab's title, what it needs and whether each need is met here (the same as
    :func:`lab_status`). In no-engine mode it also shows ``grader.course.noengine.banner``."""
    status = lab_status(lab_id)
    info = LABS[lab_id]
    _print(f"Lab {lab_id}: {info.title}  (about {info.minutes} minutes)")
    if not info.needs:
        _print("Needs: nothing beyond this notebook.")
    for need, met in status.items():
        mark = "ok     " if met else "MISSING"
        _print(f"  {mark} {_NEED_TEXT[need]}")
    missing = [n for n, met in status.items() if not met]
    if missing:
        _print(
            "Fix: `./course up` (or `grader engine up`) sets up what is missing; "
            "`grader doctor` shows the details."
        )
    if not _engine_available():
        from IPython.display import display

        display(noengine.banner(lab_id))


class CheckSkipped(AssertionError):
    """A check that cannot run here (no engine): ``self_check`` shows it as SKIP with the
    reason; in a graded cell it scores 0 with that reason (it is an AssertionError), because
    a recording is never evidence of the learner's work."""


def require_engine(what: str) -> None:
    """In a check: raise :class:`CheckSkipped` when no engine answers, saying why and where
    ``what`` (e.g. "the pushed image") is checked instead; return quietly when one does.

    A graded check that needs the engine must not pass without one (nobody checked the work)
    nor fail as if the work were wrong: it is skipped, and scores 0 with this reason."""
    if _engine_available():
        return
    reason = noengine.engine_status().reason or "no engine answers"
    raise CheckSkipped(
        f"{what[:1].upper() + what[1:]} needs a Docker engine and none answers here ({reason}), "
        "so it was not checked: it is checked where there is an engine (./course up, your "
        "class's hub, or when your work is graded)"
    )


def _check_title(check: Callable[[], Any]) -> str:
    doc = (check.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else check.__name__.replace("_", " ")


def self_check(*checks: Callable[[], Any]) -> None:
    """Run each check (a function whose docstring's first line says what it checks) and print
    PASS, FAIL, TODO or SKIP (:class:`CheckSkipped`: cannot run here) with its message as the
    hint, then how many pass. Never raises."""
    passed = 0
    for check in checks:
        title = _check_title(check)
        try:
            check()
        except CheckSkipped as e:
            _print(f"SKIP  {title}\n      why: {e}")
            continue
        except AssertionError as e:
            _print(f"FAIL  {title}\n      hint: {e or 'see the task above'}")
        except NotImplementedError:
            _print(f"TODO  {title}\n      hint: you have not answered this part yet")
        except NameError as e:  # the answer's cell has not run (or not been written) yet
            _print(f"TODO  {title}\n      hint: {e}: run the cell where you answer this part")
        except Exception as e:  # a learner's broken code: show it as a hint, not a traceback
            _print(f"FAIL  {title}\n      error: {type(e).__name__}: {e}")
        else:
            passed += 1
            _print(f"PASS  {title}")
    _print(f"\n{passed}/{len(checks)} checks pass.")


def counted(report: Any, requires: Mapping[str, Sequence[str]]) -> Any:
    """The report as graded: a criterion whose prerequisites (``requires[id]``) did not all
    pass scores 0 and says which to fix first. Graded cells and the printed total read this
    one report, so the total shown is the nbgrader total."""
    from dataclasses import replace

    from grader.grading.report import Report
    from grader.grading.rules.grader import COUNTS_AFTER

    status = {c.id: c.status for c in report.criteria}
    out = Report(report.submission)
    for c in report.criteria:
        unmet = [n for n in requires.get(c.id, ()) if status.get(n) != "pass"]
        if c.status == "pass" and unmet:
            why = COUNTS_AFTER.finding(criterion=c.id, unmet=", ".join(unmet))
            c = replace(c, status="fail", points=0.0, findings=[*c.findings, why])
        out.criteria.append(c)
    return out


def from_autograde(report: Any) -> Any:
    """Under ``grader autograde``: ``report`` with the criteria the kernel's jail cannot grade
    (``idempotent``, ``runs``: build.sh in the grader's own sandbox) as ``grader autograde``
    graded them, outside the jail, before this notebook ran (:mod:`grader.grading.handoff`);
    anywhere else (your own JupyterLab) ``report`` as it is."""
    from grader.grading import handoff

    trusted = handoff.read()
    if trusted is None:
        return report
    ids = " and ".join(handoff.SANDBOX_CRITERIA)
    _print(f"{ids}: graded by grader autograde in its build.sh sandbox before this notebook ran")
    return handoff.merged(report, trusted)


def show_report(report: Any, *, file=None, skipped: str = "") -> None:
    """Print a grader :class:`~grader.grading.report.Report`: each criterion, findings, hints;
    ``skipped`` says what evaluates the skipped criteria (e.g. "the full check, section 5")."""
    out = file or sys.stdout
    marks = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "skipped": "SKIP"}
    print(f"Report for {report.submission}: {report.score:g}/{report.max_score:g} points", file=out)
    for c in report.criteria:
        print(
            f"{marks.get(c.status, c.status.upper()):<5} {c.id:<14} {c.points:g}/"
            f"{c.max_points:g}  {c.title}",
            file=out,
        )
        for f in c.findings:
            where = (
                f"{f.file}:{f.line}: " if f.file and f.line else (f"{f.file}: " if f.file else "")
            )
            print(f"        {where}{f.message}", file=out)
            if f.hint:
                print(f"        hint: {f.hint}", file=out)
        if c.status == "skipped" and skipped:
            print(f"        not evaluated here: {skipped}", file=out)
    out.flush()
