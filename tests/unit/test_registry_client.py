"""The registry client end to end against a local HTTP server (tests/unit/fake_registry.py):
Accept headers, digest checks, bearer-token and basic auth, redirects, and a hostile or
dead server: every failure is a RegistryError with a kind and a message, within its time."""

from __future__ import annotations

import json
import socket
import time

import pytest
from fake_registry import FakeRegistry, digest_of

from grader.docker.registry import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_DOCUMENT,
    MEDIA_DOCKER_LIST,
    MEDIA_OCI_INDEX,
    RegistryClient,
    RegistryError,
)

INDEX = {
    "schemaVersion": 2,
    "mediaType": MEDIA_OCI_INDEX,
    "manifests": [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + "a" * 64,
            "size": 10,
            "platform": {"architecture": "amd64", "os": "linux"},
        }
    ],
}


@pytest.fixture
def registry():
    with FakeRegistry() as reg:
        yield reg


def kind_of(call) -> RegistryError:
    with pytest.raises(RegistryError) as err:
        call()
    return err.value


def test_fetch_sends_all_four_media_types_and_checks_the_digest(registry):
    digest = registry.add_manifest("app", INDEX, tag="v1")
    doc = RegistryClient(timeout=2).fetch_manifest(registry.ref("app", "v1"))
    assert doc.digest == digest
    assert doc.is_index and doc.media_type == MEDIA_OCI_INDEX
    accept = registry.requests[-1][2]["Accept"]
    for media_type in INDEX_TYPES + MANIFEST_TYPES:
        assert media_type in accept
    # Pinned by digest: fetched by digest, and the content is checked against it.
    pinned = RegistryClient(timeout=2).fetch_manifest(f"{registry.host}/app@{digest}")
    assert pinned.raw == doc.raw
    assert registry.requests[-1][1].endswith(f"/manifests/{digest}")


def test_a_wrong_docker_content_digest_is_a_digest_mismatch(registry):
    registry.add_manifest("app", INDEX, tag="v1")
    registry.faults["/manifests/v1"] = "wrong-digest"
    err = kind_of(lambda: RegistryClient(timeout=2).fetch_manifest(registry.ref("app", "v1")))
    assert err.kind == "digest-mismatch"
    assert "hashes to sha256:" in str(err)


def test_content_that_does_not_match_a_pinned_digest_is_refused(registry):
    digest = registry.add_manifest("app", INDEX, tag="v1")
    registry.faults[f"/manifests/{digest}"] = "garbage"  # body replaced, header still claims it
    err = kind_of(lambda: RegistryClient(timeout=2).fetch_manifest(f"{registry.host}/app@{digest}"))
    assert err.kind == "digest-mismatch"
    assert digest in str(err)


@pytest.mark.parametrize(
    "body",
    [b"<html>503 from a proxy</html>", b"[" * 200_000, b'"just a string"', b"\xff\xfe\x00"],
    ids=["html", "deeply-nested", "not-an-object", "binary"],
)
def test_garbage_documents(registry, body):
    registry.add_manifest("app", body, "application/vnd.oci.image.index.v1+json", tag="bad")
    err = kind_of(lambda: RegistryClient(timeout=2).fetch_manifest(registry.ref("app", "bad")))
    assert err.kind == "garbage"


def test_a_deeply_nested_document_is_refused_by_its_depth(registry):
    body = b'{"manifests": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    registry.add_manifest("app", body, "application/vnd.oci.image.index.v1+json", tag="deep")
    err = kind_of(lambda: RegistryClient(timeout=2).fetch_manifest(registry.ref("app", "deep")))
    assert err.kind == "garbage" and "nested 5001 levels deep" in str(err)


def test_a_token_endpoint_answering_deeply_nested_json():
    # Was a RecursionError escaping the client (not a RegistryError): a crash of the grader.
    with FakeRegistry(auth="bearer") as reg:
        reg.faults["/token"] = "nested"
        err = kind_of(lambda: RegistryClient(timeout=5).fetch_manifest(reg.ref("org/app", "v1")))
        assert err.kind == "auth" and "nested" in str(err)


def test_an_endless_body_stops_at_the_size_limit(registry):
    registry.add_manifest("app", INDEX, tag="v1")
    registry.faults["/manifests/v1"] = "huge"
    start = time.monotonic()
    err = kind_of(lambda: RegistryClient(timeout=5).fetch_manifest(registry.ref("app", "v1")))
    assert err.kind == "too-large"
    assert str(MAX_DOCUMENT) in str(err)
    assert time.monotonic() - start < 5


def test_a_server_that_never_answers_times_out(registry):
    registry.faults["/manifests/v1"] = "hang"
    start = time.monotonic()
    err = kind_of(lambda: RegistryClient(timeout=0.5).fetch_manifest(registry.ref("app", "v1")))
    assert err.kind == "timeout"
    assert time.monotonic() - start < 3


def test_a_server_that_drips_bytes_meets_the_deadline(registry):
    # One byte every 50 ms never trips a per-read timeout; the whole-document deadline must.
    registry.add_manifest("app", INDEX, tag="v1")
    registry.faults["/manifests/v1"] = "drip"
    start = time.monotonic()
    err = kind_of(lambda: RegistryClient(timeout=0.6).fetch_manifest(registry.ref("app", "v1")))
    assert err.kind == "timeout"
    assert time.monotonic() - start < 3


def test_a_body_cut_short_is_not_mistaken_for_the_end(registry):
    registry.add_manifest("app", INDEX, tag="v1")
    registry.faults["/manifests/v1"] = "cut"
    err = kind_of(lambda: RegistryClient(timeout=2).fetch_manifest(registry.ref("app", "v1")))
    assert err.kind == "unreachable"
    assert "closed" in str(err)


def test_something_that_is_not_http(registry):
    registry.faults["/manifests/v1"] = "bad-status"
    err = kind_of(lambda: RegistryClient(timeout=2).fetch_manifest(registry.ref("app", "v1")))
    assert err.kind == "unreachable"


def test_nothing_listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = kind_of(lambda: RegistryClient(timeout=2).fetch_manifest(f"127.0.0.1:{port}/app:v1"))
    assert err.kind == "unreachable"
    assert f"127.0.0.1:{port}" in str(err)


@pytest.mark.parametrize(("status", "kind"), [(404, "not-found"), (500, "http"), (403, "auth")])
def test_http_errors_carry_the_registry_message(registry, status, kind):
    registry.faults["/manifests/v1"] = status
    err = kind_of(lambda: RegistryClient(timeout=2).fetch_manifest(registry.ref("app", "v1")))
    assert err.kind == kind
    if status != 404:
        assert "injected" in str(err)


def test_a_missing_tag_is_not_found(registry):
    err = kind_of(lambda: RegistryClient(timeout=2).fetch_manifest(registry.ref("app", "nope")))
    assert err.kind == "not-found"
    assert "MANIFEST_UNKNOWN" in str(err)


def test_anonymous_bearer_token_flow():
    with FakeRegistry(auth="bearer") as reg:
        reg.add_manifest("org/app", INDEX, tag="v1")
        client = RegistryClient(timeout=2)
        assert client.fetch_manifest(reg.ref("org/app", "v1")).is_index
        assert len(reg.token_requests) == 1
        query = reg.token_requests[0]
        assert "scope=repository%3Aorg%2Fapp%3Apull" in query and "service=fake" in query
        assert "Authorization" not in reg.requests[1][2]  # the token request itself: anonymous
        # The token is reused for the next request to the same repository.
        client.fetch_manifest(reg.ref("org/app", "v1"))
        assert len(reg.token_requests) == 1
        assert reg.requests[-1][2]["Authorization"] == f"Bearer {FakeRegistry.TOKEN}"


def test_bearer_token_with_credentials():
    with FakeRegistry(auth="bearer") as reg:
        reg.faults["/token"] = "need-login"
        reg.add_manifest("org/app", INDEX, tag="v1")
        err = kind_of(lambda: RegistryClient(timeout=2).fetch_manifest(reg.ref("org/app", "v1")))
        assert err.kind == "auth" and "401" in str(err)
        client = RegistryClient(timeout=2, credentials={reg.host: ("learner", "s3cret")})
        assert client.fetch_manifest(reg.ref("org/app", "v1")).is_index


def test_a_token_endpoint_without_a_token():
    with FakeRegistry(auth="bearer") as reg:
        reg.faults["/token"] = "no-token"
        err = kind_of(lambda: RegistryClient(timeout=2).fetch_manifest(reg.ref("org/app", "v1")))
        assert err.kind == "auth" and "no token" in str(err)


def test_basic_auth():
    with FakeRegistry(auth="basic") as reg:
        reg.add_manifest("app", INDEX, tag="v1")
        err = kind_of(lambda: RegistryClient(timeout=2).fetch_manifest(reg.ref("app", "v1")))
        assert err.kind == "auth" and "user name and password" in str(err)
        wrong = RegistryClient(timeout=2, credentials={reg.host: ("learner", "nope")})
        assert kind_of(lambda: wrong.fetch_manifest(reg.ref("app", "v1"))).kind == "auth"
        right = RegistryClient(timeout=2, credentials={reg.host: ("learner", "s3cret")})
        assert right.fetch_manifest(reg.ref("app", "v1")).is_index


def test_redirected_blobs_do_not_carry_our_token_to_another_host():
    with FakeRegistry(auth="bearer") as reg, FakeRegistry() as cdn:
        data = b"layer bytes" * 100
        digest = reg.add_blob("app", data)
        cdn.add_blob("app", data)
        reg.redirects[f"/blobs/{digest}"] = f"http://{cdn.host}/v2/app/blobs/{digest}"
        client = RegistryClient(timeout=2)
        assert b"".join(client.iter_blob(client_ref(reg), digest)) == data
        assert reg.requests[-1][2].get("Authorization") == f"Bearer {FakeRegistry.TOKEN}"
        assert "Authorization" not in cdn.requests[-1][2]


def client_ref(reg):
    from grader.docker.registry import Reference

    return Reference.parse(reg.ref("app"))


def test_blob_stream_is_checked_at_its_end_and_bounded(registry):
    data = bytes(range(256)) * 64
    digest = registry.add_blob("app", data)
    client = RegistryClient(timeout=2)
    with client.open_blob(client_ref(registry), digest) as blob:
        assert blob.read_all() == data and blob.complete
    registry.faults[f"/blobs/{digest}"] = "garbage"
    err = kind_of(lambda: client.open_blob(client_ref(registry), digest).read_all())
    assert err.kind == "digest-mismatch"
    registry.faults.clear()
    err = kind_of(lambda: client.open_blob(client_ref(registry), digest, max_bytes=1000).read_all())
    assert err.kind == "too-large"


def test_a_dripping_blob_meets_its_deadline(registry):
    digest = registry.add_blob("app", b"x" * 10_000)
    registry.faults[f"/blobs/{digest}"] = "drip"
    client = RegistryClient(timeout=2)
    start = time.monotonic()
    blob = client.open_blob(client_ref(registry), digest, deadline=time.monotonic() + 0.5)
    err = kind_of(blob.read_all)
    assert err.kind == "timeout"
    assert time.monotonic() - start < 3


def test_push_manifest_then_read_it_back(registry):
    body = json.dumps({**INDEX, "mediaType": MEDIA_DOCKER_LIST}).encode()
    client = RegistryClient(timeout=2)
    digest = client.push_manifest(registry.ref("app", "pushed"), body, MEDIA_DOCKER_LIST)
    assert digest == digest_of(body)
    doc = client.fetch_manifest(registry.ref("app", "pushed"))
    assert doc.raw == body and doc.media_type == MEDIA_DOCKER_LIST
    assert registry.requests[-2][2]["Content-Type"] == MEDIA_DOCKER_LIST


def test_exists_and_tags(registry):
    registry.add_manifest("app", INDEX, tag="v1")
    client = RegistryClient(timeout=2)
    assert client.exists(registry.ref("app", "v1"))
    assert not client.exists(registry.ref("app", "v2"))
    assert client.list_tags(registry.ref("app")) == ["v1"]


# --- is it a registry? (the engine's start-up and the doctor ask) -------------------------


class _Answer:
    """A plain HTTP server on 127.0.0.1 answering every GET with ``status`` and ``headers``."""

    def __init__(self, status: int, headers: dict[str, str]):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        answer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                answer.paths.append(self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


V2 = {"Docker-Distribution-Api-Version": "registry/2.0"}


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [(200, {}, True), (401, V2, True), (401, {}, False), (404, V2, False), (500, {}, False)],
    ids=["200", "401-registry", "401-some-web-server", "404", "500"],
)
def test_registry_answers_tells_a_registry_from_another_server(status, headers, expected):
    from grader.docker.registry import registry_answers

    with _Answer(status, headers) as server:
        assert registry_answers(server.host) is expected
        assert server.paths == ["/v2/"]


def test_registry_answers_for_dead_or_foreign_servers(registry):
    from grader.docker.registry import registry_answers

    registry.faults["/v2/"] = "bad-status"
    assert registry_answers(registry.host) is False
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    assert registry_answers(f"127.0.0.1:{port}", timeout=1) is False
    assert time.monotonic() - start < 3


def test_registry_answers_never_asks_a_proxy_for_a_local_registry(registry, monkeypatch):
    """With http_proxy set (a classroom's), the course registry on 127.0.0.1 is still found:
    the probe goes through the registry client, which never proxies loopback."""
    from grader.docker.registry import registry_answers

    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # discard: nothing listens
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert registry_answers(registry.host) is True
