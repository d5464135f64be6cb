"""grader.dockerfile: stages, ARG scopes, reachability, heredocs, continuations."""

from __future__ import annotations

from grader import dockerfile

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
