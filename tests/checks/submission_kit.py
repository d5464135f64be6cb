"""Build throwaway submissions for grader tests from a small file spec (used by the rule
cases in tests/rules/cases/*.yaml and the bad-input tests).

A spec maps a path in the submission to its content:

- a string: the file's text (``null``/None: the file is absent);
- ``{hex: "00ff..."}``: raw bytes; ``{latin1: "caf\u00e9"}``: text encoded as Latin-1;
- ``{crlf: "text"}``: text with Windows line endings;
- ``{repeat: "# pad\\n", bytes: N}``: the text repeated to at least N bytes;
- ``{symlink: TARGET}``: a symbolic link (``{outside}`` in TARGET is a folder next to the
  submission, outside it, holding ``outside.sh`` and ``Dockerfile``);
- ``{directory: true}``: a directory where a file is expected.
"""

from __future__ import annotations

import os
from pathlib import Path

GOOD_BUILD_SH = """\
#!/bin/sh
set -e
docker buildx inspect grader-case >/dev/null 2>&1 || docker buildx create --name grader-case
docker buildx build --builder grader-case --platform linux/amd64,linux/arm64 \\
  --provenance=false --push -t 127.0.0.1:5000/cases/app:latest .
"""

GOOD_DOCKERFILE = """\
FROM busybox:latest
CMD ["echo", "hello"]
"""

DEFAULT_FILES = {"build.sh": GOOD_BUILD_SH, "Dockerfile": GOOD_DOCKERFILE}


def materialise(base: Path, spec: dict) -> Path:
    """Create ``base/sub`` from ``spec`` (DEFAULT_FILES overridden by it); returns it."""
    root = base / "sub"
    outside = base / "outside"
    root.mkdir(parents=True)
    outside.mkdir(exist_ok=True)
    (outside / "outside.sh").write_text(GOOD_BUILD_SH)
    (outside / "Dockerfile").write_text(GOOD_DOCKERFILE)
    files = {**DEFAULT_FILES, **spec}
    for rel, content in files.items():
        if content is None:
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_bytes(content.encode())
        elif "hex" in content:
            path.write_bytes(bytes.fromhex(content["hex"]))
        elif "latin1" in content:
            path.write_bytes(content["latin1"].encode("latin-1"))
        elif "crlf" in content:
            path.write_bytes(content["crlf"].replace("\n", "\r\n").encode())
        elif "repeat" in content:
            unit = content["repeat"].encode()
            path.write_bytes(unit * (content["bytes"] // len(unit) + 1))
        elif "symlink" in content:
            os.symlink(content["symlink"].replace("{outside}", str(outside)), path)
        elif content.get("directory"):
            path.mkdir()
        else:
            raise ValueError(f"unknown file spec for {rel}: {content!r}")
    return root


def findings(report, rule: str | None = None):
    out = [f for c in report.criteria for f in c.findings]
    return [f for f in out if rule is None or f.rule == rule]


def describe(report) -> str:
    """A compact report for assertion messages."""
    lines = []
    for c in report.criteria:
        lines.append(f"{c.status:7} {c.id}")
        lines += [f"        {f.rule} {f.file}:{f.line} {f.message}" for f in c.findings]
    return "\n".join(lines)
