"""RN4xx: what happens when the submission runs: build.sh in the sandbox, the docker commands
it sends through the grading gate, the Dockerfile's own build and the image's start.

Ids are never renumbered. RN40x: the sandboxed script; RN41x: docker commands the gate
refused or changed; RN42x: the submission's files; RN43x: the build; RN44x: running the
image; RN45x: the grading machine itself (status ``error``, never the learner's fault).
"""

from __future__ import annotations

from grader.grading.rules.catalogue import Rule, register

SANDBOX_TIMEOUT = register(
    Rule(
        id="RN401",
        name="script-timeout",
        criterion="idempotent",
        severity="error",
        message="build.sh run {run} did not finish within {seconds:g} s and was stopped",
        hint="Make build.sh finish on its own: no endless loops, no `sleep`, no commands that "
        "wait for input; a two-platform build of the challenge takes a few minutes at most.",
        anti_pattern="while true; do docker buildx build .; done",
        best_practice='docker buildx build --platform linux/amd64,linux/arm64 -t "$IMAGE" --push .',
    )
)

SANDBOX_EXIT = register(
    Rule(
        id="RN402",
        name="script-failed",
        criterion="idempotent",
        severity="error",
        message="build.sh run {run} exited with status {status}: {tail}",
        hint="Run `bash build.sh` twice in a row yourself; the second run must succeed too "
        "(guard `docker buildx create` so it does not fail when the builder exists).",
        anti_pattern="docker buildx create --name multi --use   # fails on the second run",
        best_practice="docker buildx inspect multi >/dev/null 2>&1 || "
        "docker buildx create --name multi\ndocker buildx use multi",
    )
)

OUTPUT_LIMIT = register(
    Rule(
        id="RN403",
        name="output-limit",
        criterion="idempotent",
        severity="error",
        message="build.sh run {run} wrote more than {limit} of output; further output was refused",
        hint="Do not print large files or endless output; a build log is a few hundred KB.",
        anti_pattern="yes   # or: cat /dev/urandom",
        best_practice="docker buildx build --progress=plain ... 2>&1 | tail -n 50",
    )
)

PROCESS_LIMIT = register(
    Rule(
        id="RN404",
        name="process-limit",
        criterion="idempotent",
        severity="error",
        message="build.sh run {run} tried to start more than {limit} processes at once and "
        "was refused (a fork bomb?)",
        hint="Start processes one after another; build.sh needs only a handful.",
        anti_pattern=":(){ :|:& };:",
        best_practice="docker buildx build ...   # one command at a time",
    )
)

MEMORY_LIMIT = register(
    Rule(
        id="RN405",
        name="memory-limit",
        criterion="idempotent",
        severity="error",
        message="build.sh run {run} used more than {limit} of memory and was stopped",
        hint="build.sh itself should only start docker commands; the build runs in the "
        "engine, not in the script.",
        anti_pattern="data=$(cat /dev/zero | head -c 2G)",
        best_practice="docker buildx build ...",
    )
)

NOT_A_SCRIPT = register(
    Rule(
        id="RN406",
        name="not-a-script",
        criterion="idempotent",
        severity="error",
        message="build.sh was not run: {why}",
        hint="build.sh must be a UTF-8 text shell script (start it with `#!/usr/bin/env bash`).",
        anti_pattern="(a compiled binary or a zip file saved as build.sh)",
        best_practice="#!/usr/bin/env bash\nset -euo pipefail\ndocker buildx build ...",
    )
)

NO_BUILD = register(
    Rule(
        id="RN407",
        name="script-no-build",
        criterion="idempotent",
        severity="error",
        message="build.sh ran no `docker buildx build` that succeeded, so there is nothing "
        "to repeat",
        hint="build.sh must build (and push) the image with `docker buildx build`.",
        anti_pattern="echo docker buildx build .   # prints the command, runs nothing",
        best_practice='docker buildx build --platform linux/amd64,linux/arm64 -t "$IMAGE" --push .',
    )
)

SANDBOX_UNAVAILABLE = register(
    Rule(
        id="RN408",
        name="sandbox-unavailable",
        criterion="idempotent",
        severity="error",
        message="build.sh was not run: the grading sandbox cannot start here ({why})",
        hint="Instructor: install bubblewrap (`apt-get install bubblewrap`, or `./course up`) "
        "and grade as root; untrusted scripts are never run without the sandbox.",
        anti_pattern="(grading on a machine without bwrap)",
        best_practice="./course up   # installs bubblewrap with the engine",
    )
)

REGISTRY_REFUSED = register(
    Rule(
        id="RN409",
        name="registry-refused",
        criterion="idempotent",
        severity="error",
        message="the grading registry refused `{request}` ({status}): {why}",
        hint='Push only to your own repository "$GRADER_REPOSITORY/<name>:<tag>", and '
        "build only from base images (library/) or your own images.",
        anti_pattern="FROM 127.0.0.1:5000/another-learner/app",
        best_practice='docker buildx build -t "${GRADER_REPOSITORY:-myuser}/app" --push .',
    )
)

COMMAND_REFUSED = register(
    Rule(
        id="RN410",
        name="docker-command-refused",
        criterion="idempotent",
        severity="error",
        message="`{command}` was refused during grading: {why}",
        hint="build.sh may use `docker buildx build/create/use/inspect/ls/rm/imagetools`, "
        "`docker manifest inspect`, `docker run`, `docker push` and `docker login` to the "
        "grading registry; nothing else is needed for the challenge.",
        anti_pattern="docker buildx prune -af\ndocker system prune -af",
        best_practice="docker buildx build --platform linux/amd64,linux/arm64 --push .",
    )
)

PRIVILEGED = register(
    Rule(
        id="RN411",
        name="privileged-container",
        criterion="idempotent",
        severity="error",
        message="`{command}` was refused: {option} gives the container power over the "
        "grading machine",
        hint="Run the image as it is: `docker run --rm --platform linux/arm64 IMAGE`; the "
        "challenge needs no privileges, capabilities or devices.",
        anti_pattern="docker run --privileged --rm IMAGE",
        best_practice="docker run --rm --platform linux/arm64 IMAGE",
    )
)

HOST_MOUNT = register(
    Rule(
        id="RN412",
        name="host-mount",
        criterion="idempotent",
        severity="error",
        message="`{command}` was refused: {option} mounts files of the grading machine into "
        "a container",
        hint="Put what the container needs into the image with COPY; `-v`/`--mount` of host "
        "paths, named volumes and the Docker socket are not allowed.",
        anti_pattern="docker run -v /:/host IMAGE",
        best_practice="COPY app /app   # in the Dockerfile",
    )
)

HOST_NAMESPACE = register(
    Rule(
        id="RN413",
        name="host-namespace",
        criterion="idempotent",
        severity="error",
        message="`{command}` was refused: {option} shares the grading machine's "
        "network, processes or ports",
        hint="Use the default (bridge) network and no published ports; `--network host`, "
        "`--pid host`, `--ipc host` and `-p` are not allowed.",
        anti_pattern="docker run --network host IMAGE",
        best_practice="docker run --rm IMAGE",
    )
)

PUSH_OUTSIDE = register(
    Rule(
        id="RN414",
        name="push-outside-repository",
        criterion="idempotent",
        severity="error",
        message="`{command}` was refused: it pushes to {target}, outside your repository {own}",
        hint="Push only to your own repository: tag the image "
        '"$GRADER_REPOSITORY/<name>:<tag>" (set in the grading sandbox).',
        anti_pattern="docker buildx build -t 127.0.0.1:5000/another-learner/app --push .",
        best_practice='docker buildx build -t "${GRADER_REPOSITORY:-myuser}/app" --push .',
    )
)

TAG_REWRITTEN = register(
    Rule(
        id="RN415",
        name="tag-rewritten",
        criterion="idempotent",
        severity="info",
        message="{original} was tagged as {rewritten} (grading pushes only to your own repository)",
        hint="Nothing to change; to choose the name yourself, tag "
        '"${GRADER_REPOSITORY:-myuser}/<name>:<tag>".',
        anti_pattern="docker buildx build -t myuser/app --push .   # graded as REGISTRY/you/app",
        best_practice='docker buildx build -t "${GRADER_REPOSITORY:-myuser}/app" --push .',
    )
)

BUILD_ENTITLEMENT = register(
    Rule(
        id="RN416",
        name="build-entitlement",
        criterion="idempotent",
        severity="error",
        message="`{command}` was refused: {option} lets the build reach the grading machine",
        hint="Drop `--allow`, `--network host`, `--ssh` and `--cgroup-parent`; a "
        "multi-platform build needs none of them.",
        anti_pattern="docker buildx build --allow security.insecure .",
        best_practice="docker buildx build --platform linux/amd64,linux/arm64 .",
    )
)

HOST_PATH = register(
    Rule(
        id="RN417",
        name="path-outside-submission",
        criterion="idempotent",
        severity="error",
        message="`{command}` was refused: {option} {path} is outside the submission directory",
        hint="Build contexts, Dockerfiles, secrets and output files must be inside the "
        "submission directory; use relative paths such as `.` and `Dockerfile`.",
        anti_pattern="docker buildx build --secret id=cfg,src=$HOME/.docker/config.json .",
        best_practice="docker buildx build -f Dockerfile .",
    )
)

LOGIN_ELSEWHERE = register(
    Rule(
        id="RN418",
        name="login-elsewhere",
        criterion="idempotent",
        severity="error",
        message="`{command}` was refused: during grading only the grading registry "
        "{registry} may be logged in to",
        hint="Do not log in to Docker Hub from build.sh; keep credentials out of the script "
        "and let the grader provide the registry.",
        anti_pattern="docker login -u me -p secret",
        best_practice="# no login: the grading registry needs none",
    )
)

BUILDER_SUBSTITUTED = register(
    Rule(
        id="RN419",
        name="builder-substituted",
        criterion="idempotent",
        severity="info",
        message="builds ran on the grading engine's builder {builder!r} instead of {asked!r}",
        hint="Nothing to change: your builder was created and selected as written; the "
        "grading machine builds every submission on one shared multi-platform builder.",
        anti_pattern="(informational)",
        best_practice="docker buildx build --builder multi ...",
    )
)

SYMLINK_OUTSIDE = register(
    Rule(
        id="RN420",
        name="symlink-outside",
        criterion="idempotent",
        severity="error",
        message="{path} is a symbolic link to {target}, outside the submission; it was left out",
        hint="Submit real files, not links to files elsewhere on your machine.",
        anti_pattern="ln -s /etc/passwd Dockerfile",
        best_practice="cp ../shared/Dockerfile Dockerfile",
    )
)

TOO_LARGE = register(
    Rule(
        id="RN422",
        name="submission-too-large",
        criterion="idempotent",
        severity="error",
        message="the submission is larger than {limit} ({what}); it was not run",
        hint="Submit build.sh, the Dockerfile and the app's sources only: no build outputs, "
        "images, virtual environments or .git history of other projects.",
        anti_pattern="(a 2 GB image.tar next to build.sh)",
        best_practice="build.sh  Dockerfile  main.go  go.mod",
    )
)

INSECURE_DOCKERFILE = register(
    Rule(
        id="RN421",
        name="insecure-run",
        criterion="build",
        severity="error",
        message="the Dockerfile uses `RUN {flag}`, which would reach the grading machine; "
        "it was not built",
        hint="Remove `--security=insecure` / `--network=host` from RUN; the challenge "
        "builds without privileges.",
        anti_pattern="RUN --security=insecure mount -t proc proc /mnt",
        best_practice="RUN make",
    )
)

BUILD_FAILED = register(
    Rule(
        id="RN430",
        name="build-failed",
        criterion="build",
        severity="error",
        message="the Dockerfile did not build for {platforms}: {tail}",
        hint="Run `docker buildx build --platform linux/amd64,linux/arm64 .` yourself and fix "
        "the first error it prints.",
        anti_pattern="FROM arm64v8/python:3.11-slim   # one architecture only",
        best_practice="FROM python:3.11-slim   # a multi-platform base",
    )
)

BUILD_TIMEOUT = register(
    Rule(
        id="RN431",
        name="build-timeout",
        criterion="build",
        severity="error",
        message="the Dockerfile did not finish building within {seconds:g} s",
        hint="Cross-compile in a `FROM --platform=$BUILDPLATFORM` stage instead of emulating, "
        "and never wait in a RUN step.",
        anti_pattern="RUN sleep infinity",
        best_practice="FROM --platform=$BUILDPLATFORM golang:1.19 AS build",
    )
)

NO_DOCKERFILE = register(
    Rule(
        id="RN432",
        name="no-dockerfile",
        criterion="build",
        severity="error",
        message="there is no Dockerfile to build ({path})",
        hint="Submit the Dockerfile next to build.sh.",
        anti_pattern="(submission without a Dockerfile)",
        best_practice="Dockerfile next to build.sh",
    )
)

RUN_FAILED = register(
    Rule(
        id="RN440",
        name="image-failed",
        criterion="runs",
        severity="error",
        message="`docker run --rm --platform {platform} {image}` exited with status "
        "{status}: {tail}",
        hint="The image's default command must start and exit 0 on every platform; an "
        "`exec format error` means the binary is for another architecture.",
        anti_pattern="COPY --from=build /out/app-amd64 /app   # same binary for every platform",
        best_practice="RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app .",
    )
)

RUN_TIMEOUT = register(
    Rule(
        id="RN441",
        name="image-timeout",
        criterion="runs",
        severity="error",
        message="`docker run --rm --platform {platform} {image}` did not exit within {seconds:g} s",
        hint="The image's default command should do its work and exit (print a message, "
        "not start a server that runs forever).",
        anti_pattern='CMD ["sleep", "infinity"]',
        best_practice='CMD ["/app", "--version"]',
    )
)

NO_IMAGE = register(
    Rule(
        id="RN442",
        name="no-image",
        criterion="runs",
        severity="error",
        message="there is no image to run: {why}",
        hint="build.sh must push the multi-platform image (`--push`); the grader runs what "
        "it pushed.",
        anti_pattern="docker buildx build --platform linux/amd64,linux/arm64 .   # no --push",
        best_practice='docker buildx build --platform linux/amd64,linux/arm64 -t "$IMAGE" --push .',
    )
)

ENGINE_UNAVAILABLE = register(
    Rule(
        id="RN450",
        name="engine-unavailable",
        criterion="build",
        severity="error",
        message="the grading machine failed, not the submission: {why}",
        hint="Instructor: check `grader engine doctor`, then grade again; finished "
        "submissions are kept and only this one is redone.",
        anti_pattern="(dockerd or the registry stopped while grading)",
        best_practice="grader engine up && grader batch SUBMISSIONS --out results/",
    )
)
