"""The Docker Engine API, through the Docker SDK (the ``docker`` package): asking an engine
what it is, and finding and removing what grading left on it by label.

Builds stay on the buildx CLI (BuildKit's progress, builders, ``--push``); this module is for
the questions the Engine API answers directly, without a CLI process per question. One client
per engine socket, cached: the grading workers' rootless engines are several, each its own
``DOCKER_HOST``. Every call has a time limit; an engine that does not answer in time is "not
answering" (None or False), never a traceback.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docker import DockerClient

DEFAULT_HOST = "unix:///var/run/docker.sock"
#: Seconds an API call may take (a removal of a large image takes a while; a ping does not).
DEFAULT_TIMEOUT = 60.0

_clients: dict[tuple[str, float], DockerClient] = {}
_lock = threading.Lock()


def engine_host(host: str | None = None) -> str:
    """The engine's address: ``host``, else the DOCKER_HOST of this context (a grading
    worker's, ``proc.environment``), else ``$DOCKER_HOST``, else the local socket."""
    from grader import proc

    return (
        host or proc.overlay().get("DOCKER_HOST") or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    )


def client(host: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> DockerClient:
    """The (cached) SDK client for the engine at ``host``."""
    import docker  # the SDK (requests, urllib3) is loaded only by what talks to an engine

    key = (engine_host(host), float(timeout))
    with _lock:
        if key not in _clients:
            _clients[key] = docker.DockerClient(base_url=key[0], timeout=timeout)
        return _clients[key]


def errors() -> tuple[type[BaseException], ...]:
    """What a call to an engine raises when the engine is gone, hung or refuses."""
    import docker.errors
    import requests

    return (docker.errors.DockerException, requests.RequestException, OSError)


def version(host: str | None = None, timeout: float = 10) -> dict[str, Any] | None:
    """``GET /version``, or None when no engine answers within ``timeout``."""
    try:
        return client(host, timeout).version()
    except errors():
        return None


def info(host: str | None = None, timeout: float = 30) -> tuple[dict[str, Any] | None, str]:
    """``GET /info`` and "" when the engine answers, else None and why not."""
    try:
        return client(host, timeout).info(), ""
    except errors() as e:
        return None, str(e) or type(e).__name__


def answers(host: str | None = None, timeout: float = 10) -> bool:
    """True when an engine answers with its version; a hung or half-started one (seen while
    dockerd restarts after a kill) counts as not answering."""
    v = version(host, timeout)
    return bool(v and v.get("Version"))


def remove_labelled(label: str, host: str | None = None) -> tuple[int, int]:
    """Remove every container (running or not, with its anonymous volumes) and every volume
    carrying ``label`` (``key=value``); returns how many of each were removed."""
    api = client(host)
    containers = volumes = 0
    for c in api.containers.list(all=True, filters={"label": label}):
        containers += _remove_container(c)
    for v in api.volumes.list(filters={"label": label}):
        volumes += _quietly(lambda v=v: v.remove(force=True))
    return containers, volumes


def remove_named(prefix: str, host: str | None = None) -> int:
    """Remove every container whose name starts with ``prefix`` (BuildKit's builder
    containers carry no label of ours, only the name buildx gives them)."""
    api = client(host)
    found = api.containers.list(all=True, filters={"name": f"^/?{prefix}"})
    return sum(_remove_container(c) for c in found if c.name.startswith(prefix))


def remove_container(name: str, host: str | None = None) -> bool:
    """Remove the container ``name`` (stopping it first); False when there was none."""
    import docker.errors

    try:
        return bool(_remove_container(client(host).containers.get(name)))
    except docker.errors.NotFound:
        return False


def _remove_container(c) -> int:
    return _quietly(lambda: c.remove(force=True, v=True))


def _quietly(remove) -> int:
    """1 when ``remove()`` removed it, 0 when it was gone already (another cleanup won)."""
    import docker.errors

    try:
        remove()
    except docker.errors.NotFound:
        return 0
    return 1


def image_tags(host: str | None = None) -> set[str]:
    """``repository:tag`` of every image the engine holds. One ``GET /images/json``: the
    SDK's ``images.list()`` then inspects each image, and fails when another grading removes
    one in between."""
    return {
        t
        for image in client(host).api.images()
        for t in image.get("RepoTags") or ()
        if t != "<none>:<none>"
    }


def remove_images_under(repository: str, host: str | None = None) -> list[str]:
    """Untag the engine's images under ``repository/`` (never others); returns the tags."""
    mine = sorted(t for t in image_tags(host) if t.startswith(repository.rstrip("/") + "/"))
    api = client(host)
    return [t for t in mine if _quietly(lambda t=t: api.images.remove(t))]
