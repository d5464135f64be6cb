"""Helpers for the batch tests: submission folders made from the fixtures, a private
registry the fault tests may stop, and reading a results folder."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from grader.docker.registry import registry_answers

FIXTURES = Path(__file__).parents[1] / "fixtures"
GOOD = FIXTURES / "sandbox" / "good"


def make_good(dest: Path, message: str = "", pre: str = "") -> Path:
    """A copy of the good solution; ``message`` makes its image differ, ``pre`` runs first
    in build.sh (e.g. ``sleep 2`` to widen a window in a fault test)."""
    shutil.copytree(GOOD, dest)
    if message:
        df = dest / "Dockerfile"
        df.write_text(df.read_text().replace("hello from", f"{message}: hello from"))
    if pre:
        sh = dest / "build.sh"
        lines = sh.read_text().splitlines()
        sh.write_text("\n".join([*lines[:3], pre, *lines[3:]]) + "\n")
    return dest


def make_hostile(dest: Path, name: str) -> Path:
    shutil.copytree(FIXTURES / "hostile" / name, dest, symlinks=True)
    (dest / "expect.json").unlink()
    return dest


def records(out: Path) -> dict[str, dict]:
    """Every report in a results folder, parsed (a torn file fails the test)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "reports").glob("*.json"))}


def unique_prefix() -> str:
    return f"t-sandbox-{uuid.uuid4().hex[:8]}"


def free_port(start: int = 5100, end: int = 5199) -> int:
    for port in range(start, end + 1):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port in 5100-5199")


class PrivateRegistry:
    """A registry of our own (Debian's docker-registry) on a port in 5100-5199: the fault
    tests stop and restart it without touching the shared one."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        (root / "data").mkdir(parents=True, exist_ok=True)
        self.config = root / "config.yml"
        self.config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            f"http:\n  addr: {self.host}\n"
        )

    def start(self) -> PrivateRegistry:
        exe = shutil.which("docker-registry")
        assert exe, "docker-registry is not installed"
        log = open(self.root / "registry.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [exe, "serve", str(self.config)], stdout=log, stderr=log, start_new_session=True
        )
        deadline = time.monotonic() + 20
        while not registry_answers(self.host, timeout=1):
            assert time.monotonic() < deadline, "private registry did not start"
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
