"""The challenge's report ``grader autograde`` hands to a jailed notebook kernel.

Two criteria need the grader's own build.sh sandbox (``idempotent``: build.sh run twice
behind the gate, each run as a uid of its own; ``runs``: the image those runs pushed), which
needs root and cannot start inside the kernel's jail. So ``grader autograde`` (root, outside
the jail) grades the submitted folder first, on the same worker engine and behind the same
proxy as ``grader batch``, and :func:`write`s the report into its root-only run folder. The
kernel launcher copies it into the jail at :data:`KERNEL_PATH` (a root-owned, read-only file
in a root-owned folder), where the challenge's full check (:func:`read`, :func:`merged`)
takes those criteria from it.

The path is fixed: never an environment variable or a file in the notebook's folder, which
the learner's cells and files can set. :func:`read` also trusts only a regular file that
root owns and nobody else may write, in a folder of the same kind, so outside the jail (a
learner's own JupyterLab, a hub) a learner cannot plant one; without it the full check
runs every criterion itself, as always.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from grader.grading.report import Report

#: Where the jailed kernel finds the report (bound read-only by the kernel launcher).
KERNEL_PATH = "/run/grader/challenge-report.json"

#: The criteria taken from the report: what the kernel's jail cannot grade itself.
SANDBOX_CRITERIA = ("idempotent", "runs")


def write(report: Report, path: Path) -> None:
    """``report`` as JSON in a new root-only file (0600) at ``path``, never through a link."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(report.to_json())


def _root_only(st: os.stat_result) -> bool:
    """Owned by root, and neither its group nor others may write it."""
    return st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def read(path: str | os.PathLike | None = None) -> Report | None:
    """The report at ``path`` (default :data:`KERNEL_PATH`) when root wrote it there and
    nobody else could have; else None."""
    path = Path(path or KERNEL_PATH)
    try:
        st = os.lstat(path)
        if not (stat.S_ISREG(st.st_mode) and _root_only(st)):
            return None
        if not _root_only(os.lstat(path.parent)):
            return None
        return Report.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def merged(report: Report, trusted: Report, ids: tuple[str, ...] = SANDBOX_CRITERIA) -> Report:
    """``report`` with the criteria ``ids`` as ``trusted`` graded them."""
    theirs = {c.id: c for c in trusted.criteria if c.id in ids}
    return Report(report.submission, [theirs.get(c.id, c) for c in report.criteria])
