"""Which CPU a program is for: read an ELF header (or a script's ``#!`` line) from its first bytes.

The kernel decides whether it can run a file from its first bytes: ``\\x7fELF`` and a header
naming the machine, or ``#!`` and an interpreter to run instead. ``exec format error`` is
the kernel saying the machine is not its own (and no binfmt_misc emulator claims it).

    >>> from grader import elf
    >>> header = elf.read_header("/bin/ls")
    >>> header.arch, header.machine_name, header.bits
    ('amd64', 'x86-64', 64)
    >>> elf.identify(b"#!/bin/sh -e\\necho hi\\n")
    Shebang(interpreter='/bin/sh', argument='-e')

``arch`` uses the names of OCI/Docker platforms (``amd64``, ``arm64``, ``arm``, ``386``,
``riscv64``, ``ppc64le``, ``s390x``, ...), so it compares directly with ``--platform`` values.
The header alone cannot tell ``arm/v6`` from ``arm/v7`` (that lives in the ``.ARM.attributes``
section), so 32-bit ARM is reported as ``arm`` with no variant.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Literal

__all__ = [
    "ELF_MAGIC",
    "ElfError",
    "ElfHeader",
    "Shebang",
    "identify",
    "is_elf",
    "machine_arch",
    "parse_header",
    "parse_shebang",
    "read_header",
]

ELF_MAGIC = b"\x7fELF"

#: Bytes the kernel reads to decide how to run a file (BINPRM_BUF_SIZE since Linux 5.1).
HEAD_SIZE = 256

# e_machine values (ELF gABI; Linux include/uapi/linux/elf-em.h).
EM_386 = 3
EM_MIPS = 8
EM_PPC = 20
EM_PPC64 = 21
EM_S390 = 22
EM_ARM = 40
EM_SPARCV9 = 43
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
EM_LOONGARCH = 258

#: e_machine -> the name ``file``/``readelf`` users recognise.
MACHINE_NAMES: dict[int, str] = {
    EM_386: "Intel 80386",
    EM_MIPS: "MIPS",
    EM_PPC: "PowerPC",
    EM_PPC64: "64-bit PowerPC",
    EM_S390: "IBM S/390",
    EM_ARM: "ARM",
    EM_SPARCV9: "SPARC V9",
    EM_X86_64: "x86-64",
    EM_AARCH64: "ARM aarch64",
    EM_RISCV: "RISC-V",
    EM_LOONGARCH: "LoongArch",
}

_ELFCLASS = {1: 32, 2: 64}
_ELFDATA: dict[int, Literal["little", "big"]] = {1: "little", 2: "big"}
_ET_NAMES = {1: "relocatable", 2: "executable", 3: "shared object", 4: "core"}


class ElfError(ValueError):
    """The bytes are not a readable ELF header (too short, wrong magic, unknown class)."""


def machine_arch(machine: int, bits: int, endian: str) -> str | None:
    """The OCI platform architecture for an ELF ``e_machine``, or None when it has none.

    Class and byte order matter for some machines: EM_PPC64 little-endian is ``ppc64le``,
    big-endian ``ppc64``; EM_MIPS is ``mips``/``mipsle``/``mips64``/``mips64le``.
    """
    little = endian == "little"
    if machine == EM_X86_64:
        return "amd64"  # ELFCLASS32 here is the x32 ABI, still an x86-64 CPU
    if machine == EM_AARCH64:
        return "arm64"
    if machine == EM_ARM:
        return "arm"
    if machine == EM_386:
        return "386"
    if machine == EM_RISCV:
        return "riscv64" if bits == 64 else "riscv32"
    if machine == EM_PPC64:
        return "ppc64le" if little else "ppc64"
    if machine == EM_PPC:
        return "ppc"
    if machine == EM_S390:
        return "s390x" if bits == 64 else "s390"
    if machine == EM_MIPS:
        return ("mips64" if bits == 64 else "mips") + ("le" if little else "")
    if machine == EM_LOONGARCH:
        return "loong64"
    if machine == EM_SPARCV9:
        return "sparc64"
    return None


@dataclass(frozen=True)
class ElfHeader:
    """The parts of an ELF header that say which CPU and OS a program is for."""

    bits: int  # 32 or 64 (EI_CLASS)
    endian: Literal["little", "big"]  # EI_DATA
    machine: int  # e_machine
    type: int  # e_type: 2 executable, 3 shared object (PIE executables are 3 too)
    os_abi: int  # EI_OSABI: 0 System V, 3 Linux (Go and most toolchains write 0)
    flags: int  # e_flags: ABI details (ARM EABI version, RISC-V float ABI)
    entry: int  # e_entry: 0 for a library that is not also a program

    @property
    def arch(self) -> str | None:
        """OCI platform architecture (``amd64``, ``arm64``, ...), None for unknown machines."""
        return machine_arch(self.machine, self.bits, self.endian)

    @property
    def machine_name(self) -> str:
        """``x86-64``, ``ARM aarch64``, ... as ``file`` prints it."""
        return MACHINE_NAMES.get(self.machine, f"machine {self.machine}")

    @property
    def type_name(self) -> str:
        return _ET_NAMES.get(self.type, f"type {self.type}")

    def describe(self) -> str:
        """One line in the style of ``file``: ``ELF 64-bit LSB executable, x86-64``."""
        order = "LSB" if self.endian == "little" else "MSB"
        return f"ELF {self.bits}-bit {order} {self.type_name}, {self.machine_name}"

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True)
class Shebang:
    """A script's ``#!`` line: the kernel runs ``interpreter [argument] script``."""

    interpreter: str
    argument: str | None = None


def is_elf(data: bytes) -> bool:
    """True when ``data`` starts with the ELF magic ``\\x7fELF``."""
    return data[:4] == ELF_MAGIC


def parse_header(data: bytes) -> ElfHeader:
    """Parse the ELF header at the start of ``data`` (52 bytes for 32-bit, 64 for 64-bit).

    Raises :class:`ElfError` when ``data`` is not an ELF file or is cut short.
    """
    if not is_elf(data):
        raise ElfError(f"not an ELF file (starts with {bytes(data[:4])!r})")
    if len(data) < 20:
        raise ElfError(f"ELF header cut short ({len(data)} bytes)")
    bits = _ELFCLASS.get(data[4])
    endian = _ELFDATA.get(data[5])
    if bits is None:
        raise ElfError(f"unknown ELF class {data[4]} (expected 1 for 32-bit or 2 for 64-bit)")
    if endian is None:
        raise ElfError(f"unknown ELF byte order {data[5]} (expected 1 LSB or 2 MSB)")
    need = 52 if bits == 32 else 64
    if len(data) < need:
        raise ElfError(f"ELF header cut short ({len(data)} of {need} bytes)")
    order = "<" if endian == "little" else ">"
    e_type, e_machine = struct.unpack_from(order + "HH", data, 16)
    if bits == 32:
        (entry,) = struct.unpack_from(order + "I", data, 24)
        (flags,) = struct.unpack_from(order + "I", data, 36)
    else:
        (entry,) = struct.unpack_from(order + "Q", data, 24)
        (flags,) = struct.unpack_from(order + "I", data, 48)
    return ElfHeader(bits, endian, e_machine, e_type, data[7], flags, entry)


def read_header(source: str | os.PathLike | BinaryIO) -> ElfHeader:
    """Read the ELF header of a file, given its path or an open binary stream.

    Only the first 64 bytes are read; a stream is left positioned after them.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return parse_header(f.read(64))
    return parse_header(source.read(64))


def parse_shebang(data: bytes) -> Shebang | None:
    """The ``#!`` line of a script as Linux reads it (fs/binfmt_script.c), or None when the
    kernel would refuse it (ENOEXEC).

    Only the first 256 bytes count. The interpreter ends at a space, tab or NUL; the rest,
    trimmed of spaces and tabs, is one single argument. A carriage return is NOT trimmed: a
    script saved with Windows line endings names ``/bin/sh\\r``, which does not exist
    ("bad interpreter"). With no newline in the first 256 bytes and nothing ending the
    interpreter, its path may be cut short, and the kernel refuses it.
    """
    if data[:2] != b"#!":
        return None
    buf = data[:HEAD_SIZE]
    newline = buf.find(b"\n")
    line = buf[2:newline] if newline >= 0 else buf[2 : HEAD_SIZE - 1]
    if newline < 0 and len(data) >= HEAD_SIZE:
        start = line.lstrip(b" \t")
        if not any(c in start for c in b" \t\0"):
            return None
    line = line.split(b"\0", 1)[0].rstrip(b" \t").lstrip(b" \t")
    if not line:
        return None
    cut = min((i for i in (line.find(b" "), line.find(b"\t")) if i >= 0), default=len(line))
    interpreter = line[:cut].decode("utf-8", "surrogateescape")
    argument = line[cut:].lstrip(b" \t").decode("utf-8", "surrogateescape")
    return Shebang(interpreter, argument or None)


def identify(data: bytes) -> ElfHeader | Shebang | None:
    """What the kernel would see in a file's first bytes: an ELF header, a ``#!`` line, or
    None (neither: ``exec`` would fail with ``exec format error``).

    Raises :class:`ElfError` for a file that has the ELF magic but a broken header.
    """
    if is_elf(data):
        return parse_header(data)
    return parse_shebang(data)
