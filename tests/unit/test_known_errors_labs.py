"""Known errors the labs 04-08 print: real stderr captured on the course engine (Docker 26.1.5,
buildx 0.13.1), each mapped to the right explanation, and nothing else matched by mistake."""

from __future__ import annotations

import pytest

from grader.known_errors import explain

CAPTURED = {
    # docker buildx build --platform linux/amd64,linux/arm64 --output type=docker,dest=x.tar .
    "ERROR: docker exporter does not support exporting manifest lists, use the oci exporter "
    "instead": "docker-tar-manifest-list",
    # classic image store, --load of two platforms (BUILDX-FACTS.md)
    "ERROR: docker exporter does not currently support exporting manifest lists": (
        "load-manifest-list"
    ),
    # docker buildx build --parallel ...
    "unknown flag: --parallel\nSee 'docker buildx build --help'.": "buildx-no-parallel",
    # docker manifest inspect 127.0.0.1:5000/... (no --insecure)
    "no such manifest: 127.0.0.1:5000/t-labs48/a14132:v2": "manifest-inspect-insecure",
    # docker manifest create --insecure NEW SRC-with-provenance ...
    "127.0.0.1:5000/t-labs48/m5381:amd64 is a manifest list": "manifest-create-from-index",
    # docker buildx build --platform linux/amd64,linux/arm64 --push . (no -t)
    "ERROR: tag is needed when pushing to registry": "push-needs-tag",
    # docker buildx imagetools inspect, with a registry answering the tag race's 500
    "ERROR: unexpected status from HEAD request to http://127.0.0.1:5197/v2/race/x/manifests/v1"
    ": 500 Internal Server Error": "registry-tag-race",
    # docker compose version (docker client 28, no compose plugin)
    "docker: unknown command: docker compose\n\nRun 'docker --help' for more information": (
        "compose-plugin-missing"
    ),
}


@pytest.mark.parametrize("text", CAPTURED, ids=list(CAPTURED.values()))
def test_captured_message_is_explained(text):
    known = explain("some earlier output\n" + text + "\n")
    assert known is not None and known.id == CAPTURED[text]
    assert known.fix and known.cause


@pytest.mark.parametrize(
    "text",
    [
        "no such manifest: docker.io/library/busybox:nosuchtag",  # a real missing tag
        "the image is a manifest list with 2 entries",  # prose, not the CLI's message
        "#9 exporting manifest list sha256:dba9f1ca done",  # every multi-platform build log
    ],
)
def test_ordinary_output_is_not_an_error(text):
    assert explain(text) is None
