"""`grader lab start` (what `./course up` ends with): JupyterLab in the background, reachable
with its token only, reused when already running, stopped on request."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from grader.course import jupyterlab as lab
from grader.engine import services


@pytest.fixture
def own_state(tmp_path, monkeypatch):
    # A state dir of its own, so the course's running JupyterLab is not touched.
    monkeypatch.setenv("COURSE_STATE_DIR", str(tmp_path / "state"))
    yield tmp_path
    lab.stop()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_start_is_reachable_with_token_reused_and_stoppable(own_state):
    root = own_state / "labs"
    root.mkdir()
    (root / "hello.txt").write_text("hi")
    url = lab.start(root, port=8931)
    base, token = url.split("/lab?token=")
    assert _status(f"{base}/api/contents/hello.txt?token={token}") == 200
    assert _status(f"{base}/api/contents/hello.txt") == 403
    # Idempotent: a second start returns the same server.
    assert lab.start(root, port=8931) == url
    assert lab.stop() is True
    assert not services.port_in_use(int(base.rsplit(":", 1)[1]))
    assert lab.stop() is False
