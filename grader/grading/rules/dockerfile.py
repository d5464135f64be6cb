"""DF2xx: rules about the Dockerfile (checked by ``grader.grading.checks.dockerfile``)."""

from __future__ import annotations

from grader.grading.rules.catalogue import Rule, register

_GOOD_C = """\
FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS build
ARG TARGETARCH
RUN apt-get update \\
 && apt-get install -y --no-install-recommends crossbuild-essential-${TARGETARCH}
COPY hello.c .
RUN case "$TARGETARCH" in \\
      amd64) CC=x86_64-linux-gnu-gcc ;; \\
      arm64) CC=aarch64-linux-gnu-gcc ;; \\
    esac \\
 && $CC -static -O2 -o /hello hello.c

FROM busybox:latest
COPY --from=build /hello /hello
ENTRYPOINT ["/hello"]"""

_GOOD_GO = """\
FROM --platform=$BUILDPLATFORM golang:1.19 AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app .

FROM busybox:latest
COPY --from=build /out/app /app
ENTRYPOINT ["/app"]"""

_CROSS_DOC = (
    "Every stage that ends up in the image (the final stage, the stages it is built FROM, "
    "and the stages it copies from) must produce files for $TARGETPLATFORM. A compile step "
    "belongs in a `FROM --platform=$BUILDPLATFORM` stage that cross-compiles for "
    "$TARGETARCH: Go with `GOOS=$TARGETOS GOARCH=$TARGETARCH` from a declared "
    "`ARG TARGETOS TARGETARCH`; C with a cross compiler chosen by $TARGETARCH "
    "(`gcc-aarch64-linux-gnu`, `crossbuild-essential-$TARGETARCH`), or tonistiigi/xx "
    "(`xx-clang`, `xx-apt-get`). A Dockerfile that compiles nothing passes."
)

# --- reading the Dockerfile --------------------------------------------------------------

DOCKERFILE_MISSING = register(Rule(
    id="DF201", name="dockerfile-missing", criterion="cross-compile", severity="error",
    message="{path} does not exist{detail}",
    hint="Add the Dockerfile build.sh builds (by default `Dockerfile` next to build.sh).",
    anti_pattern="docker buildx build -f docker/Dockerfile .   # no docker/Dockerfile",
    best_practice="docker buildx build -f Dockerfile .",
))  # fmt: skip

DOCKERFILE_UNREADABLE = register(Rule(
    id="DF202", name="dockerfile-unreadable", criterion="cross-compile", severity="error",
    message="{path} cannot be read: {reason}",
    hint="The Dockerfile must be a UTF-8 text file (at most 256 KB) inside the submission.",
    anti_pattern="ln -s ../../other/Dockerfile Dockerfile   # outside the submission",
    best_practice=_GOOD_GO,
    doc="Empty, binary, non-UTF-8 and oversized files and symbolic links that leave the "
        "submission folder are refused without being followed.",
))  # fmt: skip

UNKNOWN_INSTRUCTION = register(Rule(
    id="DF203", name="unknown-instruction", criterion="cross-compile", severity="error",
    message="unknown instruction {keyword}: the build stops here",
    hint="Use Dockerfile instructions only (FROM, RUN, COPY, ARG, ENV, ...); a shell command "
         "needs `RUN` in front, and a continued line needs a trailing backslash.",
    anti_pattern="FROM debian:bookworm-slim\nRUN apt-get update\napt-get install -y gcc",
    best_practice="FROM debian:bookworm-slim\nRUN apt-get update \\\n && apt-get install -y gcc",
))  # fmt: skip

DOCKERFILE_SYNTAX = register(Rule(
    id="DF204", name="dockerfile-syntax", criterion="cross-compile", severity="error",
    message="{detail}",
    hint="Fix the Dockerfile so BuildKit can read it (`docker buildx build --check` in newer "
         "buildx releases reports the same).",
    anti_pattern="RUN echo hi       # before any FROM\nFROM busybox AS a b",
    best_practice="FROM busybox:latest AS app\nRUN echo hi",
))  # fmt: skip

# --- cross-compilation ---------------------------------------------------------------------

COMPILE_UNDER_EMULATION = register(Rule(
    id="DF210", name="compile-under-emulation", criterion="cross-compile", severity="warning",
    message="`{command}` compiles in {stage}, which runs on the target platform: every "
            "platform but the build machine's compiles under QEMU emulation. The binaries are "
            "right, but the compile is several times slower (about 7x on the course engine: "
            "45 s emulated against 6 s cross-compiled for the arm64 half, Lab 05) and the "
            "build fails where no emulator is registered",
    hint="Compile in a `FROM --platform=$BUILDPLATFORM ... AS build` stage with a cross "
         "compiler for $TARGETARCH, then `COPY --from=build` the binary into the final stage.",
    anti_pattern="FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y gcc\n"
                 "COPY hello.c .\nRUN gcc -O2 -o /hello hello.c",
    best_practice=_GOOD_C,
    doc=_CROSS_DOC + " Compiling under emulation is correct, so it costs no points: it is a "
        "warning that shows what the emulated route costs (the challenge's emulated route "
        "passes `cross-compile` with it). `go install x@v` and `cargo install` in such a stage "
        "compile under emulation too.",
))  # fmt: skip

HOST_COMPILER = register(Rule(
    id="DF211", name="host-compiler-on-buildplatform", criterion="cross-compile",
    severity="error",
    message="{stage} runs on $BUILDPLATFORM and `{command}` uses the build "
            "machine's own compiler: every platform gets a binary for the build machine",
    hint="{fix}",
    anti_pattern="FROM --platform=$BUILDPLATFORM golang:1.19 AS build\nRUN go build -o /app .\n"
                 "\nFROM --platform=$BUILDPLATFORM debian:bookworm-slim AS cbuild\n"
                 "RUN apt-get install -y gcc && gcc -o /hello hello.c",
    best_practice=_GOOD_GO,
    doc=_CROSS_DOC,
))  # fmt: skip

UNDECLARED_PLATFORM_ARG = register(Rule(
    id="DF212", name="undeclared-platform-arg", criterion="cross-compile", severity="error",
    message="${name} is used in {stage} without `ARG {name}` in that stage, so "
            "it is empty there{effect}",
    hint="Declare it inside the stage, after FROM: `ARG {name}`.",
    anti_pattern="FROM --platform=$BUILDPLATFORM golang:1.19 AS build\n"
                 "RUN GOARCH=$TARGETARCH go build -o /app .   # GOARCH is empty",
    best_practice="FROM --platform=$BUILDPLATFORM golang:1.19 AS build\nARG TARGETARCH\n"
                  "RUN GOARCH=$TARGETARCH go build -o /app .",
    doc="The automatic platform ARGs are global: usable in FROM lines as they are, but "
        "inside a stage they are empty until redeclared (a stage built FROM another stage "
        "inherits that stage's declarations; checked on the course engine).",
))  # fmt: skip

CONST_PLATFORM_FINAL = register(Rule(
    id="DF213", name="const-platform-final-stage", criterion="cross-compile", severity="error",
    message="{stage} is part of the final image but is pinned to "
            "--platform={value}, so every platform gets {value} files",
    hint="Remove --platform from the final stage (it then follows $TARGETPLATFORM).",
    anti_pattern="FROM --platform=linux/amd64 debian:bookworm-slim\nCOPY --from=build /app /app",
    best_practice="FROM debian:bookworm-slim\nCOPY --from=build /app /app",
    doc="Docker's own build check calls this FromPlatformFlagConstDisallowed.",
))  # fmt: skip

BUILDPLATFORM_FINAL = register(Rule(
    id="DF214", name="buildplatform-final-stage", criterion="cross-compile", severity="error",
    message="{stage} is part of the final image but runs on $BUILDPLATFORM, so "
            "every platform's image gets the build machine's files",
    hint="Only compile stages use --platform=$BUILDPLATFORM; the final stage has no "
         "--platform.",
    anti_pattern="FROM --platform=$BUILDPLATFORM debian:bookworm-slim\nCOPY --from=build /app /app",
    best_practice="FROM debian:bookworm-slim\nCOPY --from=build /app /app",
))  # fmt: skip

FIXED_ARCH_OUTPUT = register(Rule(
    id="DF215", name="fixed-arch-output", criterion="cross-compile", severity="error",
    message="`{command}` in {stage} always builds for one architecture "
            "({why}), not for $TARGETARCH",
    hint="Derive the architecture from $TARGETARCH: `GOARCH=$TARGETARCH`, or choose the "
         'cross compiler with `case "$TARGETARCH" in ...`.',
    anti_pattern="FROM --platform=$BUILDPLATFORM golang:1.19 AS build\n"
                 "RUN GOARCH=arm64 go build -o /app .",
    best_practice=_GOOD_GO,
    doc=_CROSS_DOC,
))  # fmt: skip

SINGLE_ARCH_BASE = register(Rule(
    id="DF216", name="single-arch-base-image", criterion="cross-compile", severity="error",
    message="{image} comes from a single-architecture repository ({repo}/), so "
            "other platforms fail with `no match for platform in manifest`",
    hint="Use the multi-architecture official image: {suggestion}.",
    anti_pattern="FROM arm64v8/debian:bookworm-slim",
    best_practice="FROM debian:bookworm-slim",
))  # fmt: skip

GLOBAL_ARG_NOT_REDECLARED = register(Rule(
    id="DF217", name="global-arg-not-redeclared", criterion="cross-compile",
    severity="warning",
    message="${name} is a global ARG (declared before the first FROM); inside "
            "{stage} it is empty unless redeclared",
    hint="Add `ARG {name}` (no value: it inherits the global default) inside the stage.",
    anti_pattern="ARG VERSION=1.0\nFROM busybox:latest\nRUN echo $VERSION > /version",
    best_practice="ARG VERSION=1.0\nFROM busybox:latest\nARG VERSION\nRUN echo $VERSION > /version",
))  # fmt: skip

ARCH_PINNED_BY_ARG = register(Rule(
    id="DF219", name="arch-pinned-by-arg-default", criterion="cross-compile", severity="error",
    message="`ARG {name}={value}` fixes the architecture in {where}, which every platform "
            "builds: each platform's image gets the {value} files",
    hint="Use the automatic platform ARG instead: `ARG TARGETARCH` and `$TARGETARCH` "
         "(`$TARGETOS`, `$TARGETVARIANT`), which BuildKit sets per platform.",
    anti_pattern="ARG ARCH=amd64\nFROM quay.io/prometheus/busybox-linux-${ARCH}:latest\n"
                 "ARG ARCH=amd64\nCOPY .build/linux-${ARCH}/app /bin/app",
    best_practice="FROM busybox:latest\nARG TARGETOS TARGETARCH\n"
                  "COPY .build/${TARGETOS}-${TARGETARCH}/app /bin/app",
    doc="A build that passes `--build-arg ARCH=...` once per platform works one platform at "
        "a time; `docker buildx build --platform linux/amd64,linux/arm64` builds every "
        "platform with the one value, so the arm64 image holds amd64 files.",
))  # fmt: skip

BUILD_ARCH_PROBE = register(Rule(
    id="DF218", name="build-arch-probe", criterion="cross-compile", severity="warning",
    message="`{command}` in {stage} (on $BUILDPLATFORM) reports the build "
            "machine's architecture, not the target's",
    hint="Use $TARGETARCH (declare `ARG TARGETARCH`) to pick per-target files.",
    anti_pattern="FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS fetch\n"
                 "RUN wget https://example.org/tool-$(uname -m).tar.gz",
    best_practice="FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS fetch\nARG TARGETARCH\n"
                  "RUN wget https://example.org/tool-${TARGETARCH}.tar.gz",
))  # fmt: skip

INSECURE_RUN = register(Rule(
    id="DF220", name="insecure-run-flag", criterion="cross-compile", severity="warning",
    message="RUN {flag} needs an entitlement (`--allow`) and weakens the build's "
            "isolation",
    hint="Drop the flag; a build that needs it will not run on a default builder.",
    anti_pattern="RUN --security=insecure make\nRUN --network=host apt-get update",
    best_practice="RUN make\nRUN apt-get update",
))  # fmt: skip

UNDECLARED_PLATFORM_ARG_UNUSED = register(Rule(
    id="DF221", name="undeclared-platform-arg-no-compile", criterion="cross-compile",
    severity="warning",
    message="${name} is used in {stage} without `ARG {name}` in that stage, so it is empty "
            "there{effect}",
    hint="Declare it inside the stage, after FROM: `ARG {name}`.",
    anti_pattern="FROM busybox:latest\nRUN echo \"built for $TARGETARCH\" > /etc/built-for",
    best_practice="FROM busybox:latest\nARG TARGETARCH\n"
                  "RUN echo \"built for $TARGETARCH\" > /etc/built-for",
    doc="DF212's warning form: the empty value reaches no compiler, no COPY/ADD path and no "
        "ENV, so the image's binaries are not wrong for it. `${TARGETOS:-linux}` (a default) "
        "is never empty and is no finding.",
))  # fmt: skip

LOST_ARM_VARIANT = register(Rule(
    id="DF222", name="lost-arm-variant", criterion="cross-compile", severity="error",
    message="`{command}` in {stage} cross-compiles for {platforms} with {goarm}: Go does not "
            "read $TARGETVARIANT, so the variant is lost (Go 1.19.8 cross-compiling on amd64 "
            "defaults to GOARM=5: software floating point, over 100 times slower at float "
            "arithmetic under qemu-arm in Lab 05)",
    hint="Set GOARM from the variant: declare `ARG TARGETVARIANT` and build with "
         "`GOARM=${TARGETVARIANT#v} go build ...` (empty, and ignored, for amd64 and arm64).",
    anti_pattern="FROM --platform=$BUILDPLATFORM golang:1.19 AS build\nARG TARGETPLATFORM\n"
                 "RUN GOOS=$(echo $TARGETPLATFORM | cut -d/ -f1) \\\n"
                 "    GOARCH=$(echo $TARGETPLATFORM | cut -d/ -f2) \\\n"
                 "    go build -o /app .   # linux/arm/v7 -> GOARCH=arm, v7 dropped",
    best_practice="FROM --platform=$BUILDPLATFORM golang:1.19 AS build\n"
                  "ARG TARGETOS TARGETARCH TARGETVARIANT\n"
                  "RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH "
                  "GOARM=${TARGETVARIANT#v} \\\n    go build -o /app .",
    doc="For `linux/arm/v7` BuildKit sets TARGETARCH=arm and TARGETVARIANT=v7. Splitting "
        "TARGETPLATFORM with `cut -d/ -f2` (a common guide's pattern) or using TARGETARCH "
        "gives `GOARCH=arm` and drops the variant; `${TARGETPLATFORM#*/}` keeps it inside "
        "GOARCH (`arm/v7`), which Go refuses (`unsupported GOOS/GOARCH pair linux/arm/v7`). "
        "Without GOARM the go toolchain uses its own default: checked on the course engine "
        "with golang:1.19 (Debian's Go 1.19.8) on amd64, `go version -m` shows `GOARM=5`. "
        "Such a binary runs on an ARMv7 CPU but emulates floating point in software; a fixed "
        "GOARM is wrong for the other variants a build lists (GOARM=7 code does not run on "
        "an ARMv6 CPU). Only checked when the build asks for a 32-bit ARM platform; "
        "tonistiigi/xx's `xx-go` sets GOARM itself.",
))  # fmt: skip
