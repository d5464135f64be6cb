"""The %%docker magic on the real engine: a learner's script with a two-platform build is run
as typed, its lanes are RUNNING while the build runs and done after it, what was pushed is
known (digest from buildx's metadata), and the same text is graded by the analyser."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from grader.course import magics, tagrace
from grader.docker.registry import RegistryClient

pytestmark = [
    pytest.mark.engine,
    pytest.mark.registry,
    pytest.mark.qemu,
    pytest.mark.usefixtures("local_busybox"),
]

DOCKERFILE = """\
FROM busybox:latest
ARG TARGETPLATFORM
RUN echo "{nonce} for $TARGETPLATFORM on $(uname -m)" > /built && sleep 2
CMD ["cat", "/built"]
"""


class LaneWatcher:
    """Polls each panel the magic shows, as a browser would see its lanes."""

    def __init__(self):
        self.panels = []
        self.running_seen: dict[str, float] = {}
        self._stop = threading.Event()

    def show(self, panel):
        self.panels.append(panel)
        threading.Thread(target=self._poll, args=(panel,), daemon=True).start()

    def _poll(self, panel):
        while not self._stop.is_set():
            for w in list(panel.lanes.children):
                for plat in ("linux/amd64", "linux/arm64"):
                    if f'data-platform="{plat}" data-state="running"' in w.value:
                        self.running_seen.setdefault(plat, time.monotonic())
            time.sleep(0.02)

    def stop(self):
        self._stop.set()


def test_a_typed_two_platform_build_draws_live_lanes_and_is_graded(tmp_path, unique_repo):
    (tmp_path / "Dockerfile").write_text(DOCKERFILE.format(nonce=uuid.uuid4().hex))
    text = (
        "echo before\n"
        "docker buildx build --builder default --platform linux/amd64,linux/arm64 \\\n"
        '  --provenance=false --progress=plain -t "$IMAGE" --push .\n'
        "echo after\n"
    )
    watcher = LaneWatcher()
    cell = magics.run_cell("t-build", text, cwd=tmp_path, namespace={"IMAGE": f"{unique_repo}:v1"},
                           show=watcher.show)  # fmt: skip
    ended = time.monotonic()
    watcher.stop()
    assert cell.ok, cell.output
    assert cell.output[0] == "before" and cell.output[-1] == "after"
    (build,) = cell.builds
    assert build.platforms == ["linux/amd64", "linux/arm64"]
    # lanes were RUNNING while the build ran (the 2 s RUN), and done once it ended
    assert set(watcher.running_seen) == {"linux/amd64", "linux/arm64"}, watcher.running_seen
    assert all(t < ended - 1.0 for t in watcher.running_seen.values())
    assert {p: build.lanes[p]["state"] for p in build.platforms} == {
        "linux/amd64": "done",
        "linux/arm64": "done",
    }
    # the learner's --progress=plain was replaced by rawjson: the panel had steps to draw
    assert any(step[2] == "emulated" for step in build.lanes["linux/arm64"]["steps"])
    # what it produced: the digest buildx reported is what the registry holds
    ((name, digest),) = cell.pushed()
    assert name == f"{unique_repo}:v1"
    assert RegistryClient(timeout=10).fetch_manifest(name).digest == digest
    # the same text, graded by the analyser
    report = cell.report()
    static = ("buildx", "platforms", "push", "provenance")
    assert {c: report.criterion(c).status for c in static} == dict.fromkeys(static, "pass")
    assert "IMAGE=" in cell.script and cell.script.endswith(text)


def test_a_failing_build_ends_its_lanes_and_is_explained(tmp_path, capsys):
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nRUN exit 3\n")
    cell = magics.run_cell(
        "t-fail",
        "set -e\ndocker buildx build --platform linux/amd64,linux/arm64 .\necho no\n",
        cwd=tmp_path,
        show=lambda _p: None,
    )
    assert cell.ran and cell.returncode not in (0, None) and "no" not in cell.output
    (build,) = cell.builds
    assert build.returncode == 1
    assert "error" in {lane["state"] for lane in build.lanes.values()}
    with pytest.raises(AssertionError, match="failed"):
        cell.require_success()


def test_commands_that_are_not_builds_go_straight_to_docker(tmp_path):
    cell = magics.run_cell("t-run", "docker run --rm --platform linux/arm64 busybox uname -m\n",
                           cwd=tmp_path, show=lambda _p: None)  # fmt: skip
    assert cell.ok and cell.output == ["aarch64"] and cell.builds == []
    assert cell.runs("run") == [
        ["docker", "run", "--rm", "--platform", "linux/arm64", "busybox", "uname", "-m"]
    ]


def test_two_builds_at_once_each_end_and_nothing_hangs(tmp_path):
    """Builds started with & share the script's stderr: each still ends with its own exit
    status (the shim's id), and the cell does not wait for a build that already ended."""
    (tmp_path / "Dockerfile").write_text(DOCKERFILE.format(nonce=uuid.uuid4().hex))
    text = (
        "docker buildx build --platform linux/amd64 . &\n"
        "docker buildx build --platform linux/arm64 --no-such-flag . &\n"
        "wait\n"
    )
    started = time.monotonic()
    cell = magics.run_cell("t-bg", text, cwd=tmp_path, show=lambda _p: None)
    assert time.monotonic() - started < 50
    codes = sorted((b.platforms[0], b.returncode) for b in cell.builds)
    assert codes == [("linux/amd64", 0), ("linux/arm64", 125)]
    assert all(b.lanes for b in cell.builds)


def _put_manifest(ref: str, doc) -> None:
    """PUT ``doc``'s bytes to ``ref``'s tag, as a racing second push leaves it."""
    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    url = f"http://{host}/v2/{repo}/manifests/{tag}"
    headers = {"Content-Type": doc.media_type}
    req = urllib.request.Request(url, data=doc.raw, method="PUT", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201


def test_a_tag_left_on_one_platform_by_the_second_push_is_repaired(
    tmp_path, unique_repo, registry_host
):
    """dockerd's second push (buildx 0.13, docker driver, containerd store) can stop halfway
    in the course registry and leave the tag on one of the index's own manifests: the shim
    points it back at the index and says why; a tag naming anything else is left alone."""
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nARG N\nRUN echo $N > /n\n")
    text = "".join(
        f"docker buildx build --builder default --platform linux/amd64,linux/arm64 "
        f'--build-arg N={uuid.uuid4().hex} -t "$IMAGE:{tag}" --push .\n'
        for tag in ("v1", "other")
    )
    cell = magics.run_cell("t-retag", text, cwd=tmp_path, namespace={"IMAGE": unique_repo},
                           panels=False)  # fmt: skip
    assert cell.ok, cell.output
    assert not [line for line in cell.output if line.startswith("[course]")], cell.output
    v1, other = cell.builds
    client = RegistryClient(timeout=10)
    index = client.fetch_manifest(f"{unique_repo}@{v1.digest}")
    repair = tagrace.repair_pushed_tags
    assert not repair(v1.tags, v1.digest, registry_host)  # nothing to repair after a clean push
    child = client.fetch_child(index, index.manifests[0])
    _put_manifest(f"{unique_repo}:v1", child)
    assert client.fetch_manifest(f"{unique_repo}:v1").digest == child.digest
    assert not repair(v1.tags, v1.digest, "docker.io")  # only on the course registry
    (said,) = repair(v1.tags, v1.digest, registry_host)
    assert "second push" in said and "pointed it back" in said, said
    assert client.fetch_manifest(f"{unique_repo}:v1").digest == v1.digest
    # the other image's manifest under :v1 is no trace of the race: left as it is
    foreign = client.fetch_manifest(f"{unique_repo}@{other.digest}")
    _put_manifest(f"{unique_repo}:v1", client.fetch_child(foreign, foreign.manifests[0]))
    assert repair(v1.tags, v1.digest, registry_host) == []
    assert client.fetch_manifest(f"{unique_repo}:v1").digest != v1.digest


#: The learner's next command: point a tag at the first manifest of the index it names.
REPOINT = """\
import json, sys, urllib.request as u
image, tag = sys.argv[1:]
host, _, repo = image.partition("/")
base = f"http://{host}/v2/{repo}/manifests/"
index = "application/vnd.oci.image.index.v1+json"
child = json.load(u.urlopen(u.Request(base + tag, headers={"Accept": index})))["manifests"][0]
kind = {"Accept": child["mediaType"], "Content-Type": child["mediaType"]}
body = u.urlopen(u.Request(base + child["digest"], headers=kind)).read()
u.urlopen(u.Request(base + tag, data=body, method="PUT", headers=kind))
print("child=" + child["digest"])
"""


def test_the_learners_next_command_re_pointing_the_tag_is_not_undone(
    tmp_path, unique_repo, monkeypatch
):
    """The shim checks the tags before it exits, so before the script's next command: a tag the
    learner points at one platform's manifest right after the push stays there, even when the
    kernel reads the build's end late (a busy kernel)."""
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nARG N\nRUN echo $N > /n\n")
    (tmp_path / "repoint.py").write_text(REPOINT)
    text = (
        "docker buildx build --builder default --platform linux/amd64,linux/arm64 "
        f'--build-arg N={uuid.uuid4().hex} -t "$IMAGE:v1" --push .\n'
        'python3 repoint.py "$IMAGE" v1\n'
    )
    end = magics._Runner._end

    def late_end(self, payload):
        time.sleep(8)  # the learner's next commands run meanwhile
        end(self, payload)

    monkeypatch.setattr(magics._Runner, "_end", late_end)
    cell = magics.run_cell("t-repoint", text, cwd=tmp_path, namespace={"IMAGE": unique_repo},
                           panels=False)  # fmt: skip
    assert cell.ok, cell.output
    (child,) = [line.partition("=")[2] for line in cell.output if line.startswith("child=")]
    assert child.startswith("sha256:") and child != cell.builds[0].digest
    assert RegistryClient(timeout=10).fetch_manifest(f"{unique_repo}:v1").digest == child
    assert not [line for line in cell.output if line.startswith("[course]")], cell.output


@pytest.fixture
def flaky_registry(registry_host):
    """tests/engine/flaky_registry.py on a free port, in front of the course registry."""
    from scopekit import free_port

    port, upstream = free_port(), registry_host.rpartition(":")[2]
    script = Path(__file__).with_name("flaky_registry.py")
    front = subprocess.Popen([sys.executable, str(script), str(port), upstream],
                             stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(50):
        if RegistryClient(timeout=2).answers(f"127.0.0.1:{port}"):
            break
        time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    front.kill()
    front.wait()


@pytest.mark.parametrize("course", [True, False], ids=["course-registry", "another"])
def test_a_push_that_meets_the_tag_race_is_run_again_once(
    tmp_path, flaky_registry, unique_repo, course
):
    """dockerd's second push reads a tag and gets the registry's 500 (buildx exits 1 with
    "unexpected status from HEAD request to ...: 500", and writes no metadata): on the course
    registry ($REGISTRY), the magic's docker runs the build once more, says why, and the cell
    succeeds; another registry's 500 is that registry's answer, not run again."""
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nARG N\nRUN echo $N > /n\n")
    repo = unique_repo.replace(unique_repo.split("/")[0], flaky_registry, 1)
    text = (
        "docker buildx build --builder default --platform linux/amd64,linux/arm64 "
        f'--build-arg N={uuid.uuid4().hex} -t "$IMAGE:v1" --push .\n'
    )
    namespace = {"IMAGE": repo, **({"REGISTRY": flaky_registry} if course else {})}
    cell = magics.run_cell("t-race", text, cwd=tmp_path, namespace=namespace, panels=False)
    said = [line for line in cell.output if "registry-tag-race" in line]
    (build,) = cell.builds
    if not course:
        assert said == [] and cell.returncode == build.returncode == 1, cell.output
        return
    assert cell.ok, cell.output
    assert len(said) == 1 and "pushing again, once" in said[0], cell.output
    assert RegistryClient(timeout=10).fetch_manifest(f"{unique_repo}:v1").digest == build.digest


def test_a_failing_run_that_prints_the_race_is_not_run_again(tmp_path, registry_host):
    """The race is read from buildx's own error line only: a RUN that echoes its words (they
    are in rawjson's step names and in buildx's "failed to solve" line) fails once."""
    signature = (
        f"ERROR: unexpected status from HEAD request to http://{registry_host}/v2/x/manifests/v1"
        ": 500 Internal Server Error invalid checksum digest format"
    )
    (tmp_path / "Dockerfile").write_text(
        f"FROM busybox:latest\nRUN echo '{signature}'; printf '\\n{signature}\\n' >&2; false\n"
    )
    cell = magics.run_cell("t-echo", "docker buildx build --no-cache .\n", cwd=tmp_path,
                           panels=False)  # fmt: skip
    (build,) = cell.builds
    assert build.returncode == 1 and cell.returncode == 1
    assert len([line for line in cell.output if line.startswith("[build for")]) == 1
    assert not [line for line in cell.output if line.startswith("[course]")], cell.output


def test_a_build_killed_by_the_script_stops_buildx_too(tmp_path):
    """`kill $!` on a background build: the shim passes SIGTERM on to docker (which stops
    buildx) and ends, so nothing is left building on a closed pipe and the cell does not wait
    for the build's 30 s."""
    nonce = uuid.uuid4().hex
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nARG N\nRUN echo $N && sleep 30\n")
    text = f"docker buildx build --build-arg N={nonce} . &\nsleep 4\nkill $!\nwait\necho waited\n"
    cell = magics.run_cell("t-kill", text, cwd=tmp_path, panels=False)
    assert cell.duration < 20, cell.output
    (build,) = cell.builds
    assert build.returncode == 143 and "waited" in cell.output
    left = subprocess.run(["pgrep", "-f", nonce], capture_output=True, text=True).stdout
    assert left == "", left
