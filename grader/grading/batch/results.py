"""A batch's results on disk: one report per student (written atomically), read back to
resume, and ``grades.csv`` made from them. The batch runner (``run``) writes them; the
gradebook export (``gradebook``) reads them."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from grader.grading.criteria import CRITERIA


def safe_name(student: str) -> str:
    out = "".join(c if c.isalnum() or c in "._-" else "_" for c in student)
    return out.lstrip(".") or "_"


#: Longest id shown in a progress line, the CSV or the results page (the rest is "...").
SHOWN_MAX = 200


def shown(student: str) -> str:
    """The one printable form of a student id for terminals, reports and CSV: characters
    that are not printable (terminal escapes, bidi overrides, bytes that are not UTF-8)
    are written as Python escapes, so they show instead of acting."""
    out = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in student)
    return out if len(out) <= SHOWN_MAX else out[: SHOWN_MAX - 3] + "..."


def neutral_cell(value):
    """A CSV cell a spreadsheet shows as text: one starting with = + - @ (a formula) or a
    tab or CR gets a leading apostrophe (OWASP's advice for CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@dataclass(frozen=True)
class Assigned:
    """Where one student's results go: ``key`` names the report file and log folder,
    ``namespace`` the registry repository path."""

    key: str
    namespace: str


@dataclass(frozen=True)
class Collision:
    what: str  # "report file" or "registry namespace"
    name: str  # the name the ids shared
    students: tuple[str, ...]

    def message(self) -> str:
        ids = ", ".join(repr(shown(s)) for s in self.students)
        return (
            f"grader batch: ids {ids} map to the same {self.what} ({shown(self.name)}); "
            "each gets its own, with a suffix from its id"
        )


def _digest(student: str) -> str:
    return hashlib.sha256(student.encode("utf-8", "surrogateescape")).hexdigest()


def _one_to_one(
    students: list[str], base: Callable[[str], str], fold: Callable[[str], str], what: str
) -> tuple[dict[str, str], list[Collision]]:
    """``base`` for every id whose base is its own; ids sharing a base (compared folded)
    get ``base-<hash of the id>``, longer until it is taken by nobody."""
    groups: dict[str, list[str]] = {}
    for s in students:
        groups.setdefault(fold(base(s)), []).append(s)
    names = {g[0]: base(g[0]) for g in groups.values() if len(g) == 1}
    taken = {fold(n) for n in names.values()}
    collisions = []
    for _, members in sorted(groups.items()):
        if len(members) == 1:
            continue
        collisions.append(Collision(what, base(members[0]), tuple(sorted(members))))
        for s in sorted(members):
            n = 8
            while True:
                cand = f"{base(s)[: 60 - n - 1]}-{_digest(s)[:n]}"
                if fold(cand) not in taken:
                    break
                n += 4
            taken.add(fold(cand))
            names[s] = cand
    return names, collisions


def assign_ids(students: Iterable[str]) -> tuple[dict[str, Assigned], list[Collision]]:
    """One report file and one registry namespace per student, never shared: ids that
    would share one (``a b``/``a_b``, ``Alice``/``alice``) are told apart and reported.
    File names are compared case-folded (results copied to a case-insensitive disk)."""
    from grader.grading.checks.run import learner_namespace

    ids = sorted(set(students))
    keys, c1 = _one_to_one(ids, safe_name, str.casefold, "report file")
    spaces, c2 = _one_to_one(ids, learner_namespace, str, "registry namespace")
    return {s: Assigned(keys[s], spaces[s]) for s in ids}, c1 + c2


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` completely or not at all: temp file, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def report_path(out: Path, key: str) -> Path:
    """The report file of the student whose :class:`Assigned` key is ``key``."""
    return out / "reports" / f"{key}.json"


def load_record(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("report"), dict):
        return None
    return data


def is_finished(record: dict | None, fp: str, key: str, student: str | None = None) -> bool:
    return bool(
        record
        and (student is None or record.get("student") == student)  # the file is theirs
        and record.get("complete") is True
        and record.get("fingerprint") == fp
        and record.get("settings") == key
    )


def write_grades_csv(out: Path) -> int:
    """grades.csv from every report in ``out/reports``; returns the number of rows."""
    rows = []
    for path in sorted((out / "reports").glob("*.json")):
        rec = load_record(path)
        if rec is None:
            continue
        rep = rec["report"]
        statuses = {c.get("id"): c.get("status", "") for c in rep.get("criteria", [])}
        rows.append(
            [
                shown(str(rec.get("student", path.stem))),
                rep.get("score", 0),
                rep.get("max_score", 0),
                "yes" if rec.get("complete") else "no",
                *(statuses.get(c.id, "") for c in CRITERIA),
            ]
        )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "score", "max_score", "complete", *(c.id for c in CRITERIA)])
    w.writerows([neutral_cell(cell) for cell in row] for row in rows)
    atomic_write(out / "grades.csv", buf.getvalue().encode())
    return len(rows)
