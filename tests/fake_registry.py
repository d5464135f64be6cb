"""A tiny OCI distribution server on 127.0.0.1:0 for unit tests of the registry client.

It serves manifests (by tag and digest) and blobs (by digest) the way CNCF distribution does
(Content-Type, Docker-Content-Digest, JSON errors), optionally behind basic auth or the
bearer-token flow (its own /token endpoint), and misbehaves on request: ``faults`` maps a
path suffix to ``hang`` (never answers), ``drip`` (one byte at a time), ``garbage`` (a body
that is not what it claims), ``wrong-digest`` (a Docker-Content-Digest that does not match),
``huge`` (an endless body), ``cut`` (closes mid-body), ``bad-status`` (not HTTP at all)
or an HTTP status code.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

#: Images captured from real buildx builds (tests/fixtures/manifests/capture.py).
FIXTURES = Path(__file__).parent / "fixtures" / "manifests"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    TOKEN = "t0ken-for-tests"

    def __init__(self, auth: str | None = None, user: str = "learner", password: str = "s3cret"):
        self.auth = auth  # None, "basic" or "bearer"
        self.user = user
        self.password = password
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.faults: dict[str, str | int] = {}
        self.redirects: dict[str, str] = {}  # path suffix -> URL answered with a 307
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.token_requests: list[str] = []
        self._stop = threading.Event()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                registry._handle(self, "GET")

            def do_HEAD(self):
                registry._handle(self, "HEAD")

            def do_PUT(self):
                registry._handle(self, "PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # setup -----------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def ref(self, repo: str, tag: str = "latest") -> str:
        return f"{self.host}/{repo}:{tag}"

    def add_blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        self.blobs[(repo, digest)] = data
        return digest

    def add_manifest(
        self, repo: str, body: bytes | dict, media_type: str | None = None, tag: str | None = None
    ) -> str:
        if isinstance(body, dict):
            media_type = media_type or body.get("mediaType")
            body = json.dumps(body, indent=2).encode()
        digest = digest_of(body)
        entry = (media_type or "application/json", body)
        self.manifests[(repo, digest)] = entry
        if tag:
            self.manifests[(repo, tag)] = entry
        return digest

    def blob_requests(self, digest: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == "GET" and p.endswith(f"/blobs/{digest}"))

    def __enter__(self) -> FakeRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    # serving ---------------------------------------------------------------------------------
    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        given = h.headers.get("Authorization", "")
        if self.auth == "basic":
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return given == f"Basic {expected}"
        if self.auth == "bearer":
            return given == f"Bearer {self.TOKEN}"
        return True

    def _send(self, h, status, body=b"", headers=None, head_only=False):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head_only:
            h.wfile.write(body)

    def _error(self, h, status, code, message):
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._send(h, status, body, {"Content-Type": "application/json"})

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        self.requests.append((method, url.path, dict(h.headers)))
        if url.path == "/token":
            self.token_requests.append(url.query)
            given = h.headers.get("Authorization", "")
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if self.faults.get("/token") == "no-token":
                return self._send(h, 200, b"{}", {"Content-Type": "application/json"})
            if self.faults.get("/token") == "nested":  # a stack-blowing token answer
                body = b'{"token": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
                return self._send(h, 200, body, {"Content-Type": "application/json"})
            if self.faults.get("/token") == "need-login" and given != f"Basic {expected}":
                return self._error(h, 401, "UNAUTHORIZED", "login first")
            body = json.dumps({"token": self.TOKEN, "expires_in": 300}).encode()
            return self._send(h, 200, body, {"Content-Type": "application/json"})
        if not self._authorized(h):
            if self.auth == "basic":
                challenge = 'Basic realm="fake registry"'
            else:
                repo = url.path.removeprefix("/v2/").rsplit("/", 2)[0]
                challenge = (
                    f'Bearer realm="http://{self.host}/token",service="fake",'
                    f'scope="repository:{repo}:pull"'
                )
            self._send(
                h, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge}
            )
            return
        for suffix, location in self.redirects.items():
            if url.path.endswith(suffix):
                return self._send(h, 307, b"", {"Location": location})
        fault = next((f for suffix, f in self.faults.items() if url.path.endswith(suffix)), None)
        if fault == "hang":
            self._stop.wait(30)
            return
        if fault == "bad-status":
            h.wfile.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
            h.close_connection = True
            return
        if isinstance(fault, int):
            return self._error(h, fault, "FAULT", f"injected HTTP {fault}")
        if url.path == "/v2/" or url.path == "/v2":
            return self._send(h, 200, b"{}", {"Content-Type": "application/json"})
        path = url.path.removeprefix("/v2/")
        if "/manifests/" in path:
            repo, _, ref = path.rpartition("/manifests/")
            if method == "PUT":
                length = int(h.headers.get("Content-Length", "0"))
                body = h.rfile.read(length)
                digest = self.add_manifest(
                    repo, body, h.headers.get("Content-Type"), None if ":" in ref else ref
                )
                return self._send(h, 201, b"", {"Docker-Content-Digest": digest})
            found = self.manifests.get((repo, ref))
            if found is None:
                return self._error(h, 404, "MANIFEST_UNKNOWN", "manifest unknown")
            media_type, body = found
            headers = {"Content-Type": media_type, "Docker-Content-Digest": digest_of(body)}
        elif "/blobs/" in path:
            repo, _, digest = path.rpartition("/blobs/")
            body = self.blobs.get((repo, digest))
            if body is None:
                return self._error(h, 404, "BLOB_UNKNOWN", "blob unknown to registry")
            headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        elif path.endswith("/tags/list"):
            repo = path.removesuffix("/tags/list")
            tags = sorted(r for (rp, r) in self.manifests if rp == repo and ":" not in r)
            body = json.dumps({"name": repo, "tags": tags}).encode()
            headers = {"Content-Type": "application/json"}
        else:
            return self._error(h, 404, "NAME_UNKNOWN", "no such path")
        if fault == "garbage":
            body = b"<html>this is not what you asked for</html>"
        elif fault == "wrong-digest":
            headers["Docker-Content-Digest"] = digest_of(b"something else")
        elif fault == "drip":
            h.send_response(200)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            for i in range(len(body)):
                if self._stop.wait(0.05):
                    return
                try:
                    h.wfile.write(body[i : i + 1])
                    h.wfile.flush()
                except OSError:
                    return
            return
        elif fault == "huge":
            h.send_response(200)
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.close_connection = True
            block = b"x" * 65536
            deadline = time.monotonic() + 20
            try:
                while time.monotonic() < deadline and not self._stop.is_set():
                    h.wfile.write(block)
            except OSError:
                pass
            return
        elif fault == "cut":
            h.send_response(200)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.close_connection = True
            return
        self._send(h, 200, body, headers, head_only=method == "HEAD")


def load_fixture(registry: FakeRegistry, scenario: str, repo: str, tag: str = "latest") -> str:
    """Serve a captured fixture (tests/fixtures/manifests/<scenario>) byte for byte under
    ``repo:tag``; returns the reference."""
    root = FIXTURES / scenario
    meta = json.loads((root / "meta.json").read_text())
    for path in (root / "manifests").iterdir():
        digest = f"sha256:{path.name}"
        body = path.read_bytes()
        assert digest_of(body) == digest, f"{path} does not match its name"
        registry.add_manifest(
            repo, body, meta["media_types"][digest], tag if digest == meta["top"] else None
        )
    for path in (root / "blobs").iterdir():
        registry.add_blob(repo, path.read_bytes())
    return registry.ref(repo, tag)


def tar_layer(files: dict[str, bytes | str]) -> bytes:
    """A gzip layer holding ``files`` (path -> content), executables, parents included."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs: set[str] = set()
        for path, content in files.items():
            name = path.strip("/")
            parts = name.split("/")[:-1]
            for i in range(len(parts)):
                parent = "/".join(parts[: i + 1])
                if parent not in dirs:
                    dirs.add(parent)
                    info = tarfile.TarInfo(parent)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def derive(
    registry: FakeRegistry,
    scenario: str,
    repo: str,
    tag: str = "latest",
    *,
    config: dict | None = None,
    layer: dict[str, bytes | str] | None = None,
    index=None,
) -> str:
    """Serve a captured fixture changed the way a hand-made image would be: ``config``
    merged into every image config's ``config`` section (None deletes a key), ``layer`` added
    on top of every image, ``index`` a function editing the index JSON. Digests and sizes
    are recomputed, attestations re-pointed; returns the reference."""
    load_fixture(registry, scenario, repo, tag="original")
    meta = json.loads((FIXTURES / scenario / "meta.json").read_text())
    top = json.loads((FIXTURES / scenario / "manifests" / meta["top"].split(":")[1]).read_bytes())

    def rewrite(manifest: dict) -> dict:
        manifest = copy.deepcopy(manifest)
        if config is not None:
            cfg = json.loads(registry.blobs[(repo, manifest["config"]["digest"])])
            section = cfg.setdefault("config", {})
            for key, value in config.items():
                if value is None:
                    section.pop(key, None)
                else:
                    section[key] = value
            body = json.dumps(cfg).encode()
            manifest["config"] = {
                **manifest["config"],
                "digest": registry.add_blob(repo, body),
                "size": len(body),
            }
        if layer is not None:
            blob = tar_layer(layer)
            media_type = manifest["layers"][0]["mediaType"].replace("+zstd", "+gzip")
            manifest["layers"] = [
                *manifest["layers"],
                {"mediaType": media_type, "digest": registry.add_blob(repo, blob),
                 "size": len(blob)},
            ]  # fmt: skip
        return manifest

    def publish(manifest: dict) -> tuple[str, int]:
        body = json.dumps(manifest, indent=2).encode()
        return registry.add_manifest(repo, body, manifest["mediaType"]), len(body)

    if "manifests" not in top:
        digest, _ = publish(rewrite(top))
        registry.manifests[(repo, tag)] = registry.manifests[(repo, digest)]
        return registry.ref(repo, tag)
    moved: dict[str, tuple[str, int]] = {}
    for entry in top["manifests"]:
        annotations = entry.get("annotations", {})
        if annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            continue
        child = json.loads(registry.manifests[(repo, entry["digest"])][1])
        moved[entry["digest"]] = publish(rewrite(child))
    for entry in top["manifests"]:
        if entry["digest"] in moved:
            entry["digest"], entry["size"] = moved[entry["digest"]]
        ref = entry.get("annotations", {}).get("vnd.docker.reference.digest")
        if ref in moved:
            entry["annotations"]["vnd.docker.reference.digest"] = moved[ref][0]
    if index is not None:
        top = index(top)
    registry.add_manifest(repo, json.dumps(top, indent=2).encode(), top["mediaType"], tag)
    return registry.ref(repo, tag)
