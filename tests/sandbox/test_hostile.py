"""Hostile submissions (tests/fixtures/hostile/<name>/, each with an expect.json) graded on
a real worker engine, each twice: with the gate (the teaching layer) and without it, where
the script drives the rootless engine itself and only the kernel's wall stands. Every run
ends in a score with no grading error, nothing of the instructor's leaks or changes, and the
shared engine keeps what other submissions need; with the gate, each also gets its finding.

The instructor is simulated: a fake HOME holding docker credentials and an ssh key with a
random canary secret, the same secret in an environment variable, in a world-readable
file under the host's /tmp, in a root-only key under /etc/ssl/private and served by an
HTTP service on the host (port 18765, every address); a root-owned file in /root that the
append-root-file fixture aims at. The secret, and the host's /etc/shadow hashes, must appear in
no output the grader keeps (report, logs, gate events)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import secrets
import threading
import uuid
from pathlib import Path

import pytest

from grader import proc
from grader.engine import rootless
from grader.engine.config import settings, state_dir
from grader.grading.checks import run as engine
from grader.grading.checks.run import claim_worker
from grader.grading.criteria import CRITERIA
from grader.grading.report import Report
from grader.grading.sandbox import sandbox_problem
from grader.grading.sandbox.limits import Limits
from grader.grading.sandbox.runner import default_work_root, local_images

pytestmark = [pytest.mark.engine, pytest.mark.registry]

HOSTILE = Path(__file__).parents[1] / "fixtures" / "hostile"
NAMES = sorted(p.name for p in HOSTILE.iterdir() if (p / "expect.json").exists())
#: Paths the rm-home and write-everywhere fixtures aim at on the host.
HOST_TARGETS = [
    Path("/tmp/pwned-by-learner"),
    Path("/root/pwned"),
    Path("/work/pwned-by-learner"),
    Path("/etc/pwned"),
    Path("/home/pwned"),
    Path("/var/tmp/pwned"),
    Path("/usr/pwned"),
    Path("/pwned"),
    Path("/root/grader-wall-out"),
    Path("/root/grader-wall-plugin"),
    Path("/tmp/plugin-ran"),
]
ROOT_TARGET = Path("/root/grader-wall-target")
SSL_KEY = Path("/etc/ssl/private/grader-wall.key")
SERVICE_PORT = 18765


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        h.update(f"{p.relative_to(root)}:{st.st_mode}:{st.st_size}:{st.st_mtime_ns}".encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def _shadow_hashes() -> list[str]:
    try:
        lines = Path("/etc/shadow").read_text().splitlines()
    except OSError:
        return []
    return [f.split(":")[1] for f in lines if len(f.split(":")) > 2 and len(f.split(":")[1]) > 3]


@pytest.fixture(scope="module")
def instructor(tmp_path_factory):
    """A fake instructor: HOME with credentials, an env var and a host file, one secret."""
    if sandbox_problem():
        pytest.fail(f"the sandbox cannot run here: {sandbox_problem()}")
    secret = f"CANARY-{secrets.token_hex(12)}"
    home = tmp_path_factory.mktemp("instructor-home")
    (home / ".docker").mkdir()
    auth = base64.b64encode(f"instructor:{secret}".encode()).decode()
    (home / ".docker" / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    "127.0.0.1:5000": {"auth": auth},
                    "https://index.docker.io/v1/": {"auth": auth},
                }
            }
        )
    )
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "id_ed25519").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n")
    (home / "canary.txt").write_text(secret)
    host_file = Path(f"/tmp/grader-canary-{uuid.uuid4().hex[:8]}.txt")
    host_file.write_text(secret)
    host_file.chmod(0o644)
    ROOT_TARGET.write_text("root's own\n")
    ROOT_TARGET.chmod(0o644)
    SSL_KEY.write_text(f"-----BEGIN PRIVATE KEY-----\n{secret}\n")
    SSL_KEY.chmod(0o600)
    service = _canary_service(secret)
    mp = pytest.MonkeyPatch()
    mp.setenv("COURSE_STATE_DIR", str(state_dir()))  # keep the engine's state where it is
    mp.setenv("HOME", str(home))
    mp.setenv("INSTRUCTOR_TOKEN", secret)
    before = _tree_digest(home)
    # A local base image for prune-shared-cache to aim at (pulled through the course mirror).
    proc.run(["docker", "pull", "-q", "busybox:latest"], timeout=300)
    images = local_images()
    yield {
        "secret": secret, "home": home, "before": before, "host_file": host_file,
        "images": images,
    }  # fmt: skip
    mp.undo()
    host_file.unlink(missing_ok=True)
    service.shutdown()
    SSL_KEY.unlink(missing_ok=True)
    ROOT_TARGET.unlink(missing_ok=True)


def _canary_service(secret: str) -> http.server.HTTPServer:
    """A service on the host's loopback and LAN addresses that answers with the secret."""

    class Canary(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(secret.encode())

        def log_message(self, *args) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("0.0.0.0", SERVICE_PORT), Canary)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture(scope="module")
def worker():
    """One worker engine for the module, reset before every submission."""
    why = rootless.rootless_problem()
    if why:
        pytest.fail(f"worker engines cannot run here: {why}")
    with claim_worker(settings().registry_host) as eng:
        yield eng


@pytest.mark.parametrize("gate", ["gate-on", "gate-off"])
@pytest.mark.parametrize("name", NAMES)
def test_hostile_submission(name: str, gate: str, instructor, worker, tmp_path: Path) -> None:
    expect = json.loads((HOSTILE / name / "expect.json").read_text())
    gated = gate == "gate-on"
    worker.reset()
    logs = tmp_path / "logs"
    work = default_work_root() / f"t-hostile-{uuid.uuid4().hex[:8]}"
    # 8 s unless the fixture needs longer: `rm -rf /` walks every read-only tree the sandbox
    # shows, which took over 8 s on a loaded 2-core CI machine (a timeout, not the finding).
    seconds = expect.get("seconds", 8)
    limits = Limits(seconds=seconds, command_seconds=seconds, output=1 << 20, processes=64)
    opts = engine.EngineOptions(
        namespace=f"t-sandbox-{uuid.uuid4().hex[:8]}/{name}",
        limits=limits,
        build_timeout=8,
        run_timeout=30,
        work_root=work,
        log_dir=logs,
        engine=worker,
        gate=gated,
    )
    outcome = engine.check_engine(HOSTILE / name, None, ("linux/amd64", "linux/arm64"), opts=opts)
    results = outcome.results
    by_id = {r.id: r for r in results}
    report = Report(submission=name, criteria=results)
    shown = {r.id: (r.status, [(f.rule, f.message[:200]) for f in r.findings]) for r in results}

    # A score, never a grading error: the learner is at fault, not the grading machine.
    for cid in ("idempotent", "build", "runs"):
        assert by_id[cid].status in ("pass", "fail"), shown
    if gated:  # ... and with the gate, its clear finding
        for cid in ("idempotent", "build", "runs"):
            assert by_id[cid].status == expect.get(cid, by_id[cid].status), shown
        rules_seen = {f.rule for r in results for f in r.findings}
        for rule in expect["rules"]:
            assert rule in rules_seen, shown
        assert report.score < report.max_score
        assert by_id["idempotent"].points == 0

    if not gated:  # the kernel's wall alone: what the registry's scope proxy refused
        rules_seen = {f.rule for r in results for f in r.findings}
        for rule in expect.get("rules_gate_off", []):
            assert rule in rules_seen, shown
    run_logs = "".join(log.read_text(errors="replace") for log in logs.glob("*.log"))
    for text in expect.get("in_logs", []):  # the attempt really ran ...
        assert text in run_logs, run_logs[-3000:]
    for text in expect.get("never_in_logs", []):  # ... and got nowhere
        assert text not in run_logs, run_logs[-3000:]

    # Nothing of the instructor's leaked into anything the grader keeps.
    kept = report.to_json() + json.dumps([e.__dict__ for e in outcome.sandbox.events])
    kept += run_logs
    assert instructor["secret"] not in kept
    for h in _shadow_hashes():
        assert h not in kept
    # ... nor changed on the host.
    assert _tree_digest(instructor["home"]) == instructor["before"]
    assert instructor["host_file"].read_text() == instructor["secret"]
    assert ROOT_TARGET.read_text() == "root's own\n", f"{name} appended to {ROOT_TARGET}"
    for target in HOST_TARGETS:
        assert not target.exists(), f"{name} wrote {target}"
    # The run left no workspace, container or builder behind.
    assert not any(work.glob("*"))
    if work.exists():
        work.rmdir()
    if gated:
        env = {**os.environ, **worker.env()}
        label = f"label=grader.grading.sandbox={outcome.label}"
        ps = ["docker", "ps", "-aq", "--filter", label]
        assert not proc.run(ps, timeout=30, env=env).stdout.split()
        builders = f"name=buildx_buildkit_g{outcome.label}"
        ps = ["docker", "ps", "-aq", "--filter", builders]
        assert not proc.run(ps, timeout=30, env=env).stdout.split()


def test_shared_engine_intact_after_hostile_runs(instructor) -> None:
    """prune-shared-cache and friends were refused: the base images every submission
    builds from are still there, and the shared builder still builds both platforms."""
    proc.run(["docker", "image", "inspect", "busybox:latest"], timeout=30)
    assert instructor["images"] <= local_images(), "an image other submissions use is gone"
    out = proc.run(["docker", "buildx", "ls"], timeout=30).stdout
    assert "default" in out and "linux/arm64" in out


def test_every_hostile_fixture_is_tested() -> None:
    """Each fixture folder has build.sh, a Dockerfile (or a link) and expect.json."""
    required = {
        "fork-bomb", "endless-loop", "rm-home", "read-secrets", "privileged-run", "host-mount",
        "host-network", "push-other-learner", "huge-output", "never-finishes", "binary-garbage",
        "symlink-outside", "insecure-dockerfile", "append-root-file", "plugin-beside-socket",
        "ssl-private-secret", "host-loopback", "registry-from-run", "poison-seeded-cache",
    }  # fmt: skip
    assert required <= set(NAMES)
    for name in NAMES:
        d = HOSTILE / name
        assert (d / "build.sh").exists() or (d / "build.sh").is_symlink()
        assert (d / "Dockerfile").exists() or (d / "Dockerfile").is_symlink()
        assert set(json.loads((d / "expect.json").read_text())) <= {
            *(c.id for c in CRITERIA),
            *("rules", "rules_gate_off", "in_logs", "never_in_logs", "seconds"),
        }
