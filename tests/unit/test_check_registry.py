"""The `manifest` and `image-arch` checks on REAL captured images (tests/fixtures/manifests,
made by capture.py from buildx builds on the course engine), served byte for byte by a local
registry, and on hostile variants of them: every outcome is a status and findings, never a
traceback, within the time limit."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
from fake_registry import FakeRegistry, digest_of, load_fixture

from grader.docker.registry import MEDIA_OCI_INDEX, RegistryClient
from grader.grading.checks.image import check_image
from grader.grading.criteria import BY_ID

FIXTURES = Path(__file__).parents[1] / "fixtures" / "manifests"
SCENARIOS = sorted(p.name for p in FIXTURES.iterdir() if (p / "meta.json").exists())


@pytest.fixture
def registry():
    with FakeRegistry() as reg:
        yield reg


def run(ref, platforms=("linux/amd64", "linux/arm64"), **kw):
    kw.setdefault("client", RegistryClient(timeout=2))
    manifest, image_arch = check_image(ref, platforms, **kw)
    assert (manifest.id, image_arch.id) == ("manifest", "image-arch")
    return manifest, image_arch


def rules_of(result) -> list[str]:
    return [f.rule for f in result.findings]


def messages(result) -> str:
    return "\n".join(f.message for f in result.findings)


# fixture -> (manifest status, image-arch status, manifest rules, image-arch rules)
EXPECTED = {
    "docker-list": ("pass", "pass", ["MF315"], ["MF322", "MF322"]),
    "oci-attestations": ("pass", "pass", ["MF315", "MF312"], ["MF322", "MF322"]),
    "oci-no-attestations": ("pass", "pass", ["MF315"], ["MF322", "MF322"]),
    "zstd-layers": ("pass", "pass", ["MF315"], ["MF322", "MF322"]),
    "single-manifest": ("fail", "pass", ["MF310"], ["MF322"]),
    "amd64-only-index": ("fail", "pass", ["MF315", "MF312", "MF311"], ["MF322"]),
    "host-binary": ("pass", "fail", ["MF315"], ["MF322", "MF321"]),
    "arm64-entry-amd64-config": ("pass", "fail", ["MF315"], ["MF322", "MF320", "MF321"]),
}


def test_every_captured_scenario_has_expectations():
    assert sorted(EXPECTED) == SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_captured_images(registry, scenario):
    ref = load_fixture(registry, scenario, "learner/app")
    manifest, image_arch = run(ref)
    want_manifest, want_arch, manifest_rules, arch_rules = EXPECTED[scenario]
    assert (manifest.status, image_arch.status) == (want_manifest, want_arch), (
        messages(manifest) + "\n" + messages(image_arch)
    )
    assert rules_of(manifest) == manifest_rules
    assert rules_of(image_arch) == arch_rules
    for result in (manifest, image_arch):
        full = BY_ID[result.id].points
        assert result.max_points == full
        assert result.points == (full if result.status == "pass" else 0)


def test_a_passing_index_names_each_platform_digest_config_and_machine(registry):
    ref = load_fixture(registry, "docker-list", "learner/app")
    meta = json.loads((FIXTURES / "docker-list/meta.json").read_text())
    manifest, image_arch = run(ref)
    assert "application/vnd.docker.distribution.manifest.list.v2+json" in messages(manifest)
    assert meta["top"][:19] in messages(manifest)
    by_platform = {f.message.split(" ")[0]: f.message for f in image_arch.findings}
    assert set(by_platform) == {"linux/amd64", "linux/arm64"}
    assert "architecture=arm64" in by_platform["linux/arm64"]
    assert "ARM aarch64" in by_platform["linux/arm64"]
    assert "x86-64" in by_platform["linux/amd64"]
    assert "/hello" in by_platform["linux/arm64"]


def test_attestations_are_reported_not_counted(registry):
    ref = load_fixture(registry, "oci-attestations", "learner/app")
    manifest, _ = run(ref)
    attestation = next(f for f in manifest.findings if f.rule == "MF312")
    assert attestation.severity == "info"
    assert "2 attestation manifest(s)" in attestation.message
    assert "linux/amd64, linux/arm64" in attestation.message  # what they describe
    assert "--provenance=false" in attestation.hint


def test_the_host_binary_is_named_with_both_architectures(registry):
    ref = load_fixture(registry, "host-binary", "learner/app")
    _, image_arch = run(ref)
    wrong = next(f for f in image_arch.findings if f.rule == "MF321")
    assert wrong.message.startswith("linux/arm64 (sha256:")
    assert "x86-64" in wrong.message and "not for arm64" in wrong.message
    assert "TARGETARCH" in wrong.hint


def test_an_arm64_entry_pointing_at_an_amd64_image(registry):
    ref = load_fixture(registry, "arm64-entry-amd64-config", "learner/app")
    _, image_arch = run(ref)
    mismatch = next(f for f in image_arch.findings if f.rule == "MF320")
    assert mismatch.message.startswith("the linux/arm64 entry (sha256:")
    assert "architecture=amd64" in mismatch.message


def test_single_platform_manifest_message(registry):
    ref = load_fixture(registry, "single-manifest", "learner/app")
    manifest, _ = run(ref)
    (finding,) = manifest.findings
    assert "single-platform image (linux/amd64)" in finding.message
    assert "--platform" in finding.hint


def test_missing_platforms_are_named_with_what_is_there(registry):
    ref = load_fixture(registry, "docker-list", "learner/app")
    manifest, _ = run(ref, ("linux/amd64", "linux/arm64", "linux/riscv64", "linux/arm/v7"))
    assert manifest.status == "fail"
    missing = [f for f in manifest.findings if f.rule == "MF311"]
    assert [f.message.split(" ")[4] for f in missing] == ["linux/riscv64", "linux/arm/v7"]
    assert "it lists: linux/amd64, linux/arm64" in missing[0].message
    assert "linux/riscv64" in missing[0].hint


@pytest.mark.parametrize(
    "spelling", [("linux/amd64", "linux/arm64/v8"), ("LINUX/x86_64", "linux/aarch64")]
)
def test_required_platforms_are_normalised(registry, spelling):
    ref = load_fixture(registry, "docker-list", "learner/app")
    manifest, _ = run(ref, spelling)
    assert manifest.status == "pass"


def test_a_malformed_platform_is_a_usage_error(registry):
    with pytest.raises(ValueError):
        check_image(registry.ref("x"), ["arm64"], client=RegistryClient(timeout=1))


# --- the registry misbehaves ------------------------------------------------------------------


def test_missing_tag_fails_both(registry):
    load_fixture(registry, "docker-list", "learner/app")
    manifest, image_arch = run(registry.ref("learner/app", "nope"))
    assert (manifest.status, image_arch.status) == ("fail", "fail")
    assert rules_of(manifest) == ["MF302"] and rules_of(image_arch) == ["MF329"]
    assert "learner/app:nope" in manifest.findings[0].message


def test_registry_down_is_an_error_not_a_fail():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manifest, image_arch = run(f"127.0.0.1:{port}/learner/app:latest")
    assert (manifest.status, image_arch.status) == ("error", "error")
    assert rules_of(manifest) == ["MF301"]
    assert "grader engine up" in manifest.findings[0].hint


def test_a_bad_reference_is_an_error():
    manifest, image_arch = run("127.0.0.1:5000/Learner/App:latest")
    assert (manifest.status, image_arch.status) == ("error", "error")
    assert rules_of(manifest) == ["MF305"]


@pytest.mark.parametrize(
    ("fault", "kind_in_message"),
    [("wrong-digest", "hashes to"), ("garbage", "hashes to"), ("huge", "larger than")],
)
def test_a_broken_index_fails_with_a_message(registry, fault, kind_in_message):
    ref = load_fixture(registry, "docker-list", "learner/app")
    registry.faults["/manifests/latest"] = fault
    manifest, image_arch = run(ref)
    assert manifest.status == "fail" and rules_of(manifest) == ["MF304"]
    assert kind_in_message in manifest.findings[0].message
    assert image_arch.status == "fail"


def test_garbage_json_with_a_valid_digest(registry):
    registry.add_manifest("learner/app", b"{not json", MEDIA_OCI_INDEX, tag="latest")
    manifest, _ = run(registry.ref("learner/app"))
    assert manifest.status == "fail" and "is not JSON" in manifest.findings[0].message


def test_a_registry_that_never_answers_is_an_error_within_the_time_limit(registry):
    load_fixture(registry, "docker-list", "learner/app")
    registry.faults["/manifests/latest"] = "hang"
    start = time.monotonic()
    manifest, _ = run(registry.ref("learner/app"), client=RegistryClient(timeout=0.5))
    assert manifest.status == "error"
    assert time.monotonic() - start < 3


def _top(scenario: str) -> str:
    return json.loads((FIXTURES / scenario / "meta.json").read_text())["top"]


def test_a_hanging_layer_is_an_error_for_image_arch_only(registry):
    ref = load_fixture(registry, "docker-list", "learner/app")
    for path in (FIXTURES / "docker-list" / "blobs").iterdir():
        if path.read_bytes()[:2] == b"\x1f\x8b":
            registry.faults[f"/blobs/sha256:{path.name}"] = "hang"
    start = time.monotonic()
    manifest, image_arch = run(ref, client=RegistryClient(timeout=0.5))
    assert manifest.status == "pass"
    assert image_arch.status == "error" and set(rules_of(image_arch)) == {"MF326"}
    assert time.monotonic() - start < 4


def test_the_whole_check_meets_its_timeout_when_a_layer_drips(registry):
    ref = load_fixture(registry, "docker-list", "learner/app")
    for key, data in list(registry.blobs.items()):
        if data[:2] == b"\x1f\x8b":
            registry.faults[f"/blobs/{key[1]}"] = "drip"  # 50 ms a byte: ~15 s a layer
    start = time.monotonic()
    manifest, image_arch = run(ref, timeout=1.0)
    assert manifest.status == "pass" and image_arch.status == "error"
    assert "took longer" in messages(image_arch) or "out of time" in messages(image_arch)
    assert time.monotonic() - start < 3


def test_a_deleted_config_blob_fails_image_arch(registry):
    ref = load_fixture(registry, "docker-list", "learner/app")
    for key in [k for k in registry.blobs if registry.blobs[k][:1] == b"{"]:
        del registry.blobs[key]
    manifest, image_arch = run(ref)
    assert manifest.status == "pass"
    assert image_arch.status == "fail" and set(rules_of(image_arch)) == {"MF326"}
    assert "BLOB_UNKNOWN" in messages(image_arch)


def test_a_garbage_layer_fails_image_arch(registry):
    ref = load_fixture(registry, "docker-list", "learner/app")
    for key, data in list(registry.blobs.items()):
        if data[:2] == b"\x1f\x8b":
            registry.faults[f"/blobs/{key[1]}"] = "garbage"
    _, image_arch = run(ref)
    assert image_arch.status == "fail"
    assert "digest" in messages(image_arch) or "not a readable" in messages(image_arch)


# --- hand-made indexes and configs, derived from the captured ones ---------------------------


def _fixture_docs(scenario: str) -> tuple[dict, dict[str, dict]]:
    root = FIXTURES / scenario
    top = json.loads((root / "manifests" / _top(scenario).split(":")[1]).read_bytes())
    children = {
        f"sha256:{p.name}": json.loads(p.read_bytes()) for p in (root / "manifests").iterdir()
    }
    return top, children


def _serve_index(registry, scenario, edit) -> str:
    load_fixture(registry, scenario, "learner/app", tag="original")
    index, _ = _fixture_docs(scenario)
    index = edit(copy.deepcopy(index))
    registry.add_manifest("learner/app", json.dumps(index).encode(), index["mediaType"], "latest")
    return registry.ref("learner/app")


def test_an_entry_without_platform_is_a_warning(registry):
    def edit(index):
        extra = dict(index["manifests"][0])
        extra.pop("platform")
        index["manifests"].append(extra)
        return index

    manifest, _ = run(_serve_index(registry, "docker-list", edit))
    assert manifest.status == "pass"
    assert "MF313" in rules_of(manifest)


def test_duplicate_platform_entries(registry):
    manifest, _ = run(
        _serve_index(registry, "docker-list", lambda ix: {**ix, "manifests": ix["manifests"] * 2})
    )
    assert rules_of(manifest).count("MF314") == 2


def test_arm64_v8_in_the_index_is_arm64(registry):
    def edit(index):
        for entry in index["manifests"]:
            if entry["platform"]["architecture"] == "arm64":
                entry["platform"]["variant"] = "v8"
        return index

    manifest, image_arch = run(_serve_index(registry, "docker-list", edit))
    assert (manifest.status, image_arch.status) == ("pass", "pass")


def test_an_index_of_attestations_only(registry):
    def edit(index):
        index["manifests"] = [m for m in index["manifests"] if "annotations" in m]
        return index

    manifest, image_arch = run(_serve_index(registry, "oci-attestations", edit))
    assert manifest.status == "fail" and rules_of(image_arch) == ["MF328"]


def test_an_index_nested_in_an_index(registry):
    load_fixture(registry, "docker-list", "learner/app", tag="inner")
    inner = _top("docker-list")
    size = len(registry.manifests[("learner/app", inner)][1])
    outer = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_OCI_INDEX,
                "digest": inner,
                "size": size,
                "platform": {"os": "linux", "architecture": arch},
            }
            for arch in ("amd64", "arm64")
        ],
    }
    registry.add_manifest("learner/app", outer, tag="latest")
    _, image_arch = run(registry.ref("learner/app"))
    assert image_arch.status == "fail" and set(rules_of(image_arch)) == {"MF327"}


def _serve_with_config(registry, scenario, edit_config) -> str:
    """The scenario's amd64 image with an edited config, as a single-platform index."""
    load_fixture(registry, scenario, "learner/app", tag="original")
    index, docs = _fixture_docs(scenario)
    entry = next(m for m in index["manifests"] if m["platform"]["architecture"] == "amd64")
    manifest = copy.deepcopy(docs[entry["digest"]])
    config = json.loads(registry.blobs[("learner/app", manifest["config"]["digest"])])
    body = json.dumps(edit_config(config)).encode()
    manifest["config"]["digest"] = registry.add_blob("learner/app", body)
    manifest["config"]["size"] = len(body)
    raw = json.dumps(manifest).encode()
    digest = registry.add_manifest("learner/app", raw, manifest["mediaType"])
    index["manifests"] = [{**entry, "digest": digest, "size": len(raw)}]
    registry.add_manifest("learner/app", index, tag="latest")
    assert digest_of(raw) == digest
    return registry.ref("learner/app")


def test_no_entrypoint_is_a_warning_not_a_failure(registry):
    def edit(config):
        config["config"].pop("Entrypoint", None)
        config["config"].pop("Cmd", None)
        return config

    _, image_arch = run(_serve_with_config(registry, "docker-list", edit), ["linux/amd64"])
    assert image_arch.status == "pass" and rules_of(image_arch) == ["MF324"]


def test_an_entrypoint_that_is_not_in_the_image(registry):
    def edit(config):
        config["config"]["Entrypoint"] = ["/app/server"]
        return config

    _, image_arch = run(_serve_with_config(registry, "docker-list", edit), ["linux/amd64"])
    assert image_arch.status == "fail" and rules_of(image_arch) == ["MF323"]
    assert "/app does not exist" in messages(image_arch)
    assert "docker run --platform linux/amd64" in image_arch.findings[0].hint


@pytest.mark.parametrize(
    "weird",
    [
        {"config": "not a dict"},
        {"config": {"Entrypoint": "/hello", "Env": "PATH=/"}},
        {"config": {"Entrypoint": [1, 2], "Cmd": {"a": 1}}},
        {"os": 7, "architecture": ["amd64"], "variant": None},
        {"config": {"Entrypoint": ["/hello"], "WorkingDir": 5}},
    ],
    ids=["config-string", "strings-not-lists", "wrong-types", "platform-types", "workdir"],
)
def test_strange_configs_never_raise(registry, weird):
    ref = _serve_with_config(registry, "docker-list", lambda c: {**c, **weird})
    manifest, image_arch = run(ref, ["linux/amd64"])
    assert manifest.status == "pass"
    assert image_arch.status in ("pass", "fail")
    assert image_arch.findings


@pytest.mark.parametrize(
    "index",
    [
        {"mediaType": MEDIA_OCI_INDEX, "manifests": "nope"},
        {"mediaType": MEDIA_OCI_INDEX, "manifests": [1, 2]},
        {"mediaType": MEDIA_OCI_INDEX, "manifests": [{"digest": 5}]},
        {
            "mediaType": MEDIA_OCI_INDEX,
            "manifests": [
                {
                    "digest": "sha256:" + "0" * 64,
                    "platform": {"os": 1, "architecture": None},
                    "annotations": ["x"],
                }
            ],
        },
        {
            "mediaType": MEDIA_OCI_INDEX,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "md5:abc",
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        },
    ],
    ids=["manifests-string", "manifests-ints", "digest-int", "platform-types", "bad-digest"],
)
def test_strange_indexes_never_raise(registry, index):
    registry.add_manifest("learner/app", index, tag="latest")
    manifest, image_arch = run(registry.ref("learner/app"))
    assert manifest.status in ("fail", "error") or image_arch.status in ("fail", "error")
    assert manifest.findings and image_arch.findings
