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


def route_to_proxy(uids: tuple[int, int], registry: str, proxy: str) -> None:
    """Connections that processes of ``uids`` (``[lo, hi)``, on the host's network: jailed
    kernels, per-run docker clients) open to ``registry`` reach ``proxy`` instead (a DNAT in
    nat OUTPUT), so the name a lab or build.sh uses stays the registry's while the proxy
    decides. The filter rules of those uids must accept the proxy's port, not the registry's.
    Rules are only added, never flushed (graders beside this one may use them)."""
    ipt = rootless._iptables
    host, _, port = registry.rpartition(":")
    rule = ["-m", "owner", "--uid-owner", f"{uids[0]}-{uids[1] - 1}", "-d", f"{host}/32",
            "-p", "tcp", "-m", "tcp", "--dport", port,
            "-j", "DNAT", "--to-destination", proxy]  # fmt: skip
    if not ipt("-n", "-L", ROUTE_CHAIN, table="nat", check=False):
        ipt("-N", ROUTE_CHAIN, table="nat")
    if not ipt("-C", ROUTE_CHAIN, *rule, table="nat", check=False):
        ipt("-A", ROUTE_CHAIN, *rule, table="nat")
    if not ipt("-C", "OUTPUT", "-j", ROUTE_CHAIN, table="nat", check=False):
        ipt("-I", "OUTPUT", "1", "-j", ROUTE_CHAIN, table="nat")
