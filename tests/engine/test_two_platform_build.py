"""The foundation's promise: a two-platform image built FROM a mirrored base, pushed to the
course registry, read back over the registry HTTP API, and run on both platforms."""

from __future__ import annotations

import pytest

from grader import proc
from grader.docker.registry import MEDIA_DOCKER_LIST, RegistryClient
from grader.engine import baseimages

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.qemu]

DOCKERFILE = """\
# busybox:latest resolves through dockerd's mirror: the course registry's local stand-in.
FROM busybox:latest
ARG TARGETPLATFORM
RUN echo "built for $TARGETPLATFORM on $(uname -m)" > /built-for
CMD ["cat", "/built-for"]
"""


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, registry_host):
    import uuid

    ctx = tmp_path_factory.mktemp("ctx")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    ref = f"{registry_host}/test/foundation-{uuid.uuid4().hex[:8]}:v1"
    proc.run(
        [
            "docker",
            "buildx",
            "build",
            "--builder",
            "default",
            "--platform",
            "linux/amd64,linux/arm64",
            "--provenance=false",
            "--sbom=false",
            "-t",
            ref,
            "--push",
            str(ctx),
        ],
        timeout=600,
    )
    return ref


def test_index_lists_exactly_amd64_and_arm64(pushed):
    client = RegistryClient(timeout=10)
    index = client.fetch_manifest(pushed)
    # With --provenance=false buildx pushes a Docker manifest list, no attestation entries.
    assert index.media_type == MEDIA_DOCKER_LIST
    platforms = sorted(str(d.normalized_platform) for d in index.manifests)
    assert platforms == ["linux/amd64", "linux/arm64"]
    assert not any(d.is_attestation for d in index.manifests)
    for desc in index.manifests:
        config = client.fetch_config(client.fetch_child(index, desc))
        assert config.json["architecture"] == desc.platform.architecture
        assert config.json["os"] == "linux"


@pytest.mark.parametrize(
    ("platform", "machine"), [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")]
)
def test_runs_on_both_platforms(pushed, platform, machine):
    uname = proc.run(
        ["docker", "run", "--rm", "--pull=always", "--platform", platform, pushed, "uname", "-m"],
        timeout=300,
    )
    assert uname.stdout.strip() == machine
    built = proc.run(["docker", "run", "--rm", "--platform", platform, pushed], timeout=300)
    assert built.stdout.strip() == f"built for {platform} on {machine}"


def test_base_images_are_honest_local_stand_ins(registry_host):
    from grader.engine import baseimages

    client = RegistryClient(timeout=10)
    for recipe in baseimages.RECIPES:
        index = client.fetch_manifest(baseimages.repo_for(registry_host, recipe.tags[0]))
        assert sorted(str(d.normalized_platform) for d in index.manifests) == sorted(
            recipe.platforms
        )
        config = client.fetch_config(client.fetch_child(index, index.manifests[0]))
        labels = config.json["config"]["Labels"]
        assert "not the official" in labels["org.opencontainers.image.description"]
        assert labels[baseimages.LABEL_RECIPE] == recipe.digest()


@pytest.mark.parametrize("image", ["busybox:latest", "debian:bookworm-slim"])
def test_armhf_base_images_run_as_armv7(image, registry_host):
    """busybox and debian-slim carry a linux/arm/v7 image (Debian armhf) that runs under
    qemu-arm: the config says arm/v7 and the CPU the program sees is armv7l."""
    client = RegistryClient(timeout=10)
    index = client.fetch_manifest(baseimages.repo_for(registry_host, image))
    (entry,) = [d for d in index.manifests if str(d.normalized_platform) == "linux/arm/v7"]
    config = client.fetch_config(client.fetch_child(index, entry)).json
    assert (config["architecture"], config.get("variant")) == ("arm", "v7")
    uname = proc.run(
        [
            "docker",
            "run",
            "--rm",
            "--pull=always",
            "--platform",
            "linux/arm/v7",
            image,
            "uname",
            "-m",
        ],
        timeout=300,
    )
    assert uname.stdout.strip() == "armv7l"


def test_doctor_reports_ready():
    from grader.engine import diagnose

    report = diagnose()
    assert report.ready, report.table()
    names = {c.name for c in report.checks}
    assert {"engine", "buildx", "builder platforms", "binfmt_misc", "registry"} <= names
    assert "linux/arm64" in report.facts["builder"]["platforms"]
    assert "F" in report.facts["binfmt"]["qemu-aarch64"]["flags"]


def test_doctor_cli_json_and_exit_code():
    import json

    done = proc.run(["grader", "engine", "doctor", "--json"], timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["ready"] is True
    assert all({"name", "ok", "detail", "remedy"} <= set(c) for c in data["checks"])


def test_up_twice_is_fast_and_green():
    import time

    start = time.monotonic()
    done = proc.run(["grader", "engine", "up"], timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "READY" in done.stdout
    # Nothing rebuilt: every base image reported up to date.
    assert done.stderr.count("up to date") == len(baseimages.RECIPES), done.stderr
    assert time.monotonic() - start < 120
