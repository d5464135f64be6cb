"""No-engine detection (real sockets, real docker CLI) and the banner each lab shows."""

from __future__ import annotations

import os
import socket
import time

import pytest

from grader.course import labkit, noengine


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    for name in ("COURSE_NO_ENGINE", "DOCKER_HOST", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    noengine.engine_available.cache_clear()
    yield
    noengine.engine_available.cache_clear()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends


def test_forced_by_course_no_engine(monkeypatch):
    monkeypatch.setenv("COURSE_NO_ENGINE", "1")
    assert noengine.engine_available() is False
    assert "COURSE_NO_ENGINE=1" in noengine.engine_status().reason


def test_docker_host_socket_that_does_not_exist(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    status = noengine.probe()
    assert not status.available and "/nonexistent/docker.sock" in status.reason


def test_docker_host_tcp_nobody_listens_is_quick(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    status = noengine.probe()
    assert not status.available and "does not answer" in status.reason
    assert time.monotonic() - start < noengine.CONNECT_TIMEOUT + 1


def test_no_docker_program_as_on_binder(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no docker on it
    status = noengine.probe()
    assert not status.available and "`docker` program is not installed" in status.reason


def test_a_socket_that_is_not_an_engine(monkeypatch, tmp_path):
    """Something listens but is no dockerd: `docker version` decides, with its own words."""
    path = tmp_path / "fake.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    try:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        status = noengine.probe(timeout=5)
        assert not status.available and status.reason
    finally:
        server.close()


@pytest.mark.engine
def test_the_real_engine_is_found():
    assert noengine.engine_available() is True
    status = noengine.engine_status()
    assert status.available and status.reason == "" and status.server_version[0].isdigit()


def test_cache_clear_asks_again(monkeypatch):
    monkeypatch.setenv("COURSE_NO_ENGINE", "1")
    assert noengine.engine_available() is False
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/x.sock")
    monkeypatch.delenv("COURSE_NO_ENGINE")
    assert "COURSE_NO_ENGINE" in noengine.engine_status().reason  # cached until cleared
    noengine.engine_available.cache_clear()
    assert "/nonexistent/x.sock" in noengine.engine_status().reason


@pytest.mark.parametrize("lab_id", list(labkit.LABS))
def test_banner_for_every_lab(lab_id, monkeypatch):
    monkeypatch.setenv("COURSE_NO_ENGINE", "1")
    monkeypatch.delenv("COURSE_RECORDINGS_DIR", raising=False)
    b = noengine.banner(lab_id)
    text, page = str(b), b._repr_html_()
    assert f"lab {lab_id}" in text and "COURSE_NO_ENGINE=1" in text
    assert labkit.LABS[lab_id].runs_for_real[0] in text, "what still runs for real, per lab"
    assert "./course up" in text and "JupyterHub" in text, "how to get the full lab"
    assert "<b>Runs for real:</b>" in page and "<code>[no engine]</code>" in page
    from grader.course import recorded

    count = len(recorded.lab_recordings(lab_id))
    if count:
        assert f"{count} engine commands show the real output" in text
        assert recorded.lab_recordings(lab_id)[0].recorded_at in text
    else:
        assert "no recordings for this lab yet" in text


def test_banner_escapes_what_it_shows(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/<b>x</b>.sock")
    page = noengine.banner("00-welcome")._repr_html_()
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_lab_header_displays_the_banner_once(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_NO_ENGINE", "1")
    labkit.lab_header("02-qemu-binfmt")
    shown = capsys.readouterr().out
    assert shown.count("NO DOCKER ENGINE") == 1 and "lab 02-qemu-binfmt" in shown


def test_every_lab_says_what_runs_for_real():
    assert all(info.runs_for_real for info in labkit.LABS.values())
    assert os.path.basename(noengine.DEFAULT_SOCKET) == "docker.sock"
