"""The scope proxy's pure parts: routes, the policy, request framing, the scope file, the
denied log, and the CLI. The proxy against the real registry: tests/engine/test_scope_proxy.py."""

from __future__ import annotations

import json
import os

import pytest

from grader.cli import main as grader_main
from grader.engine import scope
from grader.engine.config import Settings
from grader.engine.scope import Caller, Refused, allowed, body_length, parse_head, parse_target

D = "sha256:" + "b" * 64
ADA = Caller("ada", "class/ada")
RO = ("library", "cache")


@pytest.mark.parametrize(
    ("method", "target", "kind", "name", "action"),
    [
        ("GET", "/v2/", "base", "", "ping"),
        ("GET", "/v2/_catalog?n=10", "catalog", "", "catalog"),
        ("GET", "/v2/class/ada/app/tags/list", "tags", "class/ada/app", "pull"),
        ("HEAD", f"/v2/class/ada/app/manifests/{D}", "manifest", "class/ada/app", "pull"),
        ("PUT", "/v2/class/ada/app/manifests/v1.0", "manifest", "class/ada/app", "push"),
        ("DELETE", f"/v2/class/ada/app/blobs/{D}", "blob", "class/ada/app", "push"),
        ("POST", "/v2/class/ada/app/blobs/uploads/", "upload_start", "class/ada/app", "push"),
        ("PATCH", "/v2/a/blobs/uploads/9f3c-AB_x.=", "upload", "a", "push"),
        ("GET", "/v2/a__b/c-d.e/tags/list", "tags", "a__b/c-d.e", "pull"),
    ],
)
def test_routes(method, target, kind, name, action):
    route, got = parse_target(method, target)
    assert (route.kind, route.name, got) == (kind, name, action)


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("GET", "/v2/class/ada/../bob/tags/list", 404),
        ("GET", "/v2/class%2Fbob/tags/list", 400),
        ("GET", "/v2/Class/bob/tags/list", 404),
        ("GET", "/v2/class/bob/manifests/latest/../x", 404),
        ("GET", "http://127.0.0.1:5000/v2/class/bob/tags/list", 400),
        ("GET", "/v2/class/ada/tags/x/tags/list", 400),  # route words are no names
        ("GET", "/v2/a/blobs/uploads/manifests/latest", 400),
        ("GET", f"/v2/a/manifests/{D}x", 404),
        ("POST", "/v2/a/blobs/uploads/?from=a&from=b", 400),
        ("POST", "/v2/a/blobs/uploads/?mount=x&from=Bob/..", 400),
        ("GET", "/v2/" + "a/" * 130 + "tags/list", 400),
        ("PUT", "/v2/a/tags/list", 405),
        ("OPTIONS", "/v2/", 405),
        ("GET", "/v2/a/tags/list?n=1\r\nX: y", 400),
    ],
)
def test_hostile_targets(method, target, status):
    with pytest.raises(Refused) as e:
        parse_target(method, target)
    assert e.value.status == status


def test_query_is_rebuilt_from_the_keys_a_route_uses():
    route, _ = parse_target("POST", f"/v2/a/blobs/uploads/?mount={D}&from=library/x&evil=1")
    assert route.target() == f"/v2/a/blobs/uploads/?mount={D.replace(':', '%3A')}&from=library%2Fx"
    assert route.target(frozenset({"mount", "from"})) == "/v2/a/blobs/uploads/"
    route, _ = parse_target("GET", f"/v2/a/manifests/{D}?digest=x")
    assert route.target() == f"/v2/a/manifests/{D}"


def test_policy():
    assert allowed(ADA, "push", "class/ada", RO)
    assert allowed(ADA, "push", "class/ada/app", RO)
    assert not allowed(ADA, "push", "class/adam/app", RO)  # a prefix of a name is not a parent
    assert not allowed(ADA, "pull", "class/bob/app", RO)
    assert allowed(ADA, "pull", "library/busybox", RO) and allowed(ADA, "pull", "cache/app", RO)
    assert not allowed(ADA, "push", "library/busybox", RO)
    assert not allowed(ADA, "pull", "librarything/x", RO)
    grace = Caller("grace", "class/grace", admin=True)
    assert allowed(grace, "push", "class/ada/app", RO) and allowed(grace, "pull", "cache/app", RO)
    # read-only means for every caller: the course's tools seed library/ and cache/ directly
    assert not allowed(grace, "push", "cache/app", RO)
    assert not allowed(grace, "push", "library/busybox", RO)


KERNEL = Caller("k1", "autograde/ada-1", rooted=True)


@pytest.mark.parametrize(
    ("name", "means"),
    [
        ("lab04/run-1", "autograde/ada-1/lab04/run-1"),  # the labs' shared names: its own copy
        ("07-challenge/hello", "autograde/ada-1/07-challenge/hello"),
        ("library/busybox", "library/busybox"),  # read-only: read as written, never written
        ("cache/app", "cache/app"),
        ("autograde/ada-1/lab04/run-1", "autograde/ada-1/lab04/run-1"),  # upload URLs
        ("autograde/bob-2/lab04/run-1", "autograde/bob-2/lab04/run-1"),  # refused below
    ],
)
def test_a_rooted_caller_has_its_own_copy_of_every_name(name, means):
    assert scope.own_name(KERNEL, name, RO) == means
    assert scope.own_name(ADA, name, RO) == name  # callers are not rooted unless added so
    assert allowed(KERNEL, "push", means, RO) == means.startswith("autograde/ada-1/")


HUB_ADA = Caller("ada", "ada", rooted=True)


@pytest.mark.parametrize(
    ("name", "means"),
    [
        ("lab04/run-1", "ada/lab04/run-1"),  # the labs' shared names: her own copy
        ("ada/hello", "ada/hello"),  # her namespace, as the challenge on the hub names it
        ("alan/hello", "alan/hello"),  # another learner's: as written, so refused below
        ("library/busybox", "library/busybox"),
    ],
)
def test_a_hub_learner_has_her_own_copy_but_never_anothers(name, means):
    claimed = frozenset({"ada", "alan", "grace"})
    assert scope.own_name(HUB_ADA, name, RO, claimed) == means
    assert allowed(HUB_ADA, "push", means, RO) == means.startswith("ada/")


def test_the_proxy_reads_claimed_namespaces_from_its_callers(tmp_path, cfg):
    for login in ("ada", "alan"):
        scope.add_caller(login, namespace=login, rooted=True, cfg=cfg)
    proxy = scope.Proxy(scope.Scope(scope.scope_dir(cfg) / "scope.json"),
                        scope.DeniedLog(tmp_path / "d"), ("127.0.0.1", 5000))  # fmt: skip
    route, _ = parse_target("PUT", "/v2/alan/app/manifests/1")
    assert proxy._own(HUB_ADA, route).name == "alan/app"  # alan's: refused, never her copy
    route, _ = parse_target("PUT", "/v2/lab04/run-1/manifests/1")
    assert proxy._own(HUB_ADA, route).name == "ada/lab04/run-1"


@pytest.mark.parametrize("ns", ["autograde", "lab04", "07-challenge", "library/x", "cache"])
def test_a_learner_namespace_is_never_a_name_the_course_uses(cfg, ns):
    with pytest.raises(ValueError, match=r"course uses|read-only"):
        scope.add_caller("grading-x-1", namespace=ns, shared=True, cfg=cfg)
    scope.add_caller("kern", namespace="autograde/ada-1", rooted=True, cfg=cfg)  # its home
    scope.add_caller("check", namespace="lab04-check/x", admin=True, cfg=cfg)
    # a learner's scratch check of the challenge (confined, not admin) is no course name
    scope.add_caller("scratch", namespace="07-challenge-check", cfg=cfg)


def test_an_admin_claims_no_namespace(cfg):
    """The instructor's or a plain check's credential (admin) does not take the labs' names
    away from rooted callers: only learners' namespaces are read as written."""
    scope.add_caller("check-1", namespace="lab04-check", admin=True, cfg=cfg)
    scope.add_caller("ada", namespace="ada", rooted=True, cfg=cfg)
    claimed = scope.Scope(scope.scope_dir(cfg) / "scope.json").claimed
    assert claimed == {"ada"}


def test_a_rooted_callers_route_and_mount_source_are_its_own(tmp_path):
    proxy = scope.Proxy(scope.Scope(tmp_path / "scope.json"), scope.DeniedLog(tmp_path / "d"),
                        ("127.0.0.1", 5000))  # fmt: skip
    route, _ = parse_target("POST", f"/v2/lab04/x/blobs/uploads/?mount={D}&from=lab04/y")
    own = proxy._own(KERNEL, route)
    assert own.name == "autograde/ada-1/lab04/x"
    assert own.param("from") == "autograde/ada-1/lab04/y"
    route, _ = parse_target("POST", f"/v2/lab04/x/blobs/uploads/?mount={D}&from=library/b")
    assert proxy._own(KERNEL, route).param("from") == "library/b"
    route, _ = parse_target("GET", "/v2/" + "a/" * 120 + "b/tags/list")
    with pytest.raises(Refused):  # its copy's name is over distribution's 255 characters
        proxy._own(KERNEL, route)


def test_framing_is_strict():
    def head(*lines: str) -> bytes:
        return ("\r\n".join(["GET /v2/ HTTP/1.1", *lines]) + "\r\n\r\n").encode()

    assert body_length(parse_head(head("Content-Length: 12"), 64)) == 12
    assert body_length(parse_head(head("Transfer-Encoding: chunked"), 64)) is None
    for bad in (
        ["Content-Length: 1", "Transfer-Encoding: chunked"],
        ["Content-Length: 1", "Content-Length: 2"],
        ["Content-Length: -1"],
        ["Transfer-Encoding: gzip, chunked"],
    ):
        with pytest.raises(Refused):
            body_length(parse_head(head(*bad), 64))
    for bad in (head(" folded"), head("Bad Name: x"), b"GET /v2/ HTTP/2\r\n\r\n"):
        with pytest.raises(Refused):
            parse_head(bad, 64)
    with pytest.raises(Refused) as e:
        parse_head(head(*[f"X-{i}: 1" for i in range(5)]), 4)
    assert e.value.status == 431


@pytest.fixture
def cfg(tmp_path) -> Settings:
    return Settings(tmp_path, 5000)


def test_callers_file(cfg):
    scope.configure(prefix="class", cfg=cfg)
    secret = scope.add_caller("ada", cfg=cfg)
    path = scope.scope_dir(cfg) / "scope.json"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert secret not in path.read_text()  # only its hash
    assert scope.callers(cfg) == {
        "ada": {"namespace": "class/ada", "admin": False, "rooted": False}
    }
    s = scope.Scope(path)
    token = __import__("base64").b64encode(f"ada:{secret}".encode()).decode()
    assert s.authenticate(f"Basic {token}") == Caller("ada", "class/ada")
    assert s.authenticate("Basic " + token[:-4]) is None
    assert s.authenticate("Bearer " + token) is None
    # renewing the secret makes the old one stop working at once
    scope.add_caller("ada", cfg=cfg)
    assert s.authenticate(f"Basic {token}") is None
    assert scope.remove_caller("ada", cfg=cfg) and not scope.remove_caller("ada", cfg=cfg)


def test_namespaces_may_not_overlap(cfg):
    scope.add_caller("ada", cfg=cfg)
    for name, ns in (("library", None), ("x", "library/x"), ("y", "ada/sub"), ("ada2", "ada")):
        with pytest.raises(ValueError):
            scope.add_caller(name, namespace=ns, cfg=cfg)
    for bad in ("Ada", "a/b", "", "a" * 65, "tags", "-a"):
        with pytest.raises(ValueError):
            scope.add_caller(bad, cfg=cfg)


def test_a_loose_scope_file_is_refused(cfg):
    scope.add_caller("ada", cfg=cfg)
    path = scope.scope_dir(cfg) / "scope.json"
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="mode 0600"):
        scope.load_scope(path)
    with pytest.raises(PermissionError):
        scope.start(cfg, listen=["127.0.0.1:5199"])


def test_denied_log_is_capped(tmp_path):
    log = scope.DeniedLog(tmp_path / "denied.jsonl", per_caller=3, total_bytes=10_000)
    for i in range(50):
        log.record("mallory", "PUT", f"/v2/x/{i}", 403, "no")
        log.record("ada", "GET", "/v2/y", 403, "no")
    rows = [json.loads(line) for line in (tmp_path / "denied.jsonl").read_text().splitlines()]
    assert len([r for r in rows if r["caller"] == "mallory"]) == 4  # 3 + "no more are logged"
    assert "no more" in rows[-1]["why"]
    big = scope.DeniedLog(tmp_path / "big.jsonl", per_caller=10**6, total_bytes=2000)
    for i in range(100):
        big.record(f"c{i}", "GET", "/v2/" + "z" * 200, 403, "no")
    sizes = [(tmp_path / name).stat().st_size for name in ("big.jsonl", "big.jsonl.1")]
    assert sum(sizes) <= 2000, sizes
    # it never stops: the newest refusal is always there (the file rotates at half the total)
    assert json.loads((tmp_path / "big.jsonl").read_text().splitlines()[-1])["caller"] == "c99"


def test_denied_reads_the_rotated_log_too(tmp_path):
    cfg = Settings(tmp_path, 5000)
    directory = scope.scope_dir(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    log = scope.DeniedLog(directory / "denied.jsonl", per_caller=10**6, total_bytes=4000)
    for i in range(30):
        log.record("ada", "GET", f"/v2/x/{i}", 403, "no")
    assert (directory / "denied.jsonl.1").exists()
    targets = [r["target"] for r in scope.denied("ada", cfg=cfg)]
    assert targets[-1] == "/v2/x/29" and targets == sorted(targets, key=lambda t: int(t[6:]))


def test_denied_log_cap_is_a_rolling_window(tmp_path, monkeypatch):
    """A long-lived caller (a hub learner's credential) past its cap is logged again once
    its window has passed; before, one cap held for the proxy's whole life."""
    now = [1_000_000.0]
    monkeypatch.setattr(scope.time, "time", lambda: now[0])
    log = scope.DeniedLog(tmp_path / "denied.jsonl", per_caller=3, total_bytes=100_000)
    for i in range(10):
        log.record("ada", "PUT", f"/v2/x/{i}", 403, "no")
        now[0] += 1
    assert len(_rows(tmp_path, "ada")) == 4  # 3 + "no more are logged"
    now[0] += 3600
    log.record("ada", "PUT", "/v2/x/later", 403, "no")
    log.record("bob", "GET", "/v2/y", 403, "no")  # others keep their own window
    rows = _rows(tmp_path, "ada")
    assert [r["target"] for r in rows][-1] == "/v2/x/later"
    assert len(rows) == 5 and len(_rows(tmp_path, "bob")) == 1
    for i in range(10):  # the new window is capped as the first was
        log.record("ada", "PUT", f"/v2/z/{i}", 403, "no")
    assert len(_rows(tmp_path, "ada")) == 5 + 3


def _rows(directory, caller: str) -> list[dict]:
    lines = (directory / "denied.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["caller"] == caller]


def test_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_STATE_DIR", str(tmp_path))
    assert grader_main(["engine", "scope", "settings", "--prefix", "class"]) == 0
    out = tmp_path / "dc"
    argv = ["engine", "scope", "add", "ada", "--docker-config", str(out), "--host", "h:1"]
    assert grader_main(argv) == 0
    conf = json.loads((out / "config.json").read_text())
    assert list(conf["auths"]) == ["h:1"] and os.stat(out / "config.json").st_mode & 0o777 == 0o600
    assert grader_main(["engine", "scope", "add", "x", "--namespace", "library/x"]) == 1
    assert "overlaps" in capsys.readouterr().err
    assert grader_main(["engine", "scope", "remove", "ada"]) == 0
    assert grader_main(["engine", "scope", "status"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["running"] is False


#: Binds HOST:PORT and prints the errno name (or "bound").
BIND = """
import errno, socket, sys
s = socket.socket()
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
    print("bound")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the probe as another uid (setpriv)")
def test_only_root_may_bind_the_proxys_port():
    """While the proxy is down a local user (a hub learner, a grading uid) cannot listen on
    its port and receive the credentials the DNAT rules send there: the kernel refuses the
    bind (EACCES) before it looks whether the port is taken. Assumes
    net.ipv4.ip_unprivileged_port_start stays at 1024 (the doctor warns where it is lower)."""
    from grader import proc
    from grader.engine import rootless

    host, port = scope._hostport(scope.default_listen()[0])
    uid = rootless.RUN_UIDS[0] + 7
    argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    done = proc.run([*argv, "/usr/bin/python3", "-c", BIND, host, str(port)], timeout=30, cwd="/")
    assert done.stdout.strip() == "EACCES", (port, done.stdout, done.stderr[-500:])
    assert port < scope.unprivileged_port_start() and scope.squattable([f"{host}:{port}"]) == []


def test_an_unprivileged_port_is_named(monkeypatch):
    assert scope.squattable(["127.0.0.1:5123", "127.0.0.1:580"]) == ["127.0.0.1:5123"]
    monkeypatch.setattr(scope, "unprivileged_port_start", lambda: 0)  # sysctl lowered
    assert "any local user may listen there" in scope._squat_warning(["127.0.0.1:580"])
    assert scope._squat_warning([]) is None


def test_a_proxy_on_a_former_default_port_moves(monkeypatch):
    """To today's port on the same host, and the former address is kept (held), last."""
    monkeypatch.delenv("COURSE_SCOPE_PORT", raising=False)
    moved = scope._moved(["127.0.0.1:5080", "127.0.0.1:5123", "127.0.0.1:580"])
    assert moved == ["127.0.0.1:580", "127.0.0.1:5123", "127.0.0.1:5080"]
    assert scope._moved(["0.0.0.0:5080"]) == ["0.0.0.0:580", "0.0.0.0:5080"]
    assert scope._moved(["10.1.2.3:5080"]) == ["10.1.2.3:580", "10.1.2.3:5080"]
    assert scope._moved(moved) == moved  # a later restart keeps holding it
    assert scope.held(moved) == ["127.0.0.1:5080"] and scope.held(["127.0.0.1:5080"]) == []
    monkeypatch.setenv("COURSE_SCOPE_PORT", "5080")  # nothing to move: bound once
    assert scope._moved(["127.0.0.1:5080"]) == ["127.0.0.1:5080"]


@pytest.mark.parametrize(
    "running, expect",
    [
        (["127.0.0.1:5080"], ["127.0.0.1:580", "127.0.0.1:5080"]),
        (["0.0.0.0:5080"], ["0.0.0.0:580", "0.0.0.0:5080"]),
        (["127.0.0.1:580", "127.0.0.1:5080"], ["127.0.0.1:580", "127.0.0.1:5080"]),
        (["127.0.0.1:5123"], ["127.0.0.1:5123"]),
    ],
)
def test_start_replaces_an_older_proxy_and_holds_its_former_port(monkeypatch, cfg, running, expect):
    """An older proxy on 5080 is restarted on 580, same host, and keeps 5080 too: engines
    started before the move forward there (socat, the nat DNAT, their filter chain), and a
    5080 nobody holds could be bound by any local user to receive their credentials."""
    from grader.docker import registry
    from grader.engine import services

    directory = scope.scope_dir(cfg)
    directory.mkdir(mode=0o700, parents=True)
    (directory / "listen").write_text(" ".join(running) + "\n")
    (directory / "version").write_text("8-older\n")
    monkeypatch.delenv("COURSE_SCOPE_PORT", raising=False)
    pid = {"scope": 4242}
    started: list[list[str]] = []

    def start_service(cfg, name, argv):
        started.append(argv)
        pid[name] = 4343
        return 4343

    def stop_service(cfg, name, timeout=20):
        return pid.pop(name, None) is not None

    monkeypatch.setattr(services, "owned_pid", lambda cfg, name: pid.get(name))
    monkeypatch.setattr(services, "start_service", start_service)
    monkeypatch.setattr(services, "stop_service", stop_service)
    monkeypatch.setattr(registry, "registry_answers", lambda host, timeout=1: True)
    now = scope.start(cfg, listen=["127.0.0.1:1"])  # a running proxy's addresses win
    (argv,) = started
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--listen"] == expect
    assert now["running"] and now["listen"] == expect
    assert now["held"] == expect[1:]
    assert (now["warning"] is None) == (expect != ["127.0.0.1:5123"])  # 5080 held: no warning
    if now["held"]:
        assert "engines started before the proxy moved" in now["note"]
        assert "5080" in now["note"]
    else:
        assert now["note"] is None
    assert scope.start(cfg)["pid"] == 4343  # today's version: kept as it is
    assert len(started) == 1


def test_the_doctor_names_a_port_any_user_could_bind(monkeypatch, cfg):
    from grader.engine import doctor

    def probe(listen):
        monkeypatch.setattr(scope, "status", lambda cfg=None: {"running": True, "listen": listen})
        r = doctor.Report()
        doctor._probe_scope_port(r, cfg)
        return r.checks[0]

    assert probe(["127.0.0.1:580"]).ok
    old = probe(["127.0.0.1:5080"])  # a proxy an older grader started
    assert not old.ok and not old.required and "scope start" in old.remedy
    moved = ["127.0.0.1:580", "127.0.0.1:5080"]
    monkeypatch.setattr(  # 5080 held for engines started before the move: not a squat hole
        scope,
        "status",
        lambda cfg=None: {"running": True, "listen": moved, "held": moved[1:], "note": "n"},
    )
    r = doctor.Report()
    doctor._probe_scope_port(r, cfg)
    assert r.checks[0].ok, r.checks[0]
    monkeypatch.setattr(scope, "unprivileged_port_start", lambda: 80)
    low = probe(["127.0.0.1:580"])
    assert not low.ok and "ip_unprivileged_port_start=1024" in low.remedy


PROBE = """
import socket, sys, time
port = int(sys.argv[1])
other = socket.socket(); other.bind(("127.0.0.1", 0)); other.listen()
first = socket.socket(); first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
first.connect(other.getsockname())  # closed first: TIME_WAIT on its port
mine = first.getsockname()[1]
served = other.accept()[0]
first.close(); served.close(); time.sleep(0.2)
v4 = socket.socket(); v4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
v4.bind(("127.0.0.1", mine)); v4.connect(("127.0.0.1", port))
v6 = socket.socket(socket.AF_INET6); v6.connect(("::ffff:127.0.0.1", port))
print("up", flush=True); time.sleep(20)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="connects as another uid (setpriv)")
def test_peer_identity_is_the_owner_of_the_clients_socket():
    """The kernel's exact answer: uid 65534 connecting from a port whose TIME_WAIT socket
    (uid 0 in /proc/net/tcp) is still there, and through an IPv4-mapped IPv6 socket, is
    uid 65534 both times; a scan of /proc/net/tcp said uid 0 for the first and nothing for
    the second."""
    import socket
    import subprocess
    import sys

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-I"]
    probe = subprocess.Popen([*argv, "-c", PROBE, str(srv.getsockname()[1])],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert probe.stdout.readline().strip() == "up"
        accepted = [srv.accept()[0] for _ in range(2)]
        assert [scope.peer_identity(a) for a in accepted] == ["uid 65534", "uid 65534"]
        mine = socket.create_connection(srv.getsockname())
        assert scope.peer_identity(srv.accept()[0]) == f"uid {os.geteuid()}"
        mine.close()
    finally:
        probe.kill()
        srv.close()
