"""The gate protects the grader (issue 12): a script that opens thousands of connections, or
drips its request byte by byte, costs a bounded number of threads for a bounded time."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from grader.grading.sandbox import gate as gate_mod
from grader.grading.sandbox.gate import Client, Gate
from grader.grading.sandbox.limits import Limits
from grader.grading.sandbox.policy import Policy


@pytest.fixture
def gate(tmp_path: Path):
    (tmp_path / "copy").mkdir()
    policy = Policy(namespace="b/alice", registry="127.0.0.1:5000", label="abcdef0123",
                    host_root=tmp_path / "copy")  # fmt: skip
    g = Gate(policy, Client(tmp_path / "copy", tmp_path / "cfg"), tmp_path / "gate.sock",
             uid=0, limits=Limits())  # fmt: skip
    with g:
        yield g


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    return s


def _answer(s: socket.socket, timeout: float = 5) -> str:
    s.settimeout(timeout)
    data = b""
    while b'"exit"' not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_thousands_of_idle_connections_cost_a_bounded_number_of_threads(gate: Gate) -> None:
    before = threading.active_count()
    socks = []
    try:
        for _ in range(300):
            socks.append(_connect(gate.socket_path))
        time.sleep(1.0)
        grown = threading.active_count() - before
        assert grown <= gate_mod.MAX_CONNECTIONS + 1, grown
        # The ones past the cap were answered at once, not left waiting.
        answer = _answer(socks[-1], timeout=5)
        assert '"exit": 1' in answer
        assert gate.refused_connections >= 300 - gate_mod.MAX_CONNECTIONS - 16
    finally:
        for s in socks:
            s.close()


def test_a_dripping_request_is_cut_off_at_its_deadline(gate: Gate, monkeypatch) -> None:
    monkeypatch.setattr(gate_mod, "REQUEST_SECONDS", 1.0)
    s = _connect(gate.socket_path)
    start = time.monotonic()
    closed = False
    try:
        s.settimeout(0.2)
        for _ in range(40):  # one byte every 0.1 s: each recv alone is quick
            try:
                s.sendall(b" ")
                if s.recv(65536):
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
    finally:
        s.close()
    assert closed and time.monotonic() - start < 3.5


def test_an_oversized_request_is_refused_unread(gate: Gate) -> None:
    import contextlib

    assert gate_mod.MAX_REQUEST <= 256 * 1024
    s = _connect(gate.socket_path)
    start = time.monotonic()
    answer = ""
    try:
        s.settimeout(5)
        with contextlib.suppress(OSError):  # the gate stops reading: the rest may not go
            s.sendall(b'{"argv": ["version"], "stdin": "' + b"x" * (4 << 20))
        with contextlib.suppress(OSError):
            answer = _answer(s)
    finally:
        s.close()
    assert time.monotonic() - start < 5
    assert answer == "" or "malformed" in answer or '"exit": 1' in answer
