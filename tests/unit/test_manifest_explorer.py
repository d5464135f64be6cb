"""ManifestExplorer on images captured from real buildx builds (tests/fixtures/manifests/),
served byte for byte by the fake registry, behind the anonymous bearer-token flow public
registries use; and on registries that answer badly."""

from __future__ import annotations

import json

import pytest
from fake_registry import FakeRegistry, load_fixture

from grader.course.widgets import ManifestExplorer
from grader.course.widgets.manifests import explore
from grader.docker.registry import MEDIA_OCI_INDEX, RegistryClient


@pytest.fixture
def public():
    """A registry that, like Docker Hub, answers 401 and hands out anonymous tokens."""
    with FakeRegistry(auth="bearer") as reg:
        yield reg


def test_attestations_are_told_from_images_through_an_anonymous_token(public):
    ref = load_fixture(public, "oci-attestations", "library/hello", "v1")
    explorer = ManifestExplorer(client=RegistryClient(timeout=5))
    root = explorer.explore(ref)
    assert root is not None, explorer.status.value
    assert public.token_requests, "the anonymous token flow was not used"
    assert root.kind == "index" and root.media_type == MEDIA_OCI_INDEX
    kinds = sorted(n.kind for n in root.children)
    assert kinds == ["attestation", "attestation", "image", "image"]
    images = {n.platform: n for n in root.children if n.kind == "image"}
    assert sorted(images) == ["linux/amd64", "linux/arm64"]
    image_digests = {n.digest for n in images.values()}
    for att in (n for n in root.children if n.kind == "attestation"):
        assert att.details["attestation for"] in image_digests
        layers = [c for c in att.children if c.kind == "layer"]
        assert layers and all(c.media_type == "application/vnd.in-toto+json" for c in layers)
    for image in images.values():
        (config,) = (c for c in image.children if c.kind == "config")
        assert config.platform == image.platform
        assert json.loads(config.details["entrypoint"]) == ["/hello"]
        assert config.details["created"]
    assert root.all_warnings == []
    # Every node's raw JSON is what the registry served.
    for node in root.walk():
        assert json.loads(node.raw)
    assert len(explorer.node_buttons) == len(list(root.walk()))


def test_an_index_entry_that_disagrees_with_its_config_is_flagged(public):
    ref = load_fixture(public, "arm64-entry-amd64-config", "me/app", "v1")
    explorer = ManifestExplorer(client=RegistryClient(timeout=5))
    root = explorer.explore(ref)
    assert root is not None
    (warning,) = root.all_warnings
    assert "index says linux/arm64 but this image's config says linux/amd64" in warning
    assert "mp-manifest-warning" in explorer.warnings.value
    flagged = [p for p, b in explorer.node_buttons.items() if b.button_style == "warning"]
    (path,) = flagged
    node = explorer.select(path)
    assert node.kind == "config" and 'data-kind="config"' in explorer.raw.value
    assert "&quot;architecture&quot;: &quot;amd64&quot;" in explorer.raw.value


def test_a_single_manifest_is_a_tree_too(public):
    ref = load_fixture(public, "single-manifest", "me/one", "v1")
    root = explore(ref, RegistryClient(timeout=5))
    assert root.kind == "image"
    assert root.children[0].kind == "config"


def test_a_child_that_cannot_be_read_is_an_error_node_not_a_failure(public):
    ref = load_fixture(public, "docker-list", "me/broken", "v1")
    index = json.loads(public.manifests[("me/broken", "v1")][1])
    lost = index["manifests"][1]["digest"]
    public.faults[f"/manifests/{lost}"] = 404
    explorer = ManifestExplorer(client=RegistryClient(timeout=5))
    root = explorer.explore(ref)
    assert root is not None
    assert [n.kind for n in root.children] == ["image", "error"]
    assert "not found" in root.children[1].title
    assert len(root.all_warnings) == 1


@pytest.mark.parametrize(
    ("fault", "message"),
    [(404, "not found"), ("wrong-digest", "hashes to"), (500, "HTTP 500")],
)
def test_a_bad_root_answer_becomes_a_message(public, fault, message):
    ref = load_fixture(public, "docker-list", "me/bad", "v1")
    public.faults["/manifests/v1"] = fault
    explorer = ManifestExplorer(client=RegistryClient(timeout=5))
    assert explorer.explore(ref) is None
    assert message in explorer.status.value and explorer.tree.children == ()


def test_the_explorer_shows_its_request_and_the_equivalent_command():
    from grader.course.widgets import ManifestExplorer

    panel = ManifestExplorer("127.0.0.1:5000/lab04/run-1:v1")
    html = panel.command.value
    assert "docker buildx imagetools inspect --raw 127.0.0.1:5000/lab04/run-1:v1" in html
    assert "GET http://127.0.0.1:5000/v2/lab04/run-1/manifests/v1" in html
    panel.reference.value = "python:3.11-slim"
    assert "GET https://registry-1.docker.io/v2/library/python/manifests/3.11-slim" in (
        panel.command.value
    )
    panel.reference.value = "not a reference!"
    assert panel.command.value == ""
