"""Hostile or broken submissions: a finding with fail/error and a message, never a traceback
or a hang."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from submission_kit import describe, findings, materialise

import grader

STATIC = ("buildx", "platforms", "push", "provenance", "builder", "cross-compile")


def _check(tmp_path: Path, spec: dict):
    started = time.monotonic()
    report = grader.check(materialise(tmp_path, spec), static=True)
    assert time.monotonic() - started < 10
    for c in report.criteria:
        if c.status in ("fail", "error"):
            assert c.findings and all(f.message for f in c.findings)
    return report


def test_ten_megabyte_script_is_refused_quickly(tmp_path: Path) -> None:
    report = _check(tmp_path, {"build.sh": {"repeat": "echo padding\n", "bytes": 10 << 20}})
    [f] = findings(report, "BS102")[:1]
    assert "too large" in f.message
    assert report.criterion("buildx").status == "fail"


def test_fifo_is_not_opened(tmp_path: Path) -> None:
    root = materialise(tmp_path, {"build.sh": None})
    os.mkfifo(root / "build.sh")  # reading it would block forever
    report = grader.check(root, static=True)
    assert "not a regular file" in findings(report, "BS102")[0].message


def test_dockerfile_symlink_to_etc_is_not_followed(tmp_path: Path) -> None:
    report = _check(tmp_path, {"Dockerfile": {"symlink": "/etc/hostname"}})
    [f] = findings(report, "DF202")
    assert "outside the submission" in f.message and "/etc/hostname" in f.message


@pytest.mark.parametrize(
    "script",
    [
        'docker buildx build "unclosed',
        "if then fi (((",
        "f() { f; }; f",  # endless recursion
        "while true; do docker buildx build .; done",
        "$(" * 500 + "x" + ")" * 500,
        "for i in $(seq 1 100000); do :; done\n" * 50,
        "\x1b[31m\x07 weird control characters\n",
        "case x in\n" * 200,
    ],
    ids=[
        "unclosed",
        "garbage",
        "recursion",
        "endless-loop",
        "deep-nesting",
        "long-loops",
        "control-chars",
        "unbalanced-case",
    ],
)
def test_unparseable_or_hostile_shell(tmp_path: Path, script: str) -> None:
    report = _check(tmp_path, {"build.sh": "#!/bin/sh\n" + script + "\n"})
    assert report.criterion("buildx").status in ("pass", "fail"), describe(report)


def test_unparseable_shell_is_a_syntax_finding(tmp_path: Path) -> None:
    report = _check(tmp_path, {"build.sh": 'docker buildx build --platform "linux/amd64 .\n'})
    [f] = findings(report, "BS104")
    assert f.line == 1 and "matching" in f.message


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM\n",
        "FROM busybox\nRUN <<EOF\n",
        "\\\n\\\n\\\n",
        "# escape=`\nFROM busybox\nRUN echo a `\n  b\n",
        "FROM busybox\nCOPY --from= / /\n",
        "FROM busybox AS a\nFROM a AS b\nFROM b AS a\n",
        "FROM busybox\n" + "RUN echo $((1+2))\n" * 2000,
        "FROM --platform=$BUILDPLATFORM golang:1.19 AS s0\n"
        + "".join(f"FROM s{k} AS s{k + 1}\nRUN go build -o /x{k} .\n" for k in range(3000))
        + "FROM busybox\nCOPY --from=s3000 /x1 /x\n",
    ],
    ids=[
        "bare-from",
        "open-heredoc",
        "only-continuations",
        "backtick-escape",
        "empty-from",
        "stage-cycle",
        "many-lines",
        "3000-stage-from-chain",
    ],
)
def test_odd_dockerfiles(tmp_path: Path, dockerfile: str) -> None:
    report = _check(tmp_path, {"Dockerfile": dockerfile})
    assert report.criterion("cross-compile").status in ("pass", "fail")


def test_non_utf8_dockerfile(tmp_path: Path) -> None:
    report = _check(tmp_path, {"Dockerfile": {"latin1": "FROM busybox\n# caf\u00e9\n"}})
    [f] = findings(report, "DF202")
    assert "not UTF-8" in f.message and "line 2" in f.message


def test_nothing_at_all(tmp_path: Path) -> None:
    report = _check(tmp_path, {"build.sh": None, "Dockerfile": None})
    assert [c.status for c in report.criteria if c.id in STATIC] == ["fail"] * 6
    assert report.score == 0


def test_hundreds_of_platforms_make_at_most_sixteen_views() -> None:
    from grader.grading.checks import dockerfile as check
    from grader.parse import dockerfile

    df = dockerfile.parse("FROM scratch AS a-linux\nFROM scratch AS a-windows\nFROM a-$TARGETOS\n")
    platforms = [f"linux/arch{k}" for k in range(500)]
    assert len(check.platform_views(df, platforms)) == 1  # every linux/* builds the same
    assert len(check.platform_views(df, ["linux/amd64", "windows/amd64"])) == 2
    stages = "".join(f"FROM scratch AS base-arch{k}\n" for k in range(500))
    per_arch = dockerfile.parse(stages + "FROM scratch\nCOPY --from=base-$TARGETARCH / /\n")
    assert len(check.platform_views(per_arch, platforms)) == check.MAX_PLATFORM_VIEWS
