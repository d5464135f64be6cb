"""The gate: the only way a sandboxed build.sh reaches the engine.

One :class:`Gate` serves one submission on a unix socket bound into its sandbox. Each
connection is one ``docker ...`` call from the shim: the
:class:`~grader.grading.sandbox.policy.Policy` decides, and an allowed command runs with the
real docker client inside the client jail
(``jail.client_argv``), its output streamed back with a size cap and a time limit. Refused
commands get a message on the script's stderr and exit 1, and leave a finding.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grader import proc
from grader.grading.report import Finding
from grader.grading.sandbox import jail, seccomp
from grader.grading.sandbox.limits import Limits, human
from grader.grading.sandbox.policy import Policy, printable

#: Environment variables the gate passes to docker (the shim's list, checked again here).
PASSED_ENV = (
    "BUILDX_NO_DEFAULT_ATTESTATIONS",
    "BUILDKIT_PROGRESS",
    "BUILDX_BUILDER",
    "DOCKER_BUILDKIT",
    "DOCKER_DEFAULT_PLATFORM",
    "SOURCE_DATE_EPOCH",
)
#: One request (argv, cwd, env, stdin) from the shim; longer is refused unread.
MAX_REQUEST = 256 * 1024
#: Seconds a client has to send its whole request (a client dripping bytes cannot hold a
#: connection, and its thread, for longer).
REQUEST_SECONDS = 10.0
#: Connections served at once, each with its thread; past it a connection is answered at
#: once with an error and closed, with no thread (a script opening thousands of
#: connections costs the grader nothing).
MAX_CONNECTIONS = 16
#: Events and findings kept per run (a script looping on refused commands cannot grow them).
MAX_EVENTS = 1000
log = logging.getLogger(__name__)


def engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    return host.removeprefix("unix://") if host.startswith("unix://") else "/run/docker.sock"


def _capped(
    stream: proc.Stream, max_output: int, on_output: Callable[[str, str], None] | None
) -> tuple[list[str], bool]:
    """The stream's last 400 lines, and whether it was stopped at ``max_output`` bytes."""
    size = 0
    cut = False
    kept: list[str] = []
    for source, line in stream:
        size += len(line) + 1
        if size > max_output:
            if not cut:
                cut = True
                note = f"grader: output cut at {human(max_output)}; command stopped\n"
                kept.append(note)
                if on_output:
                    on_output("stderr", note)
                stream.cancel()
            continue
        kept.append(line + "\n")
        del kept[:-400]
        if on_output:
            on_output(source, line + "\n")
    return kept, cut


@dataclass
class GateEvent:
    command: str
    allowed: bool
    returncode: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    output_cut: bool = False


@dataclass
class ClientResult:
    returncode: int
    output: str  # the capped, combined output
    timed_out: bool = False
    cut: bool = False
    seconds: float = 0.0


@dataclass
class Client:
    """Runs docker commands in the client jail for one submission (also used by the
    grader's own build of the Dockerfile, which reads the same untrusted files)."""

    copy: Path
    docker_config: Path
    #: The worker engine's socket, the run's uid and the socket's group (None: the shared
    #: engine, the client as root without capabilities).
    engine: str | None = None
    uid: int | None = None
    groups: tuple[int, ...] = ()
    _active: dict[int, proc.Stream] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cancelled: bool = False

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str = jail.SANDBOX_ROOT,
        env: Mapping[str, str] | None = None,
        timeout: float,
        max_output: int,
        on_output: Callable[[str, str], None] | None = None,
        stdin: str | None = None,
    ) -> ClientResult:
        if self._cancelled:
            return ClientResult(130, "cancelled\n", seconds=0.0)
        filter_fd = seccomp.fd()  # the client runs under the jails' seccomp filter too
        try:
            full = jail.client_argv(
                copy=self.copy,
                docker_config=self.docker_config,
                env=dict(env or {}),
                cwd=cwd,
                argv=argv,
                engine_socket=self.engine or engine_socket(),
                uid=self.uid,
                groups=self.groups,
                seccomp_fd=filter_fd,
            )
            if stdin is not None:
                return self._run_with_input(full, stdin, timeout, max_output, on_output, filter_fd)
            return self._run_streamed(full, timeout, max_output, on_output, filter_fd)
        finally:
            os.close(filter_fd)

    @staticmethod
    def _run_with_input(full, stdin, timeout, max_output, on_output, filter_fd) -> ClientResult:
        start = time.monotonic()
        try:
            done = proc.run(full, timeout=timeout, check=False, input=stdin,
                            max_output=max_output, pass_fds=(filter_fd,))  # fmt: skip
        except proc.CommandTimeout as e:
            return ClientResult(124, e.stderr, timed_out=True, seconds=time.monotonic() - start)
        if on_output:
            for source, chunk in (("stdout", done.stdout), ("stderr", done.stderr)):
                if chunk:
                    on_output(source, chunk)
        text = done.stdout + done.stderr
        return ClientResult(done.returncode, text, cut=done.truncated, seconds=done.duration)

    def _run_streamed(self, full, timeout, max_output, on_output, filter_fd) -> ClientResult:
        start = time.monotonic()
        stream = proc.Stream(tuple(full), timeout=timeout, pass_fds=(filter_fd,))
        with self._lock:
            self._active[id(stream)] = stream
        stream.start()
        try:
            kept, cut = _capped(stream, max_output, on_output)
        finally:
            with self._lock:
                self._active.pop(id(stream), None)
        timed_out = isinstance(stream.error, proc.CommandTimeout)
        code = stream.returncode if stream.returncode is not None else 1
        if code < 0:  # killed by a signal: report it the way a shell does
            code = 128 - code
        if timed_out:
            code = 124
        elif cut:
            code = code or 1
        return ClientResult(
            code, "".join(kept), timed_out=timed_out, cut=cut, seconds=time.monotonic() - start
        )

    def cancel_all(self, *, final: bool = True) -> None:
        """Stop the running commands; ``final`` also refuses any later ones."""
        self._cancelled = self._cancelled or final
        with self._lock:
            active = list(self._active.values())
        for s in active:
            s.cancel()


class Gate:
    """A unix-socket server for one submission's sandbox."""

    def __init__(
        self,
        policy: Policy,
        client: Client,
        socket_path: Path,
        *,
        uid: int,
        limits: Limits,
    ) -> None:
        self.policy = policy
        self.client = client
        self.socket_path = socket_path
        self.uid = uid
        self.limits = limits
        self.deadline = float("inf")
        self.events: list[GateEvent] = []
        self.findings: list[Finding] = []
        self.pushed: list[str] = []
        self.errors: list[str] = []  # the gate's own failures (never the learner's)
        self._policy_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(limits.parallel_commands)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._conn_slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.dropped_events = 0
        self.refused_connections = 0

    # -- lifecycle --

    def start(self) -> Gate:
        self.socket_path.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.socket_path))
        # Only the sandbox's uid (and root) may connect.
        os.chown(self.socket_path, self.uid, self.uid)
        os.chmod(self.socket_path, 0o600)
        server.listen(16)
        server.settimeout(0.2)
        self._server = server
        t = threading.Thread(target=self._accept, name="gate-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def close(self) -> None:
        self._stop.set()
        self.client.cancel_all()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:  # wake handlers blocked reading a request that never comes
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 10
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._server is not None:
            self._server.close()
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> Gate:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._conn_slots.acquire(blocking=False):
                self._turn_away(conn)
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)

    def _turn_away(self, conn: socket.socket) -> None:
        """Answer a connection past MAX_CONNECTIONS from the accept thread: never blocks."""
        self.refused_connections += 1
        with contextlib.suppress(OSError), conn:
            conn.setblocking(False)
            msg = f"docker: more than {MAX_CONNECTIONS} docker commands at once\n"
            self._emit(conn, "stderr", msg)
            self._send(conn, {"exit": 1})

    def _event(self, event: GateEvent) -> None:
        if len(self.events) < MAX_EVENTS:
            self.events.append(event)
        else:
            self.dropped_events += 1

    # -- one docker call --

    def _send(self, conn: socket.socket, msg: dict) -> None:
        conn.sendall(json.dumps(msg).encode() + b"\n")

    def _emit(self, conn: socket.socket, source: str, text: str) -> None:
        key = "out" if source == "stdout" else "err"
        with contextlib.suppress(OSError):
            self._send(conn, {key: base64.b64encode(text.encode()).decode()})

    def _read_request(self, conn: socket.socket) -> dict | None:
        data = bytearray()
        deadline = time.monotonic() + REQUEST_SECONDS
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            conn.settimeout(left)
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_REQUEST:
                return None
        try:
            req = json.loads(data)
        except ValueError:
            return None
        if not isinstance(req, dict):
            return None
        argv, cwd = req.get("argv"), req.get("cwd", jail.SANDBOX_ROOT)
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            return None
        if not isinstance(cwd, str) or len(argv) > 2000:
            return None
        env = req.get("env") if isinstance(req.get("env"), dict) else {}
        req["env"] = {k: str(v) for k, v in env.items() if k in PASSED_ENV and isinstance(v, str)}
        stdin = req.get("stdin")
        req["stdin"] = stdin if isinstance(stdin, str) else None
        return req

    def _serve(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns.add(conn)
        try:
            self._serve_one(conn)
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            self._conn_slots.release()

    def _serve_one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                req = self._read_request(conn)
            except OSError:
                return
            conn.settimeout(30)  # for the answer: the request's deadline no longer applies
            if req is None:
                with contextlib.suppress(OSError):
                    self._emit(conn, "stderr", "docker: malformed request to the grading gate\n")
                    self._send(conn, {"exit": 1})
                return
            try:
                code = self.handle(
                    req["argv"],
                    req["cwd"],
                    req["env"],
                    req["stdin"],
                    lambda source, text: self._emit(conn, source, text),
                )
            except Exception as e:  # the gate must answer whatever happens
                log.exception("gate: %s", req["argv"])
                self._emit(conn, "stderr", f"docker: the grading gate failed ({e})\n")
                self.errors.append(f"{type(e).__name__}: {e}")
                code = 1
            with contextlib.suppress(OSError):
                self._send(conn, {"exit": code})

    def handle(
        self,
        argv: list[str],
        cwd: str,
        env: Mapping[str, str],
        stdin: str | None,
        emit: Callable[[str, str], None],
    ) -> int:
        """Decide and run one docker call; returns its exit code."""
        with self._policy_lock:
            decision = self.policy.decide(argv, cwd)
        command = printable("docker " + shlex.join(argv))
        for f in decision.findings:
            if f not in self.findings and len(self.findings) < MAX_EVENTS:
                self.findings.append(f)
        refused = decision.refused
        if refused is not None or decision.argv is None:
            self._event(GateEvent(command[:300], allowed=False))
            msg = refused.message if refused else "refused"
            hint = f"\n  hint: {refused.hint}" if refused and refused.hint else ""
            emit("stderr", f"grader: {msg}{hint}\n")
            return 1
        for note in decision.findings:
            emit("stderr", f"grader: note: {note.message}\n")
        env = dict(env)
        if "BUILDX_BUILDER" in env:
            env["BUILDX_BUILDER"] = self.policy.builder_name(env["BUILDX_BUILDER"])
        remaining = self.deadline - time.monotonic()
        timeout = max(1.0, min(self.limits.command_seconds, remaining))
        with self._slots:
            result = self.client.run(
                decision.argv,
                cwd=decision.cwd,
                env=env,
                timeout=timeout,
                max_output=self.limits.command_output,
                on_output=emit,
                stdin=stdin if decision.wants_stdin else None,
            )
        if result.timed_out:
            emit("stderr", f"grader: `{command[:200]}` was stopped after {timeout:g} s\n")
        self._event(
            GateEvent(
                command[:300], True, result.returncode, result.seconds, result.timed_out, result.cut
            )
        )
        if result.returncode == 0:
            for ref in decision.pushes:
                if ref not in self.pushed:
                    self.pushed.append(ref)
        return result.returncode
