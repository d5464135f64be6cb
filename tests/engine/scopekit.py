"""A scope proxy of its own for a test or a benchmark: ``grader.engine.scope serve`` on a free
port in 5100-5199 (the range tests may use), in front of the real course registry, with its
state (scope.json, denied.jsonl) in a temporary folder. Learners push under ``scope/<name>``
(this branch's namespace on the shared registry)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from grader.engine import scope
from grader.engine.config import Settings

PREFIX = "scope"


def free_port(low: int = 5100, high: int = 5199) -> int:
    ports = list(range(low, high + 1))
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


class ScopeProxy:
    def __init__(self, state: Path, upstream: str, **limits) -> None:
        self.cfg = Settings(state, int(upstream.rpartition(":")[2]))
        self.dir = scope.scope_dir(self.cfg)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        scope.configure(prefix=PREFIX, cfg=self.cfg)
        self.secrets: dict[str, str] = {}
        argv = [sys.executable, "-m", "grader.engine.scope", "serve", "--state", str(self.dir)]
        argv += ["--listen", self.host, "--upstream", upstream]
        for key, value in limits.items():
            argv += ["--" + key.replace("_", "-"), str(value)]
        self.log = state / "scope.log"
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(argv, stdout=fh, stderr=fh, start_new_session=True)
        deadline = time.monotonic() + 15
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"scope proxy did not start: {self.log.read_text()}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        """A whole request, closed by the proxy: it holds no connection afterwards."""
        with contextlib.suppress(OSError):
            probe = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            return raw_exchange(self.port, probe, timeout=2).startswith(b"HTTP/1.1 401")
        return False

    def add(self, name: str, **kw) -> str:
        self.secrets[name] = scope.add_caller(name, cfg=self.cfg, **kw)
        return self.secrets[name]

    def docker_config(self, name: str, directory: Path) -> dict[str, str]:
        """An environment whose docker client has ``name``'s credential (and nothing else)."""
        directory.mkdir(parents=True, exist_ok=True)
        conf = scope.docker_config(self.host, name, self.secrets[name])
        (directory / "config.json").write_text(json.dumps(conf))
        return {**os.environ, "DOCKER_CONFIG": str(directory)}

    def request(
        self, method: str, path: str, who: str | None = None, body: bytes | None = None, **headers
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request through the proxy as ``who``: status, headers, body."""
        req = urllib.request.Request(f"http://{self.host}{path}", data=body, method=method)
        if who:
            token = base64.b64encode(f"{who}:{self.secrets[who]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        if body is not None:  # urllib's default would be a form, which the proxy refuses
            req.add_header("Content-Type", "application/octet-stream")
        for k, v in headers.items():
            req.add_header(k.replace("_", "-"), v)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def denied(self, caller: str | None = None) -> list[dict]:
        return scope.denied(caller, cfg=self.cfg)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def raw_exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, return everything the proxy answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.sendall(data)
        out = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := s.recv(65536):
                out += chunk
        return out
