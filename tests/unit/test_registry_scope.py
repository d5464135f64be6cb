"""registry_scope: the grader's side of the registry wall (findings from the proxy's denied
log, capped; a proxy that cannot start is an engine error, never a crash)."""

from __future__ import annotations

import pytest

from grader.engine import rootless, scope
from grader.engine.config import settings
from grader.grading.sandbox import registry_scope


def _rows(n: int) -> list[dict]:
    return [
        {"time": 1.0, "caller": "c", "method": "PUT", "target": f"/v2/other/app/manifests/{i}",
         "status": 403, "why": "c may not write to other/app"}
        for i in range(n)
    ]  # fmt: skip


def test_refused_requests_become_rn409_findings(monkeypatch):
    monkeypatch.setattr(scope, "denied", lambda caller, since=None: _rows(2))
    found = registry_scope.refused("c", 0.0)
    assert [f.rule for f in found] == ["RN409", "RN409"]
    assert "PUT /v2/other/app/manifests/0" in found[0].message
    assert "(403)" in found[0].message and "may not write to other/app" in found[0].message


def test_refused_findings_are_capped(monkeypatch):
    monkeypatch.setattr(scope, "denied", lambda caller, since=None: _rows(500))
    found = registry_scope.refused("c", 0.0)
    assert len(found) == registry_scope.MAX_REFUSED
    assert "(and 495 more)" in found[-1].message


def test_a_proxy_that_cannot_start_is_an_engine_error(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("the scope proxy did not come up on 127.0.0.1:580")

    monkeypatch.setattr(scope, "start", broken)
    with pytest.raises(rootless.EngineError, match="scope proxy cannot start"):
        registry_scope.upstream(settings().registry_host)


def test_another_registry_is_not_scoped():
    assert registry_scope.upstream("127.0.0.1:5999") is None


def test_one_caller_per_grading():
    a = registry_scope.caller_name("batch/ada", "0123456789")
    assert a == registry_scope.caller_name("batch/ada", "0123456789")
    assert a != registry_scope.caller_name("batch/ada", "abcdef0123")  # two gradings at once
    assert a != registry_scope.caller_name("batch/bob", "0123456789")
    assert len(a) <= 64 and a.startswith("grading-")


def test_the_anonymous_name_is_reserved():
    with pytest.raises(ValueError):
        scope.add_caller("anonymous", cfg=settings())


@pytest.mark.parametrize(
    ("kind", "expect"),
    [({}, (False, False)), ({"rooted": True}, (False, True)), ({"admin": True}, (True, False))],
)
def test_a_credential_lives_as_long_as_its_grading(tmp_path, monkeypatch, kind, expect):
    """Autograde's kernels get rooted credentials, a learner's plain check an admin one."""
    monkeypatch.setenv("COURSE_STATE_DIR", str(tmp_path))
    with registry_scope.credential("class/ada-1", "127.0.0.1:5000", "abc", **kind) as (
        caller, config, _,
    ):  # fmt: skip
        entry = scope.callers()[caller]
        assert (entry["admin"], entry["rooted"]) == expect
        assert entry["namespace"] == "class/ada-1"
        assert list(config["auths"]) == ["127.0.0.1:5000"]
    assert caller not in scope.callers()


def test_student_namespaces_are_apart():
    from grader.grading.batch.autograde import student_namespace

    names = {student_namespace(s) for s in ("ada", "Ada", "a d a", "a_d_a", "x" * 300)}
    assert len(names) == 5
    for name in names:
        scope.check_name(name)
        assert name.startswith("autograde/") and name.count("/") == 1


@pytest.mark.parametrize("student", ["a" * 39 + ".b", "..", "Ada", "x" * 200, "ünï"])
def test_an_autograde_namespace_is_always_a_name_the_proxy_takes(tmp_path, monkeypatch, student):
    """A student id cut at 40 characters must not end in a separator (found in review: the
    proxy refused the name and the whole autograde run stopped with a traceback)."""
    from grader.grading.batch.autograde import check_namespace, student_namespace

    monkeypatch.setenv("COURSE_STATE_DIR", str(tmp_path))
    ns = student_namespace(student)
    scope.check_name(ns)
    scope.add_caller("kern-1", namespace=ns, rooted=True, cfg=settings())
    # the challenge's sandbox grading before the kernel: a plain (confined) caller's name,
    # beside the kernel's and out of its reach
    check = check_namespace(student)
    scope.add_caller("chk-1", namespace=check, cfg=settings())
    kernel = scope.Caller("kern-1", ns, rooted=True)
    assert scope.own_name(kernel, check + "/07-challenge/hello", ()).startswith(ns + "/")


def test_a_copy_of_todays_route_is_never_stale(monkeypatch):
    """``-D`` deletes the first rule that matches: two graders each deleting "the duplicate"
    of today's rule delete both, so copies of it stay (harmless); only rules pointing
    elsewhere or naming another overlapping range go."""
    today = registry_scope._route_rule("100-199", "127.0.0.1:5000", "127.0.0.1:580")
    moved = registry_scope._route_rule("100-199", "127.0.0.1:5000", "127.0.0.1:5080")
    older = registry_scope._route_rule("90-149", "127.0.0.1:5000", "127.0.0.1:580")
    other = registry_scope._route_rule("300-399", "127.0.0.1:5000", "127.0.0.1:5080")
    listed = [today, moved, today, older, other]
    monkeypatch.setattr(registry_scope, "routes", lambda: listed)
    stale = registry_scope._stale_routes((100, 200), "127.0.0.1:5000", "127.0.0.1:580")
    assert stale == [moved, older]


def test_the_iptables_lock_is_roots_and_reentrant(tmp_path, monkeypatch):
    """One lock file for the machine, mode 0600 in a folder only root writes; a thread that
    holds it may take it again (kernel.firewall calls route_to_proxy), another waits."""
    import stat
    import threading

    lock = tmp_path / "engines" / "iptables.lock"
    monkeypatch.setattr(rootless, "IPTABLES_LOCK", lock)
    got = threading.Event()

    def other() -> None:
        with rootless.iptables_locked():
            got.set()

    with rootless.iptables_locked():
        with rootless.iptables_locked():
            assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        t = threading.Thread(target=other)
        t.start()
        assert not got.wait(0.5)  # held here: the other thread waits
    t.join(10)
    assert got.is_set()
    lock.parent.chmod(0o777)
    with (
        pytest.raises(rootless.EngineError, match="writable by root alone"),
        rootless.iptables_locked(),
    ):
        pass
