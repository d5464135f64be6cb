"""Hostile submissions (tests/fixtures/hostile/<name>/, each with an expect.json) graded on
the real engine: every one ends in its clear finding and a score, nothing of the
instructor's leaks or changes, and the shared engine keeps what other submissions need.

The instructor is simulated: a fake HOME holding docker credentials and an ssh key with a
random canary secret, the same secret in an environment variable and in a world-readable
file under the host's /tmp. The secret, and the host's /etc/shadow hashes, must appear in
no output the grader keeps (report, logs, gate events)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from pathlib import Path

import pytest

from grader import proc
from grader.checks import engine
from grader.criteria import CRITERIA
from grader.engine.config import state_dir
from grader.report import Report
from grader.sandbox import sandbox_problem
from grader.sandbox.limits import Limits
from grader.sandbox.runner import default_work_root, local_images

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
]


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


@pytest.mark.parametrize("name", NAMES)
def test_hostile_submission(name: str, instructor, tmp_path: Path) -> None:
    expect = json.loads((HOSTILE / name / "expect.json").read_text())
    logs = tmp_path / "logs"
    work = default_work_root() / f"t-hostile-{uuid.uuid4().hex[:8]}"
    limits = Limits(seconds=8, command_seconds=8, output=1 << 20, processes=64)
    with engine.engine_options(
        namespace=f"t-sandbox-{uuid.uuid4().hex[:8]}/{name}",
        limits=limits,
        build_timeout=8,
        run_timeout=30,
        work_root=work,
        log_dir=logs,
    ) as opts:
        results = engine.check_engine(HOSTILE / name, None, ("linux/amd64", "linux/arm64"))
    by_id = {r.id: r for r in results}
    report = Report(submission=name, criteria=results)
    shown = {r.id: (r.status, [(f.rule, f.message[:200]) for f in r.findings]) for r in results}

    # A clear finding and a score: the learner is at fault, never the grading machine.
    for cid in ("idempotent", "build", "runs"):
        assert by_id[cid].status in ("pass", "fail"), shown
        assert by_id[cid].status == expect.get(cid, by_id[cid].status), shown
    rules_seen = {f.rule for r in results for f in r.findings}
    for rule in expect["rules"]:
        assert rule in rules_seen, shown
    assert report.score < report.max_score
    assert by_id["idempotent"].points == 0

    # Nothing of the instructor's leaked into anything the grader keeps.
    kept = report.to_json() + json.dumps([e.__dict__ for e in opts.outcome.sandbox.events])
    for log in logs.glob("*.log"):
        kept += log.read_text(errors="replace")
    assert instructor["secret"] not in kept
    for h in _shadow_hashes():
        assert h not in kept
    # ... nor changed on the host.
    assert _tree_digest(instructor["home"]) == instructor["before"]
    assert instructor["host_file"].read_text() == instructor["secret"]
    for target in HOST_TARGETS:
        assert not target.exists(), f"{name} wrote {target}"
    # The run left no workspace, container or builder behind.
    assert not any(work.glob("*"))
    if work.exists():
        work.rmdir()
    label = f"label=grader.sandbox={opts.outcome.label}"
    assert not proc.run(["docker", "ps", "-aq", "--filter", label], timeout=30).stdout.split()
    builders = f"name=buildx_buildkit_g{opts.outcome.label}"
    assert not proc.run(["docker", "ps", "-aq", "--filter", builders], timeout=30).stdout.split()


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
        "symlink-outside", "insecure-dockerfile",
    }  # fmt: skip
    assert required <= set(NAMES)
    for name in NAMES:
        d = HOSTILE / name
        assert (d / "build.sh").exists() or (d / "build.sh").is_symlink()
        assert (d / "Dockerfile").exists() or (d / "Dockerfile").is_symlink()
        assert set(json.loads((d / "expect.json").read_text())) <= {
            *(c.id for c in CRITERIA),
            "rules",
        }
