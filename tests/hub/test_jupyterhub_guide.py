"""docs/jupyterhub.md, executed: each block marked `tested` runs here as written, with its
variables pointing at temporary folders, the real engine and real registries."""

from __future__ import annotations

import csv
import json
import re
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import guide
import nbformat
import pytest
import yaml

from grader.docker.registry import RegistryClient, RegistryError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "noengine"))
from authregistry import Registry, SigningKey, TokenServer, free_port, own_namespace

ROOT = guide.ROOT
TESTS = Path(__file__).resolve().parents[1]


# --- the guide itself ------------------------------------------------------------------------


def test_every_block_in_the_guide_is_marked_tested_or_untested_with_a_reason():
    found = guide.blocks()
    assert len(found) == guide.fence_count(), "a fenced block without a tested/untested marker"
    for b in found:
        assert b.what.strip(), f"a block marked {b.kind!r} needs an id or a reason"
        if b.kind == "untested here":
            assert len(b.what) > 15, f"say why it cannot be tested here: {b.what!r}"


def test_every_tested_block_is_run_by_a_test():
    ids = {b.what for b in guide.blocks() if b.kind == "tested"}
    assert len(ids) == len([b for b in guide.blocks() if b.kind == "tested"]), "duplicate ids"
    used = set()
    for path in TESTS.rglob("test_*.py"):
        used |= set(re.findall(r"guide\.(?:run|text|block)\(\s*\"([^\"]+)\"", path.read_text()))
    assert ids <= used, f"blocks marked tested that no test runs: {sorted(ids - used)}"
    assert used <= ids, f"tests name blocks the guide does not have: {sorted(used - ids)}"


# --- nbgrader on a hub: exchange, release, fetch, submit, collect, grade, feedback -----------


@pytest.fixture
def course(tmp_path):
    """A copy of the course directory with lab 00 (nbgrader config, source and release)."""
    course = tmp_path / "course"
    for rel in ("nbgrader_config.py", "binder", "source/00-welcome", "labs/00-welcome"):
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, course / rel, symlinks=True)
        else:
            (course / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, course / rel)
    return course


def _answer_task_1(notebook: Path) -> None:
    """What a learner does between fetch and submit: answer one task."""
    nb = nbformat.read(notebook, as_version=4)
    cells = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    target = next(
        c for c in cells if "host_machine" in "".join(nb.cells[nb.cells.index(c) + 1].source)
    )
    target.source = "%%docker machine\nuname -m\n"
    nbformat.write(nb, notebook)


@pytest.mark.slow
def test_nbgrader_exchange_cycle_as_the_guide_says(course, tmp_path):
    exchange = tmp_path / "srv" / "nbgrader" / "exchange"
    system_config = tmp_path / "etc" / "jupyter"
    instructor_home = tmp_path / "home" / "instructor"
    learner_home = tmp_path / "home" / "learner"
    for home in (instructor_home, learner_home):
        home.mkdir(parents=True)
    common = {
        "COURSE": str(course),
        "EXCHANGE": str(exchange),
        "JUPYTER_SYSTEM_CONFIG": str(system_config),
        "JUPYTER_CONFIG_PATH": str(system_config),  # /etc/jupyter is on this path on a hub
        "NBGRADER_EXCHANGE_ROOT": str(exchange),  # set by the spawner (guide, section 2)
        "COURSE_GRADEBOOK": f"sqlite:///{tmp_path / 'gradebook.db'}",
        "COURSE_NO_ENGINE": "1",  # autograde does not need the engine for lab 00
    }
    instructor = {**common, "HOME": str(instructor_home)}
    learner = {**common, "HOME": str(learner_home), "JUPYTERHUB_USER": "ada"}

    guide.run("exchange-folder", instructor, tmp_path)
    assert exchange.stat().st_mode & 0o7777 == 0o1777
    guide.run("system-config", instructor, tmp_path)
    assert (system_config / "nbgrader_config.py").read_text() == (
        ROOT / "binder" / "nbgrader_student_config.py"
    ).read_text()

    done = guide.run("release", instructor, tmp_path)
    assert (exchange / "multiplatform-builds/outbound/00-welcome/00-welcome.ipynb").is_file()
    assert "00-welcome" in done.stdout + done.stderr

    guide.run("fetch", learner, tmp_path)
    fetched = learner_home / "00-welcome" / "00-welcome.ipynb"
    assert fetched.is_file()
    _answer_task_1(fetched)
    guide.run("submit", learner, tmp_path)
    inbound = list((exchange / "multiplatform-builds" / "inbound").iterdir())
    assert len(inbound) == 1, inbound

    guide.run("collect-grade", instructor, tmp_path, timeout=900)
    student = inbound[0].name.split("+")[0]
    assert (course / "autograded" / student / "00-welcome" / "00-welcome.ipynb").is_file()
    with open(course / "grades.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["assignment"] == "00-welcome"]
    assert len(rows) == 1 and float(rows[0]["raw_score"]) > 0, rows
    assert float(rows[0]["raw_score"]) < float(rows[0]["max_score"]), "one task of three answered"

    guide.run("fetch-feedback", learner, tmp_path)
    feedback = list((learner_home / "00-welcome" / "feedback").rglob("00-welcome.html"))
    assert feedback, "the learner has the feedback page"
    assert "BEGIN HIDDEN TESTS" not in feedback[0].read_text()


# --- the formgrader in its own tab (JupyterHub >= 4.1 forbids frames) ------------------------


def test_formgrader_page_works_on_its_own_under_jupyterhubs_frame_policy(tmp_path, course):
    """JupyterHub >= 4.1's header on a real server: the formgrader page loads as a page."""
    from grader import proc

    config = tmp_path / "jupyter_server_config.py"
    config.write_text(
        'c.ServerApp.tornado_settings = {"headers": '
        '{"Content-Security-Policy": "frame-ancestors \'none\'"}}\n'
    )
    port, token = free_port(), secrets.token_hex(8)
    argv = [
        str(Path(sys.executable).parent / "jupyter-server"), f"--config={config}",
        f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={course}", "--allow-root", "--no-browser",
    ]  # fmt: skip
    server = proc.stream(argv, cwd=course, env={"COURSE_GRADEBOOK": f"sqlite:///{tmp_path}/g.db"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                resp = opener.open(f"http://127.0.0.1:{port}/formgrader?token={token}", timeout=10)
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        page = resp.read().decode()
        assert resp.status == 200 and "formgrade" in page.lower()
        assert "frame-ancestors 'none'" in resp.headers.get("Content-Security-Policy", "")
    finally:
        server.cancel()
        server.wait()


# --- per-learner registry namespaces ---------------------------------------------------------


@pytest.fixture
def tiny_context(tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    (context / "hello.txt").write_text("hello from the class\n")
    (context / "Dockerfile").write_text(
        'FROM busybox:latest\nCOPY hello.txt /hello.txt\nCMD ["cat", "/hello.txt"]\n'
    )
    return context


@pytest.mark.engine
@pytest.mark.registry
def test_learners_push_only_under_their_own_name(tmp_path, tiny_context):
    keys = tmp_path / "keys"
    keys.mkdir()
    guide.run("token-key", {}, keys)
    key = SigningKey(keys)  # the key and certificate the guide's openssl made
    users = {"ada": secrets.token_hex(6), "grace": secrets.token_hex(6)}
    issuer = yaml.safe_load(guide.block("registry-config").body)["auth"]["token"]["issuer"]
    tokens = TokenServer(key, own_namespace, users, issuer=issuer)
    port = free_port()
    config = guide.text(
        "registry-config",
        REGISTRY_DATA=str(tmp_path / "data"),
        REGISTRY=f"127.0.0.1:{port}",
        TOKEN_REALM=tokens.realm,
        TOKEN_CERT=str(keys / "token.crt"),
    )
    registry = Registry(tmp_path / "registry", config_text=config, port=port)
    try:
        ada = {
            "REGISTRY": registry.host,
            "JUPYTERHUB_USER": "ada",
            "PASSWORD": users["ada"],
            "DOCKER_CONFIG": str(tmp_path / "docker-ada"),  # ada's own login, not this machine's
        }
        done = guide.run("learner-push", ada, tiny_context, timeout=900)
        assert "linux/amd64" in done.stdout and "linux/arm64" in done.stdout
        assert any(u == "ada" and s.startswith("repository:ada/app:") for u, s in tokens.requests)

        from grader import proc

        other = proc.run(
            ["docker", "buildx", "build", "--platform", "linux/amd64", "--provenance=false",
             "-t", f"{registry.host}/grace/app:1", "--push", "."],
            timeout=600, check=False, cwd=tiny_context, env={"DOCKER_CONFIG": ada["DOCKER_CONFIG"]},
        )  # fmt: skip
        assert not other.ok
        assert re.search(r"denied|unauthorized|insufficient_scope", other.stderr, re.I), (
            other.stderr
        )
        grace = RegistryClient(credentials={registry.host: ("grace", users["grace"])})
        assert not grace.exists(f"{registry.host}/grace/app:1"), "nothing pushed as grace"
        assert grace.exists(f"{registry.host}/ada/app:1"), "learners read each other's images"
        with pytest.raises(RegistryError, match=r"needs|denied|refused") as anonymous:
            RegistryClient().fetch_manifest(f"{registry.host}/ada/app:1")
        assert anonymous.value.kind == "auth", "without a login, nothing"
    finally:
        registry.close()
        tokens.close()


# --- builders past one machine ---------------------------------------------------------------


@pytest.mark.engine
def test_remote_builder_over_tls_with_an_appended_arm64_node(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    done = guide.run("buildkit-certs", {}, certs)
    assert "server.pem: OK" in done.stdout and "client.pem: OK" in done.stdout
    env = {"DOCKER_CONFIG": str(tmp_path / "docker")}  # builders stay in this test's store
    done = guide.run("remote-builder", env, certs)
    out = done.stdout
    assert "Driver:        remote" in out or re.search(r"Driver:\s+remote", out)
    assert "tcp://buildkit.class.example:1234" in out and "tcp://arm64.class.example:1234" in out
    assert re.search(r"class-arm64.*?Platforms:\s+linux/arm64", out, re.S), out
    assert re.search(r"class-amd64.*?Platforms:\s+linux/amd64", out, re.S), out
    assert f"cacert={certs}/ca.pem" in out.replace('"', "")


@pytest.mark.engine
def test_kubernetes_builder_with_an_arm64_node_pool(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: class\n"
        "clusters:\n- name: class\n  cluster:\n    server: https://127.0.0.1:9\n"
        "contexts:\n- name: class\n  context:\n    cluster: class\n    user: instructor\n"
        "users:\n- name: instructor\n  user:\n    token: not-a-real-token\n"
    )
    env = {"DOCKER_CONFIG": str(tmp_path / "docker"), "KUBECONFIG": str(kubeconfig)}
    out = guide.run("kubernetes-builder", env, tmp_path).stdout
    assert re.search(r"Driver:\s+kubernetes", out)
    assert re.search(r"class-k8s-arm64.*?nodeselector=\"?kubernetes.io/arch=arm64", out, re.S), out
    assert re.search(r"class-k8s-arm64.*?Platforms:\s+linux/arm64", out, re.S), out
    assert 'replicas="2"' in out or "replicas=2" in out


# --- caches --------------------------------------------------------------------------------


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.qemu
def test_class_cache_is_written_once_and_imported_by_a_learner(tmp_path, registry_host):
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM busybox:latest\nRUN echo {secrets.token_hex(4)} > /built\n"
    )
    prefix = f"{registry_host}/t-hub-{secrets.token_hex(3)}"
    env = {"REGISTRY": prefix, "JUPYTERHUB_USER": "ada"}
    done = guide.run("class-cache", env, context, timeout=900)
    assert f"importing cache manifest from {prefix}/cache/app:buildcache" in done.stderr
    client = RegistryClient()
    assert client.exists(f"{prefix}/cache/app:buildcache")
    assert client.exists(f"{prefix}/ada/cache:app")
    index = client.fetch_manifest(f"{prefix}/ada/app:1")
    assert {str(d.platform) for d in index.manifests} == {"linux/amd64", "linux/arm64"}


@pytest.mark.registry
def test_hub_pull_through_cache_serves_docker_hub_names(tmp_path, registry_host, monkeypatch):
    port = free_port()
    config = guide.text(
        "hub-cache-config",
        CACHE_DATA=str(tmp_path / "cache"),
        HUB_CACHE=f"127.0.0.1:{port}",
        UPSTREAM=f"http://{registry_host}",  # Docker Hub's stand-in: no internet here
    )
    cache = Registry(tmp_path / "hub-cache", config_text=config, port=port)
    try:
        monkeypatch.setenv("COURSE_HUB_MIRROR", cache.host)
        client = RegistryClient()
        index = client.fetch_manifest("python:3.11-slim")
        assert index.reference.host == cache.host
        assert {str(d.platform) for d in index.manifests} >= {"linux/amd64", "linux/arm64"}
        config_doc = client.fetch_config(client.fetch_child(index, index.manifests[0]))
        assert config_doc.json["architecture"] in ("amd64", "arm64")
        stored = list((tmp_path / "cache").rglob("python/_manifests"))
        assert stored, "the cache keeps what it served"
        assert json.loads(index.raw)["schemaVersion"] == 2
    finally:
        cache.close()
