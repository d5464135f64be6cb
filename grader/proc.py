"""The one subprocess wrapper: every external command in the course goes through here.

``run(argv, timeout=...)`` runs a command to completion; ``stream(argv)`` yields
``(source, line)`` pairs from reader threads while it runs, with cancel and a time limit;
``spawn_detached(argv, log=...)`` starts a daemon (dockerd, the registry, JupyterLab) that
outlives the grader, its output appended to a log file, and returns its pid.
Arguments are lists, never shell strings. Failures carry the command, exit code and
stderr, and known stderr texts become :class:`grader.known_errors.KnownError` explanations.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grader.known_errors import KnownError, explain

log = logging.getLogger(__name__)

#: Cap on captured output per stream; the rest is dropped and counted (untrusted programs).
DEFAULT_MAX_OUTPUT = 8 * 1024 * 1024
#: Longest line ``stream`` yields; longer lines are split.
MAX_LINE = 64 * 1024
#: Lines ``stream`` holds for a slow reader; past it the child's writes block (backpressure),
#: so a child flooding output holds at most STREAM_QUEUE * MAX_LINE bytes in the grader.
STREAM_QUEUE = 256
#: After a kill, how long ``stream`` waits for the pipes to close (a grandchild that left
#: the process group may hold them) before it stops reading.
DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


class CommandError(Exception):
    """A command failed; ``known`` explains it when its stderr matches a known message."""

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        stdout: str = "",
        stderr: str = "",
        reason: str = "",
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.known: KnownError | None = explain(stderr + "\n" + stdout)
        self.reason = reason or f"exited with status {returncode}"
        super().__init__(self._message())

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def _message(self) -> str:
        tail = "\n".join(self.stderr.strip().splitlines()[-5:])
        msg = f"`{self.command}` {self.reason}"
        if tail:
            msg += f":\n{tail}"
        if self.known:
            msg += f"\n-> {self.known.title}: {self.known.fix}"
        return msg


class CommandTimeout(CommandError):
    def __init__(self, argv: Sequence[str], timeout: float, stdout: str = "", stderr: str = ""):
        super().__init__(argv, None, stdout, stderr, reason=f"timed out after {timeout:g} s")
        self.timeout = timeout


class CommandNotFound(CommandError):
    def __init__(self, argv: Sequence[str]):
        super().__init__(argv, 127, reason=f"could not start: {argv[0]!r} is not installed")


class Cancelled(CommandError):
    def __init__(self, argv: Sequence[str]):
        super().__init__(argv, None, reason="was cancelled")


#: Variables added to every command run in this context (a grading worker's DOCKER_HOST:
#: each worker thread talks to its own engine while os.environ stays the process's).
_OVERLAY: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "proc_env", default=()
)


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    """Run every command started in this context (thread) with ``variables`` set."""
    token = _OVERLAY.set(tuple({**dict(_OVERLAY.get()), **variables}.items()))
    try:
        yield
    finally:
        _OVERLAY.reset(token)


def overlay() -> dict[str, str]:
    """The variables ``environment`` set in this context (e.g. a worker's DOCKER_HOST)."""
    return dict(_OVERLAY.get())


def _env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    overlay = dict(_OVERLAY.get())
    if env is None and not overlay:
        return None
    merged = dict(os.environ)
    merged.update(overlay)
    merged.update(env or {})
    return merged


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the command and everything it started (it runs in its own process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    check: bool = True,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
    pass_fds: Sequence[int] = (),
) -> Completed:
    """Run ``argv`` to completion within ``timeout`` seconds and capture its output
    (``pass_fds``: descriptors the command inherits, e.g. a seccomp filter for bwrap)."""
    argv = [str(a) for a in argv]
    log.debug("run: %s", shlex.join(argv))
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(env),
            cwd=cwd,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError:
        if check:
            raise CommandNotFound(argv) from None
        return Completed(tuple(argv), 127, "", f"{argv[0]}: not found", 0.0)
    out, err, truncated = _communicate(proc, input, timeout, max_output)
    duration = time.monotonic() - start
    if out is None:
        _kill_group(proc)
        proc.wait()
        raise CommandTimeout(argv, timeout, *(_decode(b) for b in err))
    done = Completed(tuple(argv), proc.returncode, out, err, duration, truncated)
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, out, err)
    return done


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _communicate(proc, input, timeout, max_output):
    """Read both pipes with a cap on size; returns (None, (out, err), _) on timeout."""
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}
    sizes = {"out": 0, "err": 0}
    truncated = False

    def reader(name, pipe):
        nonlocal truncated
        while True:
            block = pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536)
            if not block:
                break
            if sizes[name] < max_output:
                chunks[name].append(block[: max_output - sizes[name]])
            else:
                truncated = True
            sizes[name] += len(block)
        pipe.close()

    threads = [
        threading.Thread(target=reader, args=("out", proc.stdout), daemon=True),
        threading.Thread(target=reader, args=("err", proc.stderr), daemon=True),
    ]
    for t in threads:
        t.start()
    if input is not None:
        try:
            proc.stdin.write(input.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
    deadline = time.monotonic() + timeout
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        for t in threads:
            t.join(1)
        return None, (b"".join(chunks["out"]), b"".join(chunks["err"])), truncated
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    return _decode(b"".join(chunks["out"])), _decode(b"".join(chunks["err"])), truncated


@dataclass
class Stream:
    """A running command whose output arrives as ``(source, line)`` pairs.

    Iterate it (``for source, line in stream``); ``source`` is ``"stdout"`` or ``"stderr"``.
    After iteration ends, ``returncode`` is set; ``error`` holds a :class:`CommandError` when
    the command failed, timed out or was cancelled. ``cancel()`` may be called from any thread.
    """

    argv: tuple[str, ...]
    timeout: float | None = None
    env: Mapping[str, str] | None = None
    cwd: str | os.PathLike | None = None
    returncode: int | None = None
    error: CommandError | None = None
    duration: float = 0.0
    #: descriptors the command inherits (e.g. a seccomp filter for bwrap)
    pass_fds: tuple[int, ...] = ()
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _queue: queue.Queue = field(
        default_factory=lambda: queue.Queue(maxsize=STREAM_QUEUE), repr=False
    )
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    _closed: threading.Event = field(default_factory=threading.Event, repr=False)
    _stderr_tail: list[str] = field(default_factory=list, repr=False)

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def start(self) -> Stream:
        log.debug("stream: %s", self.command)
        self._start = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_env(self.env),
                cwd=self.cwd,
                start_new_session=True,
                pass_fds=self.pass_fds,
            )
        except FileNotFoundError:
            self.returncode = 127
            self.error = CommandNotFound(self.argv)
            self._put(None)
            self._put(None)
            return self
        for name, pipe in (("stdout", self._proc.stdout), ("stderr", self._proc.stderr)):
            threading.Thread(target=self._pump, args=(name, pipe), daemon=True).start()
        return self

    def _pump(self, name: str, pipe) -> None:
        # A capped readline: an untrusted program's output without newlines cannot grow a
        # line without bound (longer lines arrive in MAX_LINE pieces).
        try:
            for raw in iter(lambda: pipe.readline(MAX_LINE), b""):
                if not self._put((name, _decode(raw).rstrip("\r\n"))):
                    return  # nobody reads any more: stop, and the child's writes block
        finally:
            pipe.close()
            self._put(None)

    def _put(self, item) -> bool:
        """Queue ``item``, waiting while the queue is full; False once the reader is gone."""
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def cancel(self) -> None:
        self._cancelled.set()
        if self._proc is not None:
            _kill_group(self._proc)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        if self._proc is None and self.error is None:
            self.start()
        open_pipes = 2
        deadline = None if self.timeout is None else self._start + self.timeout
        killed_at: float | None = None
        timed_out = False
        try:
            while open_pipes:
                # The deadline is checked on every line, not only when the queue runs dry:
                # a child that never stops writing keeps the queue full.
                now = time.monotonic()
                if deadline is not None and now >= deadline and not timed_out:
                    timed_out = True
                    killed_at = now
                    _kill_group(self._proc)
                if self._cancelled.is_set() and killed_at is None:
                    killed_at = now
                if killed_at is not None and now - killed_at > DRAIN_SECONDS:
                    break  # pipes held open by an escaped grandchild: stop reading
                try:
                    item = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is None:
                    open_pipes -= 1
                    continue
                if killed_at is not None:
                    continue  # killed: drain without yielding what was queued
                if item[0] == "stderr":
                    self._stderr_tail.append(item[1])
                    del self._stderr_tail[:-200]
                yield item
        finally:
            # Whatever ended the loop (the end, a kill, a reader that stopped iterating),
            # the pump threads must not wait on a full queue for ever.
            self._closed.set()
        if self._proc is not None:
            try:
                self.returncode = self._proc.wait(timeout=DRAIN_SECONDS)
            except subprocess.TimeoutExpired:
                _kill_group(self._proc)
                self.returncode = self._proc.wait()
        self.duration = time.monotonic() - self._start
        stderr = "\n".join(self._stderr_tail)
        if self._cancelled.is_set():
            self.error = Cancelled(self.argv)
        elif timed_out:
            self.error = CommandTimeout(self.argv, self.timeout or 0, "", stderr)
        elif self.error is None and self.returncode != 0:
            self.error = CommandError(self.argv, self.returncode, "", stderr)

    def wait(self) -> Stream:
        """Drain the stream; returns self (check ``error``)."""
        for _ in self:
            pass
        return self


def stream(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> Stream:
    """Start ``argv`` and return a :class:`Stream` of its output lines."""
    return Stream(tuple(str(a) for a in argv), timeout=timeout, env=env, cwd=cwd).start()


class Detached:
    """A daemon :func:`spawn_detached` started: its pid, and its exit status once it exits (a
    thread reaps it, so an exited daemon leaves no zombie)."""

    def __init__(self, child: subprocess.Popen) -> None:
        self.pid = child.pid
        self.argv = tuple(str(a) for a in child.args)  # type: ignore[union-attr]
        self._exited = threading.Event()
        self._returncode: int | None = None

        def reap() -> None:
            self._returncode = child.wait()
            self._exited.set()

        threading.Thread(target=reap, name=f"reap-{child.pid}", daemon=True).start()

    def poll(self) -> int | None:
        """The exit status, or None while it runs."""
        return self._returncode if self._exited.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        self._exited.wait(timeout)
        return self.poll()


def spawn_detached(
    argv: Sequence[str],
    *,
    log_file: str | os.PathLike,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> Detached:
    """Start ``argv`` as a daemon: its own session (a Ctrl-C or a closed terminal does not
    reach it), no stdin, stdout and stderr appended to ``log_file`` after a line saying when
    and what started. The caller keeps the pid (a pid file) to stop it."""
    argv = [str(a) for a in argv]
    log.debug("spawn: %s", shlex.join(argv))
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        out.write(
            f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {shlex.join(argv)}\n".encode()
        )
        out.flush()
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=_env(env),
                cwd=cwd,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise CommandNotFound(argv) from None
    return Detached(child)


def which(name: str) -> str | None:
    from shutil import which as _which

    return _which(name)
