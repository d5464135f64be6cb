"""The registry checks against the REAL course registry, on images pushed by REAL
`docker buildx build` runs: a good Go cross-compile, a busybox script image, a Debian-based
python image (usrmerge symlinks across real layers), a host compiler's binary in the arm64
image, an amd64-only index, a single-platform manifest, an index with attestations, and an
index whose arm64 entry points at the amd64 image (pushed by hand)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from grader import proc
from grader.docker.registry import MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX, RegistryClient
from grader.grading.checks.image import check_image

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.qemu]

HELLO_GO = """\
package main

import "os"

func main() { os.Stdout.WriteString("hello\\n") }
"""

CROSS_COMPILE = """\
FROM --platform=$BUILDPLATFORM golang:1.19 AS build
ARG TARGETOS TARGETARCH
ENV GOCACHE=/tmp/go-cache
COPY main.go .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /hello main.go

FROM scratch
COPY --from=build /hello /hello
ENTRYPOINT ["/hello"]
"""

# The bug the challenge is about: the compile stage runs on the build machine and, with no
# GOARCH, builds for it; the arm64 image ends up holding an x86-64 program.
HOST_COMPILER = """\
FROM --platform=$BUILDPLATFORM golang:1.19 AS build
ENV GOCACHE=/tmp/go-cache
COPY main.go .
RUN CGO_ENABLED=0 go build -o /hello main.go

FROM busybox:latest
COPY --from=build /hello /usr/local/bin/hello
ENTRYPOINT ["hello"]
"""

BUSYBOX_SCRIPT = """\
FROM busybox:latest
COPY hello.sh /usr/local/bin/hello
CMD ["hello"]
"""

PYTHON = """\
FROM python:3.11-slim
CMD ["python3", "-c", "print('hello')"]
"""

BOTH = "linux/amd64,linux/arm64"

# name -> (Dockerfile, buildx flags)
IMAGES = {
    "cross-compile": (CROSS_COMPILE, ["--platform", BOTH, "--provenance=false"]),
    "host-compiler": (HOST_COMPILER, ["--platform", BOTH, "--provenance=false"]),
    "busybox-script": (BUSYBOX_SCRIPT, ["--platform", BOTH, "--provenance=false"]),
    "python": (PYTHON, ["--platform", BOTH, "--provenance=false"]),
    "attestations": (BUSYBOX_SCRIPT, ["--platform", BOTH, "--provenance=true"]),
    "amd64-only": (BUSYBOX_SCRIPT, ["--platform", "linux/amd64", "--provenance=true"]),
    "single": (BUSYBOX_SCRIPT, ["--platform", "linux/amd64", "--provenance=false"]),
}


@pytest.fixture(scope="session")
def pushed(tmp_path_factory, registry_host) -> dict[str, str]:
    """Every image above built and pushed once per session; name -> reference."""
    ctx = tmp_path_factory.mktemp("registry-check")
    (ctx / "main.go").write_text(HELLO_GO)
    (ctx / "hello.sh").write_text("#!/bin/sh\necho hello from $(uname -m)\n")
    (ctx / "hello.sh").chmod(0o755)
    repo = f"{registry_host}/t-registry/check-{uuid.uuid4().hex[:8]}"
    refs: dict[str, str] = {}
    try:
        for name, (dockerfile, flags) in IMAGES.items():
            (ctx / f"{name}.Dockerfile").write_text(dockerfile)
            ref = f"{repo}:{name}"
            argv = ["docker", "buildx", "build", "--builder", "default", *flags]
            argv += ["-f", str(ctx / f"{name}.Dockerfile"), "-t", ref, "--push", str(ctx)]
            proc.run(argv, timeout=900)
            refs[name] = ref
        refs["crafted"] = _push_crafted(refs["cross-compile"], f"{repo}:crafted")
        yield refs
    finally:
        # The docker driver also keeps pushed images in the local store: remove ours only.
        if refs:
            proc.run(["docker", "image", "rm", "--force", *refs.values()], timeout=120, check=False)


def _push_crafted(source: str, target: str) -> str:
    """An index whose arm64 entry points at the amd64 image (a wrong hand-made index)."""
    client = RegistryClient(timeout=10)
    index = client.fetch_manifest(source)
    amd64 = next(d for d in index.json["manifests"] if d["platform"]["architecture"] == "amd64")
    arm64 = {**amd64, "platform": {"architecture": "arm64", "os": "linux"}}
    body = json.dumps({**index.json, "manifests": [amd64, arm64]}, indent=2).encode()
    client.push_manifest(target, body, index.media_type)
    return target


def check(ref: str, platforms=("linux/amd64", "linux/arm64")):
    start = time.monotonic()
    manifest, image_arch = check_image(ref, platforms, timeout=120)
    return manifest, image_arch, time.monotonic() - start


def rules_of(result) -> list[str]:
    return [f.rule for f in result.findings]


def text(result) -> str:
    return "\n".join(f.message for f in result.findings)


def test_a_go_cross_compile_passes(pushed):
    manifest, image_arch, seconds = check(pushed["cross-compile"])
    assert (manifest.status, image_arch.status) == ("pass", "pass"), text(image_arch)
    assert MEDIA_DOCKER_LIST in text(manifest)
    by_platform = {f.message.split(" ")[0]: f.message for f in image_arch.findings}
    assert "ARM aarch64" in by_platform["linux/arm64"]
    assert "x86-64" in by_platform["linux/amd64"]
    assert seconds < 5


def test_a_host_compiler_binary_in_the_arm64_image_fails(pushed):
    manifest, image_arch, _ = check(pushed["host-compiler"])
    assert manifest.status == "pass"
    assert image_arch.status == "fail"
    wrong = [f for f in image_arch.findings if f.rule == "MF321"]
    assert len(wrong) == 1
    assert wrong[0].message.startswith("linux/arm64 (sha256:")
    assert "x86-64" in wrong[0].message and "not for arm64" in wrong[0].message
    assert "/usr/local/bin/hello" in wrong[0].message
    # The config is honest (buildx writes the target platform), only the binary is wrong.
    assert "MF320" not in rules_of(image_arch)


def test_the_wrong_binary_even_runs_on_this_amd64_host(pushed):
    # Why the ELF check matters: an amd64 machine runs the "arm64" image's x86-64 program
    # natively, so `docker run --platform linux/arm64` here cannot reveal the bug.
    done = proc.run(
        ["docker", "run", "--rm", "--pull=always", "--platform", "linux/arm64",
         pushed["host-compiler"]],
        timeout=300,
    )  # fmt: skip
    assert done.stdout.strip() == "hello"


def test_a_busybox_script_checks_the_shell_it_names(pushed):
    manifest, image_arch, _ = check(pushed["busybox-script"])
    assert (manifest.status, image_arch.status) == ("pass", "pass"), text(image_arch)
    arm64 = next(f.message for f in image_arch.findings if f.message.startswith("linux/arm64"))
    # hello (on PATH) -> /usr/local/bin/hello, #!/bin/sh -> /bin/busybox: an arm64 ELF.
    assert "hello: /usr/local/bin/hello; #! /bin/sh -> /bin/busybox" in arm64
    assert "ARM aarch64" in arm64


def test_a_debian_based_image_through_usrmerge_symlinks(pushed):
    manifest, image_arch, seconds = check(pushed["python"])
    assert (manifest.status, image_arch.status) == ("pass", "pass"), text(image_arch)
    arm64 = next(f.message for f in image_arch.findings if f.message.startswith("linux/arm64"))
    assert "python3: /usr/bin/python3 -> /usr/bin/python3.11" in arm64
    assert "ARM aarch64" in arm64
    assert seconds < 30


def test_an_index_with_attestations_passes_and_reports_them(pushed):
    manifest, image_arch, _ = check(pushed["attestations"])
    assert (manifest.status, image_arch.status) == ("pass", "pass")
    assert MEDIA_OCI_INDEX in text(manifest)
    assert "MF312" in rules_of(manifest)
    assert "2 attestation manifest(s)" in text(manifest)
    assert len(image_arch.findings) == 2  # attestations are not checked as platforms


def test_an_amd64_only_index_fails_manifest(pushed):
    manifest, image_arch, _ = check(pushed["amd64-only"])
    assert manifest.status == "fail"
    assert "the index has no linux/arm64 image (it lists: linux/amd64)" in text(manifest)
    assert image_arch.status == "pass"


def test_a_single_platform_manifest_fails_manifest(pushed):
    manifest, _, _ = check(pushed["single"])
    assert manifest.status == "fail" and rules_of(manifest) == ["MF310"]
    assert "single-platform image (linux/amd64)" in text(manifest)


def test_an_arm64_entry_pointing_at_the_amd64_image_fails_image_arch(pushed):
    manifest, image_arch, _ = check(pushed["crafted"])
    assert manifest.status == "pass"  # the index does list both platforms...
    assert image_arch.status == "fail"  # ...but the arm64 one is a lie
    assert {"MF320", "MF321"} <= set(rules_of(image_arch))
    mismatch = next(f.message for f in image_arch.findings if f.rule == "MF320")
    assert "linux/arm64 entry" in mismatch and "architecture=amd64" in mismatch


def test_a_tag_that_was_never_pushed(pushed):
    repo = pushed["single"].rsplit(":", 1)[0]
    manifest, image_arch, _ = check(f"{repo}:never-pushed")
    assert (manifest.status, image_arch.status) == ("fail", "fail")
    assert rules_of(manifest) == ["MF302"]


def test_fixtures_match_what_this_engine_builds_now(pushed):
    # The captured unit-test fixtures must stay true to the engine: same media types and
    # the same index shape for the same build flags.
    fixtures = Path(__file__).parents[1] / "fixtures" / "manifests"
    client = RegistryClient(timeout=10)
    for name, fixture in (("busybox-script", "docker-list"), ("attestations", "oci-attestations")):
        live = client.fetch_manifest(pushed[name])
        meta = json.loads((fixtures / fixture / "meta.json").read_text())
        assert live.media_type == meta["media_types"][meta["top"]]
        captured = json.loads((fixtures / fixture / "manifests" / meta["top"][7:]).read_bytes())
        shape = [
            (m["mediaType"], m["platform"]["architecture"], m.get("annotations", {}).keys())
            for m in captured["manifests"]
        ]
        live_shape = [
            (m["mediaType"], m["platform"]["architecture"], m.get("annotations", {}).keys())
            for m in live.json["manifests"]
        ]
        assert live_shape == shape
