"""``grader record``: run a lab's source notebook on the real engine with ``COURSE_RECORD=1``
and store what its keyed commands printed (:mod:`grader.course.recorded` is the store)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from grader import proc
from grader.course import magics, noengine, recorded
from grader.course.labs import LABS


@dataclass
class LabRun:
    lab: str
    ok: bool
    recorded: int
    seconds: float
    error: str = ""


def _labs_to_record(labs: Iterable[str], source_dir: Path) -> list[str]:
    wanted = list(labs) or [lab for lab in LABS if (source_dir / lab).is_dir()]
    missing = [lab for lab in wanted if not (source_dir / lab / f"{lab}.ipynb").is_file()]
    if missing:
        where = ", ".join(f"{m} ({source_dir / m / m}.ipynb)" for m in missing)
        raise ValueError(f"no source notebook for {where}")
    return wanted


def record_lab(
    lab: str,
    *,
    source_dir: Path = recorded.SOURCE_DIR,
    out_dir: Path | None = None,
    timeout: float = 3600,
    keep_partial: bool = False,
) -> LabRun:
    """Run ``source/<lab>/<lab>.ipynb`` on the real engine (in a scratch copy) with
    ``COURSE_RECORD=1``, then replace ``<out_dir>/<lab>.json`` with what it recorded.
    A run that fails keeps the previous recordings and says where it failed; with
    ``keep_partial`` what it did record (real outputs all the same) is merged in."""
    out_dir = out_dir or recorded.recordings_dir()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"record-{lab}-") as tmp:
        work = Path(tmp) / lab
        shutil.copytree(source_dir / lab, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        staging = Path(tmp) / "recordings"
        executed = Path(tmp) / f"{lab}.executed.ipynb"
        bindir = str(Path(sys.executable).parent)
        env = {
            "COURSE_RECORD": "1",
            "COURSE_RECORD_LAB": lab,
            "COURSE_RECORDINGS_DIR": str(staging),
            "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        }
        argv = [
            sys.executable, "-m", "papermill", "--no-progress-bar", "-k", "python3",
            "--cwd", str(work), str(work / f"{lab}.ipynb"), str(executed),
        ]  # fmt: skip
        try:
            done = proc.run(argv, timeout=timeout, check=False, env=env)
            error = "" if done.ok else _papermill_error(done.stderr)
        except proc.CommandError as e:
            error = str(e)
        got = (
            recorded.read_lab_file(staging / f"{lab}.json")
            if (staging / f"{lab}.json").exists()
            else {}
        )
        target = out_dir / f"{lab}.json"
        named = notebook_keys(source_dir / lab / f"{lab}.ipynb")
        if not error:
            if got:
                recorded.write_lab_file(target, got, named - set(got))
            else:
                target.unlink(missing_ok=True)
        elif keep_partial and got:
            merged = {**(recorded.read_lab_file(target) if target.exists() else {}), **got}
            recorded.write_lab_file(target, merged, named - set(merged))
    return LabRun(lab, not error, len(got), time.monotonic() - start, error)


_RECORD_KEY = re.compile(r"""\brecord\s*=\s*["']([^"']+)["']""")


def notebook_keys(notebook: Path) -> set[str]:
    """The recordings a notebook's code cells name: ``record=`` keys and ``%%docker`` cells'
    (:func:`grader.course.magics.recording_key`)."""
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return set()
    keys: set[str] = set()
    for cell in cells:
        if cell.get("cell_type") == "code":
            source = "".join(cell.get("source", ""))
            keys |= set(_RECORD_KEY.findall(source))
            magic = magics.MAGIC_LINE.match(source)
            key = magic and magics.recording_key(magic.group(1), notebook.parent.name)
            if key:
                keys.add(key)
    return keys


def _papermill_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return "\n".join(lines[-8:]) or "papermill failed"


def record_main(
    labs: list[str], *, out: str | None = None, timeout: float = 3600, keep_partial: bool = False
) -> int:
    """``grader record [LAB ...]``: re-record labs; prints one line per lab and a total."""
    status = noengine.engine_status()
    if not status.available:
        print(f"grader record: needs the real engine ({status.reason}); run `grader engine up`",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        wanted = _labs_to_record(labs, recorded.SOURCE_DIR)
    except ValueError as e:
        print(f"grader record: {e}", file=sys.stderr)
        return 2
    out_dir = Path(out) if out else recorded.recordings_dir()
    failed = 0
    print(f"{'lab':<24} {'result':<8} {'recorded':>8} {'seconds':>8}")
    for lab in wanted:
        run = record_lab(lab, out_dir=out_dir, timeout=timeout, keep_partial=keep_partial)
        failed += not run.ok
        print(f"{lab:<24} {'ok' if run.ok else 'FAILED':<8} {run.recorded:>8} {run.seconds:>8.1f}")
        if run.error:
            print("    " + run.error.replace("\n", "\n    "))
    print(f"recordings in {out_dir}")
    return 1 if failed else 0
