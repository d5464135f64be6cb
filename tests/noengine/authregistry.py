"""Registries that require auth, for tests: Debian's docker-registry (CNCF distribution) with
htpasswd basic auth, or with ``auth: token:`` behind a small token endpoint of our own.

The token endpoint is what Docker Hub's auth.docker.io does (the distribution token spec):
GET /token?service=...&scope=repository:NAME:pull,push, optional basic credentials, answer
``{"token": JWT}``. The JWT is RS256-signed with a self-signed key made by ``openssl`` and
carries the certificate in ``x5c``; the registry trusts that certificate (rootcertbundle).
A ``policy(user, repository, actions) -> granted actions`` function decides, so one server
can be anonymous-read-only (Docker Hub) or per-student namespaces (a class).

Each server runs on a free port in 5100-5199 (the range this project's tests may use) with
its storage in a temporary folder, and is stopped by ``close()``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import secrets
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from grader import proc

SERVICE = "course-test-registry"
ISSUER = "course-test-token-issuer"

Policy = Callable[[str | None, str, list[str]], list[str]]


def anonymous_pull(user: str | None, repository: str, actions: list[str]) -> list[str]:
    """Docker Hub's rule for public images: anyone may pull, nobody may push."""
    return [a for a in actions if a == "pull"]


def own_namespace(user: str | None, repository: str, actions: list[str]) -> list[str]:
    """A class's rule: learners read every repository and push only under ``<their name>/``.

    Reading everything matters: BuildKit mounts a layer from any repository it saw the
    layer in, and a token that cannot pull there fails the push (insufficient_scope).
    """
    if not user:
        return []
    allowed = ("pull", "push") if repository.startswith(f"{user}/") else ("pull",)
    return [a for a in actions if a in allowed]


def free_port(low: int = 5100, high: int = 5199) -> int:
    ports = list(range(low, high + 1))
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    """A self-signed RSA key + certificate made by openssl, and RS256 signing with it."""

    directory: Path
    key: Path = field(init=False)
    cert: Path = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = self.directory / "token.key"
        self.cert = self.directory / "token.crt"
        if not (self.key.exists() and self.cert.exists()):  # else made by the guide's openssl
            proc.run(
                [
                    "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=course-test-token-issuer",
                    "-keyout", self.key, "-out", self.cert,
                ],
                timeout=60,
            )  # fmt: skip
        pem = self.cert.read_text()
        body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
        self.x5c = body  # base64 DER, as the JWT x5c header wants it
        self._lock = threading.Lock()

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        with self._lock:
            data = self.directory / "signing-input"
            sig = self.directory / "signature"
            data.write_text(signing_input)
            proc.run(
                ["openssl", "dgst", "-sha256", "-sign", self.key, "-out", sig, data], timeout=30
            )
            signature = sig.read_bytes()
        return f"{signing_input}.{_b64url(signature)}"


class TokenServer:
    """The token endpoint: Basic credentials (optional) -> a JWT granting what policy allows.

    ``requests`` records ``(user, scope)`` for every token asked for.
    """

    def __init__(
        self,
        key: SigningKey,
        policy: Policy,
        users: dict[str, str] | None = None,
        issuer: str = ISSUER,
    ):
        self.key = key
        self.issuer = issuer
        self.policy = policy
        self.users = users or {}
        self.requests: list[tuple[str | None, str]] = []
        self.port = free_port()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                """The distribution token spec: basic credentials, scope in the query."""
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/token":
                    self.send_error(404)
                    return
                query = urllib.parse.parse_qs(url.query)
                auth = self.headers.get("Authorization", "")
                login = None
                if auth.startswith("Basic "):
                    login = base64.b64decode(auth[6:]).decode().partition(":")[::2]
                self._issue(query, login)

            def do_POST(self) -> None:
                """The OAuth2 password grant BuildKit/containerd use: a form body."""
                if urllib.parse.urlsplit(self.path).path != "/token":
                    self.send_error(404)
                    return
                length = min(int(self.headers.get("Content-Length") or 0), 65536)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                query = {
                    "service": form.get("service", [SERVICE]),
                    "scope": " ".join(form.get("scope", [])).split(),
                }
                login = None
                if form.get("grant_type") == ["password"]:
                    login = (form.get("username", [""])[0], form.get("password", [""])[0])
                self._issue(query, login)

            def _issue(self, query: dict, login: tuple[str, str] | None) -> None:
                user = None
                if login is not None:
                    name, password = login
                    if server.users.get(name) != password:
                        self.send_response(401)
                        self.send_header("Content-Type", "application/json")
                        self.end_headers()
                        self.wfile.write(b'{"details": "incorrect username or password"}')
                        return
                    user = name
                scopes = query.get("scope", [])
                access = []
                for scope in scopes:
                    server.requests.append((user, scope))
                    kind, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    if kind != "repository" or not name:
                        continue
                    granted = server.policy(user, name, actions.split(","))
                    access.append({"type": "repository", "name": name, "actions": granted})
                if not scopes:
                    server.requests.append((user, ""))
                now = int(time.time())
                token = server.key.sign(
                    {
                        "iss": server.issuer,
                        "sub": user or "",
                        "aud": query.get("service", [SERVICE])[0],
                        "exp": now + 300,
                        "nbf": now - 10,
                        "iat": now,
                        "jti": secrets.token_hex(8),
                        "access": access,
                    }
                )
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _answers(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/v2/", timeout=2):
            return True
    except urllib.error.HTTPError as e:
        return e.code == 401
    except (urllib.error.URLError, OSError):
        return False


class Registry:
    """Debian's docker-registry on a free loopback port with the given ``auth:`` section
    (YAML text) and, optionally, ``proxy:`` to another registry (a pull-through cache)."""

    def __init__(
        self,
        directory: Path,
        auth_yaml: str = "",
        proxy_remote: str | None = None,
        *,
        config_text: str | None = None,
        port: int | None = None,
    ):
        """``config_text`` replaces the generated config (it must listen on ``port``)."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        proxy = f"proxy:\n  remoteurl: {proxy_remote}\n" if proxy_remote else ""
        config = directory / "config.yml"
        config.write_text(
            config_text
            or "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
            + auth_yaml
            + proxy
        )
        self._stream = proc.stream(["docker-registry", "serve", str(config)])
        deadline = time.monotonic() + 20
        while not _answers(self.host):
            if time.monotonic() > deadline or self._stream._proc.poll() is not None:
                log = "\n".join(line for _, line in self._drain())
                self.close()
                raise RuntimeError(f"docker-registry on {self.host} did not start:\n{log}")
            time.sleep(0.1)

    def _drain(self):
        with contextlib.suppress(Exception):
            while True:
                item = self._stream._queue.get_nowait()
                if item:
                    yield item

    def close(self) -> None:
        self._stream.cancel()
        self._stream.wait()


def token_auth_yaml(key: SigningKey, token: TokenServer) -> str:
    return (
        "auth:\n  token:\n"
        f"    realm: {token.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
        f"    rootcertbundle: {key.cert}\n"
    )


def htpasswd_auth_yaml(path: Path, users: dict[str, str]) -> str:
    import bcrypt

    path.write_text(
        "".join(
            f"{name}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
            for name, pw in users.items()
        )
    )
    return f"auth:\n  htpasswd:\n    realm: course-test\n    path: {path}\n"
