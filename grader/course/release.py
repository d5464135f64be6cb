"""Release the labs: ``source/<assignment>/`` -> ``labs/<assignment>/`` with nbgrader.

``scripts/release-labs [ASSIGNMENT...]`` runs this; a test regenerates every lab into a
temporary folder and fails on any difference from the committed ``labs/``. Notebooks in
``source/`` are committed clean (no outputs); ``--clean`` strips them first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nbformat

from grader import proc

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "source"
RELEASE = ROOT / "labs"


class ConfigBroken(RuntimeError):
    """nbgrader could not load the course's nbgrader_config.py."""


def assignments(source: Path = SOURCE) -> list[str]:
    """Assignment ids: the folders of ``source/`` that hold a notebook."""
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def dirty_cells(path: Path) -> list[str]:
    """Why a committed notebook is not clean: cells with outputs or execution counts,
    and notebook-level runtime metadata. Empty when clean."""
    nb = nbformat.read(path, as_version=4)
    problems = []
    for i, cell in enumerate(nb.cells):
        where = f"{path.name} cell {i} ({cell.get('id', '?')})"
        if cell.cell_type == "code" and cell.get("outputs"):
            problems.append(f"{where}: has outputs")
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            problems.append(f"{where}: has an execution count")
        if "execution" in cell.get("metadata", {}):
            problems.append(f"{where}: has execution timing metadata")
    for key in ("widgets", "papermill", "toc-autonumbering"):
        if key in nb.metadata:
            problems.append(f"{path.name}: notebook metadata {key!r}")
    return problems


def clean(path: Path) -> bool:
    """Strip outputs, execution counts and run metadata from a notebook; True if it changed."""
    before = path.read_text()
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    for key in ("widgets", "papermill"):
        nb.metadata.pop(key, None)
    after = nbformat.writes(nb) + "\n"
    if after != before:
        path.write_text(after)
        return True
    return False


def _env() -> dict[str, str]:
    # nbgrader runs `alembic` by name: the venv's bin/ must be on PATH.
    bindir = str(Path(sys.executable).parent)
    return {"PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def release(
    ids: Sequence[str] | None = None, *, into: Path | None = None, gradebook: str | None = None
) -> list[str]:
    """Run ``nbgrader generate_assignment`` for each assignment (default: all) into ``labs/``
    (or ``into``); returns the ids released. ``gradebook`` is an SQLAlchemy URL
    (default: the course's, see nbgrader_config.py)."""
    ids = list(ids or assignments())
    unknown = sorted(set(ids) - set(assignments()))
    if unknown:
        raise ValueError(f"no such assignment in source/: {', '.join(unknown)}")
    target = (into or RELEASE).resolve()
    env = _env()
    if gradebook:
        env["COURSE_GRADEBOOK"] = gradebook
    for aid in ids:
        # --force replaces the released folder; remove it first so deleted files go too.
        shutil.rmtree(target / aid, ignore_errors=True)
        done = proc.run(
            [
                sys.executable,
                "-m",
                "nbgrader",
                "generate_assignment",
                aid,
                "--force",
                f"--CourseDirectory.release_directory={target}",
                "--log-level=WARN",
            ],
            timeout=600,
            cwd=ROOT,
            env=env,
        )
        # nbgrader logs a broken nbgrader_config.py and carries on without it (exit 0).
        if "Exception while loading config file" in done.stderr:
            raise ConfigBroken(done.stderr.strip())
        for nb_path in sorted((target / aid).glob("*.ipynb")):
            clean(nb_path)  # nbgrader keeps cell metadata papermill may have added
    return ids


def diff_trees(a: Path, b: Path) -> list[str]:
    """Files that differ between two folders (missing on either side, or other bytes)."""

    def files(root: Path) -> set[str]:
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts
        }

    fa, fb = files(a), files(b)
    out = [f"only in {a.name}: {f}" for f in sorted(fa - fb)]
    out += [f"only in {b.name}: {f}" for f in sorted(fb - fa)]
    out += [
        f"differs: {f}" for f in sorted(fa & fb) if (a / f).read_bytes() != (b / f).read_bytes()
    ]
    return out


def check_up_to_date() -> list[str]:
    """Regenerate every lab into a temporary folder and list differences from ``labs/``."""
    with tempfile.TemporaryDirectory(prefix="release-check-") as tmp:
        into = Path(tmp) / "labs"
        into.mkdir()
        release(into=into, gradebook=f"sqlite:///{tmp}/gradebook.db")
        problems = []
        for aid in assignments():
            if not (RELEASE / aid).is_dir():
                problems.append(f"labs/{aid} is missing: run scripts/release-labs {aid}")
                continue
            problems += [f"labs/{aid}: {d}" for d in diff_trees(into / aid, RELEASE / aid)]
        return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/release-labs",
        description="Generate labs/<assignment>/ from source/ with nbgrader (all by default).",
    )
    parser.add_argument("assignments", nargs="*", help=f"ids (default: all in {SOURCE.name}/)")
    parser.add_argument("--clean", action="store_true", help="strip outputs from source/ first")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only report whether labs/ matches source/ (exit 1 if not)",
    )
    opts = parser.parse_args(argv)
    if opts.check:
        problems = check_up_to_date()
        print("\n".join(problems) or "labs/ is up to date with source/")
        return 1 if problems else 0
    if opts.clean:
        for aid in opts.assignments or assignments():
            for nb_path in sorted((SOURCE / aid).glob("*.ipynb")):
                if clean(nb_path):
                    print(f"cleaned {nb_path.relative_to(ROOT)}")
    try:
        released = release(opts.assignments)
    except ValueError as e:
        print(f"release-labs: {e}", file=sys.stderr)
        return 2
    except (proc.CommandError, ConfigBroken) as e:
        print(f"release-labs: nbgrader failed: {e}", file=sys.stderr)
        return 1
    for aid in released:
        print(f"released labs/{aid}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
