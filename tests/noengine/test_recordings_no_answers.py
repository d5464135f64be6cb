"""Recordings hold no answer to a graded task (issue 13, item 7).

The recordings (grader/course/recordings/*.json) ship to learners with the grader: no-engine
mode shows them. A recorded command or output that repeats a line of a solution or of a
hidden test hands that answer to every learner. Each recording of a lab is compared with the
solution and hidden-test lines of that lab's source notebook, the notebook's variables
($REPO, {REPO}) and each run's random names matched as wildcards.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = ROOT / "grader" / "course" / "recordings"
BLOCK = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END (SOLUTION|HIDDEN TESTS)", re.S)
#: Shorter lines (`done`, `fi`, `return out`) say nothing about an answer.
MIN_TOKENS = 4
#: A notebook variable ($REPO, ${REPO}, f-string {REPO}, $(command)): any text in a recording.
_VARIABLE = re.compile(r"\$\{?\w+\}?|\$\([^)]*\)?|\{\w+\}")


def _tokens(text: str) -> list[str]:
    text = re.sub(r"^[A-Za-z_]\w*\s*=\s*", "", text)  # `NAME = [...]`: the value is the answer
    text = re.sub(r"\bf([\"'])", r"\1", text)  # f"{REPO}:x" is the text {REPO}:x
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        words = text.split()
    return [w.strip("\"'`,()[]") for w in words if w.strip("\"'`,()[]\\")]


def answer_lines(nb_path: Path) -> list[str]:
    """The solution and hidden-test lines of a source notebook's cells (a shell line continued
    with a backslash is one line), leaving out lines the lab itself gives to learners (the
    starter Dockerfile a solution repeats, a command the task's text spells out)."""
    nb = nbformat.read(nb_path, as_version=4)
    lines, given = [], []
    for cell in nb.cells:
        given.append(BLOCK.sub(" ", cell.source))
        for block in BLOCK.finditer(cell.source):
            lines += [ln.strip() for ln in block.group(2).replace("\\\n", " ").splitlines()]
    given_text = re.sub(r"[\"'`]", " ", "\n".join(given))
    return [
        ln
        for ln in lines
        if ln
        and not ln.startswith("#")
        and not ((p := line_pattern(ln)) is not None and p.search(given_text))
    ]


def _token_pattern(token: str) -> str:
    """A token's regex: its variables match any text, the rest literally (`$REPO:combined`
    matches `host/lab06/run-1a2b3c:combined`, not `NEW`)."""
    out, last = [], 0
    for m in _VARIABLE.finditer(token):
        out += [re.escape(token[last : m.start()]), r"\S*"]
        last = m.end()
    return "".join(out) + re.escape(token[last:])


def line_pattern(line: str) -> re.Pattern | None:
    """A regex finding ``line`` in recorded text (quotes and spacing aside), or None when the
    line is too short to give anything away."""
    tokens = _tokens(line)
    if len(tokens) < MIN_TOKENS:
        return None
    parts = [_token_pattern(t) for t in tokens]
    if sum(not _VARIABLE.fullmatch(t) for t in tokens) < MIN_TOKENS - 1:
        return None
    return re.compile(r"[\"'\s]+".join(parts))


def leaks(recordings: dict, answers: list[str]) -> list[tuple[str, str]]:
    """(recording key, answer line) for each answer line a recording repeats."""
    found = []
    patterns = [(a, p) for a in answers if (p := line_pattern(a)) is not None]
    for key, rec in recordings.items():
        text = "\n".join(str(rec.get(f, "")) for f in ("command", "stdout", "stderr"))
        text = re.sub(r"[\"']", " ", text)
        found += [(key, a) for a, p in patterns if p.search(text)]
    return found


def _labs() -> list[str]:
    return sorted(p.stem for p in RECORDINGS.glob("*.json"))


@pytest.mark.parametrize("lab", _labs())
def test_recordings_hold_no_answer_of_their_lab(lab):
    source = ROOT / "source" / lab / f"{lab}.ipynb"
    assert source.is_file(), f"recordings for {lab}, which has no source notebook"
    recordings = json.loads((RECORDINGS / f"{lab}.json").read_text())["recordings"]
    found = leaks(recordings, answer_lines(source))
    assert not found, (
        "recordings repeat graded answers (learners read recordings without an engine): "
        + "; ".join(f"{key}: {line!r}" for key, line in found)
    )


def test_a_recorded_answer_is_found():
    """The comparison catches what it is for: a recorded command that is a task's answer,
    written with notebook variables, recorded with their values."""
    answers = [
        'docker buildx imagetools create -t "$REPO:combined" "$REPO:amd64" "$REPO:arm64"',
        'COMBINE = ["docker", "buildx", "imagetools", "create", "-t", f"{REPO}:combined",',
        "done",
    ]
    recorded = {
        "06-combine": {
            "command": "docker buildx imagetools create -t "
            "127.0.0.1:5000/lab06/run-1a2b3c:combined "
            "127.0.0.1:5000/lab06/run-1a2b3c:amd64 127.0.0.1:5000/lab06/run-1a2b3c:arm64",
            "stdout": "done",
        },
        "06-other": {"command": "docker buildx imagetools inspect x", "stdout": ""},
    }
    found = leaks(recorded, answers)
    assert [k for k, _ in found] == ["06-combine", "06-combine"]
    assert all(line != "done" for _, line in found)


def test_short_or_generic_lines_are_not_answers():
    assert line_pattern("done") is None
    assert line_pattern("return out") is None
    assert line_pattern('docker run "$X"') is None
