"""Image references and platform strings, normalised the way docker and containerd do."""

from __future__ import annotations

import pytest

from grader.docker.registry import Platform, Reference, RegistryError, normalize


@pytest.mark.parametrize(
    ("text", "host", "repo", "tag", "digest"),
    [
        ("python:3.11-slim", "registry-1.docker.io", "library/python", "3.11-slim", None),
        ("busybox", "registry-1.docker.io", "library/busybox", "latest", None),
        ("docker.io/me/app:v1", "registry-1.docker.io", "me/app", "v1", None),
        ("127.0.0.1:5000/test/app:1", "127.0.0.1:5000", "test/app", "1", None),
        ("localhost:5000/app", "localhost:5000", "app", "latest", None),
        ("ghcr.io/o/r/sub:x", "ghcr.io", "o/r/sub", "x", None),
        (
            "app@sha256:" + "a" * 64,
            "registry-1.docker.io",
            "library/app",
            None,
            "sha256:" + "a" * 64,
        ),
    ],
)
def test_parse(text, host, repo, tag, digest):
    ref = Reference.parse(text)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == (host, repo, tag, digest)


@pytest.mark.parametrize("bad", ["", "UPPER/case", "a:b:c", "has space", "x@sha256:zz"])
def test_bad_references_are_clear_errors(bad):
    with pytest.raises(RegistryError) as err:
        Reference.parse(bad)
    assert err.value.kind == "bad-reference"


def test_loopback_is_plain_http_remote_is_not():
    assert Reference.parse("127.0.0.1:5000/a").insecure
    assert Reference.parse("localhost:5001/a").insecure
    assert not Reference.parse("ghcr.io/a/b").insecure


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (("linux", "x86_64", None), "linux/amd64"),
        (("linux", "aarch64", None), "linux/arm64"),
        (("linux", "arm64", "v8"), "linux/arm64"),
        (("linux", "armhf", None), "linux/arm/v7"),
        (("linux", "armel", None), "linux/arm/v6"),
        (("linux", "arm", None), "linux/arm/v7"),
        (("linux", "i386", None), "linux/386"),
        (("Linux", "AMD64", ""), "linux/amd64"),
    ],
)
def test_containerd_normalisation(raw, expected):
    assert str(normalize(*raw)) == expected


def test_platform_parse_rejects_garbage():
    assert Platform.parse("linux/arm64/v8") == Platform("linux", "arm64")
    with pytest.raises(ValueError):
        Platform.parse("arm64")
