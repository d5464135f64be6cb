"""Error messages learners hit with multi-platform builds, mapped to a cause and a fix.

One table for the whole course: the command runner attaches a match to every failed
command, the widgets show it, the grader quotes it in findings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownError:
    id: str
    pattern: str
    title: str
    cause: str
    fix: str

    def matches(self, text: str) -> bool:
        return re.search(self.pattern, text, re.IGNORECASE) is not None


KNOWN_ERRORS: tuple[KnownError, ...] = (
    KnownError(
        "exec-format",
        r"exec format error",
        "exec format error",
        "A binary built for another CPU architecture ran with no emulator registered for it, "
        "or the image was built for the wrong architecture.",
        "Register QEMU emulators with binfmt_misc (`grader engine up`, or "
        "`docker run --privileged --rm tonistiigi/binfmt --install all` where images can be "
        "pulled), or compile in a `FROM --platform=$BUILDPLATFORM` stage for $TARGETARCH.",
    ),
    KnownError(
        "exec-no-such-file",
        r"exec \S+: no such file or directory",
        "The program is there, but its interpreter is not",
        "The kernel could not open the interpreter the program names: the dynamic loader of "
        "another architecture (an amd64 binary in an arm64 image looks for "
        "/lib64/ld-linux-x86-64.so.2), or a binfmt_misc emulator registered without the F "
        "flag, whose path does not exist inside the container.",
        "Read the binary's ELF header: it must match the image's platform (compile for "
        "$TARGETARCH); register emulators with the F flag.",
    ),
    KnownError(
        "docker-driver-multiplatform",
        r"Multi-platform build is not supported for the docker driver"
        r"|multiple platforms feature is currently not supported for docker driver",
        "The docker driver cannot build several platforms here",
        "The default `docker` buildx driver on the classic image store builds one platform "
        "at a time.",
        "Turn on the containerd image store (daemon.json "
        '`{"features": {"containerd-snapshotter": true}}`), or create a builder with '
        "`docker buildx create --name multi --driver docker-container --use`.",
    ),
    KnownError(
        "load-manifest-list",
        r"docker exporter does not currently support exporting manifest lists",
        "--load cannot take several platforms",
        "`--load` exports to the classic image store, which holds one platform per tag.",
        "Use `--push` (or `--output type=oci,dest=out.tar`), or `--load` one platform at a time.",
    ),
    KnownError(
        "no-match-platform",
        r"no match for platform in manifest",
        "The image has no variant for this platform",
        "The base image (or the pushed result) lacks the requested platform, e.g. a "
        "single-architecture base in a multi-platform build.",
        "Use a multi-platform base image (check it with `docker buildx imagetools inspect`), or "
        "drop the platform from `--platform`.",
    ),
    KnownError(
        "builder-exists",
        r"existing instance for .* but no append mode",
        "`docker buildx create --name` ran twice",
        "`buildx create --name X` fails when builder X already exists, so a script that "
        "creates it unconditionally fails on its second run.",
        "Guard it: `docker buildx inspect X >/dev/null 2>&1 || docker buildx create --name X`, "
        "then build with `--builder X` (or `docker buildx use X`).",
    ),
    KnownError(
        "qemu-segfault",
        r"qemu: uncaught target signal|returned error exit status 139",
        "The emulator crashed",
        "QEMU user-mode emulation has bugs some programs trigger.",
        "Use newer emulators, or cross-compile in a $BUILDPLATFORM stage instead of emulating.",
    ),
    KnownError(
        "http-to-https",
        r"server gave HTTP response to HTTPS client",
        "A plain-HTTP registry was contacted over HTTPS",
        "A docker-container builder ignores dockerd's insecure-registries.",
        'Give the builder a buildkitd.toml with `[registry."host:port"] http = true` '
        "(`--buildkitd-config`), and for localhost `--driver-opt network=host`.",
    ),
    KnownError(
        "invalid-base-platform",
        r"InvalidBaseImagePlatform|was pulled with platform",
        "Base image of the wrong platform",
        "A single-architecture base image or a constant `FROM --platform=` on a target stage.",
        "Use a multi-platform base and drop the constant `--platform` from target stages.",
    ),
    KnownError(
        "empty-platform-arg",
        r'failed to parse platform : "" is an invalid component',
        "Platform ARGs are empty",
        "The legacy builder does not set BUILDPLATFORM/TARGETPLATFORM.",
        "Build with BuildKit: `docker buildx build`.",
    ),
    KnownError(
        "buildkit-image-unavailable",
        r"moby/buildkit[^\n]*(?:failed to resolve|no such host|failed to do request|not found"
        r"|pull access denied|connection refused|i/o timeout)",
        "The builder could not get its BuildKit image",
        "A `docker-container` builder runs BuildKit from the `moby/buildkit` image, pulled at "
        "its first bootstrap; this machine cannot reach the registry that serves it.",
        "Build with the default `docker` builder (with the containerd image store it builds "
        "several platforms), or bootstrap where Docker Hub is reachable "
        "(`docker buildx inspect --bootstrap NAME`); remove the builder with `docker buildx rm`.",
    ),
    KnownError(
        "cache-export-docker-driver",
        r"Cache export is not supported for the docker driver",
        "The docker driver cannot export a build cache here",
        "`--cache-to` needs a `docker-container` builder or the containerd image store.",
        "Turn on the containerd image store, or create a `docker-container` builder, or drop "
        "`--cache-to` (keep `--cache-from`).",
    ),
    KnownError(
        "docker-tar-manifest-list",
        r"docker exporter does not support exporting manifest lists",
        "A `docker load` tarball cannot hold several platforms",
        "`--output type=docker,dest=FILE` writes a `docker load` archive, which holds one "
        "image per tag, so buildx refuses an index on any image store.",
        "Write an OCI layout instead (`--output type=oci,dest=app.tar`), `--push`, or build "
        "one platform per tarball.",
    ),
    KnownError(
        "buildx-no-parallel",
        r"unknown flag: --parallel",
        "buildx has no --parallel flag",
        "BuildKit always builds the platforms of one `--platform a,b` build in parallel; "
        "the flag some guides show does not exist.",
        "Drop `--parallel`: `docker buildx build --platform linux/amd64,linux/arm64 ...`.",
    ),
    KnownError(
        "manifest-inspect-insecure",
        r"no such manifest: (?:localhost|127\.|\[::1\])",
        "`docker manifest` needs --insecure for a plain-HTTP registry",
        "`docker manifest inspect` talks HTTPS unless told otherwise, even to a registry on "
        "127.0.0.1, and reports the failure as a missing manifest.",
        "Add `--insecure` (`docker manifest inspect --insecure 127.0.0.1:5000/app:1`), or use "
        "`docker buildx imagetools inspect`, which reads such registries as they are.",
    ),
    KnownError(
        "manifest-create-from-index",
        r"(?m)^\S+ is a manifest list$",
        "`docker manifest create` takes single-platform images only",
        "A source tag is already an index: buildx pushes one even for a single platform when "
        "it adds a provenance attestation (the default).",
        "Assemble with `docker buildx imagetools create -t NEW SRC...` (it merges indexes), or "
        "push the per-platform tags with `--provenance=false`.",
    ),
    KnownError(
        "push-needs-tag",
        r"tag is needed when pushing to registry",
        "--push without a tag",
        "`--push` sends the image to the registry named in the tag; there is none.",
        "Add `-t REGISTRY/REPOSITORY:TAG` (e.g. `-t 127.0.0.1:5000/me/app:1`).",
    ),
    KnownError(
        "compose-plugin-missing",
        r"unknown command: docker compose|'compose' is not a docker command",
        "Docker Compose v2 is not installed",
        "`docker compose` is a CLI plugin (Compose v2), installed separately from the docker "
        "client. Debian bookworm's `docker-compose` package is Compose v1 (1.29), which has "
        "no `build.platforms`.",
        "Install the plugin: Debian trixie / Ubuntu `apt-get install docker-compose` (2.x), "
        "or `docker-compose-plugin` from Docker's repository; Docker Desktop includes it. "
        "Meanwhile `docker buildx bake -f compose.yaml` builds the same services.",
    ),
    KnownError(
        "registry-tag-race",
        r"unexpected status from (HEAD|GET|PUT) request to \S+/manifests/\S+: 500"
        r"|invalid checksum digest format",
        "The course registry failed to read a tag while it was being written",
        "The course registry (distribution 2.8, filesystem storage) rewrites a tag in place. "
        "A read of the tag beside a write of it can find the link file half-written and "
        "answer 500. With the docker driver, buildx 0.13 pushes twice (the second time "
        '"with docker"), and dockerd 26 writes every manifest of the image to the tag at '
        "once, so its own reads can meet its own writes.",
        "Run the push again: pushes are idempotent, and the race is rare. Check the result with "
        "`docker buildx imagetools inspect` (the tag must name the index). Registries that "
        "write tags atomically (distribution 3, cloud registries) do not have this race.",
    ),
    KnownError(
        "no-daemon",
        r"Cannot connect to the Docker daemon|Is the docker daemon running",
        "No Docker engine answers",
        "The docker client found no daemon on its socket or DOCKER_HOST.",
        "Start the course engine with `grader engine up` (or start Docker Desktop), then retry.",
    ),
)


def explain(text: str) -> KnownError | None:
    """The first known error whose message appears in ``text``, or None."""
    for known in KNOWN_ERRORS:
        if known.matches(text):
            return known
    return None
