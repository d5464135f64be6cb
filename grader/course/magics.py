"""``%%docker``: learners type Docker in a cell; it runs on the engine and the check grades it.

The setup cell of a lab loads it (``%load_ext grader.course.magics``); then a cell such as::

    %%docker build
    docker buildx build --builder default --platform linux/amd64,linux/arm64 \\
      --provenance=false -t "$REGISTRY/lab04/$RUN:v1" --push .

runs as a bash script (``bash -euo pipefail`` is *not* added: the learner's script says what
it wants, as ``build.sh`` would), in the notebook's folder or ``--cwd DIR``. What the cell may
use:

- ``$REGISTRY``: the course registry as ``host:port`` (:func:`labkit.registry_host`; grading
  and hub engines reach it under other addresses, so never write ``127.0.0.1:5000``);
- any UPPER_CASE notebook variable the text names as ``$NAME`` or ``${NAME}`` whose value is a
  str, int or path (``RUN``, ``REPO``, ``APP``...). They are written as assignments at the top
  of the script that runs, so the analyser reads the same values bash used.

Each ``docker buildx build`` the script runs is drawn live in a
:class:`~grader.course.widgets.build.BuildPanel` (one lane per platform, the learner's exact
command shown): a ``docker`` shim first on ``PATH`` adds ``--progress=rawjson`` (what the panel
reads; a ``--progress`` the learner chose is replaced) and ``--metadata-file`` (what was pushed,
with its digest), and marks where each build starts and ends on stderr. Everything else the
script prints is shown as it comes. Before it exits, the shim handles the course registry's tag
race (:mod:`grader.course.tagrace`: a push that met it runs again once; a tag dockerd's second
push left on one platform's manifest is pointed back at the index), and it passes SIGTERM and
SIGINT on to the build.

What ran is kept: :func:`cell` returns the :class:`DockerCell` by name (``text`` as typed,
``script`` as run, exit status, output, ``calls``: every docker command as bash expanded it,
one :class:`BuildRecord` per build). Checks grade that
same text with the project's analyser and rule catalogue (:meth:`DockerCell.report`: the
challenge's criteria, rule ids and hints, on a copy of the cell's folder with the script as
``build.sh``), and what it produced (:meth:`DockerCell.pushed`, then
``grader.grading.checks.image.check_image`` or :mod:`grader.docker.registry`).

Options: ``%%docker NAME [--cwd DIR] [--record KEY] [--timeout SECONDS] [--no-panel]``.

No engine (Binder): nothing runs; the cell says ``[no engine]`` and shows the real output
recorded under ``--record KEY`` (default ``<lab number>-<NAME>``) on the course's engine, labelled
as recorded. ``DockerCell.ran`` is False and :meth:`DockerCell.require_engine` raises
:class:`~grader.course.labkit.CheckSkipped` with the reason, so an engine check is ``SKIP`` in
``self_check`` (0 points in a graded cell, with the reason), never a pass. Static checks of the
text still run for real. Recordings of ``%%docker`` cells keep the output, never the commands
(a graded cell's commands are its answer).

An unanswered cell (nbgrader's ``raise NotImplementedError()`` stub) raises
NotImplementedError instead of running the stub as bash.

Files: ``%%writefile PATH`` (IPython's own) writes Dockerfiles and scripts.

For lab authors (labs 01-04 do this; new labs should too):

1. Setup cell: ``%load_ext grader.course.magics`` and ``%xmode Minimal`` (feedback shows the
   assertion's message, not a traceback); define the UPPER_CASE names the task may use
   (``REPO = f"{registry_host()}/labNN/{unique_name('run')}"``).
2. The answer cell (nbgrader ``solution``, tagged ``raises-exception``)::

       %%docker build
       ### BEGIN SOLUTION
       docker buildx build --platform linux/amd64,linux/arm64 -t "$REPO:v1" --push app
       ### END SOLUTION

3. A locked cell with the checks, each with a one-line docstring, static part first so it
   grades for real without an engine::

       def check_build():
           \"\"\"Your build cell pushes linux/amd64 and linux/arm64.\"\"\"
           cell = magics.cell("build")                      # AssertionError: run it first
           builds = buildscript.analyse(cell.script).builds  # the analyser, on what ran
           assert builds, "write a docker buildx build in your build cell"
           report = cell.report()                            # criteria, rule ids, hints
           cell.require_success()                            # CheckSkipped without engine
           name, digest = cell.pushed()[-1]                  # then registry / check_image

   ``cell.runs("run")`` lists the ``docker run`` commands bash ran (expanded), with
   :func:`option_values` to read their options; ``cell.output`` is what the script printed.
4. The grade cell calls the check; every assert message says what to do next.
5. ``grader record LAB`` stores each ``%%docker`` cell's output under
   :func:`recording_key` (``<lab number>-<NAME>``) for no-engine mode; the store's test fails
   until it is recorded. ``scripts/points-by-kind`` counts the task as ``docker``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader import proc
from grader.course import noengine, recorded

__all__ = [
    "BUILD_END",
    "BUILD_START",
    "CELLS",
    "BuildRecord",
    "DockerCell",
    "build_platforms",
    "cell",
    "load_ipython_extension",
    "option_values",
    "recording_key",
    "run_cell",
]

#: Lines the shim writes to stderr around each build (never shown to the learner).
BUILD_START = "@@course-build-start@@"
BUILD_END = "@@course-build-end@@"
#: What nbgrader leaves in an unanswered solution cell.
STUB = re.compile(r"^\s*raise NotImplementedError\(\)\s*$", re.M)
#: Notebook variables a cell may use: $NAME / ${NAME}, upper case.
_VAR = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)\}?")
#: Output lines kept per cell (the rest is shown, not kept).
MAX_KEPT_LINES = 5000
#: What a graded copy of the cell's folder takes: files, and bytes per file.
MAX_COPIED_FILES = 200
MAX_COPIED_BYTES = 1_000_000

#: Every %%docker cell that ran in this kernel, by name.
CELLS: dict[str, DockerCell] = {}

_SHIM = '''\
#!{python}
"""The course's docker shim (grader.course.magics): lanes for `docker buildx build`."""
import json, os, signal, subprocess, sys, tempfile

sys.path.insert(0, {root!r})  # the kernel's grader, for grader.course.tagrace
REAL = os.environ["COURSE_REAL_DOCKER"]
REGISTRY = os.environ.get("COURSE_REGISTRY", "")  # the course registry, host:port
GLOBAL_WITH_VALUE = {{"--context", "-c", "--host", "-H", "--config", "--log-level", "-l",
                     "--tlscacert", "--tlscert", "--tlskey"}}


def build_word(args):
    """Index of `build` in `[global opts] buildx [--builder X] build ...`, or None."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in GLOBAL_WITH_VALUE else 1
    if i >= len(args) or args[i] != "buildx":
        return None
    i += 1
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in ("--builder",) else 1
    return i if i < len(args) and args[i] in ("build", "b") else None


def log_call(args):
    """Every docker command, as bash expanded it: what the checks grade."""
    try:
        with open(os.path.join(os.environ["COURSE_BUILD_DIR"], "calls.jsonl"), "a") as calls:
            calls.write(json.dumps(["docker", *args]) + "\\n")
    except OSError:
        pass


def build_argv(args, k):
    """The build as run, with rawjson progress (what the panel reads: a --progress the
    learner chose is replaced) and a metadata file: (argv, metadata file, ours or None)."""
    rest, meta, i = [], None, k + 1
    while i < len(args):
        a = args[i]
        if a == "--":
            rest += args[i:]
            break
        if a == "--metadata-file" and i + 1 < len(args):
            meta = args[i + 1]
        elif a.startswith("--metadata-file="):
            meta = a.partition("=")[2]
        if a == "--progress":
            i += 2
            continue
        if not a.startswith("--progress="):
            rest.append(a)
        i += 1
    extra, ours = ["--progress=rawjson"], None
    if meta is None:
        fd, meta = tempfile.mkstemp(prefix="build-", suffix=".json",
                                    dir=os.environ["COURSE_BUILD_DIR"])
        os.close(fd)
        extra += ["--metadata-file", meta]
        ours = meta
    return [REAL, *args[: k + 1], *extra, *rest], meta, ours


def marker(kind, **info):
    sys.stderr.write(kind + " " + json.dumps({{"id": os.getpid(), **info}}) + "\\n")
    sys.stderr.flush()


def stop(p):
    """The build ends with the shim: asked first (docker passes SIGTERM on to buildx), then
    killed."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    p.wait()


def run(argv, stopped):
    """Run the build once, its stderr passed on line by line and SIGTERM/SIGINT passed on to
    it: (exit status, buildx's tag-race error seen, the names its second push sent)."""
    p = subprocess.Popen(argv, stderr=subprocess.PIPE)

    def forward(signum, _frame):
        stopped.append(signum)
        p.send_signal(signum)

    handlers = {{s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)
                if signal.getsignal(s) is not signal.SIG_IGN}}
    race, names = False, []
    try:
        for raw in iter(p.stderr.readline, b""):
            sys.stderr.buffer.write(raw)
            sys.stderr.flush()
            line = raw.decode("utf-8", "replace").rstrip("\\n")
            race = race or tagrace.race_error(line, REGISTRY)
            names += tagrace.pushed_with_docker(line)
        return p.wait(), race, names
    finally:
        stop(p)
        for s, h in handlers.items():
            signal.signal(s, h)


def build(argv):
    """The build, run again once when its push met the course registry's tag race (a push
    is idempotent): (exit status, the names its second push sent, signals it was sent)."""
    stopped = []
    code, race, names = run(argv, stopped)
    if code != 0 and race and not stopped:
        sys.stderr.write("[course] the course registry failed to read a tag while it was "
                         "being written (registry-tag-race); pushing again, once\\n")
        sys.stderr.flush()
        code, race, names = run(argv, stopped)
    return code, names, stopped


def repair(names, meta):
    """The course registry's tags the second push left on one platform's manifest, pointed
    back at the index the build pushed: what to say."""
    try:
        with open(meta) as f:
            digest = json.load(f).get("containerimage.digest")
        if not isinstance(digest, str):
            return []
        return tagrace.repair_pushed_tags(names, digest, REGISTRY, docker=REAL)
    except Exception as e:  # the build succeeded: a check that fails does not change that
        return [f"[course] could not check the tags the push wrote: {{e}}"]


args = sys.argv[1:]
log_call(args)
k = build_word(args)
if k is None:
    os.execv(REAL, [REAL, *args])
from grader.course import tagrace  # noqa: E402 (builds only)

argv, meta, ours = build_argv(args, k)
marker({start!r}, argv=["docker", *args], metadata=ours)
code, names, stopped = build(argv)
said = repair(names, meta) if code == 0 and names else []
status = 128 + stopped[0] if stopped else (code if code >= 0 else 128 - code)
marker({end!r}, returncode=status, said=said)
sys.exit(status)
'''


# --- what a build was --------------------------------------------------------------------


def option_values(argv: list[str], *names: str) -> list[str]:
    """Every value of the options ``names`` in an argv (``--x v``, ``--x=v``, ``-xv`` for short
    ones): ``option_values(cell.runs()[0], "--platform")``."""
    out = []
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                out.append(argv[i + 1])
            elif a.startswith(n + "="):
                out.append(a[len(n) + 1 :])
            elif len(n) == 2 and a.startswith(n) and len(a) > 2 and not a.startswith("--"):
                out.append(a[2:])
    return out


def build_platforms(argv: list[str]) -> list[str]:
    """The platforms a ``docker buildx build`` argv asks for, normalised, in order (the
    builder's own when it names none: one lane, this machine's)."""
    from grader.docker.progress import host_platform
    from grader.docker.registry import Platform

    out: list[str] = []
    for value in option_values(argv, "--platform"):
        for item in value.split(","):
            try:
                text = str(Platform.parse(item)) if item.strip() else ""
            except ValueError:
                text = item.strip()
            if text and text not in out:
                out.append(text)
    return out or [host_platform()]


@dataclass
class BuildRecord:
    """One ``docker buildx build`` a cell ran: the command as bash expanded it, its platforms,
    exit status, buildx's metadata (``image.name``, ``containerimage.digest``) and its lanes."""

    argv: list[str]
    platforms: list[str]
    returncode: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    lanes: dict[str, dict] = field(default_factory=dict)  # BuildPanel.lane_summary()
    panel: Any = field(default=None, repr=False)
    progress: Any = field(default=None, repr=False)  # without a panel: the parser alone
    #: buildx's plain-text lines (``ERROR: ...`` and the Dockerfile excerpt), last 20.
    text: list[str] = field(default_factory=list)
    metadata_path: str | None = field(default=None, repr=False)

    @property
    def tags(self) -> list[str]:
        return option_values(self.argv, "--tag", "-t")

    @property
    def pushed(self) -> bool:
        """The result went to a registry (``--push`` or an output with ``push=true`` /
        ``type=registry``)."""
        if "--push" in self.argv:
            return True
        outputs = option_values(self.argv, "--output", "-o")
        return any("type=registry" in o or "push=true" in o for o in outputs)

    @property
    def digest(self) -> str | None:
        value = self.metadata.get("containerimage.digest")
        return value if isinstance(value, str) else None


# --- what a cell was ---------------------------------------------------------------------


@dataclass
class DockerCell:
    """A ``%%docker`` cell: what was typed, what ran, what it printed and built."""

    name: str
    text: str  # as typed
    script: str  # as run: the notebook variables it uses, assigned, then the text
    cwd: Path
    ran: bool = False
    returncode: int | None = None
    output: list[str] = field(default_factory=list)
    builds: list[BuildRecord] = field(default_factory=list)
    duration: float = 0.0
    reason: str = ""  # why it did not run
    recording: Any = None
    #: Every ``docker`` command the script ran, as bash expanded it (argv lists, in order).
    calls: list[list[str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.ran and self.returncode == 0

    @property
    def stdout(self) -> str:
        return "\n".join(self.output)

    def require_engine(self) -> None:
        """Raise :class:`~grader.course.labkit.CheckSkipped` (with why) when the cell did not
        run here: an engine check cannot pass on a recording."""
        from grader.course.labkit import CheckSkipped

        if not self.ran:
            raise CheckSkipped(
                f"the %%docker {self.name} cell did not run here ({self.reason or 'no engine'}); "
                "this check runs where there is an engine (./course up, your class's hub, "
                "or when your work is graded)"
            )

    def require_success(self) -> None:
        """Assert that the cell ran and exited 0, saying what to read when it did not."""
        self.require_engine()
        if self.returncode != 0:
            failed = [b for b in self.builds if b.returncode not in (0, None)]
            where = (
                f"`{shlex.join(failed[0].argv)[:200]}` failed (see its panel's error)"
                if failed
                else f"the script exited {self.returncode} (see the cell's output)"
            )
            raise AssertionError(f"your %%docker {self.name} cell failed: {where}; fix it and "
                                 "run it again")  # fmt: skip

    def runs(self, subcommand: str = "run") -> list[list[str]]:
        """The ``docker <subcommand> ...`` commands the script ran (``run``, ``buildx``...)."""
        return [argv for argv in self.calls if len(argv) > 1 and argv[1] == subcommand]

    def pushed(self) -> list[tuple[str, str | None]]:
        """``(name, digest)`` of what the cell's builds pushed, newest last."""
        out = []
        for b in self.builds:
            if b.pushed and b.returncode == 0:
                names = str(b.metadata.get("image.name") or ",".join(b.tags))
                out += [(n, b.digest) for n in names.split(",") if n]
        return out

    def write_submission(self, folder: Path | None = None) -> Path:
        """A copy of the cell's folder (small files only: the Dockerfiles and sources a build
        reads, not tarballs) with the script as ``build.sh``: what ``grader.check`` reads."""
        dest = Path(folder or tempfile.mkdtemp(prefix=f"docker-{self.name}-"))
        dest.mkdir(parents=True, exist_ok=True)
        copied = 0
        for root, dirs, files in os.walk(self.cwd) if self.cwd.is_dir() else ():
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for fname in files:
                src = Path(root, fname)
                rel = src.relative_to(self.cwd)
                if (rel == Path("build.sh") or src.is_symlink() or copied >= MAX_COPIED_FILES
                        or src.stat().st_size > MAX_COPIED_BYTES):  # fmt: skip
                    continue
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest / rel)
                copied += 1
        (dest / "build.sh").write_text("#!/usr/bin/env bash\n" + self.script)
        return dest

    def report(self, platforms=("linux/amd64", "linux/arm64")):
        """The grader's static report on the script this cell ran (criteria, rule ids,
        hints), exactly as ``grader check --static`` grades a build.sh."""
        import grader

        return grader.check(self.write_submission(), static=True, platforms=platforms)


def cell(name: str) -> DockerCell:
    """The ``%%docker NAME`` cell that ran last in this kernel; AssertionError saying which
    cell to run when it has not run."""
    found = CELLS.get(name)
    if found is None:
        raise AssertionError(
            f"the %%docker {name} cell has not run yet: write your commands in it and run it"
        )
    return found


# --- running ------------------------------------------------------------------------------


def _shim_dir() -> Path:
    """A folder holding the ``docker`` shim (one per kernel)."""
    folder = Path(tempfile.mkdtemp(prefix="course-docker-shim-"))
    shim = folder / "docker"
    root = Path(__file__).resolve().parents[2]  # where the shim imports grader from
    text = _SHIM.format(python=sys.executable, root=str(root), start=BUILD_START, end=BUILD_END)
    shim.write_text(text)
    shim.chmod(0o755)
    return folder


def _notebook_vars(text: str, namespace: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for name in dict.fromkeys(_VAR.findall(text)):
        value = namespace.get(name)
        if isinstance(value, (str, int, os.PathLike)) and not isinstance(value, bool):
            out[name] = str(value)
    return out


def compose_script(text: str, variables: Mapping[str, str]) -> str:
    """What runs: the variables (quoted as bash reads them), then the learner's text."""
    head = "".join(f"{k}={shlex.quote(v)}\n" for k, v in variables.items())
    return head + text if text.endswith("\n") else head + text + "\n"


def _registry() -> str:
    from grader.course.labkit import registry_host

    return registry_host()


@dataclass
class _Active:
    """A build that started and has not ended: where its lines go."""

    record: BuildRecord
    started: float
    lines: queue.Queue = field(default_factory=queue.Queue)
    run: Any = None
    code: int | None = None

    def feed(self) -> Iterator[str]:
        while (item := self.lines.get()) is not None:
            yield item


class _Runner:
    """Runs one script and routes its lines: text to the cell, builds to their panels.

    Builds are told apart by the shim's process id. They share the script's stderr, so while
    two run at once (``&``) their lines go to the one that started last."""

    def __init__(self, cell: DockerCell, show: Callable[[Any], None], panels: bool):
        self.cell = cell
        self.show = show
        self.panels = panels
        self.active: dict[str, _Active] = {}

    def _say(self, line: str) -> None:
        if len(self.cell.output) < MAX_KEPT_LINES:
            self.cell.output.append(line)
        print(line, flush=True)

    def _start(self, payload: str) -> None:
        info = json.loads(payload)
        argv = [str(a) for a in info.get("argv", [])]
        record = BuildRecord(argv=argv, platforms=build_platforms(argv))
        record.metadata_path = info.get("metadata")
        build = _Active(record, time.monotonic())
        self.active[str(info.get("id", len(self.cell.builds)))] = build
        self.cell.builds.append(record)
        if self.panels:
            from grader.course.widgets.build import BuildPanel

            record.panel = BuildPanel.watching(argv, record.platforms)
            self.show(record.panel)
            build.run = record.panel.follow(build.feed(), lambda: build.code)
        else:  # no panel to show the command: say it in the text
            from grader.docker.progress import BuildProgress

            self._say(f"$ {shlex.join(argv)}")
            record.progress = BuildProgress(record.platforms)

    def _end(self, payload: str) -> None:
        info = json.loads(payload)
        key = str(info.get("id", ""))
        build = self.active.pop(key, None)
        if build is None:  # an end without its start (a marker printed by hand): not a build
            self._say(f"{BUILD_END} {payload}")
            return
        record = build.record
        record.returncode = build.code = info.get("returncode")
        record.duration = time.monotonic() - build.started
        if record.panel is not None:
            build.lines.put(None)
            build.run.wait(60)
            record.lanes = record.panel.lane_summary()
            record.text = list(build.run.progress.text[-20:])
        else:
            record.progress.finish(record.returncode == 0)
            record.text = list(record.progress.text[-20:])
            for line in record.progress.drain_log()[-40:]:
                self._say(line)
        if record.metadata_path:
            try:
                record.metadata = json.loads(Path(record.metadata_path).read_text() or "{}")
            except (OSError, ValueError):
                record.metadata = {}
        state = "succeeded" if record.returncode == 0 else f"failed (exit {record.returncode})"
        self._say(f"[build for {', '.join(record.platforms)} {state} in {record.duration:.1f} s]")
        for line in info.get("said") or []:  # the shim's repair of the tags it pushed
            self._say(str(line))

    def line(self, source: str, text: str) -> None:
        if source == "stderr" and text.startswith(BUILD_START + " "):
            self._start(text[len(BUILD_START) + 1 :])
        elif source == "stderr" and text.startswith(BUILD_END + " "):
            self._end(text[len(BUILD_END) + 1 :])
        elif source == "stderr" and self.active:
            build = next(reversed(self.active.values()))
            if build.record.panel is not None:
                build.lines.put(text)
            else:
                build.record.progress.feed_line(text)
        else:
            self._say(text)

    def close(self) -> None:
        """The script ended inside a build (killed, timed out): end its lanes too."""
        for key in list(self.active):
            self._end(json.dumps({"id": key, "returncode": self.cell.returncode or -1}))


def run_cell(
    name: str,
    text: str,
    *,
    cwd: str | os.PathLike | None = None,
    namespace: Mapping[str, Any] | None = None,
    record: str | None = None,
    timeout: float = 1800,
    panels: bool = True,
    show: Callable[[Any], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> DockerCell:
    """Run ``text`` as the ``%%docker name`` cell (the magic calls this; tests may too)."""
    if STUB.search(text):
        if not noengine.engine_available():
            print(f"[no engine] {noengine.engine_status().reason}: %%docker cells do not run "
                  "here (and this one is not answered yet).", flush=True)  # fmt: skip
        raise NotImplementedError(
            f"write your commands in the %%docker {name} cell (in place of the "
            "`raise NotImplementedError()` line), then run it"
        )
    if show is None:
        from IPython.display import display as show
    namespace = dict(namespace or {})
    namespace.setdefault("REGISTRY", _registry())
    variables = _notebook_vars(text, namespace)
    result = DockerCell(name=name, text=text, script=compose_script(text, variables),
                        cwd=Path(cwd or os.getcwd()).resolve())  # fmt: skip
    CELLS[name] = result
    if not noengine.engine_available():
        result.reason = noengine.engine_status().reason or "no engine answers"
        _show_recording(result, record)
        return result
    real = proc.which("docker")
    build_dir = Path(tempfile.mkdtemp(prefix="course-builds-"))
    shim = _shim_dir()
    run_env = {"COURSE_REAL_DOCKER": real or "docker", "COURSE_BUILD_DIR": str(build_dir),
               "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}",
               "REGISTRY": namespace["REGISTRY"], "COURSE_REGISTRY": namespace["REGISTRY"],
               **(env or {})}  # fmt: skip
    script = build_dir / f"{name}.sh"
    script.write_text(result.script)
    runner = _Runner(result, show, panels)
    started = time.monotonic()
    stream = proc.stream(["bash", str(script)], timeout=timeout, cwd=result.cwd, env=run_env)
    try:
        for source, line in stream:
            runner.line(source, line)
    finally:
        result.ran = True
        result.returncode = stream.returncode
        result.duration = time.monotonic() - started
        runner.close()
        result.calls = _read_calls(build_dir / "calls.jsonl")
        shutil.rmtree(shim, ignore_errors=True)
        shutil.rmtree(build_dir, ignore_errors=True)
    if stream.error is not None:
        _explain(result, stream.error)
    if record and os.environ.get("COURSE_RECORD") == "1":
        recorded.save(record, _Transcript(result))
    return result


def _read_calls(path: Path, limit: int = 1000) -> list[list[str]]:
    """The shim's log of docker commands (at most ``limit``; a broken line is skipped)."""
    out: list[list[str]] = []
    try:
        lines = path.read_text(errors="replace").splitlines()[:limit]
    except OSError:
        return out
    for line in lines:
        try:
            argv = json.loads(line)
        except ValueError:
            continue
        if isinstance(argv, list):
            out.append([str(a) for a in argv])
    return out


def _explain(result: DockerCell, error: proc.CommandError) -> None:
    from grader.known_errors import explain

    print(f"\n[{error.reason}]", flush=True)
    texts = [result.stdout, *("\n".join(b.panel.run.progress.text) for b in result.builds
                              if b.panel is not None and b.panel.run is not None)]  # fmt: skip
    known = explain("\n".join(texts))
    if known is not None:
        print(f">> Known error: {known.title}\n>> Why: {known.cause}\n>> Fix: {known.fix}")


@dataclass
class _Transcript:
    """What a recording of a %%docker cell keeps: its output and builds, not its commands."""

    cell: DockerCell

    @property
    def command(self) -> str:
        return f"%%docker {self.cell.name} (commands not shown)"

    @property
    def stdout(self) -> str:
        lines = [line for line in self.cell.output if not line.startswith("$ docker buildx b")]
        for b in self.cell.builds:
            lanes = "; ".join(f"{p}: {v['state']}" for p, v in b.lanes.items())
            lines.append(f"[lanes: {lanes}]" if lanes else "")
            if b.returncode not in (0, None):  # what buildx said, so a reader sees why
                lines += [line for line in b.text if not line.startswith("$ docker")]
        return "\n".join(line for line in lines if line)

    @property
    def stderr(self) -> str:
        return ""

    @property
    def returncode(self) -> int | None:
        return self.cell.returncode


def _show_recording(result: DockerCell, key: str | None) -> None:
    print(f"[no engine] {result.reason}: this %%docker cell was not run.", flush=True)
    rec = recorded.lookup(key) if key else None
    result.recording = rec
    if rec is None:
        print("(no recorded output for this cell)")
        return
    print(f"--- {rec.label()} ---")
    if rec.output.strip():
        print(rec.output.rstrip("\n"))
    print(f"--- end of recorded output (exit status {rec.returncode}) ---", flush=True)
    if rec.returncode != 0:
        from grader.known_errors import explain

        known = explain(rec.output)
        if known is not None:
            print(f">> Known error: {known.title}\n>> Why: {known.cause}\n>> Fix: {known.fix}")


# --- the IPython side -----------------------------------------------------------------------


def _parse_line(line: str):
    import argparse

    parser = argparse.ArgumentParser(prog="%%docker", add_help=False, exit_on_error=False)
    parser.add_argument("name", nargs="?", default="cell")
    parser.add_argument("--cwd")
    parser.add_argument("--record")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--no-panel", action="store_true")
    try:
        return parser.parse_args(shlex.split(line))
    except (argparse.ArgumentError, SystemExit, ValueError) as e:
        raise ValueError(f"%%docker {line}: {e}; usage: {docker_magic.__doc__}") from None


def recording_key(line: str, folder: str) -> str | None:
    """The recording of a ``%%docker`` cell with magic line ``line`` in the lab folder
    ``folder``: ``--record KEY``, else ``<lab number>-<NAME>`` (``04-build``); None outside a
    numbered lab. ``grader record`` and the store's tests find the keys the same way."""
    args = _parse_line(line)
    if args.record:
        return args.record
    head = folder.split("-", 1)[0]
    return f"{head}-{args.name}" if head.isdigit() else None


#: A cell's magic line: ``%%docker NAME ...`` on the cell's first line.
MAGIC_LINE = re.compile(r"\A\s*%%docker\b([^\n]*)")


def docker_magic(line: str, text: str, namespace: Mapping[str, Any] | None = None) -> None:
    """``%%docker NAME [--cwd DIR] [--record KEY] [--timeout S] [--no-panel]``."""
    args = _parse_line(line)
    namespace = namespace or {}
    cwd = args.cwd
    if cwd and "{" in cwd:  # `--cwd {APP}`: a notebook variable
        cwd = cwd.format(**namespace)
    run_cell(args.name, text, cwd=cwd, namespace=namespace,
             record=recording_key(line, Path.cwd().name), timeout=args.timeout,
             panels=not args.no_panel)  # fmt: skip


def load_ipython_extension(ip) -> None:
    """``%load_ext grader.course.magics`` (a lab's setup cell) registers ``%%docker``."""

    def magic(line: str, cell_text: str) -> None:
        docker_magic(line, cell_text, ip.user_ns)

    magic.__doc__ = docker_magic.__doc__
    ip.register_magic_function(magic, magic_kind="cell", magic_name="docker")
