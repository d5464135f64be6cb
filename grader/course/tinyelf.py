"""Two tiny real programs for the labs: print one line and exit, for x86-64 or for AArch64.

Each is a complete static ELF executable of about 150 bytes, written byte by byte here (an
ELF header, one loadable segment, a few instructions and the message), so the labs can show
what the kernel does with a foreign binary on any machine, with or without a Docker engine::

    >>> from grader import tinyelf
    >>> path = tinyelf.write("hello-arm64", "arm64")   # prints "hello from arm64" when run
    >>> open(path, "rb").read(4)
    b'\\x7fELF'
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

__all__ = ["ARCHES", "program", "write"]

#: Where the segment is loaded; the entry point is right after the two headers.
_BASE = 0x400000
_HEADERS = 64 + 56

#: e_machine per OCI architecture name.
_MACHINE = {"amd64": 62, "arm64": 183}

ARCHES = tuple(_MACHINE)


def _code_amd64(message: bytes) -> bytes:
    code_len = 33
    lea_end = 17  # rip-relative displacement counts from the end of the lea instruction
    return b"".join(
        [
            b"\xb8\x01\x00\x00\x00",  # mov eax, 1 (write)
            b"\xbf\x01\x00\x00\x00",  # mov edi, 1 (stdout)
            b"\x48\x8d\x35" + struct.pack("<i", code_len - lea_end),  # lea rsi, [rip+msg]
            b"\xba" + struct.pack("<I", len(message)),  # mov edx, len
            b"\x0f\x05",  # syscall
            b"\xb8\x3c\x00\x00\x00",  # mov eax, 60 (exit)
            b"\x31\xff",  # xor edi, edi
            b"\x0f\x05",  # syscall
        ]
    )


def _code_arm64(message: bytes) -> bytes:
    def movz(reg: int, value: int) -> int:
        return 0xD2800000 | (value << 5) | reg

    msg_offset = 8 * 4 - 4  # from the adr instruction (the 2nd) to just after the 8th
    adr_x1 = 0x10000000 | ((msg_offset & 3) << 29) | ((msg_offset >> 2) << 5) | 1
    words = [
        movz(0, 1),  # mov x0, #1 (stdout)
        adr_x1,  # adr x1, msg
        movz(2, len(message)),  # mov x2, #len
        movz(8, 64),  # mov x8, #64 (write)
        0xD4000001,  # svc #0
        movz(0, 0),  # mov x0, #0
        movz(8, 93),  # mov x8, #93 (exit)
        0xD4000001,  # svc #0
    ]
    return struct.pack("<8I", *words)


def program(arch: str, message: str | None = None) -> bytes:
    """The bytes of a static Linux executable for ``arch`` ("amd64" or "arm64") that writes
    ``message`` (default ``hello from <arch>``) and a newline to stdout, then exits 0."""
    if arch not in _MACHINE:
        raise ValueError(f"no tiny program for {arch!r}; choose one of {', '.join(ARCHES)}")
    text = (message if message is not None else f"hello from {arch}").encode() + b"\n"
    if len(text) > 200:
        raise ValueError("keep the message under 200 bytes")
    code = _code_amd64(text) if arch == "amd64" else _code_arm64(text)
    size = _HEADERS + len(code) + len(text)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, v1, SysV
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        2,  # e_type: executable
        _MACHINE[arch],  # e_machine
        1,  # e_version
        _BASE + _HEADERS,  # e_entry
        64,  # e_phoff: program headers right after this header
        0,  # e_shoff: no section headers (the kernel does not need them)
        0,  # e_flags
        64,  # e_ehsize
        56,  # e_phentsize
        1,  # e_phnum
        64,  # e_shentsize
        0,  # e_shnum
        0,  # e_shstrndx
    )
    segment = struct.pack(
        "<IIQQQQQQ",
        1,  # p_type: PT_LOAD
        5,  # p_flags: read + execute
        0,  # p_offset: the whole file
        _BASE,  # p_vaddr
        _BASE,  # p_paddr
        size,  # p_filesz
        size,  # p_memsz
        0x1000,  # p_align
    )
    return header + segment + code + text


def write(path: str | os.PathLike, arch: str, message: str | None = None) -> Path:
    """Write :func:`program` to ``path``, executable; returns the path."""
    target = Path(path)
    target.write_bytes(program(arch, message))
    target.chmod(0o755)
    return target
