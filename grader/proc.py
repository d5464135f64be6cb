"""The one subprocess wrapper: every external command in the course goes through here.

``run(argv, timeout=...)`` runs a command to completion; ``stream(argv)`` yields
``(source, line)`` pairs from reader threads while it runs, with cancel and a time limit.
Arguments are lists, never shell strings. Failures carry the command, exit code and
stderr, and known stderr texts become :class:`grader.known_errors.KnownError` explanations.
"""

from __future__ import annotations

import contextlib
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

from grader.known_errors import KnownError, explain

log = logging.getLogger(__name__)

#: Cap on captured output per stream; the rest is dropped and counted (untrusted programs).
DEFAULT_MAX_OUTPUT = 8 * 1024 * 1024
#: Longest line ``stream`` yields; longer lines are split.
MAX_LINE = 64 * 1024


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


def _env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    if env is None:
        return None
    merged = dict(os.environ)
    merged.update(env)
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
) -> Completed:
    """Run ``argv`` to completion within ``timeout`` seconds and capture its output."""
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
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _queue: queue.Queue = field(default_factory=queue.Queue, repr=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
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
            )
        except FileNotFoundError:
            self.returncode = 127
            self.error = CommandNotFound(self.argv)
            self._queue.put(None)
            self._queue.put(None)
            return self
        for name, pipe in (("stdout", self._proc.stdout), ("stderr", self._proc.stderr)):
            threading.Thread(target=self._pump, args=(name, pipe), daemon=True).start()
        return self

    def _pump(self, name: str, pipe) -> None:
        # A capped readline: an untrusted program's output without newlines cannot grow a
        # line without bound (longer lines arrive in MAX_LINE pieces).
        for raw in iter(lambda: pipe.readline(MAX_LINE), b""):
            self._queue.put((name, _decode(raw).rstrip("\r\n")))
        pipe.close()
        self._queue.put(None)

    def cancel(self) -> None:
        self._cancelled.set()
        if self._proc is not None:
            _kill_group(self._proc)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        if self._proc is None and self.error is None:
            self.start()
        open_pipes = 2
        deadline = None if self.timeout is None else self._start + self.timeout
        timed_out = False
        while open_pipes:
            wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline and not timed_out:
                    timed_out = True
                    _kill_group(self._proc)
                continue
            if item is None:
                open_pipes -= 1
                continue
            if item[0] == "stderr":
                self._stderr_tail.append(item[1])
                del self._stderr_tail[:-200]
            yield item
        if self._proc is not None:
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


def which(name: str) -> str | None:
    from shutil import which as _which

    return _which(name)
