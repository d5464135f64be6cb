"""The registry wall for grading on worker engines: a credential per submission at the scope
proxy (:mod:`grader.engine.scope`).

A worker engine reaches the course registry only through the proxy (its firewall lets the
engine's uid reach the proxy's port, not the registry's). The submission's docker client
holds one credential, good for pushes into the submission's namespace and reads of the
read-only namespaces (``library/``, ``cache/``); a ``RUN`` step or a container holds none, so
it may read base images and write nothing. What the proxy refused becomes a finding.

    upstream(registry)            -> the proxy's address, or None (no wall: graded as before)
    credential(namespace, label)  -> context manager: (caller, config.json dict)
    refused(caller, since)        -> findings for the requests the proxy refused
    route_to_proxy(uids, registry, proxy) -> host processes of those uids that dial the
                                     registry reach the proxy instead (iptables nat)
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator

from grader import proc
from grader.engine import rootless, scope
from grader.engine.config import settings
from grader.grading.report import Finding
from grader.grading.rules import run as rules

#: Findings kept from one submission's refused requests (the proxy caps its own log too).
MAX_REFUSED = 5


def upstream(registry: str) -> str | None:
    """The proxy in front of ``registry`` (started when needed), or None when ``registry`` is
    not the course registry the proxy serves."""
    if registry != settings().registry_host:
        return None
    try:
        return scope.start()["listen"][0]
    except (RuntimeError, OSError, ValueError) as e:  # a worker engine without it: no wall
        raise rootless.EngineError(f"the registry scope proxy cannot start: {e}") from e


def caller_name(namespace: str, label: str) -> str:
    """One caller per grading: two gradings of one namespace at once never renew or remove
    each other's credential, and their refusals stay apart."""
    return "grading-" + hashlib.sha256(namespace.encode()).hexdigest()[:20] + "-" + label[:10]


@contextlib.contextmanager
def credential(
    namespace: str, registry: str, label: str, rooted: bool = False, admin: bool = False
) -> Iterator[tuple[str, dict, float]]:
    """(caller, a docker config.json giving its credential for ``registry``, start time).
    ``rooted``: the names it uses are read inside ``namespace`` (``scope.own_name``);
    ``admin``: it may write everywhere but the read-only namespaces (a learner's plain check
    of their own work)."""
    name = caller_name(namespace, label)
    try:
        secret = scope.add_caller(
            name, namespace=namespace, shared=True, rooted=rooted, admin=admin
        )
    except (ValueError, OSError, scope.Refused) as e:  # e.g. under library/: no credential
        raise rootless.EngineError(f"no registry credential for {namespace!r}: {e}") from e
    try:
        yield name, scope.docker_config(registry, name, secret), time.time()
    finally:
        with contextlib.suppress(ValueError, OSError):
            scope.remove_caller(name)


def refused(caller: str, since: float) -> list[Finding]:
    """One finding per refused request (at most :data:`MAX_REFUSED`)."""
    rows = scope.denied(caller, since=since)
    kept = rows[:MAX_REFUSED]
    if len(rows) > MAX_REFUSED:
        kept[-1] = {
            **kept[-1],
            "why": f"{kept[-1].get('why', '')} (and {len(rows) - MAX_REFUSED} more)",
        }
    return [
        rules.REGISTRY_REFUSED.finding(
            request=f"{row.get('method', '?')} {str(row.get('target', '?'))[:160]}",
            status=row.get("status", "?"),
            why=str(row.get("why", ""))[:300],
        )
        for row in kept
    ]


#: The nat chain that sends grader uids' connections to the registry on to the proxy.
ROUTE_CHAIN = "GRADER-SCOPE"


@rootless.iptables_locked()
def route_to_proxy(uids: tuple[int, int], registry: str, proxy: str) -> None:
    """Connections that processes of ``uids`` (``[lo, hi)``, on the host's network: jailed
    kernels, per-run docker clients) open to ``registry`` reach ``proxy`` instead (a DNAT in
    nat OUTPUT), so the name a lab or build.sh uses stays the registry's while the proxy
    decides. The filter rules of those uids must accept the proxy's port, not the registry's.

    Idempotent: afterwards the chain holds this rule for these uids and ``registry`` and no
    other. A rule of theirs that points elsewhere (a proxy since moved) or names a range
    overlapping theirs (an older uid layout) is dropped once the new rule stands first, so
    they are never sent straight to the registry meanwhile. A copy of this very rule is never
    deleted (``-D`` removes the first match: two graders each deleting "the duplicate" would
    remove both), and the whole check-insert-list-delete runs under the host-wide
    :func:`rootless.iptables_locked`, so graders claiming workers at once add it once. Rules
    for other uids and other registries (a test's own registry on this machine) stay."""
    ipt = rootless._iptables
    owner = f"{uids[0]}-{uids[1] - 1}"
    rule = _route_rule(owner, registry, proxy)
    if not ipt("-n", "-L", ROUTE_CHAIN, table="nat", check=False):
        ipt("-N", ROUTE_CHAIN, table="nat")
    if not ipt("-C", ROUTE_CHAIN, *rule, table="nat", check=False):
        ipt("-I", ROUTE_CHAIN, "1", *rule, table="nat")
    for stale in _stale_routes(uids, registry, proxy):
        ipt("-D", ROUTE_CHAIN, *stale, table="nat", check=False)
    if not ipt("-C", "OUTPUT", "-j", ROUTE_CHAIN, table="nat", check=False):
        ipt("-I", "OUTPUT", "1", "-j", ROUTE_CHAIN, table="nat")


def _route_rule(owner: str, registry: str, proxy: str) -> list[str]:
    host, _, port = registry.rpartition(":")
    return ["-m", "owner", "--uid-owner", owner, "-d", f"{host}/32",
            "-p", "tcp", "-m", "tcp", "--dport", port,
            "-j", "DNAT", "--to-destination", proxy]  # fmt: skip


def routes() -> list[list[str]]:
    """The chain's rules as ``iptables -S`` prints them, without ``-A CHAIN``."""
    argv = ["iptables", "-w", "5", "-t", "nat", "-S", ROUTE_CHAIN]
    listed = proc.run(argv, timeout=30, check=False).stdout
    prefix = f"-A {ROUTE_CHAIN} "
    return [ln[len(prefix) :].split() for ln in listed.splitlines() if ln.startswith(prefix)]


def _stale_routes(uids: tuple[int, int], registry: str, proxy: str) -> list[list[str]]:
    """Rules for ``registry`` whose uid range overlaps ``uids`` but that are not exactly
    today's (rules pointing elsewhere, older ranges). Copies of today's rule are harmless and
    stay: deleting one by its text deletes whichever copy comes first."""
    host, _, port = registry.rpartition(":")
    out = []
    for r in routes():
        lo, _, hi = _arg(r, "--uid-owner").partition("-")
        if _arg(r, "-d") != f"{host}/32" or _arg(r, "--dport") != port or not lo.isdigit():
            continue
        if int(hi or lo) < uids[0] or int(lo) >= uids[1]:
            continue  # other uids
        today = (int(lo), int(hi or lo) + 1) == tuple(uids)
        if not (today and _arg(r, "--to-destination") == proxy):
            out.append(r)
    return out


def _arg(rule: list[str], flag: str) -> str:
    return rule[rule.index(flag) + 1] if flag in rule and rule.index(flag) + 1 < len(rule) else ""
