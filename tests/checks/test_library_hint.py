"""DF211's hint names the target's libraries when the C program links one (as the challenge
teaches: dpkg --add-architecture, zlib1g-dev:$TARGETARCH), and nothing extra when it does not."""

from __future__ import annotations

import grader
from grader.course.release import RELEASE
from grader.grading.criteria import ASSIGNMENT


def _hint(tmp_path, run_line: str) -> str:
    (tmp_path / "build.sh").write_text(
        "#!/usr/bin/env bash\ndocker buildx build --platform linux/amd64,linux/arm64 .\n"
    )
    (tmp_path / "Dockerfile").write_text(
        "FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS build\n"
        "RUN apt-get update && apt-get install -y gcc\nCOPY hello.c .\n"
        f"{run_line}\nFROM debian:bookworm-slim\nCOPY --from=build /hello /hello\n"
    )
    report = grader.check(tmp_path, static=True)
    (f,) = [f for f in report.criterion("cross-compile").findings if f.rule == "DF211"]
    return f.hint


def test_the_starter_hint_names_zlib_for_the_target():
    report = grader.check(RELEASE / ASSIGNMENT, static=True)
    hints = " ".join(f.hint for f in report.criterion("cross-compile").findings)
    assert "dpkg --add-architecture $TARGETARCH" in hints
    assert "zlib1g-dev:$TARGETARCH" in hints


def test_no_library_no_library_hint(tmp_path):
    assert "add-architecture" not in _hint(tmp_path, "RUN gcc -O2 -o /hello hello.c -lm")


def test_other_libraries_get_debians_dev_package_name(tmp_path):
    hint = _hint(tmp_path, "RUN gcc -o /hello hello.c -lssl -lcurl")
    assert "libssl-dev:$TARGETARCH libcurl4-openssl-dev:$TARGETARCH" in hint
