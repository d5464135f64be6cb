"""ELF headers and #! lines, checked against the first bytes of REAL binaries (Go 1.19
cross-compiles for twelve targets, Debian's busybox-static, the host's /bin/ls) and against
what `file` and `readelf` said about the same files (tests/fixtures/elf/heads.json)."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest

from grader.docker import elf

HEADS = json.loads((Path(__file__).parents[1] / "fixtures/elf/heads.json").read_text())

# What each fixture was built for (GOARCH, or the Debian architecture), as an OCI arch.
BUILT_FOR = {
    "go-amd64": "amd64",
    "go-arm64": "arm64",
    "go-armv7": "arm",
    "go-armv6": "arm",
    "go-386": "386",
    "go-riscv64": "riscv64",
    "go-ppc64le": "ppc64le",
    "go-ppc64": "ppc64",
    "go-s390x": "s390x",
    "go-mips64le": "mips64le",
    "go-mips": "mips",
    "go-loong64": "loong64",
    "busybox-amd64": "amd64",
    "busybox-arm64": "arm64",
    "host-ls": "amd64",
}


def test_every_fixture_has_an_expected_arch():
    assert sorted(h["name"] for h in HEADS) == sorted(BUILT_FOR)


@pytest.mark.parametrize("row", HEADS, ids=[h["name"] for h in HEADS])
def test_real_binaries(row):
    head = bytes.fromhex(row["head_hex"])
    header = elf.parse_header(head)
    assert header.arch == BUILT_FOR[row["name"]]
    # `file` starts with e.g. "ELF 64-bit MSB executable": class, byte order and type agree.
    assert row["file"].startswith(
        f"ELF {header.bits}-bit {'LSB' if header.endian == 'little' else 'MSB'}"
    )
    assert row["readelf_class"] == f"ELF{header.bits}"
    assert header.entry != 0
    kind = "pie executable" if header.type == 3 else "executable"
    assert kind in row["file"]
    assert elf.identify(head) == header


def test_machine_names_are_the_ones_file_prints():
    by_name = {h["name"]: h for h in HEADS}
    for name in ("go-amd64", "go-arm64", "go-armv7", "go-386", "go-s390x", "go-loong64"):
        header = elf.parse_header(bytes.fromhex(by_name[name]["head_hex"]))
        assert f", {header.machine_name}," in by_name[name]["file"]
    amd64 = elf.parse_header(bytes.fromhex(by_name["go-amd64"]["head_hex"]))
    assert amd64.describe() == "ELF 64-bit LSB executable, x86-64"


def test_read_header_from_a_path_and_a_stream(tmp_path):
    row = next(h for h in HEADS if h["name"] == "busybox-arm64")
    data = bytes.fromhex(row["head_hex"]) + b"\0" * 1000
    path = tmp_path / "busybox"
    path.write_bytes(data)
    assert elf.read_header(path).arch == "arm64"
    assert elf.read_header(str(path)).machine == elf.EM_AARCH64
    stream = io.BytesIO(data)
    assert elf.read_header(stream).arch == "arm64"
    assert stream.tell() == 64  # only the header was read


def test_the_running_python_is_an_elf_for_this_machine():
    import platform
    import sys

    header = elf.read_header(Path(sys.executable).resolve())
    machine = platform.machine().lower()
    expected = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    assert header.arch == expected


def _header(bits, endian, machine):
    order = "<" if endian == 1 else ">"
    ident = b"\x7fELF" + bytes([bits, endian, 1, 0]) + b"\0" * 8
    if bits == 1:
        return ident + struct.pack(
            order + "HHIIIIIHHHHHH", 2, machine, 1, 0x1000, 52, 0, 0, 52, 32, 0, 40, 0, 0
        )
    return ident + struct.pack(
        order + "HHIQQQIHHHHHH", 2, machine, 1, 0x1000, 64, 0, 0, 64, 56, 0, 64, 0, 0
    )


@pytest.mark.parametrize(
    ("bits", "endian", "machine", "arch"),
    [
        (2, 1, 62, "amd64"),
        (2, 1, 183, "arm64"),
        (1, 1, 40, "arm"),
        (2, 1, 243, "riscv64"),
        (1, 1, 243, "riscv32"),
        (1, 1, 3, "386"),
        (2, 1, 21, "ppc64le"),
        (2, 2, 21, "ppc64"),
        (2, 2, 22, "s390x"),
        (2, 1, 8, "mips64le"),
        (1, 2, 8, "mips"),
        (1, 1, 8, "mipsle"),
        (2, 1, 258, "loong64"),
        (2, 1, 9999, None),
    ],
)
def test_machine_to_platform_arch(bits, endian, machine, arch):
    header = elf.parse_header(_header(bits, endian, machine))
    assert header.arch == arch
    assert header.bits == (32 if bits == 1 else 64)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not an ELF"),
        (b"MZ\x90\x00", "not an ELF"),
        (b"\x7fELF", "cut short"),
        (b"\x7fELF\x03\x01" + b"\0" * 60, "class"),
        (b"\x7fELF\x02\x07" + b"\0" * 60, "byte order"),
        (b"\x7fELF\x02\x01" + b"\0" * 30, "cut short"),
        (b"\x7fELF\x01\x01" + b"\0" * 40, "cut short"),
    ],
)
def test_broken_headers_are_clear_errors(data, why):
    with pytest.raises(elf.ElfError, match=why):
        elf.parse_header(data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"#!/bin/sh\necho hi\n", elf.Shebang("/bin/sh")),
        (b"#! /bin/sh -e\n", elf.Shebang("/bin/sh", "-e")),
        (b"#!/usr/bin/env python3 -u -B\n", elf.Shebang("/usr/bin/env", "python3 -u -B")),
        (b"#!/bin/bash\r\n", elf.Shebang("/bin/bash\r")),  # "bad interpreter"
        (b"#!/bin/sh -e\r\n", elf.Shebang("/bin/sh", "-e\r")),
        (b"#!/bin/sh\0junk\n", elf.Shebang("/bin/sh")),
        (b"#!  \t \n", None),
        (b"#!\t/bin/ash\t-x\n", elf.Shebang("/bin/ash", "-x")),
        (b"#!/bin/sh", elf.Shebang("/bin/sh")),
        (b"#!\n", None),
        (b"echo no shebang\n", None),
        (b"\xff\xfe#!/bin/sh\n", None),
    ],
)
def test_shebang_lines_as_the_kernel_splits_them(data, expected):
    assert elf.parse_shebang(data) == expected
    assert elf.identify(data) == expected


def test_an_interpreter_path_cut_at_256_bytes_is_refused():
    # No newline and nothing ending the path within the 256 bytes the kernel reads: ENOEXEC.
    assert elf.parse_shebang(b"#!/" + b"a" * 400 + b"\n") is None
    # A long argument is fine: only the interpreter must be whole.
    long_arg = elf.parse_shebang(b"#!/bin/sh " + b"x" * 400 + b"\n")
    assert long_arg.interpreter == "/bin/sh" and len(long_arg.argument) == 256 - 1 - 10
    # A short file with no newline at all is complete (the kernel pads it with NULs).
    assert elf.parse_shebang(b"#!/bin/sh") == elf.Shebang("/bin/sh")
