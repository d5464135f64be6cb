"""The messages the panels explain: the five the widgets issue names, plus the builder and
cache errors BuilderPanel and BuildPanel meet. Texts captured on this engine (Docker 26.1.5,
buildx 0.13.1) unless noted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grader.docker.progress import parse
from grader.known_errors import explain

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rawjson"

CAPTURED = {
    # the last line of tests/fixtures/rawjson/failing-no-match-platform.rawjson
    "ERROR: failed to solve: busybox:latest: failed to resolve source metadata for "
    "docker.io/library/busybox:latest: no match for platform in manifest: not found": (
        "no-match-platform"
    ),
    # BUILDX-FACTS.md (classic image store; this engine has the containerd store)
    "ERROR: Multi-platform build is not supported for the docker driver.\nSwitch to a "
    "different driver, or turn on the containerd image store, and try again.": (
        "docker-driver-multiplatform"
    ),
    "ERROR: docker exporter does not currently support exporting manifest lists": (
        "load-manifest-list"
    ),
    "exec /bin/sh: exec format error": "exec-format",
    # docker buildx create --name X --driver docker-container, run twice
    'ERROR: existing instance for "t-widgets-probe9334" but no append mode, specify the node '
    "name to make changes for existing instances": "builder-exists",
    # docker buildx inspect --bootstrap X (docker-container driver, offline)
    '#1 ERROR: Error response from daemon: failed to resolve reference "docker.io/moby/buildkit:'
    'buildx-stable-1": failed to do request: Head "https://registry-1.docker.io/v2/moby/buildkit/'
    'manifests/buildx-stable-1": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no '
    "such host": "buildkit-image-unavailable",
    # buildx's text for --cache-to on the docker driver with the classic store (not
    # reproducible here: the containerd image store supports cache export)
    "ERROR: Cache export is not supported for the docker driver.\nSwitch to a different "
    "driver, or turn on the containerd image store, and try again.": ("cache-export-docker-driver"),
}


@pytest.mark.parametrize("text", CAPTURED, ids=list(CAPTURED.values()))
def test_message_is_explained_with_a_fix(text):
    known = explain("earlier output\n" + text + "\n")
    assert known is not None and known.id == CAPTURED[text]
    assert known.fix and known.cause


def test_the_fixture_error_tail_is_what_the_table_quotes():
    meta = json.loads((FIXTURES / "failing-no-match-platform.json").read_text())
    progress = parse(
        (FIXTURES / "failing-no-match-platform.rawjson").read_text(), meta["platforms"]
    )
    assert progress.text[-1] in CAPTURED


def test_a_successful_build_log_is_not_an_error():
    text = (FIXTURES / "cross-go-two-platform.rawjson").read_text()
    assert explain(text) is None
