"""The panels against the real engine and registry, headless (trait values, ``.outputs``):
a two-platform build through BuildPanel, the result explored with ManifestExplorer, a
crafted index whose entry lies about its platform, failures and cancel, builders in a
private DOCKER_CONFIG, and emulators verified with ``uname -m``."""

from __future__ import annotations

import hashlib
import json
import tarfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from grader import proc
from grader.course.widgets import BinfmtPanel, BuilderPanel, BuildPanel, ManifestExplorer
from grader.course.widgets.builders import Builders
from grader.docker.registry import MEDIA_DOCKER_LIST, RegistryClient

pytestmark = [pytest.mark.engine, pytest.mark.registry]

CONTEXTS = Path(__file__).parents[1] / "fixtures" / "rawjson" / "contexts"

DOCKERFILE = """\
FROM busybox:latest
ARG TARGETPLATFORM
# A RUN in the target stage: the arm64 half runs under QEMU on an amd64 node.
RUN echo "{nonce} built for $TARGETPLATFORM on $(uname -m)" | tee /built-for
CMD ["cat", "/built-for"]
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def built(tmp_path_factory, registry_host):
    """One two-platform build through the panel, pushed to a repository of its own."""
    ctx = tmp_path_factory.mktemp("ctx")
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(nonce=uuid.uuid4().hex))
    ref = f"{registry_host}/t-widgets/{unique('build')}:v1"
    panel = BuildPanel(context=str(ctx), tag=ref)
    assert panel.engine and not panel.build_button.disabled, panel.problems.value
    run = panel.build(wait=True)
    return panel, run, ref


@pytest.mark.qemu
def test_buildpanel_builds_both_platforms_with_lanes_of_done_steps(built):
    panel, run, ref = built
    assert run.state == "succeeded", panel.explanation.value
    assert f"--tag {ref}" in panel.command.value and "--push" in panel.command.value
    lanes = panel.lane_summary()
    for platform, kind in (("linux/amd64", "native"), ("linux/arm64", "emulated")):
        lane = lanes[platform]
        assert lane["state"] == "done"
        runs = [s for s in lane["steps"] if " RUN " in f" {s[0]} "]
        assert len(runs) == 1 and runs[0][1] == "done" and runs[0][2] == kind, lane
        html = panel._lane_widgets[platform].value
        assert f'data-platform="{platform}" data-state="done"' in html
        assert f'data-state="done" data-kind="{kind}"' in html
    assert lanes["linux/arm64"]["totals"]["emulated"] > 0
    assert lanes["linux/amd64"]["totals"]["emulated"] == 0
    log = panel.log.text()
    assert "on aarch64" in log and "on x86_64" in log
    assert bytes(panel.chart.value).startswith(b"\x89PNG")
    assert 'data-state="succeeded"' in panel.status.value
    # Throttled: lanes and log are updated per tick, not per line of buildx output.
    assert panel.log.appends <= run.ticks + 1
    assert panel.render_count <= 3 * (run.ticks + 1)
    assert not panel.build_button.disabled and panel.cancel_button.disabled


@pytest.mark.qemu
def test_manifest_explorer_shows_both_platforms_and_their_configs(built):
    _panel, run, ref = built
    assert run.state == "succeeded"
    explorer = ManifestExplorer(ref)
    root = explorer.explore()
    assert root is not None, explorer.status.value
    assert root.kind == "index" and root.media_type == MEDIA_DOCKER_LIST
    images = [n for n in root.children if n.kind == "image"]
    assert sorted(n.platform for n in images) == ["linux/amd64", "linux/arm64"]
    for image in images:
        config = next(c for c in image.children if c.kind == "config")
        arch = image.platform.split("/")[1]
        assert config.details["architecture"] == arch and config.details["os"] == "linux"
        assert json.loads(config.details["cmd"]) == ["cat", "/built-for"]
        assert any(c.kind == "layer" for c in image.children)
    assert root.all_warnings == [] and explorer.warnings.value == ""
    assert "linux/amd64, linux/arm64" in explorer.status.value
    # A click on a node shows that node's raw JSON.
    arm = next(n for n in images if n.platform == "linux/arm64")
    explorer.node_buttons[f"{arm.path}/config"].click()
    assert explorer.selected.kind == "config"
    assert "&quot;architecture&quot;: &quot;arm64&quot;" in explorer.raw.value


def _put_manifest(registry_host: str, repo: str, tag: str, body: bytes, media_type: str) -> None:
    req = urllib.request.Request(
        f"http://{registry_host}/v2/{repo}/manifests/{tag}",
        data=body,
        method="PUT",
        headers={"Content-Type": media_type},
    )
    urllib.request.urlopen(req, timeout=10).close()


@pytest.mark.qemu
def test_explorer_warns_when_an_index_entry_lies_about_its_platform(built, registry_host):
    """The index is rewritten with the two platforms swapped: each config now disagrees."""
    _panel, run, ref = built
    assert run.state == "succeeded"
    index = RegistryClient().fetch_manifest(ref)
    doc = json.loads(index.raw)
    a, b = doc["manifests"]
    a["platform"], b["platform"] = b["platform"], a["platform"]
    body = json.dumps(doc).encode()
    repo = ref.split("/", 1)[1].split(":")[0]
    _put_manifest(registry_host, repo, "swapped", body, MEDIA_DOCKER_LIST)
    explorer = ManifestExplorer()
    root = explorer.explore(f"{registry_host}/{repo}:swapped")
    assert root is not None and root.digest == "sha256:" + hashlib.sha256(body).hexdigest()
    warnings = root.all_warnings
    assert len(warnings) == 2
    assert any(
        "index says linux/arm64 but this image's config says linux/amd64" in w for w in warnings
    )
    assert explorer.warnings.value.count("mp-manifest-warning") == 2
    flagged = [p for p, b in explorer.node_buttons.items() if b.button_style == "warning"]
    assert sorted(flagged) == ["0/0/config", "0/1/config"]


def test_failing_step_is_shown_in_its_lane_with_the_error(registry_host):
    panel = BuildPanel(
        context=str(CONTEXTS / "failing"), tag=f"{registry_host}/t-widgets/{unique('fail')}:v1"
    )
    run = panel.build(wait=True)
    assert run.state == "failed"
    lanes = panel.lane_summary()
    assert lanes["linux/arm64"]["state"] == "error"
    assert 'data-state="error"' in panel._lane_widgets["linux/arm64"].value
    assert "exit code: 3" in panel.explanation.value
    assert "got aarch64" in panel.log.text()


def test_missing_base_platform_is_explained(tmp_path):
    """The course's busybox stand-in has no riscv64 variant: a real known error."""
    panel = BuildPanel(
        context=str(CONTEXTS / "emulated"),
        output="oci",
        oci_dest=str(tmp_path / "out.tar"),
        platforms=["linux/amd64", "linux/riscv64"],
    )
    assert "linux/riscv64" in panel.platform_checks  # the builder reports it
    run = panel.build(wait=True)
    assert run.state == "failed" and run.known is not None
    assert run.known.id == "no-match-platform"
    assert 'data-known="no-match-platform"' in panel.explanation.value
    assert panel.lane_summary()["linux/riscv64"]["state"] == "error"


def test_cancel_stops_a_running_build(tmp_path):
    (tmp_path / "Dockerfile").write_text(
        f"FROM busybox:latest\nRUN echo {uuid.uuid4().hex} && sleep 60\n"
    )
    panel = BuildPanel(
        context=str(tmp_path),
        output="oci",
        oci_dest=str(tmp_path / "o.tar"),
        platforms=["linux/amd64"],
    )
    run = panel.build()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(
            s.state == "running" and s.instruction == "RUN" for s in run.progress.steps.values()
        ):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the RUN step never started")
    started = time.monotonic()
    panel.cancel()
    assert run.wait(20), "cancel did not end the build"
    assert time.monotonic() - started < 20
    assert run.state == "cancelled"
    assert 'data-state="cancelled"' in panel.status.value
    assert not panel.build_button.disabled


def test_builder_panel_create_is_idempotent_use_inspect_rm(tmp_path):
    """In a DOCKER_CONFIG of its own, so `buildx use` never touches the shared machine."""
    env = {"DOCKER_CONFIG": str(tmp_path / "docker-config")}
    Path(env["DOCKER_CONFIG"]).mkdir()
    shared_current = Builders().current_name()
    name = unique("t-widgets")
    panel = BuilderPanel(name=name, env=env)
    try:
        assert '<tr class="mp-builder-row" data-name="default"' in panel.table.value
        first = panel.do("create")
        assert first.ok and not first.skipped
        assert f'data-name="{name}"' in panel.table.value
        second = panel.do("create")
        assert second.ok and second.skipped  # no "existing instance" error
        assert "already there" in panel.result.value
        assert panel.do("use").ok
        assert next(r for r in panel.rows if r.name == name).current
        assert Builders().current_name() == shared_current
        inspected = panel.do("inspect")
        if inspected.ok:  # with internet, moby/buildkit was pulled and started
            assert "running" in inspected.output
        else:  # offline: the known error says why and what to do
            assert inspected.error.known is not None
            assert inspected.error.known.id == "buildkit-image-unavailable"
            assert 'data-known="buildkit-image-unavailable"' in panel.result.value
        assert f"$ docker buildx inspect --bootstrap {name}" in "".join(
            o["text"] for o in panel.log.outputs
        )
        assert panel.do("rm").ok
        assert f'data-name="{name}"' not in panel.table.value
    finally:
        Builders(env=env).rm(name)


@pytest.mark.qemu
def test_binfmt_panel_lists_emulators_and_verifies_arm64():
    panel = BinfmtPanel(platforms=["linux/amd64", "linux/arm64"])
    assert 'data-name="qemu-aarch64"' in panel.table.value
    assert '<span class="mp-flag-F"' in panel.table.value
    assert 'data-platform="linux/arm64" data-state="ok"' in panel.missing.value
    assert 'data-platform="linux/amd64" data-state="native"' in panel.missing.value
    assert panel.plan.method == "nothing" and panel.install_button.disabled
    assert panel.verify() == {"linux/arm64": "aarch64"}
    assert 'data-ok="1"' in panel.result.value


@pytest.mark.qemu
def test_load_one_platform_into_the_engine(tmp_path, registry_host):
    (tmp_path / "Dockerfile").write_text(DOCKERFILE.format(nonce=uuid.uuid4().hex))
    tag = f"{registry_host}/t-widgets/{unique('load')}:v1"
    panel = BuildPanel(
        context=str(tmp_path), tag=tag, output="load", platforms=["linux/amd64", "linux/arm64"]
    )
    assert "one platform per tag" in panel.problems.value and panel.build_button.disabled
    panel.set_options(platforms=("linux/arm64",))
    assert panel.problems.value == "" and "--load" in panel.command.value
    try:
        run = panel.build(wait=True)
        assert run.state == "succeeded", panel.explanation.value
        assert list(panel.lane_summary()) == ["linux/arm64", "shared"]
        done = proc.run(
            ["docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", tag], timeout=60
        )
        assert done.stdout.strip() == "linux/arm64"
        out = proc.run(["docker", "run", "--rm", "--platform", "linux/arm64", tag], timeout=120)
        assert "built for linux/arm64 on aarch64" in out.stdout
    finally:
        proc.run(["docker", "image", "rm", "-f", tag], timeout=60, check=False)


def test_oci_tarball_with_a_registry_cache(tmp_path, registry_host):
    (tmp_path / "Dockerfile").write_text(DOCKERFILE.format(nonce=uuid.uuid4().hex))
    repo = f"{registry_host}/t-widgets/{unique('oci')}"
    dest = tmp_path / "image.oci.tar"
    panel = BuildPanel(
        context=str(tmp_path),
        tag=f"{repo}:v1",
        output="oci",
        oci_dest=str(dest),
        registry_cache=True,
    )
    assert f"type=registry,ref={repo}:buildcache,mode=max" in panel.command.value
    run = panel.build(wait=True)
    assert run.state == "succeeded", panel.explanation.value
    with tarfile.open(dest) as tar:
        index = json.load(tar.extractfile("index.json"))
        (top,) = index["manifests"]
        inner = json.load(tar.extractfile(f"blobs/sha256/{top['digest'].split(':')[1]}"))
    platforms = sorted(
        f"{m['platform']['os']}/{m['platform']['architecture']}" for m in inner["manifests"]
    )
    assert platforms == ["linux/amd64", "linux/arm64"]
    assert RegistryClient().exists(f"{repo}:buildcache")
