"""grader.parse.dockerfile: stages, ARG scopes, reachability, heredocs, continuations."""

from __future__ import annotations

from grader.parse import dockerfile

TEXT = """\
# syntax=docker/dockerfile:1
ARG BASE=debian:bookworm-slim
ARG GOV=1.19
FROM --platform=$BUILDPLATFORM golang:${GOV} AS build
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/root/.cache \\
    # dropped, as BuildKit drops comment lines inside a continuation
    GOOS=$TARGETOS GOARCH=$TARGETARCH \\

    go build -o /out/app .
RUN <<END
set -e
echo hi
END
FROM build AS test
RUN ["go", "test", "./..."]
FROM busybox AS unused
FROM ${BASE}
COPY --from=build /out/app /app
"""


def test_stages_and_global_args() -> None:
    df = dockerfile.parse(TEXT)
    assert not df.problems
    assert df.directives == {"syntax": "docker/dockerfile:1"}
    assert df.global_args == {"BASE": "debian:bookworm-slim", "GOV": "1.19"}
    assert [s.name for s in df.stages] == ["build", "test", "unused", None]
    build, test, _unused, final = df.stages
    assert build.base_resolved == "golang:1.19" and build.platform == "$BUILDPLATFORM"
    assert final.base_resolved == "debian:bookworm-slim" and final.line == 18
    assert test.base_stage == 0


def test_continuations_heredocs_and_exec_form() -> None:
    build, test, _, _ = dockerfile.parse(TEXT).stages
    run1, run2 = [i for i in build.instructions if i.keyword == "RUN"]
    assert (run1.line, run1.end_line) == (6, 10)
    assert run1.flags == {"mount": ["type=cache,target=/root/.cache"]}
    assert run1.script == "GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app ."
    assert run2.script == "set -e\necho hi" and run2.end_line == 14
    assert test.instructions[0].exec_form == ["go", "test", "./..."]


def test_reachability_and_image_chain() -> None:
    df = dockerfile.parse(TEXT)
    assert [s.index for s in df.reachable()] == [0, 3]
    assert [s.index for s in df.image_chain()] == [3]
    assert [s.index for s in df.reachable("test")] == [0, 1]
    assert [s.index for s in df.image_chain("test")] == [1, 0]
    assert df.final("nope") is None


def test_arg_scope() -> None:
    df = dockerfile.parse(TEXT)
    build, test, _, final = df.stages
    assert df.declared_args(build, before=0) == set()
    assert df.declared_args(build) == {"TARGETOS", "TARGETARCH"}
    assert df.declared_args(test) == {"TARGETOS", "TARGETARCH"}  # inherited through FROM build
    assert df.declared_args(final) == set()  # global ARGs are not in scope inside a stage


def test_build_args_override_global_defaults() -> None:
    df = dockerfile.parse("ARG BASE=busybox\nFROM $BASE\n", {"BASE": "debian:bookworm-slim"})
    assert df.stages[0].base_resolved == "debian:bookworm-slim"


def test_escape_directive_and_problems() -> None:
    df = dockerfile.parse("# escape=`\nFROM busybox\nRUN echo a `\n    b\nFOO bar\n")
    assert df.escape == "`"
    assert df.stages[0].instructions[0].script == "echo a b"
    assert [(p.kind, p.line) for p in df.problems] == [("unknown-instruction", 5)]
    assert dockerfile.parse("RUN x\n").problems[0].kind == "before-from"


def test_substitute() -> None:
    values = {"A": "x"}
    assert dockerfile.substitute("${A}-${B:-d}-${A:+y}-$A", values) == "x-d-y-x"
    assert dockerfile.substitute("$TARGETARCH", {}, keep=("TARGETARCH",)) == "$TARGETARCH"
    assert [n for n, _ in dockerfile.variables("a \\$NOT ${X%%-*} $Y")] == ["X", "Y"]


def test_a_tab_after_the_keyword() -> None:
    df = dockerfile.parse("FROM debian\nRUN\tapt-get update\n")
    assert not df.problems
    assert [(i.keyword, i.rest) for i in df.stages[0].instructions] == [("RUN", "apt-get update")]


PER_PLATFORM = """\
ARG DEBUG
FROM --platform=$BUILDPLATFORM golang:1.19 AS build
FROM scratch AS bin-linux
COPY --from=build /out/app /app
FROM scratch AS bin-windows
COPY --from=build /out/app.exe /app.exe
FROM bin-$TARGETOS${DEBUG:+-debug} AS bin
FROM ${TARGETOS} AS odd
FROM alpine AS tools-arm64
FROM alpine AS tools-amd64
FROM scratch AS last
COPY --from=tools-${TARGETARCH} /bin/sh /sh
"""


def test_stage_names_built_from_platform_args_resolve_per_platform() -> None:
    df = dockerfile.parse(PER_PLATFORM)
    assert df.platform_dependent()
    assert df.stage("bin").base_stage is None  # unresolved until a platform is chosen
    assert [s.name for s in df.reachable("bin")] == ["bin"]
    linux = df.for_platform("linux/arm64")
    assert linux.platform_values["TARGETARCH"] == "arm64"
    assert linux.stage("bin").base_stage == linux.stage("bin-linux").index
    assert [s.name for s in linux.reachable("bin")] == ["build", "bin-linux", "bin"]
    assert linux.stage("odd").base_stage is None  # `linux` names no stage: an image
    assert [s.name for s in linux.reachable("last")] == ["tools-arm64", "last"]
    amd64 = df.for_platform("linux/amd64")
    assert [s.name for s in amd64.reachable("last")] == ["tools-amd64", "last"]
    windows = df.for_platform("windows/amd64")
    assert windows.stage("bin").base_stage == windows.stage("bin-windows").index
    # the views share instructions, never the stages the parse made
    assert df.stage("bin").base_stage is None
    assert windows.stage("bin-windows").instructions is df.stage("bin-windows").instructions


def test_no_platform_views_when_no_stage_reference_names_a_platform_arg() -> None:
    assert not dockerfile.parse(TEXT).platform_dependent()
    assert dockerfile.target_values("linux/arm/v7") == {
        "TARGETPLATFORM": "linux/arm/v7", "TARGETOS": "linux", "TARGETARCH": "arm",
        "TARGETVARIANT": "v7"}  # fmt: skip


def test_references_keep_the_operator() -> None:
    assert dockerfile.references("a ${TARGETOS:-linux} $X ${Y%%-*} \\$Z") == [
        ("TARGETOS", ":-linux", 2), ("X", "", 21), ("Y", "%%-*", 24)]  # fmt: skip
