"""The one subprocess wrapper: output, failures, time limits, cancel, known errors."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from grader import proc

PY = sys.executable


def test_run_captures_output_and_duration():
    done = proc.run(
        [PY, "-c", "import sys; print('out'); print('err', file=sys.stderr)"], timeout=30
    )
    assert (done.stdout, done.stderr, done.returncode) == ("out\n", "err\n", 0)
    assert done.ok and done.duration > 0
    assert done.command.startswith(PY)


def test_failure_carries_command_code_stderr_and_known_explanation():
    with pytest.raises(proc.CommandError) as err:
        proc.run(
            [
                PY,
                "-c",
                "import sys; sys.stderr.write('exec /bin/sh: exec format error');sys.exit(3)",
            ],
            timeout=30,
        )
    e = err.value
    assert e.returncode == 3
    assert "exec format error" in e.stderr
    assert e.known is not None and e.known.id == "exec-format"
    assert "binfmt" in str(e)


def test_check_false_returns_nonzero_instead_of_raising():
    done = proc.run([PY, "-c", "raise SystemExit(5)"], timeout=30, check=False)
    assert done.returncode == 5 and not done.ok


def test_missing_program_is_a_typed_error():
    with pytest.raises(proc.CommandNotFound):
        proc.run(["no-such-program-here"], timeout=5)


def test_timeout_kills_the_whole_process_group():
    start = time.monotonic()
    with pytest.raises(proc.CommandTimeout) as err:
        # The child forks a grandchild that would outlive a plain kill of the child.
        proc.run(["sh", "-c", "sleep 60 & sleep 60"], timeout=1)
    assert time.monotonic() - start < 10
    assert err.value.timeout == 1


def test_output_is_capped_not_unbounded():
    done = proc.run(
        [PY, "-c", "import sys; sys.stdout.write('x' * 5_000_000)"], timeout=30, max_output=1000
    )
    assert len(done.stdout) == 1000 and done.truncated


def test_stream_yields_lines_by_source_and_sets_returncode():
    s = proc.stream(
        [PY, "-u", "-c", "import sys\nprint('a')\nprint('b', file=sys.stderr)\nprint('c')"]
    )
    lines = list(s)
    assert [x for x in lines if x[0] == "stdout"] == [("stdout", "a"), ("stdout", "c")]
    assert ("stderr", "b") in lines
    assert s.returncode == 0 and s.error is None


def test_stream_failure_explained():
    s = proc.stream(
        [
            "sh",
            "-c",
            "echo 'ERROR: Multi-platform build is not supported for the "
            "docker driver.' >&2; exit 1",
        ]
    ).wait()
    assert s.returncode == 1
    assert s.error is not None and s.error.known.id == "docker-driver-multiplatform"


def test_stream_cancel_from_another_thread():
    s = proc.stream(["sh", "-c", "while true; do echo tick; sleep 0.05; done"])
    threading.Timer(0.5, s.cancel).start()
    start = time.monotonic()
    ticks = sum(1 for _ in s)
    assert ticks > 0 and time.monotonic() - start < 5
    assert isinstance(s.error, proc.Cancelled)


def test_stream_time_limit():
    s = proc.stream(["sleep", "30"], timeout=0.5).wait()
    assert isinstance(s.error, proc.CommandTimeout)


# --- the grader protects itself (issue 12): a flooding child cannot starve the grader ---


def _drain_in_thread(s: proc.Stream, limit: float) -> threading.Thread:
    def drain() -> None:
        for _ in s:
            time.sleep(0.0005)  # a consumer a little slower than the child

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    t.join(limit)
    return t


def test_stream_deadline_holds_while_the_child_floods_output():
    # The queue is never empty while `yes` writes: the deadline must still be checked.
    s = proc.stream(["yes", "flood"], timeout=1.0)
    t = _drain_in_thread(s, 15)
    alive = t.is_alive()
    if alive:
        s.cancel()
        t.join(10)
    assert not alive, "a flooding child outlived its time limit"
    assert isinstance(s.error, proc.CommandTimeout)


def test_stream_queue_is_bounded_when_the_reader_is_slow():
    # Nobody reads for a second: the child must be held back (backpressure), not buffered.
    s = proc.stream(["yes", "x" * 1000], timeout=30)
    time.sleep(1.0)
    queued = s._queue.qsize()
    s.cancel()
    s.wait()
    assert queued <= proc.STREAM_QUEUE
    assert isinstance(s.error, proc.Cancelled)


def test_stream_abandoned_midway_releases_its_reader_threads():
    # A consumer that stops iterating early must not leave pump threads blocked forever.
    before = threading.active_count()
    s = proc.stream(["yes"], timeout=30)
    for n, _ in enumerate(s):
        if n > 5000:
            break
    s.cancel()
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


# --- spawn_detached: daemons (dockerd, the registry, JupyterLab) ---------------------------


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (Z: a zombie), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_spawn_detached_logs_to_a_file_in_its_own_session(tmp_path):
    import os

    log = tmp_path / "logs" / "svc.log"
    log.parent.mkdir()
    log.write_text("an earlier run\n")
    script = (  # the markers are built at run time: the log's first line quotes the script
        "import os,sys,time; print('UP' + '-', os.getsid(0), sys.stdin.read() == ''); "
        "sys.stdout.flush(); print('ERR' + '-MARK', file=sys.stderr); time.sleep(30)"
    )
    daemon = proc.spawn_detached([PY, "-c", script], log_file=log)
    pid = daemon.pid
    try:
        deadline = time.monotonic() + 10
        while "ERR-MARK" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = log.read_text()
        assert text.startswith("an earlier run\n"), "the log is appended to, never truncated"
        assert "=== " in text and "starting: " in text and "-c" in text
        assert f"UP- {pid} True" in text, text  # a session of its own; stdin is empty
        assert "ERR-MARK" in text  # stderr too
        assert os.getsid(pid) == pid != os.getsid(0)
        assert daemon.poll() is None
    finally:
        os.kill(pid, 9)
    assert daemon.wait(10) == -9


def test_spawn_detached_leaves_no_zombie(tmp_path):
    daemon = proc.spawn_detached([PY, "-c", "raise SystemExit(3)"], log_file=tmp_path / "q.log")
    pid = daemon.pid
    assert daemon.wait(10) == 3
    deadline = time.monotonic() + 10
    while _state(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(pid) is None, f"pid {pid} is {_state(pid)} (a zombie nobody reaped)"


def test_spawn_detached_missing_program_is_a_typed_error(tmp_path):
    with pytest.raises(proc.CommandNotFound):
        proc.spawn_detached(["/nonexistent/dockerd"], log_file=tmp_path / "x.log")


def test_only_proc_starts_processes():
    """grader/proc.py is the one subprocess wrapper: no other module imports subprocess."""
    import ast
    from pathlib import Path

    pkg = Path(proc.__file__).parent
    wrong = []
    for path in pkg.rglob("*.py"):
        if path.name == "proc.py" and path.parent == pkg:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n.split(".")[0] in ("subprocess", "pty") for n in names):
                wrong.append(f"{path.relative_to(pkg.parent)}:{node.lineno}")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("system", "popen", "spawnv")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                wrong.append(f"{path.relative_to(pkg.parent)}:{node.lineno} os.{node.attr}")
    assert not wrong, wrong
