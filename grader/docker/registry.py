"""The one registry client: OCI distribution API v2, as the grader, widgets and engine need it.

- image references parsed and normalised the way docker does (``python:3.11-slim`` ->
  ``registry-1.docker.io/library/python:3.11-slim``);
- manifests fetched with an Accept header for both index types and both manifest types,
  and every body checked against its digest;
- anonymous bearer tokens (Docker Hub, GHCR) and basic auth; plain HTTP for localhost;
- blobs streamed, so a layer can be read up to one file without fetching whole images.

Every call has a time limit; every failure is a :class:`RegistryError` with a message
a learner can act on (never a raw traceback).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.docker import boundedjson

DOCKER_HUB = "registry-1.docker.io"

#: ``host:port`` of a registry that serves Docker Hub names instead of Docker Hub, as dockerd's
#: ``registry-mirrors`` does: a class's pull-through cache, or a local registry in tests.
HUB_MIRROR_ENV = "COURSE_HUB_MIRROR"

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
MANIFEST_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)

#: Largest manifest or config accepted; real ones are a few KB.
MAX_DOCUMENT = 4 * 1024 * 1024

#: Digest algorithms whose content we can check (OCI image-spec "Digests").
_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}

ATTESTATION_TYPE = "attestation-manifest"


class RegistryError(Exception):
    """A registry could not be read; ``kind`` says why (unreachable, not-found, auth, garbage,
    digest-mismatch, timeout, too-large, bad-reference)."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


# --- references -------------------------------------------------------------------------

_REF = re.compile(
    r"^(?:(?P<host>(?:[a-zA-Z0-9-]+\.)+[a-zA-Z0-9-]+(?::\d+)?|localhost(?::\d+)?|"
    r"[a-zA-Z0-9-]+:\d+|\[[0-9a-fA-F:]+\](?::\d+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}))?$"
)


@dataclass(frozen=True)
class Reference:
    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, ref: str) -> Reference:
        m = _REF.match(ref.strip())
        if not m:
            raise RegistryError("bad-reference", f"{ref!r} is not a valid image reference")
        host = m["host"] or DOCKER_HUB
        if host in ("docker.io", "index.docker.io"):
            host = DOCKER_HUB
        path = m["path"]
        if host == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        tag = m["tag"]
        if tag is None and m["digest"] is None:
            tag = "latest"
        return cls(host, path, tag, m["digest"])

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def insecure(self) -> bool:
        """Plain HTTP, as dockerd does, for loopback registries."""
        h = self.host.rsplit(":", 1)[0] if not self.host.startswith("[") else self.host
        return h in ("localhost", "127.0.0.1", "[::1]") or h.startswith("127.")

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.host, self.repository, self.tag, digest)

    def __str__(self) -> str:
        s = f"{self.host}/{self.repository}"
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


# --- models -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/arm64/v8`` -> Platform, normalised."""
        parts = text.strip().split("/")
        if len(parts) < 2 or not all(parts):
            raise ValueError(f"{text!r} is not a platform (expected os/arch[/variant])")
        return normalize(parts[0], parts[1], parts[2] if len(parts) > 2 else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


_ARCH_ALIASES = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
}


def normalize(os_: str, arch: str, variant: str | None = None) -> Platform:
    """containerd's normalisation: aarch64 -> arm64, arm64/v8 -> arm64, armhf -> arm/v7, ..."""
    os_ = (os_ or "").lower()
    arch = (arch or "").lower()
    variant = (variant or "").lower() or None
    if arch in _ARCH_ALIASES:
        arch, alias_variant = _ARCH_ALIASES[arch]
        variant = variant or alias_variant
    if arch == "arm64" and variant in ("v8", "8"):
        variant = None
    if arch == "arm" and variant is None:
        variant = "v7"
    if arch == "arm" and variant and not variant.startswith("v"):
        variant = f"v{variant}"
    if arch == "amd64" and variant == "v1":
        variant = None
    return Platform(os_, arch, variant)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Any) -> Descriptor:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
            raise RegistryError("garbage", f"malformed descriptor: {str(d)[:200]}")
        p = d.get("platform")
        platform = None
        if isinstance(p, dict):
            platform = Platform(
                str(p.get("os", "")), str(p.get("architecture", "")), p.get("variant") or None
            )
        ann = d.get("annotations") if isinstance(d.get("annotations"), dict) else {}
        size = d.get("size") if isinstance(d.get("size"), int) else -1
        return cls(str(d.get("mediaType", "")), d["digest"], size, platform, dict(ann))

    @property
    def is_attestation(self) -> bool:
        return self.annotations.get("vnd.docker.reference.type") == ATTESTATION_TYPE or (
            self.platform is not None
            and self.platform.os == "unknown"
            and self.platform.architecture == "unknown"
        )

    @property
    def normalized_platform(self) -> Platform | None:
        if self.platform is None:
            return None
        return normalize(self.platform.os, self.platform.architecture, self.platform.variant)


@dataclass(frozen=True)
class Document:
    """A manifest, index or config as fetched: raw bytes, parsed JSON, digest, media type."""

    reference: Reference
    media_type: str
    digest: str
    raw: bytes
    json: dict

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or (
            "manifests" in self.json and "layers" not in self.json
        )

    @property
    def manifests(self) -> list[Descriptor]:
        items = self.json.get("manifests")
        if not isinstance(items, list):
            return []
        return [Descriptor.from_json(m) for m in items]

    @property
    def config(self) -> Descriptor | None:
        c = self.json.get("config")
        return Descriptor.from_json(c) if c is not None else None

    @property
    def layers(self) -> list[Descriptor]:
        items = self.json.get("layers")
        if not isinstance(items, list):
            return []
        return [Descriptor.from_json(m) for m in items]


# --- the client ---------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hasher(digest: str | None):
    """A fresh hash object for ``digest``'s algorithm, None when it is not one we check."""
    if not digest or ":" not in digest:
        return None
    make = _HASHES.get(digest.split(":", 1)[0])
    return make() if make else None


class _KeepAuthOnSameHost(urllib.request.HTTPRedirectHandler):
    """Follow redirects (registries send blobs to storage hosts), but never carry our
    credentials to another host: a token for the registry is not the CDN's business."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and (
            urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc
        ):
            new.remove_header("Authorization")
        return new


class BlobReader:
    """A response body streamed with limits: at most ``max_bytes``, finished by ``deadline``
    (``time.monotonic()`` seconds), and checked against ``digest`` when read to its end.

    File-like enough for ``gzip``, ``tarfile`` (stream mode) and ``zstandard``. Every failure
    is a :class:`RegistryError`; a body read only in part is not digest-checked.
    """

    def __init__(
        self,
        resp,
        what: str,
        *,
        digest: str | None = None,
        max_bytes: int,
        deadline: float,
        timeout: float,
    ) -> None:
        self._resp = resp
        self.what = what
        self.digest = digest
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.timeout = timeout
        self.bytes_read = 0
        self.complete = False
        self._hash = _hasher(digest)

    def readable(self) -> bool:
        return True

    def _timeout(self) -> RegistryError:
        return RegistryError(
            "timeout", f"reading {self.what} took longer than {self.timeout:g} s; stopped"
        )

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return self.read_all()
        if self.complete or n == 0:
            return b""
        if time.monotonic() > self.deadline:
            raise self._timeout()
        try:
            # read1: at most one socket read, so a server that drips bytes meets the deadline.
            block = self._resp.read1(min(n, 1 << 20))
        except TimeoutError:
            raise self._timeout() from None
        except (http.client.HTTPException, OSError, ValueError) as e:
            raise RegistryError(
                "unreachable", f"the connection broke while reading {self.what}: {e!r}"
            ) from None
        if not block:
            missing = getattr(self._resp, "length", None)
            if missing:
                raise RegistryError(
                    "unreachable",
                    f"the connection closed {missing} bytes before the end of {self.what}",
                )
            self._finish()
            return b""
        self.bytes_read += len(block)
        if self.bytes_read > self.max_bytes:
            raise RegistryError(
                "too-large", f"{self.what} is larger than {self.max_bytes} bytes; stopped"
            )
        if self._hash is not None:
            self._hash.update(block)
        return block

    def read_all(self) -> bytes:
        chunks = []
        while block := self.read(1 << 20):
            chunks.append(block)
        return b"".join(chunks)

    def _finish(self) -> None:
        self.complete = True
        if self._hash is not None:
            actual = f"{self.digest.split(':', 1)[0]}:{self._hash.hexdigest()}"
            if actual != self.digest:
                raise RegistryError(
                    "digest-mismatch",
                    f"{self.what}: content hashes to {actual}, but its digest is {self.digest}",
                )

    def close(self) -> None:
        self._resp.close()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def docker_credentials(config_dir: str | None = None) -> dict[str, tuple[str, str]]:
    """``{host: (user, password)}`` from the docker CLI's ``config.json`` (``$DOCKER_CONFIG``,
    else ``~/.docker``): the ``auths`` entries ``docker login`` writes, as the CLI reads them.
    Credential helpers (``credsStore``) are not asked; an unreadable file gives nothing."""
    folder = Path(config_dir or os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        with open(folder / "config.json", "rb") as f:
            data = boundedjson.loads(f.read(1 << 20))
    except (OSError, ValueError, RecursionError):
        return {}
    auths = data.get("auths") if isinstance(data, dict) else None
    found: dict[str, tuple[str, str]] = {}
    for host, entry in (auths or {}).items() if isinstance(auths, dict) else ():
        token = entry.get("auth") if isinstance(entry, dict) else None
        try:
            user, sep, password = base64.b64decode(token or "").decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            continue
        if sep and user:
            found[host.split("://", 1)[-1].rstrip("/")] = (user, password)
    return found


class RegistryClient:
    """Reads manifests and blobs from one or more registries.

    ``credentials`` maps a registry host to ``(user, password)`` for basic auth or for the
    token endpoint; by default, the ones ``docker login`` stored (:func:`docker_credentials`),
    so a learner on a class hub reads their own namespace as their engine pushes it. Tokens
    are cached per (host, repository).
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        credentials: dict[str, tuple[str, str]] | None = None,
        user_agent: str = "multiplatform-course-grader",
        hub_mirror: str | None = None,
    ) -> None:
        self.timeout = timeout
        mirror = hub_mirror if hub_mirror is not None else os.environ.get(HUB_MIRROR_ENV, "")
        self.hub_mirror = mirror.strip().split("://", 1)[-1].rstrip("/") or None
        self.credentials = docker_credentials() if credentials is None else credentials
        self.user_agent = user_agent
        self._tokens: dict[tuple[str, str], str] = {}
        redirects = _KeepAuthOnSameHost()
        self._opener = urllib.request.build_opener(redirects)
        # A loopback registry is never reached through an http_proxy from the environment.
        self._loopback_opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), redirects
        )

    def resolve(self, ref: Reference) -> Reference:
        """Where ``ref`` is read from: Docker Hub names go to ``hub_mirror`` when one is set."""
        if self.hub_mirror and ref.host == DOCKER_HUB:
            return Reference(self.hub_mirror, ref.repository, ref.tag, ref.digest)
        return ref

    def _urlopen(self, ref: Reference, req: urllib.request.Request):
        opener = self._loopback_opener if ref.insecure else self._opener
        return opener.open(req, timeout=self.timeout)

    # low level
    def _url(self, ref: Reference, path: str) -> str:
        scheme = "http" if ref.insecure else "https"
        return f"{scheme}://{ref.host}/v2/{ref.repository}/{path}"

    def _auth_header(self, ref: Reference) -> dict[str, str]:
        token = self._tokens.get((ref.host, ref.repository))
        if token:
            return {"Authorization": token}
        return {}

    def _open(
        self,
        ref: Reference,
        path: str,
        accept: str | None = None,
        method: str = "GET",
        data: bytes | None = None,
        content_type: str | None = None,
    ):
        url = self._url(ref, path)
        for attempt in range(2):
            headers = {"User-Agent": self.user_agent, **self._auth_header(ref)}
            if accept:
                headers["Accept"] = accept
            if content_type:
                headers["Content-Type"] = content_type
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                return self._urlopen(ref, req)
            except urllib.error.HTTPError as e:
                if e.code == 401 and attempt == 0:
                    self._authenticate(ref, e.headers.get("WWW-Authenticate", ""))
                    continue
                raise self._http_error(ref, path, e) from None
            except TimeoutError:
                raise RegistryError(
                    "timeout", f"{ref.host} did not answer within {self.timeout:g} s"
                ) from None
            except urllib.error.URLError as e:
                reason = e.reason
                if isinstance(reason, (TimeoutError, socket.timeout)):
                    raise RegistryError(
                        "timeout", f"{ref.host} did not answer within {self.timeout:g} s"
                    ) from None
                raise RegistryError(
                    "unreachable", f"cannot reach registry {ref.host}: {reason}"
                ) from None
            except (ConnectionError, OSError, http.client.HTTPException) as e:
                raise RegistryError(
                    "unreachable", f"cannot reach registry {ref.host}: {e!r}"
                ) from None
        raise RegistryError("auth", f"{ref.host} refused our credentials for {ref.repository}")

    def _http_error(self, ref: Reference, path: str, e: urllib.error.HTTPError) -> RegistryError:
        detail = ""
        try:
            body = boundedjson.loads(e.read(65536) or b"{}")
            errs = body.get("errors") or []
            if errs and isinstance(errs[0], dict):
                detail = f" ({errs[0].get('code')}: {str(errs[0].get('message'))[:200]})"
        except Exception:
            pass  # an error body that is not the registry's JSON adds nothing
        if e.code == 404:
            what = "manifest" if path.startswith("manifests/") else "blob"
            return RegistryError(
                "not-found",
                f"{ref.host}/{ref.repository}: {what} {path.split('/', 1)[1]} not found{detail}",
            )
        if e.code in (401, 403):
            return RegistryError(
                "auth", f"{ref.host} denied access to {ref.repository} (HTTP {e.code}){detail}"
            )
        return RegistryError("http", f"{ref.host} answered HTTP {e.code} for {path}{detail}")

    def _authenticate(self, ref: Reference, challenge: str) -> None:
        """Answer a 401: basic auth, or the bearer token flow (anonymous unless credentials)."""
        scheme, _, params = challenge.partition(" ")
        creds = self.credentials.get(ref.host)
        if scheme.lower() == "basic":
            if not creds:
                raise RegistryError(
                    "auth", f"{ref.host} needs a user name and password (basic auth)"
                )
            user_pass = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            self._tokens[(ref.host, ref.repository)] = f"Basic {user_pass}"
            return
        if scheme.lower() != "bearer":
            raise RegistryError("auth", f"{ref.host} asked for unsupported auth {challenge!r}")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.pop("realm", None)
        if not realm:
            raise RegistryError("auth", f"{ref.host} sent a bearer challenge with no realm")
        fields.setdefault("scope", f"repository:{ref.repository}:pull")
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(fields)
        headers = {"User-Agent": self.user_agent}
        if creds:
            headers["Authorization"] = (
                "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            )
        if not realm.startswith(("https://", "http://")):
            raise RegistryError("auth", f"{ref.host} sent a bearer realm that is not a URL")
        token_ref = Reference(urllib.parse.urlsplit(realm).netloc or ref.host, "token")
        try:
            with self._urlopen(token_ref, urllib.request.Request(url, headers=headers)) as resp:
                body = boundedjson.loads(
                    BlobReader(
                        resp,
                        f"the token from {realm}",
                        max_bytes=MAX_DOCUMENT,
                        deadline=time.monotonic() + self.timeout,
                        timeout=self.timeout,
                    ).read_all()
                )
        except urllib.error.HTTPError as e:
            raise RegistryError("auth", f"token endpoint {realm} answered HTTP {e.code}") from None
        except RegistryError as e:
            raise RegistryError("auth", f"token endpoint {realm} failed: {e}") from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            raise RegistryError("auth", f"token endpoint {realm} failed: {e!r}") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise RegistryError("auth", f"token endpoint {realm} returned no token")
        self._tokens[(ref.host, ref.repository)] = f"Bearer {token}"

    def _read_document(self, ref: Reference, path: str, accept: str | None, expect: str | None):
        deadline = time.monotonic() + self.timeout
        with self._open(ref, path, accept) as resp:
            media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
            header_digest = resp.headers.get("Docker-Content-Digest")
            raw = BlobReader(
                resp,
                f"{ref.host}/{ref.repository}: {path}",
                max_bytes=MAX_DOCUMENT,
                deadline=deadline,
                timeout=self.timeout,
            ).read_all()
        digest = _sha256(raw)
        for claimed, source in ((expect, "the reference"), (header_digest, "the registry")):
            if not claimed:
                continue
            hasher = _hasher(claimed)
            if hasher is None:
                raise RegistryError(
                    "garbage", f"{source} names a digest we cannot check: {claimed[:80]!r}"
                )
            hasher.update(raw)
            actual = f"{claimed.split(':', 1)[0]}:{hasher.hexdigest()}"
            if claimed != actual:
                raise RegistryError(
                    "digest-mismatch",
                    f"{ref.host}/{ref.repository}: content of {path} hashes to {actual}, "
                    f"but {source} says {claimed}",
                )
        try:
            doc = boundedjson.loads(raw)
        except boundedjson.TooDeep as e:
            raise RegistryError("garbage", f"{ref.host}/{ref.repository}: {path}: {e}") from None
        except ValueError:
            raise RegistryError(
                "garbage", f"{ref.host}/{ref.repository}: {path} is not JSON"
            ) from None
        if not isinstance(doc, dict):
            raise RegistryError("garbage", f"{ref.host}/{ref.repository}: {path} is not an object")
        media_type = doc.get("mediaType") or media_type
        return Document(ref, str(media_type), digest, raw, doc)

    # public API
    def answers(self, host: str) -> bool:
        """True when ``host`` speaks the registry API over plain HTTP (the course's registries
        are local): GET /v2/ is 200, or 401 with ``Docker-Distribution-Api-Version:
        registry/2`` (a web server that merely answers 401 is not a registry)."""
        req = urllib.request.Request(f"http://{host}/v2/", headers={"User-Agent": self.user_agent})
        try:
            with self._urlopen(Reference(host, "x"), req) as resp:
                return resp.status == 200 or _speaks_v2(resp.headers)
        except urllib.error.HTTPError as e:
            return e.code == 401 and _speaks_v2(e.headers)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
            return False

    def fetch_manifest(self, ref: Reference | str) -> Document:
        """The manifest or index ``ref`` names, digest-verified."""
        ref = self.resolve(Reference.parse(ref) if isinstance(ref, str) else ref)
        return self._read_document(ref, f"manifests/{ref.reference}", ACCEPT, ref.digest)

    def fetch_child(self, parent: Document, desc: Descriptor) -> Document:
        """A manifest an index points at."""
        ref = parent.reference.with_digest(desc.digest)
        return self._read_document(ref, f"manifests/{desc.digest}", ACCEPT, desc.digest)

    def fetch_config(self, manifest: Document) -> Document:
        """An image manifest's config blob, digest-verified."""
        cfg = manifest.config
        if cfg is None:
            raise RegistryError("garbage", f"{manifest.reference} has no config descriptor")
        return self._read_document(manifest.reference, f"blobs/{cfg.digest}", None, cfg.digest)

    def open_blob(
        self,
        ref: Reference,
        digest: str,
        *,
        max_bytes: int = 1 << 40,
        deadline: float | None = None,
    ) -> BlobReader:
        """A blob for streaming (caller closes it): bounded by ``max_bytes`` and ``deadline``
        (``time.monotonic()`` seconds; default now + 30 x timeout), digest-checked at its end."""
        budget = self.timeout * 30
        if deadline is None:
            deadline = time.monotonic() + budget
        else:
            budget = max(0.0, deadline - time.monotonic())
        ref = self.resolve(ref)
        resp = self._open(ref, f"blobs/{digest}")
        return BlobReader(
            resp,
            f"{ref.host}/{ref.repository}: blob {digest}",
            digest=digest,
            max_bytes=max_bytes,
            deadline=deadline,
            timeout=budget,
        )

    def iter_blob(self, ref: Reference, digest: str, chunk: int = 65536) -> Iterator[bytes]:
        with self.open_blob(ref, digest) as blob:
            while block := blob.read(chunk):
                yield block

    def push_manifest(self, ref: Reference | str, body: bytes, media_type: str) -> str:
        """PUT a manifest or index under ``ref``'s tag (or digest); returns its digest.

        For tests and labs that assemble an index by hand; the blobs it names must exist.
        """
        ref = Reference.parse(ref) if isinstance(ref, str) else ref
        digest = _sha256(body)
        with self._open(
            ref, f"manifests/{ref.reference}", method="PUT", data=body, content_type=media_type
        ) as resp:
            answered = resp.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise RegistryError(
                "digest-mismatch", f"{ref.host} stored {answered} for a body hashing to {digest}"
            )
        return digest

    def exists(self, ref: Reference | str) -> bool:
        ref = self.resolve(Reference.parse(ref) if isinstance(ref, str) else ref)
        try:
            self._open(ref, f"manifests/{ref.reference}", ACCEPT, method="HEAD").close()
            return True
        except RegistryError as e:
            if e.kind == "not-found":
                return False
            raise

    def list_tags(self, ref: Reference | str) -> list[str]:
        ref = self.resolve(Reference.parse(ref) if isinstance(ref, str) else ref)
        doc = self._read_document(ref, "tags/list", None, None)
        tags = doc.json.get("tags") or []
        return [t for t in tags if isinstance(t, str)]


def _speaks_v2(headers) -> bool:
    return "registry/2" in (headers.get("Docker-Distribution-Api-Version") or "")


def registry_answers(host: str, timeout: float = 2.0) -> bool:
    """True when ``host`` (``127.0.0.1:5000``) answers as a registry within ``timeout``."""
    return RegistryClient(timeout=timeout).answers(host)
