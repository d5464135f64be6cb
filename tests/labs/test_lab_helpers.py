"""grader.course.tinyelf (tiny real programs) and grader.course.binfmt_sandbox (a private binfmt_misc):
run for real on this machine; the machine's own binfmt_misc table must stay untouched."""

from __future__ import annotations

import os
import struct

import pytest

from grader import proc
from grader.course import binfmt_sandbox
from grader.course import tinyelf
from grader.engine.services import binfmt_entries

HOST = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine)
FOREIGN = "arm64" if HOST == "amd64" else "amd64"
QEMU_FOR = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64"}


def _entry_text(arch: str) -> str:
    with open(f"/proc/sys/fs/binfmt_misc/{QEMU_FOR[arch]}") as f:
        return f.read()


def _register_line(name: str, arch: str, flags: str) -> str:
    """The line Debian's qemu-user-static registers, from the machine's own entry."""
    entry = _entry_text(arch).splitlines()
    fields = dict(line.split(" ", 1) for line in entry[1:] if " " in line)

    def esc(hexstr: str) -> str:
        return "".join(f"\\x{hexstr[i : i + 2]}" for i in range(0, len(hexstr), 2))

    return (
        f":{name}:M:{fields['offset']}:{esc(fields['magic'])}:{esc(fields['mask'])}:"
        f"{fields['interpreter']}:{flags}"
    )


@pytest.mark.parametrize("arch", tinyelf.ARCHES)
def test_program_headers_name_the_machine(arch):
    data = tinyelf.program(arch)
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    (machine,) = struct.unpack_from("<H", data, 18)
    assert machine == {"amd64": 62, "arm64": 183}[arch]
    (filesz,) = struct.unpack_from("<Q", data, 64 + 32)
    assert filesz == len(data) < 300


def test_unknown_arch_is_refused():
    with pytest.raises(ValueError, match="amd64, arm64"):
        tinyelf.program("mips")


def test_native_program_prints_its_message(tmp_path):
    if HOST is None:
        pytest.skip(f"no tiny program for this machine ({os.uname().machine})")
    path = tinyelf.write(tmp_path / "hello", HOST, "custom text")
    done = proc.run([str(path)], timeout=10)
    assert done.stdout == "custom text\n"


@pytest.mark.qemu
def test_foreign_program_runs_through_the_registered_emulator(tmp_path):
    path = tinyelf.write(tmp_path / "hello", FOREIGN)
    assert proc.run([str(path)], timeout=30).stdout == f"hello from {FOREIGN}\n"


@pytest.fixture
def sandbox():
    ok, why = binfmt_sandbox.available()
    if not ok:
        pytest.fail(f"private binfmt_misc unavailable: {why}")


@pytest.mark.qemu
def test_sandbox_without_handlers_gives_exec_format_error(tmp_path, sandbox):
    before = binfmt_entries()
    path = tinyelf.write(tmp_path / "hello", FOREIGN)
    done = proc.run(binfmt_sandbox.command([str(path)]), timeout=30, check=False)
    assert done.returncode == 126
    assert done.stderr.strip() == f"exec {path}: exec format error"
    assert binfmt_entries() == before  # the shared table is untouched
    assert proc.run([str(path)], timeout=30).ok  # and still runs the program outside


@pytest.mark.qemu
def test_sandbox_f_flag_survives_a_hidden_interpreter(tmp_path, sandbox):
    path = tinyelf.write(tmp_path / "hello", FOREIGN)
    interpreter = _entry_text(FOREIGN).split("interpreter ", 1)[1].splitlines()[0]
    interp_dir = os.path.dirname(interpreter)
    results = {}
    for flags in ("P", "PF"):
        argv = binfmt_sandbox.command(
            [str(path)], register=[_register_line("t", FOREIGN, flags)], hide=[interp_dir]
        )
        results[flags] = proc.run(argv, timeout=30, check=False)
    assert results["PF"].ok and results["PF"].stdout == f"hello from {FOREIGN}\n"
    assert results["P"].returncode == 127
    assert "no such file or directory" in results["P"].stderr


def test_sandbox_reports_a_rejected_line(tmp_path, sandbox):
    done = proc.run(
        binfmt_sandbox.command(["true"], register=["not a binfmt line"]), timeout=30, check=False
    )
    assert done.returncode == binfmt_sandbox.SETUP_FAILED
    assert "refused the line" in done.stderr
