"""Recorded real outputs of the commands the labs teach, shown where no engine runs (Binder).

Every ``labkit.sh(cmd, record=KEY)`` in a lab names a recording. ``grader record`` runs the
labs' source notebooks on the real engine with ``COURSE_RECORD=1``; each keyed command that
runs hands its result to :func:`save`, which stores it in ``grader/course/recordings/<lab>.json``
with the command, exit status, date and engine versions. Without an engine, ``labkit.sh``
shows :func:`lookup`'s recording instead, labelled as recorded (:func:`replay` does the same
for a recording shown on its own).

The store is plain JSON, small and reviewable: outputs are cut to their first and last
lines past :data:`MAX_LINES`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grader import proc
from grader.course.labs import LABS

#: The store shipped with the package (package data).
RECORDINGS_DIR = Path(__file__).resolve().parent / "recordings"

#: Lines kept per stream (first half and last half); the middle is replaced by a marker.
MAX_LINES = 120
#: Characters kept per line.
MAX_LINE_CHARS = 400

#: Where the labs' source notebooks are (the course directory's ``source/``).
SOURCE_DIR = Path(__file__).resolve().parents[2] / "source"


@dataclass(frozen=True)
class Recording:
    """One command's real output. ``recorded_at`` is a date (YYYY-MM-DD)."""

    key: str
    command: str
    stdout: str
    stderr: str
    returncode: int
    recorded_at: str
    lab: str = ""
    engine: dict[str, str] = field(default_factory=dict)  # docker, buildx, host

    @property
    def output(self) -> str:
        return "\n".join(part.rstrip("\n") for part in (self.stdout, self.stderr) if part)

    def label(self) -> str:
        """How a recording is introduced wherever it is shown."""
        versions = ", ".join(f"{k} {v}" for k, v in self.engine.items() if v)
        return (
            f"recorded output of `{self.command}` on {self.recorded_at}"
            + (f" ({versions})" if versions else "")
            + ", on the course's own engine (not run now)"
        )

    @classmethod
    def from_json(cls, key: str, data: Any, lab: str) -> Recording:
        if not isinstance(data, dict):
            raise ValueError(f"recording {key!r} is not an object")
        engine = data.get("engine") if isinstance(data.get("engine"), dict) else {}
        return cls(
            key=key,
            command=str(data["command"]),
            stdout=str(data.get("stdout", "")),
            stderr=str(data.get("stderr", "")),
            returncode=int(data["returncode"]),
            recorded_at=str(data["recorded_at"]),
            lab=lab,
            engine={str(k): str(v) for k, v in engine.items()},
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["key"], data["lab"]
        return data


def recordings_dir() -> Path:
    """``COURSE_RECORDINGS_DIR`` (tests, ``grader record --out``) or the packaged store."""
    return Path(os.environ.get("COURSE_RECORDINGS_DIR") or RECORDINGS_DIR)


def _lab_ids() -> tuple[str, ...]:
    return tuple(LABS)


def lab_for_key(key: str) -> str:
    """Which lab a key belongs to: ``COURSE_RECORD_LAB`` while recording, else the lab whose
    number or name starts the key (``01-run-liar`` -> ``01-exec-format-error``)."""
    if os.environ.get("COURSE_RECORD_LAB"):
        return os.environ["COURSE_RECORD_LAB"]
    head = key.split("-", 1)[0]
    for lab in _lab_ids():
        if lab == key or key.startswith(lab + "-") or lab.split("-", 1)[0] == head:
            return lab
    return "misc"


def read_lab_file(path: Path) -> dict[str, Recording]:
    lab = path.stem
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = data.get("recordings") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: no 'recordings' object")
    return {key: Recording.from_json(key, value, lab) for key, value in entries.items()}


@functools.lru_cache(maxsize=8)
def _load(directory: str, stamp: tuple[tuple[str, float], ...]) -> dict[str, Recording]:
    del stamp  # part of the cache key only: a changed file is read again
    found: dict[str, Recording] = {}
    for path in sorted(Path(directory).glob("*.json")):
        for key, rec in read_lab_file(path).items():
            if key in found:
                raise ValueError(f"recording key {key!r} is in both {found[key].lab} and {rec.lab}")
            found[key] = rec
    return found


def load_all(directory: Path | None = None) -> dict[str, Recording]:
    """Every recording in the store, by key (a key must be unique across labs)."""
    directory = directory or recordings_dir()
    if not directory.is_dir():
        return {}
    stamp = tuple((p.name, p.stat().st_mtime) for p in sorted(directory.glob("*.json")))
    return _load(str(directory), stamp)


def lookup(key: str) -> Recording | None:
    """The recording stored under ``key``, or None (labkit's hook)."""
    try:
        return load_all().get(key)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged store must not break a lab: the cell just has no recording


def lab_recordings(lab_id: str) -> list[Recording]:
    """The recordings made in ``lab_id``, in the order they were recorded."""
    try:
        return [r for r in load_all().values() if r.lab == lab_id]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _cut(text: str) -> str:
    """Keep a stream reviewable: long lines and long outputs are cut, visibly."""
    lines = [
        line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " [...]"
        for line in text.splitlines()
    ]
    if len(lines) > MAX_LINES:
        half = MAX_LINES // 2
        dropped = len(lines) - 2 * half
        lines = [*lines[:half], f"[... {dropped} lines not recorded ...]", *lines[-half:]]
    return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def engine_versions() -> dict[str, str]:
    """Docker engine and buildx versions, and the host platform, for each recording."""
    from grader.docker.registry import normalize

    versions = {"docker": "", "buildx": ""}
    for name, argv in (
        ("docker", ["docker", "version", "--format", "{{.Server.Version}}"]),
        ("buildx", ["docker", "buildx", "version"]),
    ):
        try:
            done = proc.run(argv, timeout=20, check=False)
        except proc.CommandError:
            continue
        out = done.stdout.strip().split()
        if done.ok and out:
            # `docker buildx version` prints "github.com/docker/buildx 0.13.1 <commit>"
            versions[name] = out[1] if name == "buildx" and len(out) > 1 else out[0]
    versions["host"] = str(normalize("linux", os.uname().machine))
    return versions


def not_run(path: Path) -> list[str]:
    """Keys the lab names that its last recording run did not reach (a branch this machine
    does not take, e.g. `docker compose` where only bake is installed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    keys = data.get("not_run") if isinstance(data, dict) else None
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def write_lab_file(
    path: Path, recordings: dict[str, Recording], not_run: Iterable[str] = ()
) -> None:
    body: dict[str, Any] = {
        "about": "Real outputs recorded by `grader record`; shown by the labs without an engine.",
        "recordings": {key: recordings[key].to_json() for key in sorted(recordings)},
    }
    if not_run:
        body["not_run"] = sorted(not_run)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(body, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it private; the store is package data
    os.replace(tmp, path)  # readers never see half a file


def save(key: str, result: Any) -> Recording:
    """Store a command's real result (labkit's ``ShResult``) under ``key`` (labkit's hook,
    called for keyed commands while ``COURSE_RECORD=1``)."""
    command = result.command if hasattr(result, "command") else " ".join(result.argv)
    rec = Recording(
        key=key,
        command=command,
        stdout=_cut(result.stdout or ""),
        stderr=_cut(result.stderr or ""),
        returncode=int(result.returncode if result.returncode is not None else -1),
        recorded_at=_dt.date.today().isoformat(),
        lab=lab_for_key(key),
        engine=dict(engine_versions()),
    )
    path = recordings_dir() / f"{rec.lab}.json"
    existing = read_lab_file(path) if path.exists() else {}
    existing[key] = rec
    write_lab_file(path, existing)
    return rec


def replay(key: str, *, file=None) -> Recording | None:
    """Show the recording under ``key`` labelled as recorded, with its command and date;
    says so when there is none. Returns the recording (or None)."""
    out = file or sys.stdout
    rec = lookup(key)
    if rec is None:
        print(f"(no recorded output under {key!r})", file=out, flush=True)
        return None
    print(f"--- {rec.label()} ---", file=out)
    if rec.output.strip():
        print(rec.output, file=out)
    print(f"--- end of recorded output (exit status {rec.returncode}) ---", file=out, flush=True)
    return rec
