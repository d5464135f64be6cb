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
