"""Real projects' Dockerfiles (tests/fixtures/dockerfiles/corpus.yaml): the `cross-compile`
verdict is the right one for each, mutants included. benchmarks/bench_dockerfile_corpus.py
prints the same table with timings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from submission_kit import describe, materialise

import grader

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "dockerfiles"
ENTRIES = [
    e
    for e in yaml.safe_load((CORPUS / "corpus.yaml").read_text())["entries"]
    if "/" not in e["file"]
]  # fmt: skip  (the controls outside fixtures change with the labs)
BUILD_SH = """\
#!/bin/sh
set -e
docker buildx inspect corpus >/dev/null 2>&1 || docker buildx create --name corpus
docker buildx build --builder corpus --platform linux/amd64,linux/arm64 \\
  --provenance=false --push -t 127.0.0.1:5000/corpus/app:latest {target}.
"""


def _text(entry: dict) -> str:
    text = (CORPUS / entry["file"]).read_text()
    if "mutate" in entry:
        old, new = entry["mutate"]
        assert old in text, f"{entry['file']}: the mutant's text is gone"
        text = text.replace(old, new, 1)
    return text


@pytest.mark.parametrize(
    "entry", ENTRIES, ids=[e.get("name") or Path(e["file"]).stem for e in ENTRIES]
)
def test_real_dockerfile_verdict(entry: dict, tmp_path: Path) -> None:
    target = f"--target {entry['target']} " if entry.get("target") else ""
    root = materialise(tmp_path, {"build.sh": BUILD_SH.format(target=target),
                                  "Dockerfile": _text(entry)})  # fmt: skip
    report = grader.check(root, static=True)
    assert report.criterion("cross-compile").status == entry["expect"], describe(report)


def test_every_corpus_file_is_listed_with_its_source() -> None:
    listed = {e["file"] for e in ENTRIES}
    assert listed == {p.name for p in CORPUS.glob("*.Dockerfile")}
    assert all("@" in e["source"] and "(" in e["source"] for e in ENTRIES)
