"""MF3xx: rules about the pushed image, read from the registry (``grader.grading.checks.image``).

Ids are never renumbered. MF30x: reading the image at all; MF31x: the index (criterion
``manifest``); MF32x: each platform's image (criterion ``image-arch``).

Decisions: a registry that cannot be reached, refuses us or times out is the grading
machine's problem (status ``error``); a tag that does not exist, or content that is not what
its digest says, is the submission's (status ``fail``). Attestation manifests
(``unknown/unknown`` entries annotated ``vnd.docker.reference.type: attestation-manifest``)
are recognised and reported, never counted as platforms. A 32-bit ARM binary's header cannot
tell arm/v6 from arm/v7, so ``arm`` matches either variant.
"""

from __future__ import annotations

from grader.grading.rules.catalogue import Rule, register

_GOOD_PUSH = """\
docker buildx build --builder multiplatform \\
  --platform linux/amd64,linux/arm64 \\
  --provenance=false -t 127.0.0.1:5000/07-challenge/app:latest --push ."""

_GOOD_GO = """\
FROM --platform=$BUILDPLATFORM golang:1.19 AS build
ARG TARGETOS TARGETARCH
COPY hello.go .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /hello hello.go

FROM scratch
COPY --from=build /hello /hello
ENTRYPOINT ["/hello"]"""

# --- MF30x: reading the image ----------------------------------------------------------------

REGISTRY_UNREACHABLE = register(
    Rule(
        id="MF301",
        name="registry-unreachable",
        criterion="manifest",
        severity="error",
        message="cannot read {ref}: {reason}",
        hint="Start the course registry (`grader engine up`; `grader doctor` shows its state) "
        "or check the registry host in the image name. This is not a fault of the submission.",
        anti_pattern="grader check submission --image 127.0.0.1:5999/app:latest   "
        "# nothing listens on 5999",
        best_practice="grader engine up\ngrader check submission --image "
        "127.0.0.1:5000/07-challenge/app:latest",
        doc="Status `error`, not `fail`: a registry that is down, times out or answers HTTP 5xx "
        "is the grading machine's problem, so the submission is not marked wrong for it. "
        "Every registry call has a time limit.",
    )
)

IMAGE_NOT_FOUND = register(
    Rule(
        id="MF302",
        name="image-not-found",
        criterion="manifest",
        severity="error",
        message="{ref} is not in the registry ({reason})",
        hint="Push the image: build.sh must build with `--push` (or `--output type=registry`) "
        "and tag exactly this name; `--load` only puts it in the local engine.",
        anti_pattern="docker buildx build --platform linux/amd64,linux/arm64 "
        "-t 127.0.0.1:5000/07-challenge/app:latest .   # built, never pushed",
        best_practice=_GOOD_PUSH,
        doc="Status `fail`: the registry answered, and the tag is not there.",
    )
)

REGISTRY_AUTH = register(
    Rule(
        id="MF303",
        name="registry-auth",
        criterion="manifest",
        severity="error",
        message="the registry refused to show {ref}: {reason}",
        hint="Give the grader credentials for this registry (`docker login HOST`), or push to "
        "the course registry 127.0.0.1:5000, which needs none.",
        anti_pattern="grader check submission --image private.example.com/team/app:latest",
        best_practice="grader check submission --image 127.0.0.1:5000/07-challenge/app:latest",
    )
)

CONTENT_UNREADABLE = register(
    Rule(
        id="MF304",
        name="content-unreadable",
        criterion="manifest",
        severity="error",
        message="{ref}: the registry's answer is not a usable image: {reason}",
        hint="Push the image again with `docker buildx build --push`; content that does not "
        "match its digest, or is not JSON, is refused by `docker pull` too.",
        anti_pattern="a proxy in front of the registry that rewrites or truncates responses",
        best_practice=_GOOD_PUSH,
        doc="Covers a body that does not hash to its digest (Docker-Content-Digest or the pinned "
        "digest), a body that is not JSON or not an object, and one over 4 MB.",
    )
)

BAD_REFERENCE = register(
    Rule(
        id="MF305",
        name="bad-image-reference",
        criterion="manifest",
        severity="error",
        message="{ref!r} is not an image reference ({reason})",
        hint="Name the image HOST/REPOSITORY:TAG in lower case, e.g. "
        "127.0.0.1:5000/07-challenge/app:latest.",
        anti_pattern="docker buildx build -t 127.0.0.1:5000/Challenge/App --push .",
        best_practice=_GOOD_PUSH,
    )
)

# --- MF31x: the index -------------------------------------------------------------------------

NOT_AN_INDEX = register(
    Rule(
        id="MF310",
        name="single-platform-image",
        criterion="manifest",
        severity="error",
        message="{ref} is a single-platform image ({platform}), not a multi-platform index: "
        "`docker pull` on another architecture gets exec format error or no match",
        hint="Build every platform in one `docker buildx build --platform "
        "linux/amd64,linux/arm64 --push`; `docker build` + `docker push`, or `--load` + "
        "`docker push`, pushes the builder's own platform only.",
        anti_pattern="docker build -t 127.0.0.1:5000/07-challenge/app:latest .\n"
        "docker push 127.0.0.1:5000/07-challenge/app:latest",
        best_practice=_GOOD_PUSH,
        doc="A plain image manifest (Docker v2 or OCI) where an index was expected; `image-arch` "
        "still checks that one image's config against its binary.",
    )
)

PLATFORM_MISSING = register(
    Rule(
        id="MF311",
        name="platform-missing",
        criterion="manifest",
        severity="error",
        message="the index has no {platform} image (it lists: {listed})",
        hint="Add {platform} to `--platform` (comma-separated, e.g. "
        "`--platform linux/amd64,linux/arm64`) and push again.",
        anti_pattern="docker buildx build --platform linux/amd64 -t IMAGE --push .",
        best_practice=_GOOD_PUSH,
        doc="Platforms are compared after containerd's normalisation: `arm64/v8` is `arm64`, "
        "`aarch64` is `arm64`, `x86_64` is `amd64`, `arm` is `arm/v7`.",
    )
)

ATTESTATIONS_LISTED = register(
    Rule(
        id="MF312",
        name="attestation-entries",
        criterion="manifest",
        severity="info",
        message="the index also lists {count} attestation manifest(s) (platform unknown/unknown, "
        "vnd.docker.reference.type=attestation-manifest) describing {described}; they are "
        "provenance/SBOM records, not platforms, and were not counted",
        hint="`--provenance=false` (or BUILDX_NO_DEFAULT_ATTESTATIONS=1) leaves them out; "
        "`docker manifest` and some older registries cannot handle them.",
        anti_pattern="docker buildx build --platform linux/amd64,linux/arm64 --push .   "
        "# provenance on by default since buildx 0.10",
        best_practice=_GOOD_PUSH,
        doc="BuildKit adds one attestation manifest per image when provenance is on (the default "
        "since buildx 0.10) and switches the index to OCI media types. They are recognised by"
        " the annotation `vnd.docker.reference.type: attestation-manifest`, never counted as "
        "platforms, and cost no points here (the `provenance` criterion grades the flag in "
        "build.sh).",
    )
)

ENTRY_WITHOUT_PLATFORM = register(
    Rule(
        id="MF313",
        name="entry-without-platform",
        criterion="manifest",
        severity="warning",
        message="index entry {digest} has {what} and is not an attestation: no client will "
        "select it for a platform",
        hint="Let `docker buildx build --platform ... --push` write the index; when assembling "
        "one by hand (`docker buildx imagetools create`), give every image its platform.",
        anti_pattern='{"manifests": [{"digest": "sha256:...", "mediaType": '
        '"application/vnd.oci.image.manifest.v1+json"}]}',
        best_practice='{"manifests": [{"digest": "sha256:...", "platform": '
        '{"os": "linux", "architecture": "arm64"}}]}',
    )
)

DUPLICATE_PLATFORM = register(
    Rule(
        id="MF314",
        name="duplicate-platform",
        criterion="manifest",
        severity="warning",
        message="the index lists {platform} {count} times ({digests}); clients take the first",
        hint="One image per platform: rebuild with one `docker buildx build --platform ...`.",
        anti_pattern="docker buildx imagetools create -t IMAGE amd64-a amd64-b",
        best_practice=_GOOD_PUSH,
    )
)

INDEX_PLATFORMS = register(
    Rule(
        id="MF315",
        name="index-platforms",
        criterion="manifest",
        severity="info",
        message="{ref} ({media_type}, {digest}) lists: {listed}",
        hint="",
        anti_pattern="(informational: what the index holds)",
        best_practice=_GOOD_PUSH,
    )
)

# --- MF32x: each platform's image ------------------------------------------------------------

CONFIG_PLATFORM_MISMATCH = register(
    Rule(
        id="MF320",
        name="config-platform-mismatch",
        criterion="image-arch",
        severity="error",
        message="the {platform} entry ({digest}) points at an image whose config says "
        "{config_platform} (os={os}, architecture={architecture}, variant={variant})",
        hint="The index was assembled with the wrong platform for this image (e.g. "
        "`imagetools create` or `docker manifest annotate` by hand). Let "
        "`docker buildx build --platform linux/amd64,linux/arm64 --push` write the index.",
        anti_pattern="docker manifest create IMAGE app-amd64 app-amd64-again\n"
        "docker manifest annotate IMAGE app-amd64-again --arch arm64",
        best_practice=_GOOD_PUSH,
        doc="The config's os/architecture/variant is compared with the index entry after "
        "normalisation. BuildKit always writes the target platform into the config, so a "
        "mismatch means the index was assembled by hand.",
    )
)

BINARY_ARCH_MISMATCH = register(
    Rule(
        id="MF321",
        name="binary-arch-mismatch",
        criterion="image-arch",
        severity="error",
        message="{platform} ({digest}): {route} is an ELF binary for {machine} ({elf_arch}), "
        "not for {arch}: it fails with exec format error on a real {arch} machine",
        hint="A stage on $BUILDPLATFORM built for the build machine. Declare "
        "`ARG TARGETOS TARGETARCH` in it and build for the target (Go: "
        "`GOOS=$TARGETOS GOARCH=$TARGETARCH`; C: a $TARGETARCH cross compiler), or build "
        "that stage without `--platform=$BUILDPLATFORM`.",
        anti_pattern="FROM --platform=$BUILDPLATFORM golang:1.19 AS build\n"
        "RUN go build -o /hello hello.go      # builds for the build machine\n"
        "FROM scratch\nCOPY --from=build /hello /hello",
        best_practice=_GOOD_GO,
        doc="The program is what `docker run` starts: ENTRYPOINT + CMD, argv[0] looked up in the "
        "config's PATH (from WORKDIR) as runc does, symlinks, hardlinks and whiteouts "
        "resolved inside the image, and for a `#!` script the interpreter it names (the "
        "binary the kernel really loads). An emulated or amd64 build machine runs an x86-64 "
        "program in an 'arm64' image without complaint, so only the ELF header shows the bug."
        " A 32-bit ARM header cannot tell arm/v6 from arm/v7: `arm` matches both.",
    )
)

PLATFORM_CHECKED = register(
    Rule(
        id="MF322",
        name="platform-image",
        criterion="image-arch",
        severity="info",
        message="{platform} ({digest}): config os={os} architecture={architecture} "
        "variant={variant}; {route}: {elf}",
        hint="",
        anti_pattern="(informational: what each platform's image holds)",
        best_practice=_GOOD_GO,
    )
)

PROGRAM_NOT_FOUND = register(
    Rule(
        id="MF323",
        name="entrypoint-not-found",
        criterion="image-arch",
        severity="error",
        message="{platform} ({digest}): {reason}",
        hint="Check ENTRYPOINT/CMD and that the final stage copies the program there, "
        "executable; `docker run --platform {platform} IMAGE` fails the same way.",
        anti_pattern='FROM scratch\nCOPY --from=build /out/app /app\nENTRYPOINT ["/hello"]',
        best_practice=_GOOD_GO,
    )
)

NO_COMMAND = register(
    Rule(
        id="MF324",
        name="no-command",
        criterion="image-arch",
        severity="warning",
        message="{platform} ({digest}): the image has no ENTRYPOINT or CMD, so there is no "
        "program whose architecture could be checked",
        hint='Give the image its program: `ENTRYPOINT ["/hello"]`.',
        anti_pattern="FROM scratch\nCOPY --from=build /hello /hello",
        best_practice=_GOOD_GO,
        doc="A warning, not a failure: with no command there is no binary to check; the config's "
        "platform is still compared (MF320).",
    )
)

NOT_A_PROGRAM = register(
    Rule(
        id="MF325",
        name="not-a-program",
        criterion="image-arch",
        severity="error",
        message="{platform} ({digest}): {route} is neither an ELF binary nor a #! script "
        "(it starts with {start}): the kernel refuses it with exec format error",
        hint="Point ENTRYPOINT at the compiled program, or start a script with a `#!` line "
        "(e.g. `#!/bin/sh`) and make sure it has Unix (LF) line endings.",
        anti_pattern='COPY README.md /app\nENTRYPOINT ["/app"]',
        best_practice=_GOOD_GO,
    )
)

IMAGE_UNREADABLE = register(
    Rule(
        id="MF326",
        name="platform-image-unreadable",
        criterion="image-arch",
        severity="error",
        message="{platform} ({digest}): cannot read the image: {reason}",
        hint="Push the image again with `docker buildx build --push`; if the registry is "
        "unreachable, start it (`grader engine up`).",
        anti_pattern="a layer blob deleted from the registry, or not a tar",
        best_practice=_GOOD_PUSH,
    )
)

NOT_AN_IMAGE = register(
    Rule(
        id="MF327",
        name="entry-not-an-image",
        criterion="image-arch",
        severity="error",
        message="the {platform} entry ({digest}) is {media_type}, not an image manifest",
        hint="Index entries must point at image manifests; let `docker buildx build --push` "
        "write the index instead of nesting one index in another.",
        anti_pattern="docker buildx imagetools create -t IMAGE other-multi-platform-index",
        best_practice=_GOOD_PUSH,
    )
)

NO_PLATFORM_IMAGES = register(
    Rule(
        id="MF328",
        name="no-platform-images",
        criterion="image-arch",
        severity="error",
        message="{ref} holds no platform image to check ({detail})",
        hint="Build and push real images: `docker buildx build --platform "
        "linux/amd64,linux/arm64 --push .`.",
        anti_pattern='{"manifests": []}',
        best_practice=_GOOD_PUSH,
    )
)

IMAGE_NOT_CHECKED = register(
    Rule(
        id="MF329",
        name="image-not-checked",
        criterion="image-arch",
        severity="error",
        message="the images in {ref} could not be checked: {reason}",
        hint="Fix the `manifest` criterion first: the image must be in the registry.",
        anti_pattern="docker buildx build --platform linux/amd64,linux/arm64 -t IMAGE .   "
        "# never pushed",
        best_practice=_GOOD_PUSH,
    )
)
