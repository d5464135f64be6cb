"""Reading a submission's files without trusting them.

A learner's folder may hold symbolic links out of it, FIFOs, directories where files belong,
binary or huge files. :func:`read_member` never follows a link out of the folder, never opens
anything but a regular file, and reads at most ``limit`` bytes; every refusal is a reason a
learner can act on, not an exception.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


class SubmissionUnreadable(Exception):
    """The submission folder itself cannot be read (the grader cannot run: exit code 2)."""


@dataclass(frozen=True)
class FileText:
    rel: str  # as the learner would name it, relative to the submission
    text: str | None = None
    problem: str | None = None  # why it cannot be read (text is None then)
    missing: bool = False
    crlf: bool = False  # had Windows line endings (text has them removed)


def open_root(path: str | os.PathLike) -> Path:
    root = Path(path)
    try:
        st = root.stat()
    except FileNotFoundError:
        raise SubmissionUnreadable(f"{root}: no such directory") from None
    except OSError as e:
        raise SubmissionUnreadable(f"{root}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SubmissionUnreadable(f"{root}: not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise SubmissionUnreadable(f"{root}: permission denied")
    return root


def inside(root: Path, rel: str) -> str | None:
    """``rel`` normalised inside the submission, or None when it points outside."""
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute():
        return None
    parts: list[str] = []
    for part in p.parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/".join(parts) if parts else "."


def read_member(root: Path, rel: str, limit: int) -> FileText:
    """Read ``root/rel`` as UTF-8 text of at most ``limit`` bytes, or say why not."""
    norm = inside(root, rel)
    if norm is None:
        return FileText(rel, problem="it is outside the submission folder")
    path = root / norm
    real_root = os.path.realpath(root)
    try:
        if not os.path.lexists(path):
            return FileText(norm, missing=True)
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(real_root + os.sep):
            target = os.readlink(path) if os.path.islink(path) else real
            return FileText(norm, problem=f"it is a symbolic link to {target}, outside the "
                                          "submission folder (not followed)")  # fmt: skip
        st = os.stat(real)
    except FileNotFoundError:
        return FileText(norm, problem="it is a symbolic link to a file that does not exist")
    except OSError as e:
        return FileText(norm, problem=e.strerror or str(e))
    if stat.S_ISDIR(st.st_mode):
        return FileText(norm, problem="it is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        return FileText(norm, problem="it is not a regular file")
    if st.st_size > limit:
        return FileText(norm, problem=f"it is too large ({st.st_size:,} bytes; the limit is "
                                      f"{limit:,})")  # fmt: skip
    try:
        with open(real, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        return FileText(norm, problem=e.strerror or str(e))
    if len(data) > limit:
        return FileText(norm, problem=f"it is too large (over {limit:,} bytes)")
    if not data.strip():
        return FileText(norm, problem="it is empty")
    if b"\x00" in data:
        return FileText(norm, problem="it is binary (it contains NUL bytes), not text")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        return FileText(norm, problem=f"it is not UTF-8 text (invalid byte 0x{data[e.start]:02x} "
                                      f"on line {line})")  # fmt: skip
    crlf = "\r\n" in text
    if crlf:
        text = text.replace("\r\n", "\n")
    return FileText(norm, text=text, crlf=crlf)
