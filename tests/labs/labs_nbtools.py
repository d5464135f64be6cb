"""Helpers for the labs tests: copies of assignments, notebook execution, error listing."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import nbformat

from grader.course.release import RELEASE, ROOT, SOURCE, assignments

__all__ = [
    "RELEASE",
    "ROOT",
    "SOURCE",
    "assignments",
    "errors",
    "execute",
    "output_text",
    "venv_env",
    "work_copy",
]

REFERENCE = "reference-solution"


def venv_env(**extra: str) -> dict[str, str]:
    """Environment for nbgrader/papermill subprocesses: the venv's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def work_copy(src: Path, dest: Path, *, solution: bool) -> Path:
    """Copy an assignment folder to ``dest``; with ``solution``, the files of its
    ``reference-solution/`` (if any) replace the starter's. The reference folder itself is
    never copied."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(REFERENCE, ".ipynb_checkpoints"))
    ref = src / REFERENCE
    if solution and ref.is_dir():
        shutil.copytree(ref, dest, dirs_exist_ok=True)
    return dest


def execute(nb_path: Path, cwd: Path, *, timeout: int = 1800) -> nbformat.NotebookNode:
    """Run a notebook top to bottom with papermill (cells tagged raises-exception may fail)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = nb_path.with_name(nb_path.stem + ".out.ipynb")
    # the output notebook holds every error; callers judge them with errors()
    with contextlib.suppress(PapermillExecutionError):
        papermill.execute_notebook(
            str(nb_path),
            str(out),
            cwd=str(cwd),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=timeout,
            log_output=False,
        )
    nb = nbformat.read(out, as_version=4)
    # papermill adds marker cells at the top and before the first error
    nb.cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    return nb


def errors(nb: nbformat.NotebookNode) -> list[tuple[str, str, str, list[str]]]:
    """(cell id, exception name, message, tags) for every cell that raised."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(
                    (
                        cell.get("id", "?"),
                        out.get("ename", ""),
                        out.get("evalue", ""),
                        list(cell.metadata.get("tags", [])),
                    )
                )
    return found


def output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("display_data", "execute_result"):
            parts.append(str(out.get("data", {}).get("text/plain", "")))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}\n")
    return "".join(parts)
