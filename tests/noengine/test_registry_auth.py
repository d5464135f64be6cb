"""The course's registry client against registries that require auth, as Docker Hub and a
class registry do: Debian's docker-registry with a token endpoint (anonymous pull tokens,
the flow Binder uses for public images) and with htpasswd basic auth."""

from __future__ import annotations

import pytest
from authregistry import (
    Registry,
    SigningKey,
    TokenServer,
    anonymous_pull,
    htpasswd_auth_yaml,
    token_auth_yaml,
)

from grader.docker.registry import RegistryClient, RegistryError
from grader.engine.baseimages import RECIPES

#: The course registry's busybox stand-in: amd64, arm64 and arm/v7 (its recipe says).
BUSYBOX_PLATFORMS = next(r.platforms for r in RECIPES if r.name == "busybox")


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory, registry_host):
    tmp = tmp_path_factory.mktemp("token-registry")
    key = SigningKey(tmp / "key")
    tokens = TokenServer(key, anonymous_pull)
    registry = Registry(
        tmp / "registry", token_auth_yaml(key, tokens), proxy_remote=f"http://{registry_host}"
    )
    yield registry, tokens
    registry.close()
    tokens.close()


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory, registry_host):
    tmp = tmp_path_factory.mktemp("basic-registry")
    auth = htpasswd_auth_yaml(tmp / "htpasswd", {"ada": "s3cret-pw"})
    registry = Registry(tmp / "registry", auth, proxy_remote=f"http://{registry_host}")
    yield registry
    registry.close()


@pytest.mark.registry
def test_docker_hub_names_through_a_mirror_with_anonymous_tokens(token_registry, monkeypatch):
    registry, tokens = token_registry
    monkeypatch.setenv("COURSE_HUB_MIRROR", registry.host)
    before = len(tokens.requests)
    client = RegistryClient()
    index = client.fetch_manifest("python:3.11-slim")
    platforms = {str(d.platform) for d in index.manifests if not d.is_attestation}
    assert platforms == {"linux/amd64", "linux/arm64"}
    image = client.fetch_child(index, index.manifests[0])
    config = client.fetch_config(image)
    assert config.json["os"] == "linux"
    asked = tokens.requests[before:]
    assert asked and all(u is None for u, _ in asked), "anonymous: no credentials sent"
    assert "repository:library/python:pull" in {s for _, s in asked}, asked
    assert len(asked) == 1, "one token per repository, reused for the children and config"


@pytest.mark.registry
def test_token_registry_refuses_a_forged_token(token_registry):
    """A token the registry cannot verify is refused: the JWT signature really is checked."""
    import urllib.error
    import urllib.request

    registry, _ = token_registry
    req = urllib.request.Request(
        f"http://{registry.host}/v2/library/python/manifests/3.11-slim",
        headers={"Authorization": "Bearer e30.e30.AAAA"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(req, timeout=10)
    assert e.value.code == 401


@pytest.mark.registry
def test_basic_auth_registry(basic_registry):
    ref = f"{basic_registry.host}/library/busybox:latest"
    with pytest.raises(RegistryError, match="needs a user name and password") as e:
        RegistryClient().fetch_manifest(ref)
    assert e.value.kind == "auth"
    with pytest.raises(RegistryError, match="denied access") as e:
        RegistryClient(credentials={basic_registry.host: ("ada", "wrong")}).fetch_manifest(ref)
    assert e.value.kind == "auth"
    good = RegistryClient(credentials={basic_registry.host: ("ada", "s3cret-pw")})
    index = good.fetch_manifest(ref)
    assert {str(d.platform) for d in index.manifests} == set(BUSYBOX_PLATFORMS)
    assert good.exists(ref) and not good.exists(f"{basic_registry.host}/library/busybox:nope")


def test_mirror_only_serves_docker_hub_names(monkeypatch):
    monkeypatch.setenv("COURSE_HUB_MIRROR", "http://127.0.0.1:5999/")
    client = RegistryClient()
    assert client.hub_mirror == "127.0.0.1:5999"
    from grader.docker.registry import Reference

    hub = client.resolve(Reference.parse("python:3.11-slim"))
    assert (hub.host, hub.repository, hub.tag) == ("127.0.0.1:5999", "library/python", "3.11-slim")
    other = Reference.parse("ghcr.io/org/app:1")
    assert client.resolve(other) == other
    assert RegistryClient(hub_mirror="").hub_mirror is None, "an explicit empty value turns it off"
