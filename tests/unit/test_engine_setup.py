"""Engine bootstrap logic that can be checked without touching the machine's engine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from grader.docker import registry
from grader.engine import config, services
from grader.engine.config import Settings


def test_state_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("COURSE_REGISTRY_PORT", raising=False)
    assert config.settings().state == tmp_path
    assert config.settings().registry_host == "127.0.0.1:5000"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "registry.port").write_text("5003")
    assert config.settings().registry_host == "127.0.0.1:5003"


def test_daemon_json_merge_keeps_user_settings(monkeypatch, tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"log-level": "warn", "registry-mirrors": ["https://m.example"]}))
    monkeypatch.setattr(services, "DAEMON_JSON", path)
    cfg = Settings(tmp_path, 5000)
    assert services.write_daemon_json(cfg) is True
    data = json.loads(path.read_text())
    assert data["log-level"] == "warn"
    assert data["features"]["containerd-snapshotter"] is True
    assert data["registry-mirrors"] == ["http://127.0.0.1:5000", "https://m.example"]
    # Idempotent: a second merge changes nothing (so dockerd is not restarted for nothing).
    assert services.write_daemon_json(cfg) is False


def test_daemon_json_garbage_is_a_clear_error(monkeypatch, tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text("{not json")
    monkeypatch.setattr(services, "DAEMON_JSON", path)
    with pytest.raises(services.StepFailed, match="not valid JSON"):
        services.write_daemon_json(Settings(tmp_path, 5000))


def _listener():
    """Something on a port that is not a registry (a bare TCP server)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()

    def serve():
        try:
            while True:
                s.accept()[0].close()
        except OSError:  # closed by the test
            pass

    threading.Thread(target=serve, daemon=True).start()
    return s


def test_port_taken_by_a_non_registry_moves_to_another_port(tmp_path):
    s = _listener()
    port = s.getsockname()[1]
    try:
        assert not registry.registry_answers(f"127.0.0.1:{port}")
        chosen = services.choose_registry_port(Settings(tmp_path, port))
        assert chosen != port and 5001 <= chosen < 5030
    finally:
        s.close()


def test_lock_serialises_two_bootstraps(tmp_path):
    lock = tmp_path / "engine.lock"
    order = []
    with config.locked(lock, "test"):
        code = (
            f"import sys; sys.path.insert(0, {os.getcwd()!r})\n"
            "from grader.engine.config import locked\n"
            "from pathlib import Path\n"
            f"with locked(Path({str(lock)!r}), 'test', wait=0.5): print('got it')\n"
        )
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        order.append(other.returncode)
    # While held, the other process waited, told the user, and gave up cleanly.
    assert order == [1]
    assert "waiting for another test" in other.stderr
    assert "TimeoutError" in other.stderr


def test_not_root_without_engine_says_what_to_install():
    """As an unprivileged user with no engine: a clear message, non-zero, nothing installed."""
    import pathlib
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="course-nonroot-"))
    env = {
        "PATH": os.environ["PATH"],
        "DOCKER_HOST": "unix:///nonexistent.sock",
        "HOME": str(tmp_path),
        "COURSE_STATE_DIR": str(tmp_path / "state"),
    }
    os.chmod(tmp_path, 0o777)
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "grader.cli",
            "engine",
            "up",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.getcwd(),
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "needs root" in done.stderr and "sudo" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state" / "registry").exists()


def test_desktop_without_engine_never_installs(monkeypatch, tmp_path):
    """macOS/Windows: no engine answering means 'start Docker Desktop', never an install."""
    from grader import engine
    from grader.engine import install

    monkeypatch.setenv("COURSE_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(engine.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(install.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(services, "docker_answers", lambda timeout=10: False)

    def forbidden(*a, **k):
        raise AssertionError("tried to install on Docker Desktop's platform")

    monkeypatch.setattr(install, "install_packages", forbidden)
    with pytest.raises(services.StepFailed, match="Docker Desktop"):
        engine.up()


def test_existing_engine_is_not_reconfigured(monkeypatch, tmp_path):
    """An engine the course did not start is used as is: daemon.json untouched."""
    monkeypatch.setattr(services, "docker_answers", lambda timeout=10: True)
    monkeypatch.setattr(services, "DAEMON_JSON", tmp_path / "daemon.json")
    assert services.ensure_dockerd(Settings(tmp_path, 5000)) == "existing"
    assert not (tmp_path / "daemon.json").exists()


def test_existing_engine_skips_engine_packages(monkeypatch):
    from grader.engine import install

    monkeypatch.setattr(install, "installed_version", lambda p: None)
    assert "docker.io" in install.missing_packages()
    assert "docker.io" not in install.missing_packages(engine=False)
    assert "qemu-user-static" in install.missing_packages(engine=False)


def test_compose_v2_comes_with_the_engine_on_bookworm(monkeypatch):
    """Compose v1 (bookworm's 1.29) cannot build `build.platforms`: trixie's v2 replaces it;
    an engine the course did not install gets no Compose from us."""
    from grader.engine import install

    versions = {"docker.io": "26.1.5+dfsg1-9", "docker-buildx": "0.13.1+ds1-3",
                "docker-compose": "1.29.2-3"}  # fmt: skip
    monkeypatch.setattr(install, "installed_version", versions.get)
    monkeypatch.setattr(install, "_needs_trixie", lambda: True)
    engine = set(install.ENGINE_PACKAGES)
    assert [p for p in install.missing_packages() if p in engine] == ["docker-compose"]
    # Debian's engine already running (the course started it): the plugin is still added.
    assert "docker-compose" in install.missing_packages(engine=False)
    assert "docker.io" not in install.missing_packages(engine=False)
    versions["docker-compose"] = "2.26.1-4"
    assert not [p for p in install.missing_packages() if p in engine]
    monkeypatch.setattr(install, "_needs_trixie", lambda: False)
    versions["docker-compose"] = "1.29.2-3"  # e.g. an older Ubuntu: not asked for every time
    assert "docker-compose" not in install.missing_packages()
    del versions["docker.io"]
    assert engine <= set(install.missing_packages())
    versions["docker-compose"] = None  # docker-ce's engine runs: its own plugin, not ours
    assert "docker-compose" not in install.missing_packages(engine=False)


def test_a_service_starts_through_proc_and_stops_by_its_pid_file(tmp_path):
    """What `grader engine up` does for dockerd and the registry, and `grader lab start` for
    JupyterLab: a detached daemon, its pid file and log in the course's state directory."""
    cfg = Settings(tmp_path, 5000)
    argv = [sys.executable, "-c", "import time; print('serving', flush=True); time.sleep(60)"]
    pid = services.start_service(cfg, "toy", argv)
    try:
        assert cfg.pidfile("toy").read_text() == str(pid)
        assert services.owned_pid(cfg, "toy") == pid
        assert os.getsid(pid) == pid  # a Ctrl-C in the terminal that ran `up` does not reach it
        assert "starting: " in cfg.logfile("toy").read_text()
    finally:
        assert services.stop_service(cfg, "toy", timeout=10)
    assert services.owned_pid(cfg, "toy") is None and not cfg.pidfile("toy").exists()
    assert not services.stop_service(cfg, "toy")
