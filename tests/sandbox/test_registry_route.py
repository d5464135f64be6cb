"""Grader uids on the host's network reach the course registry only through the scope proxy:
the per-run docker clients (gate on: ``buildx imagetools``, ``manifest inspect``) and the
jailed notebook kernels dial ``127.0.0.1:5000`` and the proxy answers (a DNAT matched on
their uids), so what they read and write is their credential's to decide. Root (the grader,
the registry's own clients) still reaches the registry itself: the control."""

from __future__ import annotations

import sys
import threading

import pytest

from grader import proc
from grader.engine import rootless
from grader.engine.config import settings
from grader.grading.checks.run import claim_worker
from grader.grading.sandbox import kernel as jailed
from grader.grading.sandbox import registry_scope

pytestmark = [pytest.mark.registry]

#: GET /v2/ and print the status and the challenge: the registry answers 200, the proxy 401
#: with ``WWW-Authenticate: Basic``; a POST into library/ without a credential: 202 or 401.
PROBE = """
import sys, urllib.error, urllib.request
host, probes = sys.argv[1], [("GET", "/v2/"), ("POST", "/v2/library/route-probe/blobs/uploads/")]
for method, path in probes[: int(sys.argv[2])]:
    req = urllib.request.Request(f"http://{host}{path}", method=method,
                                 data=b"" if method == "POST" else None,
                                 headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            print(method, r.status, r.headers.get("WWW-Authenticate"))
    except urllib.error.HTTPError as e:
        print(method, e.code, e.headers.get("WWW-Authenticate"))
"""


def _dial(uid: int | None, probes: int = 2) -> list[str]:
    python = "/usr/bin/python3" if uid is not None else sys.executable
    argv = [python, "-c", PROBE, settings().registry_host, str(probes)]
    if uid is not None:
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
    done = proc.run(argv, timeout=60, check=False, cwd="/")
    assert done.ok, done.stderr[-2000:]
    return done.stdout.split("\n")


@pytest.fixture(scope="module")
def routed():
    registry = settings().registry_host
    with claim_worker(registry) as worker:  # installs the per-run clients' route
        proxy = registry_scope.upstream(registry)
        jailed.firewall(registry, proxy)  # the kernels' (grader autograde)
        yield worker


@pytest.mark.engine
@pytest.mark.parametrize("uids", ["run", "kernel"])
def test_grader_uids_dial_the_registry_and_reach_the_proxy(routed, uids) -> None:
    lo, hi = rootless.RUN_UIDS if uids == "run" else rootless.KERNEL_UIDS
    answers = _dial(lo + (hi - lo) // 2)
    assert answers[0].startswith("GET 401 Basic"), (
        answers
    )  # the proxy's challenge, not the registry
    assert answers[1].startswith("POST 401"), answers  # no credential: nothing written
    control = _dial(None, probes=1)  # root: the registry itself
    assert control[0].startswith("GET 200"), control


#: uids no process has (past the kernels'), and a registry address nothing answers on: the
#: route test touches neither the real routes nor a grading running beside it.
TEST_UIDS = (rootless.KERNEL_UIDS[1] + 100, rootless.KERNEL_UIDS[1] + 110)
TEST_REGISTRY = "127.0.0.1:5197"


#: the test range's owner match, and an older, overlapping range's
OWNERS = {f"{TEST_UIDS[0]}-{TEST_UIDS[1] - 1}", f"{TEST_UIDS[0] - 5}-{TEST_UIDS[0] + 4}"}


def _listed() -> list[list[str]]:
    """``iptables -t nat -S GRADER-SCOPE``, each rule without its ``-A GRADER-SCOPE``."""
    chain = registry_scope.ROUTE_CHAIN
    out = proc.run(["iptables", "-w", "5", "-t", "nat", "-S", chain], timeout=30).stdout
    return [ln.split()[2:] for ln in out.splitlines() if ln.startswith(f"-A {chain} ")]


def _test_routes() -> list[str]:
    return [" ".join(r) for r in _listed() if set(r) & OWNERS]


def _drop_test_routes() -> None:
    for r in _listed():
        if set(r) & OWNERS:
            rootless._iptables("-D", registry_scope.ROUTE_CHAIN, *r, table="nat", check=False)


def _rule(owner: str, registry: str, proxy: str) -> list[str]:
    host, _, port = registry.rpartition(":")
    return ["-m", "owner", "--uid-owner", owner, "-d", f"{host}/32", "-p", "tcp", "-m", "tcp",
            "--dport", port, "-j", "DNAT", "--to-destination", proxy]  # fmt: skip


def test_routes_are_replaced_never_piled_up() -> None:
    """route_to_proxy twice, then for a moved proxy: one rule per uid range, none stale (an
    older grader's rule to the old port and one for an overlapping older range are gone); a
    rule for the same uids and another registry stays."""
    lo, hi = TEST_UIDS
    owner = f"{lo}-{hi - 1}"
    chain = registry_scope.ROUTE_CHAIN
    legacy = _rule(f"{lo - 5}-{lo + 4}", TEST_REGISTRY, "127.0.0.1:5080")
    other = _rule(owner, "127.0.0.1:5196", "127.0.0.1:5080")
    try:
        registry_scope.route_to_proxy(TEST_UIDS, TEST_REGISTRY, "127.0.0.1:5080")
        registry_scope.route_to_proxy(TEST_UIDS, TEST_REGISTRY, "127.0.0.1:5080")
        assert len(_test_routes()) == 1, _test_routes()
        for rule in (legacy, other):  # what an older grader left, and another registry's
            rootless._iptables("-A", chain, *rule, table="nat")
        registry_scope.route_to_proxy(TEST_UIDS, TEST_REGISTRY, "127.0.0.1:580")
        rules = _test_routes()
        ours = [r for r in rules if "--dport 5197" in r]
        assert len(ours) == 1 and ours[0].endswith("--to-destination 127.0.0.1:580"), rules
        assert len([r for r in rules if "--dport 5196" in r]) == 1, rules
        assert ours == [r for r in rules if "5197" in r] and len(rules) == 2, rules
    finally:
        _drop_test_routes()
    assert _test_routes() == []


def _ensure_at_once(proxy: str, graders: int = 8) -> None:
    """``graders`` threads call route_to_proxy together (``grader batch``'s pool claiming
    workers), released by one barrier; an exception in any is raised here."""
    from concurrent.futures import ThreadPoolExecutor

    start = threading.Barrier(graders)

    def ensure(_: int) -> None:
        start.wait(timeout=30)
        registry_scope.route_to_proxy(TEST_UIDS, TEST_REGISTRY, proxy)

    with ThreadPoolExecutor(graders) as pool:
        list(pool.map(ensure, range(graders)))


def test_concurrent_routes_never_remove_every_copy() -> None:
    """Graders claiming workers at once each ensure the route, also when the rule still points
    at a proxy since moved (the first batch after an upgrade): the chain ends with exactly one
    rule for the uids, the current proxy's, never none (the uids would reach the registry
    itself, unscoped). Before the host-wide lock each grader that found the rule missing
    inserted it, then deleted "the duplicate" (``-D`` removes the first match): together
    they deleted every copy."""
    owner = f"{TEST_UIDS[0]}-{TEST_UIDS[1] - 1}"
    chain = registry_scope.ROUTE_CHAIN
    try:
        for proxy in ("127.0.0.1:5080", "127.0.0.1:580", "127.0.0.1:581"):
            for _ in range(3):  # from a rule to an older proxy
                _drop_test_routes()
                old = _rule(owner, TEST_REGISTRY, "127.0.0.1:5079")
                rootless._iptables("-A", chain, *old, table="nat")
                _ensure_at_once(proxy)
                rules = _test_routes()
                assert len(rules) == 1 and rules[0].endswith(f" {proxy}"), (proxy, rules)
            _ensure_at_once(proxy)  # and from the rule itself
            assert len(_test_routes()) == 1, _test_routes()
    finally:
        _drop_test_routes()
    assert _test_routes() == []
