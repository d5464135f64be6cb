"""The registry scope proxy with real parts: the course registry behind it, dockerd + buildx
pushing through it with credentials from a DOCKER_CONFIG, and hostile HTTP sent raw."""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from scopekit import ScopeProxy, raw_exchange

from grader import proc
from grader.engine import scope
from grader.engine.config import Settings

pytestmark = [pytest.mark.registry]

DOCKERFILE = "FROM busybox:latest\nRUN echo {marker} > /marker\n"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, registry_host):
    p = ScopeProxy(tmp_path_factory.mktemp("scope"), registry_host)
    # scope/seed/ stands for the instructor's cache/ (tests keep to this branch's namespace)
    scope.configure(read_only=["library", "cache", "scope/seed"], cfg=p.cfg)
    for name in ("ada", "bob"):
        p.add(name)
    p.add("grace", admin=True)
    yield p
    p.close()


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


def upload(p: ScopeProxy, who: str, repo: str, data: bytes) -> str:
    """Push one blob through the proxy (POST then PUT); returns its digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = p.request("POST", f"/v2/{repo}/blobs/uploads/", who)
    assert status == 202, headers
    status, _, body = p.request("PUT", _with_digest(headers["Location"], digest), who, data)
    assert status == 201, body
    return digest


def _with_digest(location: str, digest: str) -> str:
    url = urllib.parse.urlsplit(location)
    query = [*urllib.parse.parse_qsl(url.query), ("digest", digest)]
    return f"{url.path}?{urllib.parse.urlencode(query)}"


def build_push(p, who, ref, ctx, marker="x", check=True, extra=()):
    """buildx build --push as ``who``; the engine keeps no local image of it afterwards."""
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(marker=marker))
    argv = ["docker", "buildx", "build", "--builder", "default", "--provenance=false", *extra]
    argv += ["--platform", "linux/amd64,linux/arm64", "-t", ref, "--push", str(ctx)]
    env = p.docker_config(who, ctx.parent / f"docker-{who}-{ctx.name}")
    try:
        return proc.run(argv, timeout=600, env=env, check=check)
    finally:
        proc.run(["docker", "image", "rm", ref], timeout=60, check=False)


# --- docker and buildx through the proxy ----------------------------------------------------


@pytest.mark.engine
@pytest.mark.qemu
def test_learner_pushes_and_pulls_in_own_namespace(proxy, tmp_path, run_id):
    ref = f"{proxy.host}/scope/ada/app-{run_id}:1"
    build_push(proxy, "ada", ref, tmp_path, marker=run_id)
    env = proxy.docker_config("ada", tmp_path / "docker-ada")
    shown = proc.run(["docker", "buildx", "imagetools", "inspect", ref], timeout=60, env=env)
    assert "linux/arm64" in shown.stdout and "linux/amd64" in shown.stdout
    pulled = proc.run(["docker", "pull", "--platform", "linux/arm64", ref], timeout=120, env=env)
    assert pulled.ok
    proc.run(["docker", "image", "rm", ref], timeout=60, check=False)
    # bob, with his own valid credential, can neither read nor list it
    env_bob = proxy.docker_config("bob", tmp_path / "docker-bob")
    peek = proc.run(
        ["docker", "buildx", "imagetools", "inspect", ref], timeout=60, env=env_bob, check=False
    )
    assert not peek.ok
    assert any(
        r["caller"] == "bob" and f"scope/ada/app-{run_id}" in r["target"]
        for r in proxy.denied("bob")
    )


@pytest.mark.engine
@pytest.mark.qemu
def test_push_into_another_learners_namespace_is_refused(proxy, tmp_path, run_id):
    done = build_push(proxy, "ada", f"{proxy.host}/scope/bob/app-{run_id}:1", tmp_path, check=False)
    assert not done.ok
    assert "403" in done.stderr or "denied" in done.stderr.lower()
    rows = [r for r in proxy.denied("ada") if f"scope/bob/app-{run_id}" in r["target"]]
    assert rows and all(r["status"] == 403 for r in rows)
    assert "your namespace is scope/ada/" in rows[0]["why"]
    status, _, _ = proxy.request("GET", f"/v2/scope/bob/app-{run_id}/tags/list", "bob")
    assert status == 404  # nothing of ada's landed there


@pytest.mark.engine
@pytest.mark.qemu
def test_push_into_library_is_refused(proxy, tmp_path, run_id):
    # A repository that does not exist: a broken proxy must not overwrite the shared base images.
    done = build_push(
        proxy, "ada", f"{proxy.host}/library/scope-probe-{run_id}:1", tmp_path, check=False
    )
    assert not done.ok
    assert any(f"library/scope-probe-{run_id}" in r["target"] for r in proxy.denied("ada"))
    status, _, _ = proxy.request("GET", "/v2/library/busybox/tags/list", "ada")
    assert status == 200  # still readable


@pytest.mark.engine
@pytest.mark.qemu
def test_buildkit_mount_from_foreign_repository_falls_back_to_upload(proxy, tmp_path, run_id):
    """bob pushes first; ada's identical build then offers BuildKit layers that the engine
    last saw in bob's repository: the push must still succeed, inside ada's namespace."""
    bob_ref = f"{proxy.host}/scope/bob/same-{run_id}:1"
    (tmp_path / "b").mkdir()
    build_push(proxy, "bob", bob_ref, tmp_path / "b", marker=run_id)
    ada_ref = f"{proxy.host}/scope/ada/same-{run_id}:1"
    (tmp_path / "a").mkdir()
    build_push(proxy, "ada", ada_ref, tmp_path / "a", marker=run_id)
    env = proxy.docker_config("ada", tmp_path / "docker-ada")
    shown = proc.run(
        ["docker", "buildx", "imagetools", "inspect", "--raw", ada_ref], timeout=60, env=env
    )
    for entry in json.loads(shown.stdout)["manifests"]:
        status, _, body = proxy.request(
            "GET",
            f"/v2/scope/ada/same-{run_id}/manifests/{entry['digest']}",
            "ada",
            Accept=entry["mediaType"],
        )
        assert status == 200
        for layer in json.loads(body)["layers"]:
            status, _, _ = proxy.request(
                "HEAD", f"/v2/scope/ada/same-{run_id}/blobs/{layer['digest']}", "ada"
            )
            assert status == 200, layer
    # BuildKit did offer bob's repository as the mount source (the engine saw the layers
    # there), and the proxy turned it into an upload
    fell_back = f"mount fallback ada: scope/ada/same-{run_id} from 'scope/bob/same-{run_id}'"
    assert fell_back in proxy.log.read_text()
    assert not [r for r in proxy.denied("ada") if "same-" in r["target"]]


@pytest.mark.engine
@pytest.mark.qemu
def test_seeded_cache_is_read_only(proxy, tmp_path, run_id, registry_host):
    """The instructor seeds a registry cache (straight to the registry, as `grader cache seed`
    does); a learner builds from it and exports their own cache into their namespace, but
    neither they nor an admin caller of the proxy can write the seed."""
    seed = f"{proxy.host}/scope/seed/app-{run_id}:buildcache"
    (tmp_path / "g").mkdir()
    build_push(
        proxy,
        "grace",
        f"{proxy.host}/scope/grace/app-{run_id}:1",
        tmp_path / "g",
        marker=run_id,
        extra=[
            "--cache-to",
            f"type=registry,ref={registry_host}/scope/seed/app-{run_id}:buildcache,mode=max",
        ],
    )
    for who in ("grace", "ada"):
        assert proxy.request("POST", f"/v2/scope/seed/app-{run_id}/blobs/uploads/", who)[0] == 403
    (tmp_path / "a").mkdir()
    done = build_push(
        proxy,
        "ada",
        f"{proxy.host}/scope/ada/app-{run_id}:1",
        tmp_path / "a",
        marker=run_id,
        extra=[
            "--cache-from",
            f"type=registry,ref={seed}",
            "--cache-to",
            f"type=registry,ref={proxy.host}/scope/ada/cache-{run_id}:app,mode=max",
        ],
    )
    assert f"importing cache manifest from {seed}" in done.stderr
    seed_path = f"/v2/scope/seed/app-{run_id}/manifests/buildcache"
    accept = "application/vnd.oci.image.index.v1+json"
    seeded = proxy.request("HEAD", seed_path, "grace", Accept=accept)[1]["Docker-Content-Digest"]
    for target in (seed, f"{proxy.host}/scope/bob/cache-{run_id}:app"):
        (tmp_path / "b").mkdir(exist_ok=True)
        bad = build_push(  # new layers: a cache export has something to write
            proxy,
            "ada",
            f"{proxy.host}/scope/ada/app-{run_id}:2",
            tmp_path / "b",
            marker=f"{run_id}-{target[-3:]}",
            check=False,
            extra=["--cache-to", f"type=registry,ref={target},mode=max"],
        )
        assert not bad.ok
        repo = target.split("/", 1)[1].split(":")[0]
        assert any(repo in r["target"] and r["status"] == 403 for r in proxy.denied("ada"))
    after = proxy.request("HEAD", seed_path, "grace", Accept=accept)[1]["Docker-Content-Digest"]
    assert after == seeded


def test_service_start_stop_status(tmp_path, registry_host):
    """start is idempotent, stop ends only the proxy it started, files land in the state dir."""
    from scopekit import free_port

    cfg = Settings(tmp_path, int(registry_host.rpartition(":")[2]))
    scope.add_caller("ada", cfg=cfg)
    listen = f"127.0.0.1:{free_port()}"
    first = scope.start(cfg, listen=[listen])
    try:
        assert first["running"] and first["listen"] == [listen]
        again = scope.start(cfg, listen=["127.0.0.1:1"])
        assert again["pid"] == first["pid"] and again["listen"] == [listen]
        assert scope.status(cfg)["callers"] == 1
        assert (tmp_path / "run" / "scope.pid").read_text() == str(first["pid"])
        assert "scope proxy on" in (tmp_path / "logs" / "scope.log").read_text()
        # a proxy started by an older grader (another policy) is replaced, on its address
        (tmp_path / "scope" / "version").write_text("1\n")
        newer = scope.start(cfg, listen=["127.0.0.1:1"])
        assert newer["pid"] != first["pid"] and newer["listen"] == [listen]
        assert scope.start(cfg)["pid"] == newer["pid"]
    finally:
        assert scope.stop(cfg)
    assert not scope.stop(cfg)
    assert not scope.status(cfg)["running"] and not (tmp_path / "run" / "scope.pid").exists()


#: Bind HOST PORT as a squatter would: SO_REUSEADDR, so the proxy's TIME_WAIT sockets do not
#: stand in the way, only a socket listening there.
BIND = """
import errno, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
    print("bound")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the probe as another uid (setpriv)")
def test_a_proxy_moved_off_a_former_port_keeps_holding_it(tmp_path, registry_host, monkeypatch):
    """An older proxy on 127.0.0.1:5080 is restarted on today's port and keeps 5080 too:
    engines started before the move (a hub learner's) still forward there, so no other uid
    may bind it and receive their credentials. Before, 5080 was left free: ``bound``."""
    from scopekit import free_port

    from grader.engine import rootless

    host, port = "127.0.0.1", scope.FORMER_PORTS[0]
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            pytest.skip(f"{host}:{port} is in use here")
    cfg = Settings(tmp_path, int(registry_host.rpartition(":")[2]))
    today = free_port()  # not 580: the course's own proxy may hold it
    monkeypatch.setenv("COURSE_SCOPE_PORT", str(today))
    first = scope.start(cfg, listen=[f"{host}:{port}"])
    try:
        (tmp_path / "scope" / "version").write_text("8-older\n")  # another grader's proxy
        moved = scope.start(cfg)
        uid = rootless.RUN_UIDS[0] + 7
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        for addr in (host, "0.0.0.0"):
            done = proc.run([*argv, "/usr/bin/python3", "-c", BIND, addr, str(port)],
                            timeout=30, cwd="/")  # fmt: skip
            assert done.stdout.strip() == "EADDRINUSE", (addr, done.stdout, done.stderr[-500:])
        assert moved["pid"] != first["pid"]
        assert moved["listen"] == [f"{host}:{today}", f"{host}:{port}"], moved
        assert moved["held"] == [f"{host}:{port}"] and "5080" in moved["note"], moved
        log = (tmp_path / "logs" / "scope.log").read_text()
        assert f"note: also listening on {host}:{port}, a former default port" in log
        for addr in moved["listen"]:  # both answer as the proxy: 401 with its challenge
            try:
                with urllib.request.urlopen(f"http://{addr}/v2/", timeout=10) as r:
                    answer = (r.status, "")
            except urllib.error.HTTPError as e:
                answer = (e.code, e.headers.get("WWW-Authenticate", ""))
            assert answer[0] == 401 and answer[1].startswith("Basic"), (addr, answer)
    finally:
        assert scope.stop(cfg)


# --- cross-repository mounts over HTTP ------------------------------------------------------


def test_mount_from_foreign_repository_becomes_a_plain_upload(proxy, run_id):
    blob = f"bob's secret layer {run_id}".encode()
    digest = upload(proxy, "bob", f"scope/bob/src-{run_id}", blob)
    query = f"mount={digest}&from=scope/bob/src-{run_id}"
    status, headers, _ = proxy.request(
        "POST", f"/v2/scope/ada/dst-{run_id}/blobs/uploads/?{query}", "ada"
    )
    assert status == 202  # an upload session, not 201 Created: bob's blob was not mounted
    assert "Docker-Content-Digest" not in headers
    assert f"/v2/scope/ada/dst-{run_id}/blobs/uploads/" in headers["Location"]
    # the same answer as for a repository that does not exist: nothing leaks
    q2 = f"mount={digest}&from=scope/nobody-{run_id}/x"
    status2, headers2, _ = proxy.request(
        "POST", f"/v2/scope/ada/dst-{run_id}/blobs/uploads/?{q2}", "ada"
    )
    assert status2 == 202 and "Docker-Content-Digest" not in headers2
    status, _, _ = proxy.request("HEAD", f"/v2/scope/ada/dst-{run_id}/blobs/{digest}", "ada")
    assert status == 404
    # the client falls back: it uploads the bytes itself, in its own namespace
    status, _, _ = proxy.request("PUT", _with_digest(headers["Location"], digest), "ada", blob)
    assert status == 201
    status, _, _ = proxy.request("HEAD", f"/v2/scope/ada/dst-{run_id}/blobs/{digest}", "ada")
    assert status == 200
    assert not [r for r in proxy.denied("ada") if "dst-" in r["target"]]  # not a finding


def test_mount_within_own_namespace_and_from_library_work(proxy, run_id):
    digest = upload(proxy, "ada", f"scope/ada/src-{run_id}", f"ada's layer {run_id}".encode())
    query = f"mount={digest}&from=scope/ada/src-{run_id}"
    status, headers, _ = proxy.request(
        "POST", f"/v2/scope/ada/dst-{run_id}/blobs/uploads/?{query}", "ada"
    )
    assert status == 201 and headers["Docker-Content-Digest"] == digest
    status, _, body = proxy.request(
        "GET",
        "/v2/library/busybox/manifests/latest",
        "ada",
        Accept="application/vnd.docker.distribution.manifest.list.v2+json",
    )
    assert status == 200
    child = json.loads(body)["manifests"][0]
    status, _, body = proxy.request(
        "GET", f"/v2/library/busybox/manifests/{child['digest']}", "ada", Accept=child["mediaType"]
    )
    layer = json.loads(body)["layers"][0]["digest"]
    query = f"mount={layer}&from=library/busybox"
    status, headers, _ = proxy.request(
        "POST", f"/v2/scope/ada/base-{run_id}/blobs/uploads/?{query}", "ada"
    )
    assert status == 201 and headers["Docker-Content-Digest"] == layer


def test_a_rooted_caller_pushes_shared_names_into_its_own_namespace(proxy, run_id):
    """A notebook kernel under ``grader autograde`` pushes where the labs say (``lab04/...``):
    its rooted credential makes that its own copy; the upload continues at the Location the
    registry names (inside its namespace); library/ and other namespaces stay refused."""
    proxy.add(f"kern-{run_id}", namespace=f"scope/kern-{run_id}", rooted=True)
    who, own = f"kern-{run_id}", f"scope/kern-{run_id}"
    digest = upload(proxy, who, f"lab04/run-{run_id}", f"kernel layer {run_id}".encode())
    for path in (f"/v2/lab04/run-{run_id}", f"/v2/{own}/lab04/run-{run_id}"):
        assert proxy.request("HEAD", f"{path}/blobs/{digest}", who)[0] == 200
    assert proxy.request("HEAD", f"/v2/lab04/run-{run_id}/blobs/{digest}", "grace")[0] == 404
    for repo in (f"library/probe-{run_id}", f"scope/ada/probe-{run_id}"):
        assert proxy.request("POST", f"/v2/{repo}/blobs/uploads/", who)[0] == 403
        assert any(repo in r["target"] for r in proxy.denied(who))
    assert proxy.request("GET", "/v2/library/busybox/tags/list", who)[0] == 200


# --- who calls ------------------------------------------------------------------------------


def test_credentials(proxy, tmp_path):
    status, headers, _ = proxy.request("GET", "/v2/")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
    assert proxy.request("GET", "/v2/", "ada")[0] == 200
    proxy.secrets["mallory"] = "guess"
    assert proxy.request("GET", "/v2/library/busybox/tags/list", "mallory")[0] == 401
    assert any(r["caller"] == "?" and r["status"] == 401 for r in proxy.denied())
    # removed while the proxy runs: refused at the next request
    proxy.add("carol")
    assert proxy.request("GET", "/v2/", "carol")[0] == 200
    from grader.engine import scope

    scope.remove_caller("carol", cfg=proxy.cfg)
    assert proxy.request("GET", "/v2/", "carol")[0] == 401


def test_read_only_namespaces_are_readable_without_a_credential(proxy):
    """dockerd sends no credential to a registry mirror: base images (library/) are read
    anonymously. Nothing else is: a write there, a read elsewhere, the ping."""
    assert proxy.request("GET", "/v2/library/busybox/tags/list")[0] == 200
    assert proxy.request("HEAD", "/v2/library/busybox/manifests/latest")[0] == 200
    assert proxy.request("GET", "/v2/scope/ada/x/tags/list")[0] == 401
    assert proxy.request("GET", "/v2/")[0] == 401
    put = proxy.request("PUT", "/v2/library/busybox/manifests/pwned", body=b"{}")
    assert put[0] == 401
    start = proxy.request("POST", "/v2/library/busybox/blobs/uploads/")
    assert start[0] == 401


def test_head_answers_carry_no_body_on_a_kept_connection(proxy):
    """BuildKit sends HEAD without a credential first and reuses the connection (one buffered
    reader, as Go's): a body after the 401 was read as the next status line
    (`malformed HTTP status code "[{\"code\":"`)."""
    blob = f"/v2/scope/ada/x/blobs/{DIGEST}"
    anonymous = f"HEAD {blob} HTTP/1.1\r\nHost: {proxy.host}\r\n\r\n".encode()
    pipelined = (
        anonymous + head(proxy, "HEAD", blob) + head(proxy, "GET", "/v2/", "Connection: close")
    )
    answer = raw_exchange(proxy.port, pipelined)
    statuses = re.findall(rb"(?:^|\r\n\r\n)(HTTP/1.1 \d+|[^\r\n]{0,20})", answer)
    assert [s[:12] for s in statuses[:3]] == [b"HTTP/1.1 401", b"HTTP/1.1 404", b"HTTP/1.1 200"]


def test_an_unread_body_closes_the_connection(proxy):
    """A 401 to a chunked upload: its body must not be read as the next request."""
    chunked = b"POST /v2/scope/ada/x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n"
    chunked += b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    answer = raw_exchange(proxy.port, chunked, timeout=3)
    assert answer.startswith(b"HTTP/1.1 401") and answer.count(b"HTTP/1.1 ") == 1
    assert b"Connection: close" in answer


def test_catalog_lists_only_what_the_caller_may_read(proxy, run_id):
    upload(proxy, "bob", f"scope/bob/cat-{run_id}", b"b")
    upload(proxy, "ada", f"scope/ada/cat-{run_id}", b"a")
    status, _, body = proxy.request("GET", "/v2/_catalog", "ada")
    repos = json.loads(body)["repositories"]
    assert status == 200
    assert f"scope/ada/cat-{run_id}" in repos and "library/busybox" in repos
    readable = ("scope/ada/", "library/", "cache/", "scope/seed/")
    assert all(r.startswith(readable) for r in repos), repos
    assert not [r for r in repos if r.startswith("scope/bob/")]


# --- hostile paths --------------------------------------------------------------------------

DIGEST = "sha256:" + "a" * 64
HOSTILE = [
    ("GET", "/v2/scope/ada/../bob/x/tags/list", 404),
    ("GET", "/v2/scope/ada/%2e%2e/bob/x/tags/list", 400),
    ("GET", "/v2/scope%2Fbob%2Fx/tags/list", 400),
    ("GET", "/v2/scope/ada%2F..%2F..%2Fscope/bob/x/tags/list", 400),
    ("GET", "/v2/scope/Bob/x/tags/list", 404),
    ("GET", "/v2/SCOPE/ADA/x/tags/list", 404),
    ("GET", "/V2/scope/bob/x/tags/list", 404),
    ("GET", "/v2//scope/bob/x/tags/list", 404),
    ("GET", "/v2/scope/bob/x/manifests/" + DIGEST, 403),
    ("GET", "/v2/scope/ada/x/manifests/sha256:AAAA" + "a" * 60, 404),
    ("GET", "/v2/scope/bob/x/blobs/" + DIGEST, 403),
    ("GET", "/v2/scope/ada/manifests/x/manifests/latest", 400),
    ("GET", "/v2/scope/ada/x/tags/list/../../../../bob/x/tags/list", 404),
    ("PUT", "/v2/scope/bob/x/manifests/latest", 403),
    ("DELETE", "/v2/library/busybox/manifests/" + DIGEST, 403),
    ("DELETE", "/v2/scope/bob/x/blobs/" + DIGEST, 403),
    ("POST", "/v2/library/busybox/blobs/uploads/", 403),
    (
        "POST",
        "/v2/scope/ada/x/blobs/uploads/?from=scope/bob/x&from=scope/ada/x&mount=" + DIGEST,
        400,
    ),
    ("PATCH", "/v2/scope/bob/x/blobs/uploads/0e9c8f9a-aaaa-bbbb-cccc-123456789012", 403),
    ("get", "/v2/scope/ada/x/tags/list", 405),
    ("TRACE", "/v2/", 405),
    ("GET", "/v2/scope/ada/x/tags/list#frag", 400),
]


@pytest.mark.parametrize(("method", "path", "expected"), HOSTILE)
def test_hostile_paths_never_reach_the_registry(proxy, method, path, expected):
    head = f"{method} {path} HTTP/1.1\r\n{_auth(proxy)}\r\n"
    answer = raw_exchange(proxy.port, (head + "Content-Length: 0\r\n\r\n").encode())
    status = int(answer.split(b" ", 2)[1])
    assert status == expected, answer[:300]
    top = answer.partition(b"\r\n\r\n")[0]
    # the proxy's own answer: the registry adds X-Content-Type-Options to all of its own
    assert b"Docker-Distribution-Api-Version" in top and b"X-Content-Type-Options" not in top
    assert b'"errors"' in answer


def head(p: ScopeProxy, method: str, target: str, *lines: str) -> bytes:
    """A raw request head as ada, with ``lines`` as extra header lines."""
    return "\r\n".join([f"{method} {target} HTTP/1.1", _auth(p), *lines, "", ""]).encode()


def test_absolute_form_and_smuggling_are_refused(proxy):
    tags = "/v2/scope/ada/x/tags/list"
    cases = [
        head(proxy, "GET", "http://127.0.0.1:5000/v2/scope/bob/x/tags/list"),
        head(proxy, "GET", tags, "Content-Length: 5", "Transfer-Encoding: chunked") + b"0\r\n\r\n",
        head(proxy, "GET", tags, "Content-Length: 0", "Content-Length: 7"),
        head(proxy, "GET", tags, " folded: yes"),
        head(proxy, "GET", tags).replace(b"HTTP/1.1", b"HTTP/2.0"),
        head(proxy, "GET", tags, f"Host: {proxy.host}"),
        # Go's FormValue would read `from` out of a form body: such uploads are refused
        head(
            proxy,
            "POST",
            f"/v2/scope/ada/x/blobs/uploads/?mount={DIGEST}&from=scope/ada/x",
            "Content-Type: application/x-www-form-urlencoded",
            "Content-Length: 14",
        )
        + b"from=scope/bob",
    ]
    for case in cases:
        answer = raw_exchange(proxy.port, case)
        assert answer.split(b" ", 2)[1] in (b"400", b"505"), (case, answer[:200])


def test_tls_probe_gets_a_plain_http_answer_at_once(proxy):
    """BuildKit tries https first: it falls back to http only when the answer is HTTP."""
    started = time.monotonic()
    answer = raw_exchange(
        proxy.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64
    )
    assert answer.startswith(b"HTTP/1.1 400") and time.monotonic() - started < 2


# --- limits ---------------------------------------------------------------------------------


@pytest.fixture
def tight(tmp_path, registry_host):
    p = ScopeProxy(
        tmp_path,
        registry_host,
        max_connections=4,
        max_connections_per_uid=3,
        max_inflight_per_caller=1,
        max_header_bytes=4096,
        max_headers=20,
        max_manifest_bytes=1024,
        max_body_bytes=64 * 1024,
        header_timeout=1.0,
    )
    p.add("ada")
    yield p
    p.close()


def _auth(p: ScopeProxy) -> str:
    """Host and ada's credential, as raw header lines."""
    return (
        f"Host: {p.host}\r\nAuthorization: Basic "
        + base64.b64encode(f"ada:{p.secrets['ada']}".encode()).decode()
    )


NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def _as_nobody(port: int, hold: bool) -> subprocess.Popen:
    """A client as uid 65534: it holds a connection (``hold``) or sends one request and prints
    the answer's status line."""
    code = (
        "import socket, sys, time\n"
        f"s = socket.create_connection(('127.0.0.1', {port}))\n"
        + ("print('up', flush=True); time.sleep(60)\n" if hold else
           "s.sendall(b'GET /v2/ HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
           "print(s.recv(200).split(b'\\r\\n')[0].decode(), flush=True)\n")
    )  # fmt: skip
    argv = [*AS_NOBODY, sys.executable, "-I", "-c", code]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="holds connections as another uid (setpriv)")
def test_too_many_connections(tight):
    """4 in all, at most 3 from one uid (the kernel says whose socket it is)."""
    held = [socket.create_connection(("127.0.0.1", tight.port)) for _ in range(3)]
    other = _as_nobody(tight.port, hold=True)
    try:
        time.sleep(0.3)
        answer = raw_exchange(tight.port, b"GET /v2/ HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
        assert b"from uid" not in answer  # the global cap
        assert other.stdout.readline().strip() == "up"
        other.kill()
        other.wait()
        time.sleep(0.3)
        answer = raw_exchange(tight.port, b"GET /v2/ HTTP/1.1\r\n\r\n")
        assert b"too many connections from uid 0" in answer, answer  # root's 3 are enough
        probe = _as_nobody(tight.port, hold=False)  # another uid still gets in
        assert probe.communicate(timeout=30)[0].startswith("HTTP/1.1 401"), "nobody refused"
    finally:
        other.kill()
        for s in held:
            s.close()
    time.sleep(0.3)
    assert raw_exchange(
        tight.port, f"GET /v2/ HTTP/1.1\r\n{_auth(tight)}\r\nConnection: close\r\n\r\n".encode()
    ).startswith(b"HTTP/1.1 200")


def test_oversized_and_too_many_headers(tight):
    big = f"GET /v2/ HTTP/1.1\r\n{_auth(tight)}\r\nX-Pad: {'a' * 5000}\r\n\r\n"
    assert raw_exchange(tight.port, big.encode()).startswith(b"HTTP/1.1 431")
    many = (
        f"GET /v2/ HTTP/1.1\r\n{_auth(tight)}\r\n"
        + "".join(f"X-{i}: 1\r\n" for i in range(25))
        + "\r\n"
    )
    assert raw_exchange(tight.port, many.encode()).startswith(b"HTTP/1.1 431")


def test_slow_headers_time_out(tight):
    started = time.monotonic()
    answer = raw_exchange(tight.port, b"GET /v2/ HTTP/1.1\r\nX-Slow: 1\r\n", timeout=10)
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5


def test_body_caps(tight, run_id):
    auth = _auth(tight)
    manifest = head(tight, "PUT", f"/v2/scope/ada/x-{run_id}/manifests/1", "Content-Length: 2048")
    assert raw_exchange(tight.port, manifest + b"{" * 2048).startswith(b"HTTP/1.1 413")
    chunked = head(
        tight, "PUT", f"/v2/scope/ada/x-{run_id}/manifests/1", "Transfer-Encoding: chunked"
    )
    many = b"%x\r\n%s\r\n" % (700, b"{" * 700) * 3 + b"0\r\n\r\n"  # 2100 bytes in all
    assert raw_exchange(tight.port, chunked + many).startswith(b"HTTP/1.1 413")
    status, headers, _ = tight.request("POST", f"/v2/scope/ada/x-{run_id}/blobs/uploads/", "ada")
    assert status == 202
    path = urllib.parse.urlsplit(headers["Location"])
    chunk = b"%x\r\n%s\r\n" % (40000, b"z" * 40000)
    patch = (
        f"PATCH {path.path}?{path.query} HTTP/1.1\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    answer = raw_exchange(tight.port, patch.encode() + chunk + chunk + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413")


def test_requests_in_flight_per_caller(tight, run_id):
    auth = _auth(tight)
    _status, headers, _ = tight.request("POST", f"/v2/scope/ada/y-{run_id}/blobs/uploads/", "ada")
    path = urllib.parse.urlsplit(headers["Location"])
    with socket.create_connection(("127.0.0.1", tight.port)) as slow:
        slow.sendall(
            head(tight, "PATCH", f"{path.path}?{path.query}", "Content-Length: 100") + b"abc"
        )
        time.sleep(0.3)
        answer = raw_exchange(
            tight.port,
            f"GET /v2/scope/ada/y-{run_id}/tags/list HTTP/1.1\r\n{auth}\r\n\r\n".encode(),
        )
        assert answer.startswith(b"HTTP/1.1 429")


def test_blobs_stream_without_buffering(proxy, run_id):
    """A 200 MiB blob up and down: the proxy's peak memory grows by far less than that."""
    pid = proxy.proc.pid

    def peak() -> int:
        with open(f"/proc/{pid}/status") as fh:
            text = fh.read()
        return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) * 1024

    before = peak()
    size, block = 200 << 20, b"s" * (1 << 20)
    sha = hashlib.sha256()
    for _ in range(size >> 20):
        sha.update(block)
    digest = "sha256:" + sha.hexdigest()
    _status, headers, _ = proxy.request("POST", f"/v2/scope/ada/big-{run_id}/blobs/uploads/", "ada")
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.sendall(
            f"PUT {_with_digest(headers['Location'], digest)} HTTP/1.1\r\n{_auth(proxy)}\r\n"
            f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode()
        )
        for _ in range(size >> 20):
            s.sendall(block)
        assert s.recv(100).startswith(b"HTTP/1.1 201")
    got = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.sendall(
            head(proxy, "GET", f"/v2/scope/ada/big-{run_id}/blobs/{digest}", "Connection: close")
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        answer, _, rest = data.partition(b"\r\n\r\n")
        got.update(rest)
        while chunk := s.recv(1 << 20):
            got.update(chunk)
    assert answer.startswith(b"HTTP/1.1 200") and "sha256:" + got.hexdigest() == digest
    assert peak() - before < 40 << 20, (before, peak())


# --- the registry's tag race ----------------------------------------------------------------


def test_a_tag_written_and_read_at_once_never_answers_500(proxy, run_id):
    """distribution 2.8 rewrites a tag's (and a revision's) link file in place; four writers
    and four readers of one tag at once (what dockerd 26 does when it pushes a multi-platform
    image) make the registry itself answer about one HEAD in five with 500 or 404
    (benchmarks/bench_tag_race.py). Through the proxy, one manifest request per repository
    at a time: every PUT 201, every HEAD (by tag or by digest) 200; a PUT that asks
    `Expect: 100-continue` gets it."""
    repo, mtype = f"scope/ada/race-{run_id}", "application/vnd.oci.image.manifest.v1+json"
    manifests = []
    for i in range(4):
        config = json.dumps(
            {"architecture": f"a{i}", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        )
        digest = upload(proxy, "ada", repo, config.encode())
        manifests.append(json.dumps({
            "schemaVersion": 2, "mediaType": mtype, "layers": [],
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest, "size": len(config)},
        }).encode())  # fmt: skip
    put = f"/v2/{repo}/manifests/t"
    assert proxy.request("PUT", put, "ada", manifests[0], Content_Type=mtype)[0] == 201
    expect = (
        f"Content-Type: {mtype}",
        f"Content-Length: {len(manifests[2])}",
        "Expect: 100-continue",
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(head(proxy, "PUT", put, *expect))  # the body only once the proxy says so
        assert s.recv(64).startswith(b"HTTP/1.1 100 Continue"), "no 100 Continue"
        s.sendall(manifests[2])
        assert b"HTTP/1.1 201" in s.recv(4096)
    framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(manifests[1]), manifests[1])  # chunked works too
    extra = (f"Content-Type: {mtype}", "Transfer-Encoding: chunked", "Connection: close")
    answer = raw_exchange(proxy.port, head(proxy, "PUT", put, *extra) + framed)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    seen: collections.Counter = collections.Counter()

    def writer(body: bytes) -> None:
        for _ in range(60):
            seen["PUT", proxy.request("PUT", put, "ada", body, Content_Type=mtype)[0]] += 1

    def reader(body: bytes) -> None:  # by tag and by digest: a PUT rewrites both links
        by_digest = f"/v2/{repo}/manifests/sha256:{hashlib.sha256(body).hexdigest()}"
        for i in range(60):
            path = put if i % 2 else by_digest
            seen["HEAD", proxy.request("HEAD", path, "ada", Accept=mtype)[0]] += 1

    threads = [threading.Thread(target=writer, args=(m,)) for m in manifests]
    threads += [threading.Thread(target=reader, args=(m,)) for m in manifests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {("PUT", 201): 240, ("HEAD", 200): 240}, seen


@pytest.mark.skipif(os.geteuid() != 0, reason="reads as another uid (setpriv)")
def test_anonymous_readers_have_a_budget_per_uid(tight):
    """Reads of library/ without a credential (dockerd's mirror pulls) are budgeted per uid:
    one uid's requests in flight do not starve another's pulls."""
    tags = "/v2/library/busybox/tags/list"
    with socket.create_connection(("127.0.0.1", tight.port)) as slow:  # root, in flight
        slow.sendall(f"GET {tags} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc".encode())
        time.sleep(0.3)
        again = raw_exchange(tight.port, f"GET {tags} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert again.startswith(b"HTTP/1.1 429"), again[:200]
        code = (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {tight.port}))\n"
            f"s.sendall(b'GET {tags} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
            "print(s.recv(200).split(b'\\r\\n')[0].decode(), flush=True)\n"
        )
        done = proc.run([*AS_NOBODY, sys.executable, "-I", "-c", code], timeout=30)
        assert done.stdout.startswith("HTTP/1.1 200"), done.stdout
