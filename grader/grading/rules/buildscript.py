"""BS1xx: rules about build.sh (checked by ``grader.grading.checks.buildscript``)."""

from __future__ import annotations

from grader.grading.rules.catalogue import Rule, register

_GOOD = """\
#!/usr/bin/env bash
set -euo pipefail
IMAGE="${IMAGE:-127.0.0.1:5000/07-challenge/app:latest}"
docker buildx inspect multiplatform >/dev/null 2>&1 \\
  || docker buildx create --name multiplatform --driver docker-container
docker buildx build --builder multiplatform \\
  --platform linux/amd64,linux/arm64 \\
  --provenance=false --push -t "$IMAGE" ."""

# --- reading build.sh ------------------------------------------------------------------------

BUILD_SCRIPT_MISSING = register(Rule(
    id="BS101", name="build-script-missing", criterion="buildx", severity="error",
    message="build.sh is missing from the submission",
    hint="Add build.sh at the top of the submission folder: it builds and pushes the image.",
    anti_pattern="submission/\n  Dockerfile\n  app.c\n  (no build.sh)",
    best_practice="submission/\n  build.sh\n  Dockerfile\n  app.c",
))  # fmt: skip

BUILD_SCRIPT_UNREADABLE = register(Rule(
    id="BS102", name="build-script-unreadable", criterion="buildx", severity="error",
    message="build.sh cannot be read as a shell script: {reason}",
    hint="build.sh must be a UTF-8 text file (at most 64 KB) inside the submission folder.",
    anti_pattern="ln -s /etc/passwd build.sh     # a link out of the submission\n"
                 "cp build.docx build.sh         # binary content",
    best_practice=_GOOD,
    doc="Empty, binary (NUL bytes), non-UTF-8, oversized (> 64 KB) files, directories and "
        "symbolic links that leave the submission folder are refused without being followed.",
))  # fmt: skip

BUILD_SCRIPT_CRLF = register(Rule(
    id="BS103", name="build-script-crlf", criterion="buildx", severity="error",
    message="build.sh has Windows (CRLF) line endings: bash reads the \\r as part of each "
            "command (`$'\\r': command not found`)",
    hint="Convert the file to LF line endings: `sed -i 's/\\r$//' build.sh` "
         "(or set your editor to LF).",
    anti_pattern="docker buildx build --push .\\r\\n   # saved by a Windows editor",
    best_practice="docker buildx build --push .\\n",
))  # fmt: skip

SHELL_SYNTAX_ERROR = register(Rule(
    id="BS104", name="shell-syntax-error", criterion="buildx", severity="error",
    message="build.sh has a syntax error bash stops at: {detail}",
    hint="Run `bash -n build.sh` and fix the line it reports.",
    anti_pattern='docker buildx build --platform "linux/amd64,linux/arm64 --push .',
    best_practice='docker buildx build --platform "linux/amd64,linux/arm64" --push .',
))  # fmt: skip

# BS105 (shell-parse-fallback: bashlex could not read build.sh) was retired with bashlex: the
# project's own parser reads every script. Its id is not reused.

UNANALYSED_COMMAND = register(Rule(
    id="BS106", name="unanalysed-command", criterion="buildx", severity="info",
    message="{detail}: the static checks cannot see what it runs",
    hint="Write the build commands in build.sh itself; the engine checks still run it.",
    anti_pattern='eval "$BUILD_COMMAND"\nsource ./lib.sh',
    best_practice=_GOOD,
))  # fmt: skip

UNSET_VARIABLE = register(Rule(
    id="BS107", name="unset-variable", criterion="buildx", severity="error",
    message="${name} is read under `set -u` but build.sh never sets {name}: bash stops here "
            "with `{name}: unbound variable`",
    hint='Set it before its first use, with a default: `{name}="${{name}:-...}"`.',
    anti_pattern='set -euo pipefail\n'
                 'docker buildx inspect "$BUILDER" >/dev/null 2>&1 \\\n'
                 '  || docker buildx create --name "$BUILDER" --driver docker-container',
    best_practice='set -euo pipefail\nBUILDER="${BUILDER:-multiplatform}"\n'
                  'docker buildx inspect "$BUILDER" >/dev/null 2>&1 \\\n'
                  '  || docker buildx create --name "$BUILDER" --driver docker-container',
    doc="The static self-check cannot see that a variable is empty at run time, so the build "
        "seemed fine until bash stopped at the first `$NAME`. Only names the script never "
        "mentions except as `$NAME` count (so `read NAME`, `getopts`, `printf -v` are not "
        "flagged), and names every environment sets (`HOME`, `PATH`, `PWD`...) are exempt. "
        "`${NAME:-}`, `${NAME-x}` and `${NAME:+x}` are safe under `set -u`.",
))  # fmt: skip

NO_BUILDX_BUILD = register(Rule(
    id="BS110", name="no-buildx-build", criterion="buildx", severity="error",
    message="build.sh never runs `docker buildx build`",
    hint="Build with `docker buildx build --platform linux/amd64,linux/arm64 ... --push .`.",
    anti_pattern="#!/bin/sh\necho 'nothing to build'",
    best_practice=_GOOD,
))  # fmt: skip

PLAIN_DOCKER_BUILD = register(Rule(
    id="BS111", name="plain-docker-build", criterion="buildx", severity="error",
    message="build.sh builds with `{form}`, not `docker buildx build`",
    hint="Replace it with `docker buildx build`: buildx builds several platforms in one go "
         "and pushes one multi-platform index.",
    anti_pattern="docker build -t myrepo/app:latest .",
    best_practice="docker buildx build --platform linux/amd64,linux/arm64 "
                  "-t myrepo/app:latest --push .",
))  # fmt: skip

BUILDX_NOT_RUN = register(Rule(
    id="BS112", name="buildx-not-run", criterion="buildx", severity="error",
    message="`docker buildx build` is there but never runs: {how}",
    hint="Make it a real command (not echoed, commented out, in a heredoc, after `exit`, or "
         "in a function nobody calls).",
    anti_pattern='echo "docker buildx build --platform linux/amd64,linux/arm64 --push ."\n'
                 "# docker buildx build --push .\n"
                 "build() { docker buildx build --push .; }   # never called",
    best_practice="build() { docker buildx build --platform linux/amd64,linux/arm64 "
                  "--push -t \"$IMAGE\" .; }\nbuild",
))  # fmt: skip

OPAQUE_BUILD_ARGS = register(Rule(
    id="BS113", name="opaque-build-arguments", criterion="buildx", severity="warning",
    message="{names} could add any flags to the build; the grader reads "
            "build.sh as if they were empty",
    hint="Write the flags out, or give the variable a default in build.sh.",
    anti_pattern="docker buildx build $EXTRA_ARGS -t \"$IMAGE\" .",
    best_practice='EXTRA_ARGS="${EXTRA_ARGS:---provenance=false}"\n'
                  'docker buildx build $EXTRA_ARGS -t "$IMAGE" .',
))  # fmt: skip

UNKNOWN_BUILD_FLAG = register(Rule(
    id="BS114", name="unknown-build-flag", criterion="buildx", severity="error",
    message="`docker buildx build` has no {flag} option: buildx stops with "
            "`unknown flag: {flag}`{suggestion}",
    hint="Remove {flag}; `docker buildx build --help` lists the options. Every platform in "
         "--platform already builds in parallel.",
    anti_pattern="docker buildx build --parallel --platform linux/amd64,linux/arm64 --push .",
    best_practice="docker buildx build --platform linux/amd64,linux/arm64 --push .",
    doc="The options are read from the course's one option table "
        "(`grader/docker/options.py`), which holds every flag of buildx 0.13.1 and the flags "
        "newer releases added (`--check`, `--call`...), so a flag from today's docs is never "
        "reported here. `--parallel` is a `docker compose` flag some guides copy into buildx.",
))  # fmt: skip

# --- platforms ---------------------------------------------------------------------------

NO_PLATFORM_FLAG = register(Rule(
    id="BS120", name="no-platform-flag", criterion="platforms", severity="error",
    message="`docker buildx build` has no --platform, so it builds only for the "
            "builder's own platform",
    hint="Add `--platform linux/amd64,linux/arm64`.",
    anti_pattern="docker buildx build -t \"$IMAGE\" --push .",
    best_practice="docker buildx build --platform linux/amd64,linux/arm64 -t \"$IMAGE\" --push .",
))  # fmt: skip

MISSING_PLATFORM = register(Rule(
    id="BS121", name="missing-platform", criterion="platforms", severity="error",
    message="--platform {platforms} does not include {missing}",
    hint="List every platform the image must run on: `--platform linux/amd64,linux/arm64`.",
    anti_pattern="docker buildx build --platform linux/arm64 --push .",
    best_practice="docker buildx build --platform linux/amd64,linux/arm64 --push .\n"
                  "# or: --platform linux/amd64 --platform linux/arm64",
))  # fmt: skip

UNRESOLVED_PLATFORM = register(Rule(
    id="BS122", name="unresolved-platform", criterion="platforms", severity="error",
    message="--platform {value} depends on {names}, which build.sh never sets",
    hint="Give the variable a default in build.sh: "
         '`PLATFORMS="${PLATFORMS:-linux/amd64,linux/arm64}"`.',
    anti_pattern='docker buildx build --platform "$PLATFORMS" --push .',
    best_practice='PLATFORMS="${PLATFORMS:-linux/amd64,linux/arm64}"\n'
                  'docker buildx build --platform "$PLATFORMS" --push .',
))  # fmt: skip

PLATFORM_BUILD_ARG = register(Rule(
    id="BS123", name="platform-build-arg-override", criterion="platforms", severity="error",
    message="--build-arg {name}=... overrides the platform argument BuildKit sets for each "
            "platform: every platform's build now sees {value}",
    hint="Remove `--build-arg {name}=...`; choose platforms with `--platform` and read "
         "`$BUILDPLATFORM`/`$TARGETARCH` in the Dockerfile (`ARG TARGETARCH`).",
    anti_pattern="docker buildx build --platform linux/amd64,linux/arm64 \\\n"
                 "  --build-arg TARGETPLATFORM=linux/arm64 --push .",
    best_practice="docker buildx build --platform linux/amd64,linux/arm64 --push .\n"
                  "# Dockerfile: FROM --platform=$BUILDPLATFORM golang:1.19 AS build\n"
                  "#             ARG TARGETOS TARGETARCH",
    doc="BuildKit fills BUILDPLATFORM, TARGETPLATFORM and their OS/ARCH/VARIANT parts per "
        "platform. They are ARGs, so `--build-arg` can override them, and then the amd64 "
        "build compiles for arm64 (or runs its build stage emulated): lab 05, section 3.",
))  # fmt: skip

# --- push ------------------------------------------------------------------------------------

NOT_PUSHED = register(Rule(
    id="BS130", name="not-pushed", criterion="push", severity="error",
    message="the multi-platform build is not pushed ({how})",
    hint="Add `--push` (or `--output type=registry`): only a registry keeps the "
         "multi-platform index.",
    anti_pattern="docker buildx build --platform linux/amd64,linux/arm64 -t \"$IMAGE\" .",
    best_practice="docker buildx build --platform linux/amd64,linux/arm64 -t \"$IMAGE\" --push .",
))  # fmt: skip

LOAD_MULTI_PLATFORM = register(Rule(
    id="BS131", name="load-multi-platform", criterion="push", severity="error",
    message="{how} with {count} platforms: loading into the local image store "
            "pushes nothing, and on the classic image store it fails (`docker exporter does "
            "not currently support exporting manifest lists`)",
    hint="Push the multi-platform build (`--push`); use `--load` only with a single "
         "`--platform` for local testing.",
    anti_pattern="docker buildx build --platform linux/amd64,linux/arm64 --load .",
    best_practice="docker buildx build --platform linux/amd64,linux/arm64 --push -t \"$IMAGE\" .\n"
                  "docker buildx build --platform linux/arm64 --load -t app:test .",
    doc="With the containerd image store docker can load a multi-platform image, but it is "
        "still not pushed, and learners' machines with the classic store fail outright.",
))  # fmt: skip

PUSH_WITHOUT_TAG = register(Rule(
    id="BS132", name="push-without-tag", criterion="push", severity="error",
    message="the build pushes but names no image, and buildx stops with "
            "`tag is needed when pushing to registry`",
    hint='Name the image: `-t "$IMAGE"`.',
    anti_pattern="docker buildx build --platform linux/amd64,linux/arm64 --push .",
    best_practice='docker buildx build --platform linux/amd64,linux/arm64 --push -t "$IMAGE" .',
))  # fmt: skip

PUSHED_TAG_UNRESOLVED = register(Rule(
    id="BS133", name="pushed-tag-unresolved", criterion="push", severity="info",
    message="the pushed image {value} depends on {names}, which build.sh never "
            "sets; the registry checks need `--image`",
    hint='Give IMAGE a default (`IMAGE="${IMAGE:-127.0.0.1:5000/07-challenge/app:latest}"`) '
         "or run `grader check --image REF`.",
    anti_pattern='docker buildx build --platform linux/amd64,linux/arm64 --push -t "$IMAGE" .',
    best_practice='IMAGE="${IMAGE:-127.0.0.1:5000/07-challenge/app:latest}"\n'
                  'docker buildx build --platform linux/amd64,linux/arm64 --push -t "$IMAGE" .',
))  # fmt: skip

# --- provenance --------------------------------------------------------------------------

PROVENANCE_NOT_DISABLED = register(Rule(
    id="BS140", name="provenance-not-disabled", criterion="provenance", severity="error",
    message="attestations are not disabled: buildx adds a provenance attestation "
            "by default (an extra `unknown/unknown` entry in the index)",
    hint="Add `--provenance=false` (or export BUILDX_NO_DEFAULT_ATTESTATIONS=1).",
    anti_pattern="docker buildx build --platform linux/amd64,linux/arm64 --push -t \"$IMAGE\" .",
    best_practice="docker buildx build --platform linux/amd64,linux/arm64 --provenance=false "
                  "--push -t \"$IMAGE\" .",
    doc="Provenance attestations are on by default since buildx 0.10. They make BuildKit "
        "push an OCI index with `unknown/unknown` entries that older registries and tools "
        "(`docker manifest create`) reject. `--provenance false` (space-separated) and "
        "`BUILDX_NO_DEFAULT_ATTESTATIONS=1` (exported) pass too.",
))  # fmt: skip

ATTESTATION_ENABLED = register(Rule(
    id="BS141", name="attestation-enabled", criterion="provenance", severity="error",
    message="{flag} turns an attestation on",
    hint="Use `--provenance=false` and drop `--sbom=true` / `--attest ...` for this challenge.",
    anti_pattern="docker buildx build --provenance=true --push .\n"
                 "docker buildx build --provenance=false --sbom=true --push .",
    best_practice="docker buildx build --provenance=false --push .",
))  # fmt: skip

ATTESTATION_ENV_NOT_EXPORTED = register(Rule(
    id="BS142", name="attestation-env-not-exported", criterion="provenance", severity="error",
    message="BUILDX_NO_DEFAULT_ATTESTATIONS is set but not exported, so docker "
            "never sees it",
    hint="`export BUILDX_NO_DEFAULT_ATTESTATIONS=1`, or use `--provenance=false`.",
    anti_pattern="BUILDX_NO_DEFAULT_ATTESTATIONS=1\ndocker buildx build --push .",
    best_practice="export BUILDX_NO_DEFAULT_ATTESTATIONS=1\ndocker buildx build --push .",
))  # fmt: skip

# --- builder ---------------------------------------------------------------------------------

_BUILDER_DOC = (
    "Decision: the builder criterion passes when the build runs on a builder that build.sh "
    "creates idempotently (guarded create, `rm ... || true` then create, "
    "`create ... || true`, create-or-use) or explicitly selects (`--builder NAME`, "
    "`docker buildx use NAME`, `BUILDX_BUILDER`). Selecting `default` passes with a note: "
    "the docker driver builds several platforms only with the containerd image store, which "
    "the course engine has (the `build` criterion proves it). Leaving the builder to "
    "whatever is current on the machine fails: the challenge asks to create or select one."
)

BUILDER_CREATE_NOT_IDEMPOTENT = register(Rule(
    id="BS150", name="builder-create-not-idempotent", criterion="builder", severity="error",
    message="`docker buildx create --name {name}` fails on the second run "
            "(`existing instance for \"{name}\" but no append mode`){errexit}",
    hint="Guard it: `docker buildx inspect {name} >/dev/null 2>&1 || "
         "docker buildx create --name {name} ...`.",
    anti_pattern="docker buildx create --name multiplatform --use",
    best_practice="docker buildx inspect multiplatform >/dev/null 2>&1 \\\n"
                  "  || docker buildx create --name multiplatform\n"
                  "docker buildx use multiplatform",
    doc=_BUILDER_DOC,
))  # fmt: skip

BUILDER_RM_UNGUARDED = register(Rule(
    id="BS151", name="builder-rm-unguarded", criterion="builder", severity="error",
    message="`docker buildx rm {name}` fails when the builder does not exist "
            "(the first run on a fresh machine)",
    hint="`docker buildx rm {name} 2>/dev/null || true`.",
    anti_pattern="docker buildx rm multiplatform\ndocker buildx create --name multiplatform --use",
    best_practice="docker buildx rm multiplatform 2>/dev/null || true\n"
                  "docker buildx create --name multiplatform --use",
))  # fmt: skip

NO_BUILDER_SELECTED = register(Rule(
    id="BS152", name="no-builder-selected", criterion="builder", severity="error",
    message="build.sh neither creates nor selects a builder: the build runs on "
            "whatever builder is current on the machine",
    hint="Create one idempotently (`docker buildx inspect mp >/dev/null 2>&1 || docker buildx "
         "create --name mp`) and build with `--builder mp`, or select one explicitly "
         "(`--builder default` on an engine with the containerd image store).",
    anti_pattern="docker buildx build --platform linux/amd64,linux/arm64 --push .",
    best_practice=_GOOD,
    doc=_BUILDER_DOC,
))  # fmt: skip

BUILDER_CREATED_NOT_USED = register(Rule(
    id="BS153", name="builder-created-not-used", criterion="builder", severity="error",
    message="builder {name} is created but the build does not use it",
    hint="Add `--use` to the create, run `docker buildx use {name}`, or build with "
         "`--builder {name}`.",
    anti_pattern="docker buildx create --name mp || true\ndocker buildx build --push .",
    best_practice="docker buildx create --name mp || true\n"
                  "docker buildx build --builder mp --push .",
))  # fmt: skip

UNNAMED_BUILDER = register(Rule(
    id="BS154", name="unnamed-builder-create", criterion="builder", severity="warning",
    message="`docker buildx create` without --name makes another builder on "
            "every run; it does not fail, but builders pile up",
    hint="Name it and guard the create: `docker buildx inspect mp >/dev/null 2>&1 || "
         "docker buildx create --name mp --use`.",
    anti_pattern="docker buildx create --use",
    best_practice="docker buildx inspect mp >/dev/null 2>&1 || docker buildx create --name mp\n"
                  "docker buildx use mp",
    doc="Idempotent in the sense the challenge asks (running build.sh twice does not fail), "
        "so it does not fail the criterion.",
))  # fmt: skip

BUILDER_NEVER_CREATED = register(Rule(
    id="BS155", name="builder-never-created", criterion="builder", severity="error",
    message="builder {name} is used but build.sh never creates it: on a fresh "
            "machine `{command}` fails",
    hint="Create it in build.sh first (guarded), or use `default`.",
    anti_pattern="docker buildx use mybuilder   # made by hand once, on one laptop",
    best_practice="docker buildx inspect mybuilder >/dev/null 2>&1 \\\n"
                  "  || docker buildx create --name mybuilder\n"
                  "docker buildx use mybuilder",
))  # fmt: skip

DEFAULT_BUILDER = register(Rule(
    id="BS156", name="default-builder", criterion="builder", severity="info",
    message="the build uses the `default` builder (docker driver): it builds "
            "several platforms only with the containerd image store",
    hint="Fine on the course engine; on a machine with the classic image store create a "
         "docker-container builder instead.",
    anti_pattern="# classic image store:\ndocker buildx build --builder default "
                 "--platform linux/amd64,linux/arm64 --push .",
    best_practice="docker buildx build --builder default --platform linux/amd64,linux/arm64 "
                  "--push .   # containerd image store",
    doc=_BUILDER_DOC,
))  # fmt: skip

DOCKER_DRIVER_CREATE = register(Rule(
    id="BS157", name="docker-driver-create", criterion="builder", severity="error",
    message="`docker buildx create --driver docker` always fails (`additional "
            "instances of driver \"docker\" cannot be created`)",
    hint="Use `--driver docker-container` (the default), or select the existing `default` "
         "builder.",
    anti_pattern="docker buildx create --name mp --driver docker",
    best_practice="docker buildx create --name mp --driver docker-container",
))  # fmt: skip
