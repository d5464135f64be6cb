"""The static check protects the grader (issue 12): size caps on expansion, a linear
``${A%%y}``, and a time budget past which the analysis stops with a finding, not a hang."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from grader.parse import buildscript, shell

ROOT = Path(__file__).parents[2]
DOCKERFILE = "FROM busybox\n"
# 273 bytes: 13 bytes doubled 20 times, used as a platform list and a tag. Today's grader
# takes about 4 minutes on it and writes a 25 MB report.
DOUBLING = (
    "#!/bin/sh\nA=linux/amd64,\n"
    + "A=$A$A\n" * 20
    + 'docker buildx build --platform "$A" -t r/x --push .\necho "$A"\n'
    + 'docker buildx build --platform "$A" -t "$A" .\n'
)


def _submission(tmp_path: Path, script: str) -> Path:
    (tmp_path / "build.sh").write_text(script)
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    return tmp_path


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_a_300_byte_script_cannot_expand_into_a_huge_report(tmp_path: Path) -> None:
    assert len(DOUBLING) < 300
    sub = _submission(tmp_path, DOUBLING)
    code = "import sys, grader; r = grader.check(sys.argv[1], static=True); print(len(r.to_json()))"
    # In a child with 1 GiB of address space: today's grader dies there (or takes minutes).
    done = subprocess.run([sys.executable, "-c", code, str(sub)], capture_output=True,
                          text=True, timeout=60, preexec_fn=_limit_memory,
                          env={"PYTHONPATH": str(ROOT), "COURSE_NO_ENGINE": "1"})  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert int(done.stdout.strip()) < 256 * 1024


def test_expanded_values_are_capped_and_say_so() -> None:
    fields = shell.expand("$A$A", lambda n: shell.Value("y" * shell.MAX_VALUE)).fields
    assert len(fields[0].text) <= shell.MAX_VALUE + 100
    assert not fields[0].known  # cut: the grader does not pretend to know the value


def test_trimming_a_long_value_is_linear() -> None:
    text = "x" * 200_000 + "y"
    start = time.perf_counter()
    got = {p: shell._trim(text, *p) for p in [("%%", "y"), ("%", "y"), ("#", "x"),
           ("##", "*x"), ("%%", "x*"), ("#", "*x"), ("%", "x*"), ("##", "x*")]}  # fmt: skip
    assert time.perf_counter() - start < 1.0  # was seconds: a slice and a match per offset
    assert got[("%%", "y")] == got[("%", "y")] == "x" * 200_000
    assert got[("##", "*x")] == "y" and got[("%%", "x*")] == "" and got[("##", "x*")] == ""
    assert got[("#", "*x")] == got[("#", "x")] == "x" * 199_999 + "y"
    assert got[("%", "x*")] == "x" * 199_999
    # Other globs scan every cut point: only short values, longer ones stay as they are.
    assert shell._trim(text, "%%", "[xy]") == text


def test_glob_trims_still_follow_bash_on_short_values() -> None:
    v = lambda n: shell.Value("registry:5000/ns/app:1.2")  # noqa: E731
    cases = {"${A%:*}": "registry:5000/ns/app", "${A%%:*}": "registry", "${A#*/}": "ns/app:1.2",
             "${A##*/}": "app:1.2", "${A%[0-9].[0-9]}": "registry:5000/ns/app:",
             "${A#re?}": "istry:5000/ns/app:1.2"}  # fmt: skip
    for word, want in cases.items():
        assert shell.expand(word, v).fields[0].text == want, word


def test_past_the_time_budget_the_analysis_stops_with_a_note(monkeypatch) -> None:
    monkeypatch.setattr(buildscript, "TIME_BUDGET", 0.0)
    result = buildscript.analyse("#!/bin/sh\nA=1\nB=2\ndocker buildx build .\n")
    assert any(n.kind == "budget" and "seconds" in n.text for n in result.notes)


def test_the_time_budget_becomes_a_finding(tmp_path: Path, monkeypatch) -> None:
    import grader

    monkeypatch.setattr(buildscript, "TIME_BUDGET", 0.0)
    report = grader.check(_submission(tmp_path, "#!/bin/sh\ndocker buildx build .\n"),
                          static=True)  # fmt: skip
    text = json.dumps(report.to_dict())
    assert "seconds" in text and "stopped" in text
