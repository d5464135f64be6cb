"""docs/jupyterhub.md's code blocks, as the tests run them.

Every fenced block in the guide follows a marker, ``<!-- tested: ID -->`` or
``<!-- untested here: REASON -->``. Tests run a tested block by its ID (:func:`run`), so the
guide and the tests cannot drift apart.
"""

from __future__ import annotations

import os
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path

from grader import proc

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "jupyterhub.md"

_MARKED = re.compile(
    r"<!-- (?P<kind>tested|untested here): ?(?P<what>[^>]*?) -->\n"
    r"```(?P<lang>\w*)\n(?P<body>.*?)```",
    re.S,
)


@dataclass(frozen=True)
class Block:
    kind: str  # "tested" or "untested here"
    what: str  # the id, or the reason it is untested
    lang: str
    body: str


def blocks() -> list[Block]:
    return [Block(**m.groupdict()) for m in _MARKED.finditer(GUIDE.read_text())]


def fence_count() -> int:
    """Fenced blocks in the guide (each opening and closing line counts once per block)."""
    return len(re.findall(r"^```", GUIDE.read_text(), re.M)) // 2


def block(block_id: str) -> Block:
    found = [b for b in blocks() if b.kind == "tested" and b.what == block_id]
    assert len(found) == 1, f"docs/jupyterhub.md has {len(found)} blocks tested as {block_id!r}"
    return found[0]


def text(block_id: str, **values: str) -> str:
    """A tested YAML/config block with its ``${VAR}`` placeholders filled in."""
    return string.Template(block(block_id).body).substitute(values)


def run(
    block_id: str,
    env: dict[str, str],
    cwd: Path,
    timeout: float = 600,
    check: bool = True,
) -> proc.Completed:
    """Run a tested bash block with ``bash -euo pipefail`` and the given variables."""
    b = block(block_id)
    assert b.lang == "bash", f"{block_id} is a {b.lang} block"
    full_env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **env}
    done = proc.run(
        ["bash", "-euo", "pipefail", "-c", b.body], timeout=timeout, env=full_env, cwd=cwd,
        check=False,
    )  # fmt: skip
    if check:
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert done.ok, f"guide block {block_id} failed ({done.returncode}):\n{output}"
    return done
