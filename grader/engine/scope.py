"""The registry scope proxy: who may push and pull where in the course registry.

The course registry (Debian's docker-registry, CNCF distribution 2.8, on 127.0.0.1:5000)
is anonymous. This proxy stands in front of it, asks every caller for an HTTP basic
credential (one per submission, per worker or per learner) and lets a caller

- push, pull and delete only in its own namespace ``[<prefix>/]<caller>/...``,
- pull the read-only namespaces (``library/`` base images, the instructor's ``cache/``),
- nothing else: 403 with a registry error body (``DENIED``) that docker prints, and a line in
  ``denied.jsonl`` that the grader turns into a finding.

BuildKit's cross-repository blob mounts (``POST /v2/<name>/blobs/uploads/?mount=D&from=R``)
pass when ``R`` is readable by the caller; otherwise mount and from are dropped and the
registry answers a plain upload session (202), so the client uploads the blob instead and
learns nothing about ``R``. ``_catalog`` lists only what the caller may read; tag lists,
manifests and blobs of other namespaces are refused. Paths must match distribution's name,
tag and digest grammar exactly (no ``%``, no ``..``, no upper case, no absolute-form
targets); the query is rebuilt from the keys each route uses. Bodies are streamed both
ways; headers, bodies, connections, in-flight requests per caller and every wait are capped
(:class:`Limits`).

dockerd 26 and BuildKit answer a ``401`` with ``WWW-Authenticate: Basic`` by sending the
credential from the client's ``config.json`` (``docker login`` or a ``DOCKER_CONFIG`` written
with :func:`docker_config`); no token service is needed. dockerd treats 127.0.0.0/8 as plain
HTTP, so the proxy on another loopback port needs no ``insecure-registries`` entry there.

The interface (everything else is internal):

    start(cfg=None, listen=None) -> dict     # idempotent; pid and log under <state>/
    stop(cfg=None) -> bool                   # stops only the proxy the course started
    status(cfg=None) -> dict                 # {"running", "pid", "listen", "upstream", "callers",
                                             #  "warning": a port any user could bind, or None,
                                             #  "held": former ports kept for older engines,
                                             #  "note": why they are held, or None}
    add_caller(name, namespace=None, admin=False, cfg=None, shared=False, rooted=False) -> str
    remove_caller(name, cfg=None) -> bool
    callers(cfg=None) -> dict[str, dict]     # name -> {"namespace", "admin", "rooted"}
    denied(caller=None, since=None, cfg=None) -> list[dict]   # the refused requests
    docker_config(host, name, secret) -> dict  # a config.json giving that credential

``cfg`` is the engine's :class:`~grader.engine.config.Settings`; the proxy's files live in
``<state>/scope/`` (mode 0700): ``scope.json`` (callers with SHA-256 hashes of their
generated secrets, the prefix and the read-only namespaces; root-owned, mode 0600: the
proxy refuses to start on a file anyone else could read or write), ``denied.jsonl`` and
``listen``. The log is ``<state>/logs/scope.log``, the pid ``<state>/run/scope.pid``.
Callers added or removed while the proxy runs take effect on the next request.
CLI: ``grader engine scope start|stop|status|add|remove|list|denied|settings``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import stat
import struct
import sys
import time
import urllib.parse
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path

#: A privileged port (below ``net.ipv4.ip_unprivileged_port_start``, 1024 unless lowered):
#: only root may bind it, so while the proxy is down no local user (a hub learner, a grading
#: uid) can listen there and receive the credentials the DNAT rules send to it.
DEFAULT_PORT = 580
#: Where earlier versions listened by default (unprivileged): a proxy restarted from there
#: moves to :data:`DEFAULT_PORT` on the same host and keeps listening on the former address
#: too (:func:`held`), since engines started before the move still forward there.
FORMER_PORTS = (5080,)
DEFAULT_READ_ONLY = ("library", "cache")
REALM = "course registry"
#: What the proxy's policy understands; a running proxy of another version is restarted by
#: :func:`start` (one that predates rooted callers would refuse their every request).
POLICY_VERSION = "10-repository-locks"
BODY_BUFFER = 512 * 1024  # per direction of a connection, while a body streams

# distribution's reference grammar (reference/regexp.go), lower case only.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}"
_UUID = r"[A-Za-z0-9_.=-]{1,128}"
COMPONENT_RE = re.compile(_COMPONENT)
NAME_RE = re.compile(_NAME)
DIGEST_RE = re.compile(_DIGEST)
# Route words may not be name components: a path then has exactly one reading, ours and
# the registry's (gorilla mux tries its routes in order; we never have to guess which).
ROUTE_WORDS = {"blobs", "manifests", "tags", "uploads"}
#: First components of the names the course itself uses: the labs' shared repositories
#: (``lab04/run-1``, ``07-challenge/hello``), the read-only namespaces, the rooted kernels'
#: home. A learner's namespace must never be one: rooted callers read a name under another
#: caller's namespace as written (:func:`own_name`), so it would take the labs' names away.
COURSE_NAMES = re.compile(r"lab[0-9]+|[0-9]{2}-[a-z]+|autograde|anonymous|library|cache")
_ROUTES = [
    ("tags", re.compile(rf"/v2/(?P<name>{_NAME})/tags/list")),
    ("manifest", re.compile(rf"/v2/(?P<name>{_NAME})/manifests/(?P<ref>{_TAG}|{_DIGEST})")),
    ("upload_start", re.compile(rf"/v2/(?P<name>{_NAME})/blobs/uploads/")),
    ("upload", re.compile(rf"/v2/(?P<name>{_NAME})/blobs/uploads/(?P<ref>{_UUID})")),
    ("blob", re.compile(rf"/v2/(?P<name>{_NAME})/blobs/(?P<ref>{_DIGEST})")),
]
# What each route does per method: the action the caller needs and the query keys kept.
_ACTIONS = {
    ("base", "GET"): "ping",
    ("base", "HEAD"): "ping",
    ("catalog", "GET"): "catalog",
    ("tags", "GET"): "pull",
    ("manifest", "GET"): "pull",
    ("manifest", "HEAD"): "pull",
    ("manifest", "PUT"): "push",
    ("manifest", "DELETE"): "push",
    ("blob", "GET"): "pull",
    ("blob", "HEAD"): "pull",
    ("blob", "DELETE"): "push",
    ("upload_start", "POST"): "push",
    ("upload", "GET"): "push",
    ("upload", "PATCH"): "push",
    ("upload", "PUT"): "push",
    ("upload", "DELETE"): "push",
}
_QUERY_KEYS = {
    "tags": {"n", "last"},
    "catalog": {"n", "last"},
    "upload_start": {"mount", "from", "digest"},
    "upload": {"_state", "digest"},
}
_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TARGET = re.compile(r"/[A-Za-z0-9/._:=-]*(?:\?[A-Za-z0-9._:=&%+/-]*)?")


@dataclass(frozen=True)
class Limits:
    """Every resource the proxy spends has a cap (each one has a test that hits it)."""

    max_connections: int = 128
    max_connections_per_uid: int = 64  # who owns the client's socket (the kernel says)
    max_inflight_per_caller: int = 32  # anonymous readers: per uid
    max_header_bytes: int = 16 * 1024  # request line + headers (Go's default is 1 MiB)
    max_headers: int = 64
    max_manifest_bytes: int = 4 * 1024 * 1024  # distribution's own manifest limit
    max_body_bytes: int = 4 * 1024 * 1024 * 1024  # one blob upload request
    header_timeout: float = 15.0  # from the first byte of a request to its last header
    idle_timeout: float = 60.0  # between requests on one connection
    body_timeout: float = 60.0  # between two reads of a body, either way
    upstream_timeout: float = 300.0  # for the registry's answer


class Refused(Exception):
    """A request the proxy answers itself: status, registry error code, message."""

    def __init__(self, status: int, code: str, message: str, *, log: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.log = log


# --- routes and policy (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    kind: str  # base, catalog, tags, manifest, blob, upload_start, upload
    name: str = ""
    ref: str = ""
    query: tuple[tuple[str, str], ...] = ()

    def param(self, key: str) -> str | None:
        return next((v for k, v in self.query if k == key), None)

    def target(self, drop: frozenset[str] = frozenset()) -> str:
        """The request target sent upstream: the path we matched and the rebuilt query."""
        path = {
            "base": "/v2/",
            "catalog": "/v2/_catalog",
            "tags": f"/v2/{self.name}/tags/list",
            "manifest": f"/v2/{self.name}/manifests/{self.ref}",
            "blob": f"/v2/{self.name}/blobs/{self.ref}",
            "upload_start": f"/v2/{self.name}/blobs/uploads/",
            "upload": f"/v2/{self.name}/blobs/uploads/{self.ref}",
        }[self.kind]
        kept = [(k, v) for k, v in self.query if k not in drop]
        return path + ("?" + urllib.parse.urlencode(kept) if kept else "")


def parse_target(method: str, target: str) -> tuple[Route, str]:
    """The route and the action a request needs; Refused when it is not one we pass on."""
    if len(target) > 4096 or not _TARGET.fullmatch(target):
        raise Refused(400, "NAME_INVALID", "request target is not a plain registry API path")
    path, _, query = target.partition("?")
    if path == "/v2/":
        kind, name, ref = "base", "", ""
    elif path == "/v2/_catalog":
        kind, name, ref = "catalog", "", ""
    else:
        kind, name, ref = _match_route(path)
    action = _ACTIONS.get((kind, method))
    if action is None:
        raise Refused(405, "UNSUPPORTED", f"{method} is not allowed on this path")
    route = Route(kind, name, ref, _parse_query(query, _QUERY_KEYS.get(kind, set())))
    if kind == "upload_start" and route.param("from") is not None:
        check_name(route.param("from") or "")
    return route, action


def _match_route(path: str) -> tuple[str, str, str]:
    for kind, pattern in _ROUTES:
        m = pattern.fullmatch(path)
        if m:
            check_name(m["name"])
            return kind, m["name"], m.groupdict().get("ref") or ""
    raise Refused(404, "NAME_INVALID", "not a registry API path this proxy serves")


def check_name(name: str) -> None:
    if len(name) > 255 or not NAME_RE.fullmatch(name):
        raise Refused(400, "NAME_INVALID", f"invalid repository name {name[:80]!r}")
    if set(name.split("/")) & ROUTE_WORDS:
        raise Refused(400, "NAME_INVALID", "repository names may not use blobs/manifests/tags")


def _parse_query(query: str, keys: set[str]) -> tuple[tuple[str, str], ...]:
    """Only the keys the route uses, each at most once (the registry reads the first value:
    a second one must not mean something else to it than to us)."""
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise Refused(400, "UNSUPPORTED", "malformed query string") from None
    seen = [k for k, _ in pairs]
    if len(seen) != len(set(seen)):
        raise Refused(400, "UNSUPPORTED", "a query parameter is repeated")
    return tuple((k, v) for k, v in pairs if k in keys)


@dataclass(frozen=True)
class Caller:
    name: str
    namespace: str
    admin: bool = False
    rooted: bool = False  # the names it uses are read inside its namespace (own_name)


#: Who reads a read-only namespace without a credential: a namespace no name is under.
ANONYMOUS = Caller("anonymous", "\x00")


def _under(name: str, namespace: str) -> bool:
    return name == namespace or name.startswith(namespace + "/")


def own_name(
    caller: Caller, name: str, read_only: tuple[str, ...], claimed: frozenset[str] = frozenset()
) -> str:
    """The repository ``name`` means to ``caller``. A rooted caller (a learner's notebook
    kernel under ``grader autograde``, a hub learner: the labs push to names every learner
    shares, like ``lab04/run-1``) has its own copy of every name: ``lab04/run-1`` is
    ``<namespace>/lab04/run-1``. Names in a read-only namespace, names under its namespace's
    first component (its own, the registry's upload URLs) and names under a first component
    another caller's namespace ``claimed`` (another learner's: refused) mean what they say."""
    if not caller.rooted or any(_under(name, ns) for ns in read_only):
        return name
    first = name.split("/")[0]
    if first == caller.namespace.split("/")[0] or first in claimed:
        return name
    return f"{caller.namespace}/{name}"


def allowed(caller: Caller, action: str, name: str, read_only: tuple[str, ...]) -> bool:
    """The whole policy: own namespace for everything, read-only namespaces for pulls, and
    nothing else. An admin may read and write everywhere except the read-only namespaces,
    which no caller of the proxy writes: the course's own tools as root (``engine up``'s base
    images, ``grader cache seed``) write them straight to the registry."""
    if any(_under(name, ns) for ns in read_only):
        return action == "pull"
    return caller.admin or _under(name, caller.namespace)


# --- the scope file -------------------------------------------------------------------------


def scope_dir(cfg=None) -> Path:
    if cfg is None:
        from grader.engine.config import settings

        cfg = settings()
    return cfg.state / "scope"


def _secret_hash(secret: str) -> str:
    # Secrets are 256-bit random tokens we generate, so one SHA-256 is enough (no guessing).
    return hashlib.sha256(secret.encode()).hexdigest()


def _empty() -> dict:
    return {"version": 1, "prefix": "", "read_only": list(DEFAULT_READ_ONLY), "callers": {}}


def load_scope(path: Path, *, strict: bool = True) -> dict:
    """Read scope.json; with ``strict``, refuse a file another user owns or may read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return _empty()
    with os.fdopen(fd) as fh:
        st = os.fstat(fh.fileno())
        if strict and (st.st_uid != os.geteuid() or st.st_mode & 0o077):
            raise PermissionError(
                f"{path} must be owned by uid {os.geteuid()} with mode 0600 "
                f"(it is uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})"
            )
        data = json.load(fh)
    if not isinstance(data, dict) or not isinstance(data.get("callers"), dict):
        raise ValueError(f"{path} is not a scope file")
    return data


def _save_scope(path: Path, data: dict) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


@contextlib.contextmanager
def _editing(cfg=None) -> Iterator[dict]:
    """scope.json, locked for a read-modify-write (two adds at once lose nothing)."""
    directory = scope_dir(cfg)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(directory / "scope.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load_scope(directory / "scope.json")
        yield data
        _save_scope(directory / "scope.json", data)


def configure(prefix: str | None = None, read_only: list[str] | None = None, cfg=None) -> dict:
    """Set the namespace prefix for new callers and the read-only namespaces."""
    with _editing(cfg) as data:
        if prefix is not None:
            prefix = prefix.strip("/")
            if prefix:
                check_name(prefix)
            data["prefix"] = prefix
        if read_only is not None:
            for ns in read_only:
                check_name(ns)
            data["read_only"] = list(read_only)
        return {"prefix": data["prefix"], "read_only": data["read_only"]}


def add_caller(
    name: str,
    namespace: str | None = None,
    admin: bool = False,
    cfg=None,
    shared: bool = False,
    rooted: bool = False,
) -> str:
    """Add (or renew) a caller and return its new secret; its namespace must not overlap a
    read-only namespace or another caller's (``shared``: it may be exactly another caller's,
    as the grader's credential for a hub learner's submission is). ``rooted``: the names it
    uses are read inside its namespace (:func:`own_name`)."""
    if not COMPONENT_RE.fullmatch(name) or len(name) > 64 or name in (*ROUTE_WORDS, "anonymous"):
        raise ValueError(f"caller name {name!r}: use [a-z0-9] with . _ - inside (at most 64)")
    with _editing(cfg) as data:
        ns = namespace.strip("/") if namespace else "/".join(p for p in (data["prefix"], name) if p)
        check_name(ns)
        for other in data["read_only"]:
            if _under(ns, other) or _under(other, ns):
                raise ValueError(f"namespace {ns!r} overlaps the read-only namespace {other!r}")
        if not (admin or rooted) and COURSE_NAMES.fullmatch(ns.split("/")[0]):
            raise ValueError(f"namespace {ns!r}: {ns.split('/')[0]!r} is a name the course uses")
        for who, entry in data["callers"].items():
            theirs = entry["namespace"]
            if shared and ns == theirs:
                continue
            if who != name and (_under(ns, theirs) or _under(theirs, ns)):
                raise ValueError(f"namespace {ns!r} overlaps caller {who!r}'s {theirs!r}")
        secret = secrets.token_urlsafe(32)
        data["callers"][name] = {"sha256": _secret_hash(secret), "namespace": ns, "admin": admin,
                                 "rooted": rooted}  # fmt: skip
    return secret


def remove_caller(name: str, cfg=None) -> bool:
    with _editing(cfg) as data:
        return data["callers"].pop(name, None) is not None


def callers(cfg=None) -> dict[str, dict]:
    data = load_scope(scope_dir(cfg) / "scope.json")
    return {
        n: {
            "namespace": e["namespace"],
            "admin": bool(e.get("admin")),
            "rooted": bool(e.get("rooted")),
        }
        for n, e in data["callers"].items()
    }


def docker_config(host: str, name: str, secret: str) -> dict:
    """A docker ``config.json`` that gives ``name``'s credential for ``host`` (no helpers)."""
    auth = base64.b64encode(f"{name}:{secret}".encode()).decode()
    return {"auths": {host: {"auth": auth}}}


class Scope:
    """scope.json as the running proxy sees it: reloaded when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple | None = None
        self._data = _empty()

    def _fresh(self) -> dict:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._data = load_scope(self.path)
            self._stamp = stamp
        return self._data

    @property
    def read_only(self) -> tuple[str, ...]:
        return tuple(self._fresh()["read_only"])

    @property
    def claimed(self) -> frozenset[str]:
        """The first components of every learner's namespace (``ada`` for ``ada/``); an
        admin's (the instructor, a learner's check of their own work) claims nothing."""
        entries = self._fresh()["callers"].values()
        return frozenset(e["namespace"].split("/")[0] for e in entries if not e.get("admin"))

    def authenticate(self, header: str | None) -> Caller | None:
        if not header or header[:6].lower() != "basic ":
            return None
        try:
            name, sep, secret = (
                base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
            )
        except (ValueError, UnicodeDecodeError):
            return None
        entry = self._fresh()["callers"].get(name) if sep else None
        if entry is None or not hmac.compare_digest(entry["sha256"], _secret_hash(secret)):
            return None
        return Caller(name, entry["namespace"], bool(entry.get("admin")), bool(entry.get("rooted")))


# --- the denied log -------------------------------------------------------------------------


class DeniedLog:
    """denied.jsonl: one line per refused request, capped per caller in a rolling window
    (``per_caller`` lines per ``window`` seconds, then one line saying so) and in total, so a
    hostile caller cannot fill the disk, and a long-lived caller (a hub learner's credential)
    is logged again once its window has passed."""

    def __init__(
        self,
        path: Path,
        per_caller: int = 500,
        total_bytes: int = 32 << 20,
        window: float = 3600.0,
    ) -> None:
        self.path = path
        self.per_caller = per_caller
        self.total_bytes = total_bytes
        self.window = window
        self.counts: dict[str, tuple[float, int]] = {}  # caller -> (window start, lines)

    def _count(self, caller: str, now: float) -> int:
        """This refusal's number in the caller's current window (a new window past the last)."""
        start, n = self.counts.get(caller, (now, 0))
        if now - start >= self.window:
            start, n = now, 0
        if len(self.counts) > 4096:  # callers come and go (one per grading): forget old ones
            self.counts = {c: v for c, v in self.counts.items() if now - v[0] < self.window}
        self.counts[caller] = (start, n + 1)
        return n + 1

    def record(self, caller: str, method: str, target: str, status: int, why: str) -> None:
        now = time.time()
        n = self._count(caller, now)
        if n > self.per_caller + 1:
            return
        row = {
            "time": round(now, 3),
            "caller": caller,
            "method": method[:16],
            "target": target[:300],
            "status": status,
            "why": why[:300],
        }
        if n == self.per_caller + 1:
            row["why"] = (
                f"more than {self.per_caller} refused requests in {self.window:g} s: "
                "no more are logged until that window has passed"
            )
        self._write((json.dumps(row) + "\n").encode())

    def _write(self, line: bytes) -> None:
        """Append; past half the total the file becomes ``<name>.1`` (replacing the one
        before), so the log never stops and both files stay within ``total_bytes``."""
        try:
            if self.path.exists() and self.path.stat().st_size + len(line) > self.total_bytes // 2:
                os.replace(self.path, rotated(self.path))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "ab") as fh:
                fh.write(line)
        except OSError as e:
            print(f"denied log: {e}", file=sys.stderr)


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def denied(caller: str | None = None, since: float | None = None, cfg=None) -> list[dict]:
    """The refused requests (newest last), for one caller and after ``since`` (epoch s)."""
    path = scope_dir(cfg) / "denied.jsonl"
    rows = []
    for part in (rotated(path), path):
        with contextlib.suppress(FileNotFoundError), open(part) as fh:
            for line in fh:
                with contextlib.suppress(ValueError):
                    row = json.loads(line)
                    if (caller is None or row.get("caller") == caller) and (
                        since is None or row.get("time", 0) >= since
                    ):
                        rows.append(row)
    return rows


# --- HTTP -----------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    caller: str = "?"

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name]
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]


def parse_head(raw: bytes, max_headers: int) -> Request:
    """Request line and headers, strictly (what Go accepts and more, never less strict)."""
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise Refused(400, "UNSUPPORTED", "malformed request line")
    if parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise Refused(505, "UNSUPPORTED", "only HTTP/1.0 and HTTP/1.1")
    if len(lines) - 1 > max_headers:
        raise Refused(431, "UNSUPPORTED", f"more than {max_headers} header fields")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name) or any(c in value for c in b"\r\n\0"):
            raise Refused(400, "UNSUPPORTED", "malformed header field")
        headers.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
    return Request(parts[0].decode(), parts[1].decode("latin-1"), parts[2].decode(), headers)


def body_length(req: Request) -> int | None:
    """Content-Length, 0 for none, None for chunked; anything ambiguous is refused."""
    te = req.all("transfer-encoding")
    cl = req.all("content-length")
    if te:
        if cl or len(te) > 1 or te[0].strip().lower() != "chunked":
            raise Refused(400, "UNSUPPORTED", "unsupported Transfer-Encoding")
        return None
    if not cl:
        return 0
    if len(set(cl)) != 1 or not cl[0].isdigit() or len(cl[0]) > 18:
        raise Refused(400, "UNSUPPORTED", "invalid Content-Length")
    return int(cl[0])


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_response(
    status: int, code: str, message: str, *, close: bool = False, head: bool = False
) -> bytes:
    """A registry error answer; ``head``: a HEAD request's, without the body (a body there
    would be read as the next response on a kept connection)."""
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
    headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Docker-Distribution-Api-Version", "registry/2.0"),
    ]
    if status == 401:
        headers.append(("WWW-Authenticate", f'Basic realm="{REALM}"'))
    if status in (429, 503):
        headers.append(("Retry-After", "1"))
    if close:
        headers.append(("Connection", "close"))
    return response_head(status, headers) + (b"" if head else body)


class BodyTooLarge(Exception):
    pass


async def _within(awaitable, timeout: float):
    """``awaitable`` with a deadline; asyncio.timeout (3.11) spares wait_for's extra task
    per body chunk."""
    if not hasattr(asyncio, "timeout"):
        return await asyncio.wait_for(awaitable, timeout)
    async with asyncio.timeout(timeout):
        return await awaitable


async def _read(reader: asyncio.StreamReader, n: int, timeout: float) -> bytes:
    data = await _within(reader.read(n), timeout)
    if not data:
        raise ConnectionError("the peer closed the connection in the middle of a body")
    return data


async def _copy_length(src, dst, length: int, timeout: float) -> None:
    left = length
    while left:
        data = await _read(src, min(left, 1 << 20), timeout)
        left -= len(data)
        dst.write(data)
        if dst.transport.get_write_buffer_size() > 1 << 20:  # backpressure, not per chunk
            await _within(dst.drain(), timeout)


async def _copy_chunked(src, dst, limit: int | None, timeout: float, frame: bool = True) -> None:
    """Relay a chunked body, re-framed by us (chunk extensions and trailers dropped); with
    ``frame`` False, its payload only."""
    total = 0
    while True:
        line = await asyncio.wait_for(src.readuntil(b"\r\n"), timeout)
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or not re.fullmatch(rb"[0-9A-Fa-f]+", size_text):
            raise ConnectionError("malformed chunk size")
        size = int(size_text, 16)
        total += size
        if limit is not None and total > limit:
            raise BodyTooLarge(total)
        if size == 0:
            while (await asyncio.wait_for(src.readuntil(b"\r\n"), timeout)) != b"\r\n":
                pass  # trailers
            if frame:
                dst.write(b"0\r\n\r\n")
            await asyncio.wait_for(dst.drain(), timeout)
            return
        if frame:
            dst.write(b"%x\r\n" % size)
        await _copy_length(src, dst, size, timeout)
        if await asyncio.wait_for(src.readexactly(2), timeout) != b"\r\n":
            raise ConnectionError("malformed chunk")
        if frame:
            dst.write(b"\r\n")


NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, SO_ORIGINAL_DST = 4, 20, 1, 80


def _original_dst(sock: socket.socket) -> tuple[str, int]:
    """Where the client connected to: before a DNAT rule sent it here (conntrack's
    SO_ORIGINAL_DST), else this socket's own address."""
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        if int.from_bytes(raw[:2], sys.byteorder) == socket.AF_INET:
            return socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")
    except OSError:
        pass
    host, port = sock.getsockname()[:2]
    return host, port


def _diag_uid(family: int, src: tuple[str, int], dst: tuple[str, int]) -> int | None:
    """The owner of the one TCP socket whose local end is ``src`` and remote end ``dst``:
    an exact lookup in the kernel's socket table (netlink sock_diag), no scan."""

    def addr(ip: str) -> bytes:
        raw = socket.inet_pton(family, ip)
        return raw + bytes(16 - len(raw))

    sockid = struct.pack(">HH", src[1], dst[1]) + addr(src[0]) + addr(dst[0])
    sockid += struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # any interface, no cookie
    req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    msg = struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1)
        nl.send(msg + req)
        data = nl.recv(8192)
    if len(data) < 88 or struct.unpack_from("=H", data, 4)[0] != SOCK_DIAG_BY_FAMILY:
        return None  # NLMSG_ERROR: no such socket here
    return struct.unpack_from("=I", data, 80)[0]  # inet_diag_msg.idiag_uid


def peer_identity(sock: socket.socket | None) -> str:
    """Who is on the other end of a connection: ``uid N``, the owner of the client's socket
    as the kernel knows it (exact 4-tuple, so neither a TIME_WAIT socket on the same port nor
    an IPv4-mapped IPv6 socket can pass for another uid), or ``ip A`` for a client in another
    network namespace (a pod, a VM)."""
    try:
        peer, dst = sock.getpeername()[:2], _original_dst(sock)
    except (OSError, AttributeError):
        return "unknown"
    ip = peer[0].removeprefix("::ffff:")
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with contextlib.suppress(OSError, ValueError, struct.error):
        uid = _diag_uid(family, (ip, peer[1]), dst)
        if uid is not None:
            return f"uid {uid}"
    return f"ip {ip}"


class _Collected:
    """A body read into memory, as the writer that the copy helpers write to."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.transport = self

    def write(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > self.cap:
            raise BodyTooLarge(len(self.data))

    async def drain(self) -> None:
        return None

    def get_write_buffer_size(self) -> int:
        return 0


@dataclass
class Proxy:
    scope: Scope
    log: DeniedLog
    upstream: tuple[str, int]
    limits: Limits = field(default_factory=Limits)
    connections: int = 0
    per_peer: dict[str, int] = field(default_factory=dict)  # peer_identity -> connections
    inflight: dict[str, int] = field(default_factory=dict)
    manifest_locks: weakref.WeakValueDictionary = field(default_factory=weakref.WeakValueDictionary)

    def say(self, msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        who = None
        if self.connections < self.limits.max_connections:  # the cheap cap first
            who = peer_identity(writer.get_extra_info("socket"))
        why = self._over_connections(who)
        if why:
            self.log.record("-", "-", "-", 503, why)
            writer.write(error_response(503, "TOOMANYREQUESTS", why, close=True))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), 5)
            writer.close()
            return
        self.connections += 1
        self.per_peer[who] = self.per_peer.get(who, 0) + 1
        writer.peer = who
        try:
            first = True
            while await self._one(reader, writer, first):
                first = False
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
            pass
        finally:
            self.connections -= 1
            self.per_peer[who] -= 1
            if not self.per_peer[who]:
                del self.per_peer[who]
            writer.close()

    def _over_connections(self, who: str | None) -> str | None:
        """Why a new connection is refused: too many in all, or from the uid that owns the
        client's socket (so one learner's engine cannot take every connection)."""
        if self.connections >= self.limits.max_connections or who is None:
            return "too many connections"
        if self.per_peer.get(who, 0) >= self.limits.max_connections_per_uid:
            return f"too many connections from {who}"
        return None

    async def _head(self, reader: asyncio.StreamReader, first: bool) -> bytes | None:
        """The next request's head; None when the client is done (EOF or idle)."""
        lim = self.limits
        try:
            start = await asyncio.wait_for(
                reader.read(1), lim.header_timeout if first else lim.idle_timeout
            )
        except asyncio.TimeoutError:
            return None
        if not start:
            return None
        if not start.isalpha():
            # A TLS ClientHello (0x16): BuildKit tries https first and falls back to http
            # only on an HTTP answer, so answer at once instead of waiting for a header end.
            raise Refused(400, "UNSUPPORTED", "this is a plain HTTP registry", log=False)
        try:
            rest = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), lim.header_timeout)
        except asyncio.LimitOverrunError:
            raise Refused(
                431, "UNSUPPORTED", f"request head over {lim.max_header_bytes} bytes"
            ) from None
        except asyncio.TimeoutError:
            raise Refused(408, "UNSUPPORTED", "request head not received in time") from None
        return start + rest

    async def _one(self, reader, writer, first: bool) -> bool:
        """Serve one request; True when the connection may carry another."""
        req = None
        try:
            reader._limit = self.limits.max_header_bytes
            raw = await self._head(reader, first)
            if raw is None:
                return False
            req = parse_head(raw, self.limits.max_headers)
            # StreamReader's limit caps the head (readuntil) but also how much it buffers
            # (2x), so with the head's 16 KiB a body would stream 32 KiB per loop turn.
            # asyncio has no public setter; _limit has been the attribute since Python 3.4.
            reader._limit = BODY_BUFFER
            return await self._serve(req, reader, writer)
        except Refused as r:
            if r.log:
                self._refused(req, r)
            head = req is not None and req.method == "HEAD"
            writer.write(error_response(r.status, r.code, r.message, close=True, head=head))
            await asyncio.wait_for(writer.drain(), self.limits.body_timeout)
            return False

    def _refused(self, req: Request | None, r: Refused) -> None:
        who = getattr(req, "caller", "?") if req else "?"
        method, target = (req.method, req.target) if req else ("-", "-")
        if r.status < 500:  # the caller's doing; a registry failure is not a finding
            self.log.record(who, method, target, r.status, r.message)
        self.say(f"refused {r.status} {who} {method} {target[:200]!r}: {r.message}")

    async def _serve(self, req: Request, reader, writer) -> bool:
        length = body_length(req)
        if len(req.all("host")) != 1:  # the registry builds its Location URLs from it
            raise Refused(400, "UNSUPPORTED", "a request needs exactly one Host header")
        caller = self.scope.authenticate(req.header("authorization"))
        if caller is None and not req.header("authorization"):
            caller = self._anonymous_reader(req)
        if caller is None:
            if req.header("authorization"):
                self.log.record("?", req.method, req.target, 401, "unknown caller or wrong secret")
            writer.write(
                error_response(
                    401,
                    "UNAUTHORIZED",
                    "authentication required",
                    close=length != 0,  # a body we will not read (chunked is None)
                    head=req.method == "HEAD",
                )
            )
            await asyncio.wait_for(writer.drain(), self.limits.body_timeout)
            return length == 0 and _keep_alive(req)
        req.caller = caller.name
        route, action = parse_target(req.method, req.target)
        route = self._own(caller, route)
        drop = self._authorize(caller, route, action, req)
        cap = (
            self.limits.max_manifest_bytes
            if route.kind == "manifest"
            else self.limits.max_body_bytes
        )
        if length and length > cap:
            raise Refused(413, "SIZE_INVALID", f"request body over {cap} bytes")
        budget = caller.name
        if caller is ANONYMOUS:  # one budget per uid, not one for every reader of library/
            budget = f"{caller.name}/{getattr(writer, 'peer', 'unknown')}"
        if self.inflight.get(budget, 0) >= self.limits.max_inflight_per_caller:
            raise Refused(
                429,
                "TOOMANYREQUESTS",
                f"more than {self.limits.max_inflight_per_caller} requests at once",
            )
        self.inflight[budget] = self.inflight.get(budget, 0) + 1
        try:
            if route.kind == "catalog":
                return await self._catalog(caller, writer)
            if route.kind == "manifest":
                return await self._forward_manifest(req, route, length, cap, reader, writer)
            return await self._forward(req, route.target(drop), length, cap, reader, writer)
        finally:
            self.inflight[budget] -= 1
            if not self.inflight[budget]:  # one key per grading caller: forget idle ones
                del self.inflight[budget]

    def _own(self, caller: Caller, route: Route) -> Route:
        """The route with a rooted caller's names read inside its namespace (:func:`own_name`):
        the repository and a mount's source."""
        if not caller.rooted or not route.name:
            return route
        ro, claimed = self.scope.read_only, self.scope.claimed
        query = tuple(
            (k, own_name(caller, v, ro, claimed) if k == "from" else v) for k, v in route.query
        )
        route = replace(route, name=own_name(caller, route.name, ro, claimed), query=query)
        for name in (route.name, route.param("from")):
            if name is not None:
                check_name(name)
        return route

    def _anonymous_reader(self, req: Request) -> Caller | None:
        """A pull from a read-only namespace needs no credential: dockerd sends none to a
        registry mirror, and base images are no secret. Everything else (the ``/v2/`` ping
        included, which tells clients to send their credential) still answers 401."""
        if req.method not in ("GET", "HEAD"):
            return None
        try:
            route, action = parse_target(req.method, req.target)
        except Refused:
            return None
        if action != "pull" or not route.name:
            return None
        if any(_under(route.name, ns) for ns in self.scope.read_only):
            return ANONYMOUS
        return None

    def _authorize(self, caller: Caller, route: Route, action: str, req: Request) -> frozenset[str]:
        """Refuse what the caller may not do; returns query keys to drop (a foreign mount)."""
        if action in ("ping", "catalog"):
            return frozenset()
        read_only = self.scope.read_only
        if not allowed(caller, action, route.name, read_only):
            verb = {"pull": "read", "push": "write to"}[action]
            raise Refused(
                403,
                "DENIED",
                f"{caller.name} may not {verb} {route.name}: your namespace is "
                f"{caller.namespace}/ (read-only: {', '.join(n + '/' for n in read_only)})",
            )
        ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
        if route.kind.startswith("upload") and ctype in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            # Go's FormValue would read parameters (mount, from) out of such a body.
            raise Refused(400, "UNSUPPORTED", f"uploads may not be sent as {ctype}")
        source = route.param("from")
        mounting = route.kind == "upload_start" and route.param("mount") is not None
        if mounting and (source is None or not allowed(caller, "pull", source, read_only)):
            self.say(f"mount fallback {caller.name}: {route.name} from {source!r}: plain upload")
            return frozenset({"mount", "from"})
        return frozenset()

    async def _catalog(self, caller: Caller, writer) -> bool:
        repos: list[str] = []
        for _ in range(100):  # pages of 1000 (the registry's most); 100 000 repositories at most
            last = f"&last={urllib.parse.quote(repos[-1], safe='')}" if repos else ""
            status, body = await self._fetch(f"/v2/_catalog?n=1000{last}", 4 << 20)
            if status != 200:
                raise Refused(502, "UNAVAILABLE", f"the registry answered {status} to _catalog")
            page = [r for r in json.loads(body).get("repositories") or [] if isinstance(r, str)]
            repos += page
            if len(page) < 1000:
                break
        read_only = self.scope.read_only
        mine = sorted(
            r for r in repos if isinstance(r, str) and allowed(caller, "pull", r, read_only)
        )
        out = json.dumps({"repositories": mine}).encode()
        head = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(out))),
            ("Docker-Distribution-Api-Version", "registry/2.0"),
        ]
        writer.write(response_head(200, head) + out)
        await asyncio.wait_for(writer.drain(), self.limits.body_timeout)
        return True

    async def _fetch(self, target: str, cap: int) -> tuple[int, bytes]:
        r, w = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 10)
        try:
            w.write(
                f"GET {target} HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n".encode()
            )
            await w.drain()
            data = await asyncio.wait_for(r.read(cap + 1), self.limits.upstream_timeout)
            while len(data) <= cap:
                more = await asyncio.wait_for(
                    r.read(cap + 1 - len(data)), self.limits.upstream_timeout
                )
                if not more:
                    break
                data += more
        finally:
            w.close()
        if len(data) > cap:
            raise Refused(502, "UNAVAILABLE", "the registry's answer is too large")
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if b"transfer-encoding: chunked" in head.lower():
            body = _dechunk(body)
        return status, body

    async def _forward(self, req: Request, target: str, length, cap: int, reader, writer) -> bool:
        lim = self.limits
        try:
            up_r, up_w = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream, limit=BODY_BUFFER), 10
            )
        except (OSError, asyncio.TimeoutError):
            raise Refused(
                502, "UNAVAILABLE", "the course registry does not answer", log=False
            ) from None
        try:
            if (req.header("expect") or "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            up_w.write(self._upstream_head(req, target, length))
            if length is None:
                try:
                    await _copy_chunked(reader, up_w, cap, lim.body_timeout)
                except BodyTooLarge:
                    raise Refused(413, "SIZE_INVALID", f"request body over {cap} bytes") from None
            elif length:
                await _copy_length(reader, up_w, length, lim.body_timeout)
            await up_w.drain()
            return await self._relay_response(req, up_r, writer)
        finally:
            up_w.close()

    async def _forward_manifest(self, req: Request, route: Route, length, cap, reader, writer):
        """One manifest request at a time per repository.

        distribution 2.8's filesystem storage rewrites link files in place (truncate, then
        write): a manifest PUT rewrites the tag's link and the revision's, so a read of the
        tag or of the digest beside it can find a file empty and answer 500 "invalid checksum
        digest format" or 404; dockerd 26 pushes every manifest of a multi-platform image to
        the tag at once. The body is read before the lock is taken and the answer kept until
        after it (manifests are capped), so no client's pace holds the lock, and the wait
        and the registry's answer share one deadline. Read-only namespaces take no lock:
        nothing writes them through the proxy."""
        if (req.header("expect") or "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await self._read_body(reader, length, cap)
        if any(_under(route.name, ns) for ns in self.scope.read_only):
            answer = await self._exchange(req, route.target(), body, cap)
        else:
            lock = self.manifest_locks.setdefault(route.name, asyncio.Lock())

            async def locked() -> bytes:
                async with lock:
                    return await self._exchange(req, route.target(), body, cap)

            try:
                answer = await asyncio.wait_for(locked(), self.limits.upstream_timeout)
            except asyncio.TimeoutError:
                raise Refused(504, "UNAVAILABLE", "the course registry did not answer in time",
                              log=False) from None  # fmt: skip
        buffered = asyncio.StreamReader()
        buffered.feed_data(answer)
        buffered.feed_eof()
        return await self._relay_response(req, buffered, writer)

    async def _read_body(self, reader, length, cap: int) -> bytes:
        body = _Collected(cap)
        if length is None:
            try:
                await _copy_chunked(reader, body, cap, self.limits.body_timeout, frame=False)
            except BodyTooLarge:
                raise Refused(413, "SIZE_INVALID", f"request body over {cap} bytes") from None
        elif length:
            await _copy_length(reader, body, length, self.limits.body_timeout)
        return body.data

    async def _exchange(self, req: Request, target: str, body: bytes, cap: int) -> bytes:
        """Send a whole request upstream and read its whole answer (at most ``cap`` bytes of
        body beyond a 64 KiB head)."""
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 10)
        except (OSError, asyncio.TimeoutError):
            raise Refused(
                502, "UNAVAILABLE", "the course registry does not answer", log=False
            ) from None
        try:
            up_w.writelines([self._upstream_head(req, target, len(body)), body])
            await _within(up_w.drain(), self.limits.upstream_timeout)
            answer = bytearray()
            while chunk := await _within(up_r.read(1 << 20), self.limits.upstream_timeout):
                answer += chunk
                if len(answer) > cap + (64 << 10):
                    raise Refused(502, "UNAVAILABLE", "the registry's answer is too large")
            return bytes(answer)
        finally:
            up_w.close()

    def _upstream_head(self, req: Request, target: str, length) -> bytes:
        lines = [f"{req.method} {target} HTTP/1.1"]
        for k, v in req.headers:
            low = k.lower()
            if (
                low in _HOP
                or low in ("authorization", "expect", "forwarded")
                or low.startswith("x-forwarded-")
            ):
                continue
            lines.append(f"{k}: {v}")
        lines.append("Connection: close")
        if length is None:
            lines.append("Transfer-Encoding: chunked")
        elif length or req.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _relay_response(self, req: Request, up_r, writer) -> bool:
        lim = self.limits
        raw = await asyncio.wait_for(up_r.readuntil(b"\r\n\r\n"), lim.upstream_timeout)
        lines = raw[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers, length, chunked = [], None, False
        for line in lines[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            low, v = k.strip().lower(), v.strip()
            if low == "content-length":
                length = int(v)
            elif low == "transfer-encoding":
                chunked = "chunked" in v.lower()
            if low not in _HOP:
                headers.append((k.strip(), v))
        no_body = req.method == "HEAD" or status in (204, 304) or status < 200
        keep = _keep_alive(req)
        if no_body:
            if length is not None:
                headers.append(("Content-Length", str(length)))
        elif chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        elif length is not None:
            headers.append(("Content-Length", str(length)))
        else:
            keep = False  # the body ends when the registry closes: so must we
        if not keep:
            headers.append(("Connection", "close"))
        writer.write(response_head(status, headers))
        if no_body:
            pass
        elif chunked:
            await _copy_chunked(up_r, writer, None, lim.upstream_timeout)
        elif length is not None:
            await _copy_length(up_r, writer, length, lim.upstream_timeout)
        else:
            while data := await asyncio.wait_for(up_r.read(256 * 1024), lim.upstream_timeout):
                writer.write(data)
                await asyncio.wait_for(writer.drain(), lim.body_timeout)
        await asyncio.wait_for(writer.drain(), lim.body_timeout)
        return keep


def _keep_alive(req: Request) -> bool:
    return req.version == "HTTP/1.1" and (req.header("connection") or "").lower() != "close"


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, rest = out + rest[:size], rest[size + 2 :]


async def serve(
    state: Path, listen: list[tuple[str, int]], upstream: tuple[str, int], limits: Limits
) -> None:
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    scope = Scope(state / "scope.json")
    scope.read_only  # noqa: B018 - fail at start, not at the first request, on a bad file
    proxy = Proxy(scope, DeniedLog(state / "denied.jsonl"), upstream, limits)
    servers = [
        await asyncio.start_server(
            proxy.handle, host, port, limit=limits.max_header_bytes, backlog=256
        )
        for host, port in listen
    ]
    proxy.say(
        f"scope proxy on {', '.join(f'{h}:{p}' for h, p in listen)} -> {upstream[0]}:{upstream[1]}"
    )
    addresses = [f"{h}:{p}" for h, p in listen]
    warning = _squat_warning([a for a in addresses if a not in held(addresses)])
    if warning:
        proxy.say(f"warning: {warning}")
    if held(addresses):
        proxy.say(f"note: {_held_note(held(addresses))}")
    await asyncio.gather(*(s.serve_forever() for s in servers))


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


# --- the service ----------------------------------------------------------------------------


def _cfg(cfg=None):
    if cfg is None:
        from grader.engine.config import settings

        cfg = settings()
    return cfg


def default_listen() -> list[str]:
    return [f"127.0.0.1:{os.environ.get('COURSE_SCOPE_PORT') or DEFAULT_PORT}"]


def unprivileged_port_start() -> int:
    """The lowest port any user may bind (``net.ipv4.ip_unprivileged_port_start``)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024  # the kernel's default (and every non-Linux system's rule)


def squattable(listen: list[str]) -> list[str]:
    """The addresses of ``listen`` that a user other than root could bind while the proxy is
    down, and so receive the connections (and credentials) sent to the proxy."""
    lowest = unprivileged_port_start()
    return [a for a in listen if _hostport(a)[1] >= lowest]


def _squat_warning(listen: list[str]) -> str | None:
    bad = squattable(listen)
    if not bad:
        return None
    return (
        f"the scope proxy's {', '.join(bad)} is not a privileged port here "
        f"(net.ipv4.ip_unprivileged_port_start = {unprivileged_port_start()}): while it is "
        "down any local user may listen there and receive the credentials sent to it; "
        f"use a port below that (default {DEFAULT_PORT}) or raise the sysctl to 1024"
    )


def held(listen: list[str]) -> list[str]:
    """The addresses of ``listen`` on a former default port kept beside the proxy's own
    (:func:`_moved`): engines started before the move (a hub learner's, running for days)
    still send their credentials there (their socat, the nat DNAT to ``127.0.0.1:5080``, their
    filter chain), so the proxy, root, holds the port and answers them; nobody else can bind
    it while it runs."""
    return [a for a in listen[1:] if _hostport(a)[1] in FORMER_PORTS]


def _held_note(former: list[str]) -> str:
    return (
        f"also listening on {', '.join(former)}, a former default port: engines started "
        "before the proxy moved still send their credentials there, so the proxy holds it "
        "and no local user can bind it while it runs. Once every such engine has been "
        "restarted (it then uses the new port), `grader engine scope stop` and `start` "
        "drop it"
    )


def status(cfg=None) -> dict:
    from grader.engine import services

    cfg = _cfg(cfg)
    directory = scope_dir(cfg)
    try:
        listen = (directory / "listen").read_text().split()
    except OSError:
        listen = []
    try:
        count = len(load_scope(directory / "scope.json")["callers"])
    except (OSError, ValueError):
        count = None
    pid = services.owned_pid(cfg, "scope")
    return {
        "running": pid is not None,
        "pid": pid,
        "listen": listen if pid else [],
        "upstream": cfg.registry_host,
        "callers": count,
        "log": str(cfg.logfile("scope")),
        "warning": _squat_warning([a for a in listen if a not in held(listen)]) if pid else None,
        "held": held(listen) if pid else [],
        "note": _held_note(held(listen)) if pid and held(listen) else None,
    }


def start(cfg=None, listen: list[str] | None = None) -> dict:
    """Start the proxy (idempotent: a running one is kept, even on other addresses)."""
    from grader.docker.registry import registry_answers
    from grader.engine import services

    cfg = _cfg(cfg)
    now = status(cfg)
    directory = scope_dir(cfg)
    if now["running"] and _running_version(directory) == POLICY_VERSION:
        return now
    if now["running"]:  # an older proxy: its addresses (a former port moves, and is held)
        listen = _moved(now["listen"]) or listen
        services.stop_service(cfg, "scope")
    listen = listen or default_listen()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    load_scope(directory / "scope.json")  # refuse a loose file here, with the reason
    argv = [sys.executable, "-m", "grader.engine.scope", "serve", "--state", str(directory)]
    argv += ["--upstream", cfg.registry_host]
    for addr in listen:
        argv += ["--listen", addr]
    services.start_service(cfg, "scope", argv)
    (directory / "listen").write_text(" ".join(listen) + "\n")
    (directory / "version").write_text(POLICY_VERSION + "\n")
    deadline = time.monotonic() + 15
    host, port = _hostport(listen[0])
    while time.monotonic() < deadline:
        if services.owned_pid(cfg, "scope") is None:
            break
        if registry_answers(f"{host}:{port}", timeout=1):
            return status(cfg)
        time.sleep(0.1)
    tail = "\n".join(cfg.logfile("scope").read_text(errors="replace").splitlines()[-10:])
    services.stop_service(cfg, "scope")
    raise RuntimeError(f"the scope proxy did not come up on {listen[0]}; log:\n{tail}")


def _moved(listen: list[str]) -> list[str]:
    """``listen`` with each address on a former default port moved to today's default port on
    the same host (``0.0.0.0`` or a LAN address stays), and the former addresses kept last:
    engines started before the move still forward there, and a port the proxy left would be
    free for any local user to bind and receive their credentials (:func:`held`)."""
    port = _hostport(default_listen()[0])[1]
    former = [a for a in listen if _hostport(a)[1] in FORMER_PORTS]
    out = [f"{a.rpartition(':')[0]}:{port}" if a in former else a for a in listen]
    return list(dict.fromkeys(out + former))


def _running_version(directory: Path) -> str | None:
    try:
        return (directory / "version").read_text().strip()
    except OSError:
        return None


def stop(cfg=None) -> bool:
    from grader.engine import services

    return services.stop_service(_cfg(cfg), "scope")


# --- command line ---------------------------------------------------------------------------


def _limits_args(p: argparse.ArgumentParser) -> None:
    for f in Limits.__dataclass_fields__.values():
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)


def build_parser(prog: str = "grader engine scope") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    st = sub.add_parser("start", help="start the proxy (idempotent)")
    st.add_argument(
        "--listen", action="append", help=f"HOST:PORT (default 127.0.0.1:{DEFAULT_PORT})"
    )
    sub.add_parser("stop", help="stop the proxy the course started")
    sub.add_parser("status", help="pid, addresses, number of callers (JSON)")
    add = sub.add_parser("add", help="add or renew a caller; prints its secret")
    add.add_argument("name")
    add.add_argument("--namespace", help="default: [prefix/]NAME")
    add.add_argument(
        "--admin",
        action="store_true",
        help="may read and write everything but the read-only namespaces",
    )
    add.add_argument("--rooted", action="store_true", help="its names are read inside NAMESPACE")
    add.add_argument("--docker-config", metavar="DIR", help="write DIR/config.json (mode 0600)")
    add.add_argument("--host", help="registry host in config.json (default: the proxy's)")
    add.add_argument("--owner", help="user (name or uid) who owns the written config.json")
    rm = sub.add_parser("remove", help="remove a caller")
    rm.add_argument("name")
    sub.add_parser("list", help="callers and their namespaces (JSON)")
    den = sub.add_parser("denied", help="refused requests (JSON lines)")
    den.add_argument("caller", nargs="?")
    den.add_argument("--since", type=float, help="epoch seconds")
    cfg = sub.add_parser("settings", help="prefix for new callers, read-only namespaces")
    cfg.add_argument("--prefix")
    cfg.add_argument("--read-only", help="comma-separated namespaces, e.g. library,cache")
    srv = sub.add_parser("serve", help="run the proxy in the foreground")
    srv.add_argument("--state", required=True, type=Path)
    srv.add_argument("--listen", action="append", type=_hostport, required=True)
    srv.add_argument("--upstream", type=_hostport, default=("127.0.0.1", 5000))
    _limits_args(srv)
    return parser


def main(argv: list[str] | None = None, prog: str = "grader engine scope") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return _run(args)
    except (ValueError, KeyError, PermissionError, RuntimeError, Refused) as e:
        print(f"{prog} {args.action}: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.action == "serve":
        limits = Limits(**{k: getattr(args, k) for k in Limits.__dataclass_fields__})
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.state, args.listen, args.upstream, limits))
        return 0
    if args.action in ("start", "status"):
        out = start(listen=args.listen) if args.action == "start" else status()
        print(json.dumps(out, indent=1))
        if out.get("warning"):
            print(f"warning: {out['warning']}", file=sys.stderr)
        if out.get("note"):
            print(f"note: {out['note']}", file=sys.stderr)
        return 0 if out["running"] or args.action == "status" else 1
    if args.action == "stop":
        print("stopped" if stop() else "the scope proxy was not running")
        return 0
    if args.action == "add":
        return _add(args)
    if args.action == "remove":
        gone = remove_caller(args.name)
        print(f"removed {args.name}" if gone else f"no caller {args.name}")
        return 0 if gone else 1
    if args.action == "list":
        print(json.dumps(callers(), indent=1, sort_keys=True))
    elif args.action == "denied":
        for row in denied(args.caller, args.since):
            print(json.dumps(row))
    elif args.action == "settings":
        ro = [n for n in args.read_only.split(",") if n] if args.read_only is not None else None
        print(json.dumps(configure(args.prefix, ro)))
    return 0


def _add(args: argparse.Namespace) -> int:
    secret = add_caller(args.name, namespace=args.namespace, admin=args.admin, rooted=args.rooted)
    if not args.docker_config:
        print(secret)
        return 0
    host = args.host or (status()["listen"] or default_listen())[0]
    directory = Path(args.docker_config)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "config.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(docker_config(host, args.name, secret), fh)
    if args.owner:  # the learner's own client reads it; nobody else may
        import pwd

        user = pwd.getpwuid(int(args.owner)) if args.owner.isdigit() else pwd.getpwnam(args.owner)
        for path in (directory, directory / "config.json"):
            os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(directory, 0o700)
    print(f"{args.name}: {callers()[args.name]['namespace']}/ on {host}, {directory}/config.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
