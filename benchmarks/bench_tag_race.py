"""The course registry's tag race, straight to the registry and through the scope proxy.

    .venv/bin/python benchmarks/bench_tag_race.py [--runs 5] [--rounds 60]

Four writers PUT four different manifests to one tag while four readers HEAD it, each
--rounds times (what dockerd 26 does to a tag when buildx 0.13's docker driver has it push a
multi-platform image). distribution 2.8 rewrites a tag's link file in place, so a read beside
a write can answer 500 (or 404). Each run uses a fresh repository under scope/bench-<id>/;
the proxy (one manifest request at a time per repository) runs on a free port in 5100-5199.
Prints, per path, the HEADs that were not 200 in each run, and the seconds each run took.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench_scope import start_proxy

from grader.engine import scope
from grader.engine.config import Settings, registry_host

MTYPE = "application/vnd.oci.image.manifest.v1+json"


def request(host: str, method: str, path: str, auth: str | None, body=None, **headers):
    conn = http.client.HTTPConnection(*host.split(":"), timeout=60)
    if auth:
        headers["Authorization"] = auth
    conn.request(method, path, body=body, headers=headers)
    answer = conn.getresponse()
    answer.read()
    conn.close()
    return answer.status, answer.getheader("Location")


def manifests(host: str, repo: str, auth: str | None) -> list[bytes]:
    """Four manifests whose config blobs are in ``repo``."""
    out = []
    for i in range(4):
        config = json.dumps({"architecture": f"a{i}", "os": "linux"}).encode()
        digest = "sha256:" + hashlib.sha256(config).hexdigest()
        _, loc = request(host, "POST", f"/v2/{repo}/blobs/uploads/", auth)
        loc = loc.split("://", 1)[-1].split("/", 1)[-1]
        put = f"/{loc}{'&' if '?' in loc else '?'}digest={digest}"
        ctype = {"Content-Type": "application/octet-stream"}
        assert request(host, "PUT", put, auth, config, **ctype)[0] == 201
        doc = {"schemaVersion": 2, "mediaType": MTYPE, "layers": [],
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": digest, "size": len(config)}}  # fmt: skip
        out.append(json.dumps(doc).encode())
    return out


def hammer(host: str, repo: str, auth: str | None, rounds: int) -> collections.Counter:
    bodies = manifests(host, repo, auth)
    path, seen = f"/v2/{repo}/manifests/t", collections.Counter()
    request(host, "PUT", path, auth, bodies[0], **{"Content-Type": MTYPE})

    def writer(body: bytes) -> None:
        for _ in range(rounds):
            seen["PUT", request(host, "PUT", path, auth, body, **{"Content-Type": MTYPE})[0]] += 1

    def reader() -> None:
        for _ in range(rounds):
            seen["HEAD", request(host, "HEAD", path, auth, Accept=MTYPE)[0]] += 1

    threads = [threading.Thread(target=writer, args=(b,)) for b in bodies]
    threads += [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    upstream, bench = registry_host(), f"bench-{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-race-"))
    cfg = Settings(tmp, int(upstream.rpartition(":")[2]))
    secret = scope.add_caller(bench, namespace=f"scope/{bench}", cfg=cfg)
    auth = "Basic " + base64.b64encode(f"{bench}:{secret}".encode()).decode()
    server, proxy = start_proxy(scope.scope_dir(cfg), upstream)
    results: dict[str, list[tuple[int, float]]] = {"direct": [], "proxy": []}
    try:
        for i in range(args.runs):
            for name, host, a in (("direct", upstream, None), ("proxy", proxy, auth)):
                started = time.monotonic()
                seen = hammer(host, f"scope/{bench}/{name}-{i}", a, args.rounds)
                bad = sum(n for (m, status), n in seen.items() if m == "HEAD" and status != 200)
                results[name].append((bad, time.monotonic() - started))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    heads = 4 * args.rounds
    print(f"\n4 writers + 4 readers of one tag, {args.rounds} requests each; {args.runs} runs\n")
    print(f"| path | HEADs not 200 (of {heads}) per run | median | seconds per run |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        bad = [b for b, _ in runs]
        secs = " ".join(f"{s:.2f}" for _, s in runs)
        print(f"| {name} | {' '.join(map(str, bad))} | {statistics.median(bad)} | {secs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
