"""Grader uids on the host's network reach the course registry only through the scope proxy:
the per-run docker clients (gate on: ``buildx imagetools``, ``manifest inspect``) and the
jailed notebook kernels dial ``127.0.0.1:5000`` and the proxy answers (a DNAT matched on
their uids), so what they read and write is their credential's to decide. Root (the grader,
the registry's own clients) still reaches the registry itself: the control."""

from __future__ import annotations

import sys

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
