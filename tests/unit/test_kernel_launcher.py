"""The autograde kernel launcher runs as root in the notebook's folder, which holds the
learner's submitted files: none of them may be imported there (found in review: a submitted
json.py ran as root before the jail existed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grader.grading.sandbox import kernel

SHADOWS = {
    "json.py": "import pathlib; pathlib.Path('pwned-json').write_text('x')\n",
    "argparse.py": "import pathlib; pathlib.Path('pwned-argparse').write_text('x')\n",
    "grader/__init__.py": "import pathlib; pathlib.Path('pwned-grader').write_text('x')\n",
}


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    for name, text in SHADOWS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*argv, "--help"], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_launcher_imports_nothing_from_the_notebooks_folder(hostile_folder: Path) -> None:
    spec = kernel.install_kernelspec(hostile_folder / "share", hostile_folder / "config.json")
    argv = json.loads((spec / "kernel.json").read_text())["argv"]
    done = _run(argv[: argv.index("--config")], hostile_folder)
    assert done.returncode == 0 and "usage" in done.stdout, done.stderr[-2000:]
    assert not list(hostile_folder.glob("pwned-*"))


def test_the_control_shows_what_m_would_import(hostile_folder: Path) -> None:
    """The form the launcher had (`python -m`): the folder comes first on sys.path."""
    _run([sys.executable, "-m", "grader.grading.sandbox.kernel"], hostile_folder)
    assert list(hostile_folder.glob("pwned-*"))
