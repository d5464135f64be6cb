"""Registry scope proxy benchmark: what the proxy costs a push.

    .venv/bin/python benchmarks/bench_scope.py [--runs 5] [--blob-mib 128]

1. The challenge's reference solution (source/07-challenge/reference-solution, two platforms),
   built once with the engine's cache, then pushed with ``buildx build --push`` into a fresh
   repository per run: straight to the course registry, and through a scope proxy (a caller
   with a credential in a DOCKER_CONFIG), alternating. The build is cached, so the time is
   the push (BuildKit mounts the Debian layers from library/debian in both cases).
2. One blob of --blob-mib MiB uploaded (monolithic PUT) and downloaded, direct and through
   the proxy: the proxy's streaming throughput, with no mounts involved.

The proxy runs on a free port in 5100-5199 with its state in a temporary folder; everything
is pushed under 127.0.0.1:5000/scope/bench-<id>/.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

from grader import proc
from grader.engine import scope
from grader.engine.config import Settings, registry_host

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "source" / "07-challenge" / "reference-solution"


def free_port() -> int:
    for port in range(5100, 5200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port in 5100-5199")


def start_proxy(state: Path, upstream: str) -> tuple[subprocess.Popen, str]:
    host = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "grader.engine.scope", "serve", "--state", str(state)]
    argv += ["--listen", host, "--upstream", upstream]
    p = subprocess.Popen(argv, stderr=open(state.parent / "scope.log", "ab"))  # noqa: SIM115
    for _ in range(100):
        try:
            http.client.HTTPConnection(host, timeout=1).request("GET", "/v2/")
            return p, host
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the proxy did not start")


def push(ref: str, env: dict[str, str]) -> float:
    argv = ["docker", "buildx", "build", "--builder", "default", "--provenance=false"]
    argv += ["--platform", "linux/amd64,linux/arm64", "-t", ref, "--push", str(SOLUTION)]
    started = time.monotonic()
    proc.run(argv, timeout=1800, env=env)
    took = time.monotonic() - started
    proc.run(["docker", "image", "rm", ref], timeout=60, check=False)
    return took


def blob_round_trip(host: str, repo: str, data: bytes, auth: str | None) -> tuple[float, float]:
    """Seconds to upload (POST + monolithic PUT) and to download the blob."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    headers = {"Host": host} | ({"Authorization": auth} if auth else {})
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, timeout=300)
    conn.request("POST", f"/v2/{repo}/blobs/uploads/", headers=headers)
    resp = conn.getresponse()
    resp.read()
    url = urllib.parse.urlsplit(resp.getheader("Location"))
    query = urllib.parse.urlencode([*urllib.parse.parse_qsl(url.query), ("digest", digest)])
    put = headers | {"Content-Type": "application/octet-stream"}
    conn.request("PUT", f"{url.path}?{query}", body=data, headers=put)
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 201, resp.status
    up = time.monotonic() - started
    started = time.monotonic()
    conn.request("GET", f"/v2/{repo}/blobs/{digest}", headers=headers)
    resp = conn.getresponse()
    got = hashlib.sha256()
    while chunk := resp.read(1 << 20):
        got.update(chunk)
    assert "sha256:" + got.hexdigest() == digest
    return up, time.monotonic() - started


def row(name: str, values: list[float], unit: str = "s") -> str:
    med = statistics.median(values)
    spread = f"{min(values):.2f}-{max(values):.2f}"
    runs = " ".join(f"{v:.2f}" for v in values)
    return f"| {name} | {len(values)} | {med:.2f} {unit} | {spread} | {runs} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--blob-mib", type=int, default=128)
    args = parser.parse_args()
    upstream = registry_host()
    bench = f"bench-{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-scope-"))
    cfg = Settings(tmp, int(upstream.rpartition(":")[2]))
    secret = scope.add_caller(bench, namespace=f"scope/{bench}", cfg=cfg)
    server, host = start_proxy(scope.scope_dir(cfg), upstream)
    try:
        (tmp / "docker").mkdir()
        conf = scope.docker_config(host, bench, secret)
        (tmp / "docker" / "config.json").write_text(json.dumps(conf))
        env_proxy = {**os.environ, "DOCKER_CONFIG": str(tmp / "docker")}
        env_direct = {**os.environ, "DOCKER_CONFIG": str(tmp / "docker")}
        print(f"warming the build cache ({SOLUTION.relative_to(ROOT)}) ...", file=sys.stderr)
        push(f"{upstream}/scope/{bench}/warm:1", env_direct)
        direct, proxied = [], []
        for i in range(args.runs):
            order = [("d", direct), ("p", proxied)]
            for kind, out in order if i % 2 == 0 else order[::-1]:
                host_ = upstream if kind == "d" else host
                out.append(
                    push(
                        f"{host_}/scope/{bench}/{kind}{i}:1",
                        env_direct if kind == "d" else env_proxy,
                    )
                )
        data = os.urandom(args.blob_mib << 20)
        auth = "Basic " + base64.b64encode(f"{bench}:{secret}".encode()).decode()
        ups = {"direct": [], "proxy": []}
        downs = {"direct": [], "proxy": []}
        for i in range(3):
            for name, h, a in (("direct", upstream, None), ("proxy", host, auth)):
                u, d = blob_round_trip(h, f"scope/{bench}/blob-{name}-{i}", data, a)
                ups[name].append(args.blob_mib / u)
                downs[name].append(args.blob_mib / d)
        fallbacks = (tmp / "scope.log").read_text().count("mount fallback")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        "\nPush of the challenge's reference image (2 platforms, cached build), "
        f"{args.runs} runs each\n"
    )
    print("| path | runs | median | min-max | each run |\n|---|---|---|---|---|")
    print(row("direct to 127.0.0.1:5000", direct))
    print(row("through the scope proxy", proxied))
    print(
        "\nratio proxy/direct (medians): "
        f"{statistics.median(proxied) / statistics.median(direct):.2f}"
        f"; mount fallbacks in the proxy's log: {fallbacks}"
    )
    print(f"\nOne {args.blob_mib} MiB blob, 3 runs each (MiB/s)\n")
    print("| path | runs | median | min-max | each run |\n|---|---|---|---|---|")
    for name in ("direct", "proxy"):
        print(row(f"upload, {name}", ups[name], "MiB/s"))
        print(row(f"download, {name}", downs[name], "MiB/s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
