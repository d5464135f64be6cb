"""Every rule case of kind ``manifest`` (MF3xx, tests/rules/cases/MF*.yaml): serve an image
from a local registry (tests/fake_registry.py), run ``check_image`` and check the rule fires
(``expect: fail``) or stays silent (``expect: pass``), with the given criterion statuses.

Case keys (besides ``name``, ``expect``, ``status``):

- ``fixture``: a REAL captured image, tests/fixtures/manifests/<name> (default docker-list);
- ``tag``: check this tag instead of the one the fixture is served under;
- ``image``: check this literal reference instead (bad references);
- ``registry``: ``down`` (nothing listens), ``basic-auth`` (401 without ``credentials: true``);
- ``platforms``: the required platforms (default linux/amd64 + linux/arm64);
- ``config``: merged into every image config's ``config`` (``null`` deletes a key);
- ``layer``: ``{path: content}`` added as a new top layer to every image;
- ``index_edit``: ``entry-without-platform``, ``duplicate``, ``attestations-only``,
  ``nested``, ``arm64-variant-v8``;
- ``fault``: ``{index|manifests|configs|layers: hang|garbage|wrong-digest|huge|<HTTP
  status>}`` (``manifests``: the platform manifests the index points at);
- ``delete``: ``configs`` or ``layers`` (blobs gone from the registry).
"""

from __future__ import annotations

import copy
import re
import socket
from pathlib import Path

import pytest
import yaml
from fake_registry import FakeRegistry, derive

from grader.docker.registry import MEDIA_OCI_INDEX, RegistryClient
from grader.grading.checks.image import check_image
from grader.grading.rules import get as get_rule

CASES_DIR = Path(__file__).resolve().parents[1] / "rules" / "cases"
REPO = "learner/app"


def _params():
    for path in sorted(CASES_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if data.get("kind") != "manifest":
            continue
        for case in data["cases"]:
            yield pytest.param(data["rule"], case, id=f"{path.stem}-{case['name']}")


def _edit_index(name: str):
    def entry_without_platform(index):
        extra = {k: v for k, v in index["manifests"][0].items() if k != "platform"}
        index["manifests"].append(extra)
        return index

    def duplicate(index):
        index["manifests"] = index["manifests"] * 2
        return index

    def attestations_only(index):
        index["manifests"] = [m for m in index["manifests"] if m.get("annotations")]
        return index

    def nested(index):
        return index  # replaced below: needs the served index's digest

    def arm64_variant_v8(index):
        for entry in index["manifests"]:
            if entry.get("platform", {}).get("architecture") == "arm64":
                entry["platform"]["variant"] = "v8"
        return index

    edits = {
        "entry-without-platform": entry_without_platform,
        "duplicate": duplicate,
        "attestations-only": attestations_only,
        "nested": nested,
        "arm64-variant-v8": arm64_variant_v8,
    }
    return edits[name]


def _nest(registry: FakeRegistry) -> None:
    """Replace ``latest`` by an index whose entries point at the served index."""
    media_type, body = registry.manifests[(REPO, "latest")]
    inner = registry.add_manifest(REPO, body, media_type)
    outer = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": [
            {
                "mediaType": media_type,
                "digest": inner,
                "size": len(body),
                "platform": {"os": "linux", "architecture": arch},
            }
            for arch in ("amd64", "arm64")
        ],
    }
    registry.add_manifest(REPO, outer, tag="latest")


def _blob_keys(registry: FakeRegistry, what: str) -> list[tuple[str, str]]:
    is_config = what == "configs"
    return [k for k, data in registry.blobs.items() if (data[:1] == b"{") == is_config]


def _serve(registry: FakeRegistry, case: dict) -> str:
    ref = derive(
        registry,
        case.get("fixture", "docker-list"),
        REPO,
        config=case.get("config"),
        layer=case.get("layer"),
        index=_edit_index(case["index_edit"]) if "index_edit" in case else None,
    )
    if case.get("index_edit") == "nested":
        _nest(registry)
    for target, fault in case.get("fault", {}).items():
        if target == "index":
            registry.faults["/manifests/latest"] = fault
        elif target == "manifests":
            top = registry.manifests[(REPO, "latest")]
            for (_, name), served in list(registry.manifests.items()):
                if name.startswith("sha256:") and served != top:
                    registry.faults[f"/manifests/{name}"] = fault
        else:
            for _, digest in _blob_keys(registry, target):
                registry.faults[f"/blobs/{digest}"] = fault
    if "delete" in case:
        for key in _blob_keys(registry, case["delete"]):
            del registry.blobs[key]
    if "tag" in case:
        ref = registry.ref(REPO, case["tag"])
    return ref


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("rule", "case"), list(_params()))
def test_manifest_rule_case(rule: str, case: dict) -> None:
    case = copy.deepcopy(case)
    platforms = case.get("platforms", ["linux/amd64", "linux/arm64"])
    auth = "basic" if case.get("registry") == "basic-auth" else None
    with FakeRegistry(auth=auth) as registry:
        credentials = {registry.host: (registry.user, registry.password)}
        client = RegistryClient(
            timeout=1, credentials=credentials if case.get("credentials") else None
        )
        if "image" in case:
            ref = case["image"]
        elif case.get("registry") == "down":
            ref = f"127.0.0.1:{_free_port()}/{REPO}:latest"
        else:
            ref = _serve(registry, case)
        results = check_image(ref, platforms, client, timeout=5)
    hits = [f for r in results for f in r.findings if f.rule == rule]
    described = "\n".join(
        f"{r.id}: {r.status} " + "; ".join(f"{f.rule} {f.message}" for f in r.findings)
        for r in results
    )
    if case["expect"] == "fail":
        assert hits, f"{rule} did not fire:\n{described}"
        template = get_rule(rule)
        for f in hits:
            for name in re.findall(r"\{(\w+)", template.message + template.hint):
                assert "{" + name not in f.message + f.hint, f"unfilled {{{name}}}"
            assert f.hint or template.severity == "info", f"{rule} finding without a hint"
            assert f.severity == template.severity
    else:
        assert case["expect"] == "pass", case
        assert not hits, f"{rule} fired:\n{described}"
    by_id = {r.id: r for r in results}
    for criterion, status in case.get("status", {}).items():
        assert by_id[criterion].status == status, f"{criterion}:\n{described}"
