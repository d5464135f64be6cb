"""No-engine mode timings: how long a lab's first cell waits to learn there is no engine,
how fast recordings are found, and how long each released lab takes to run on Binder's terms.

    .venv/bin/python benchmarks/bench_noengine.py [--labs]

Prints a table (seconds). ``--labs`` also runs every released lab under papermill with
``DOCKER_HOST=unix:///nonexistent`` (what tests/noengine/test_labs_without_engine.py does).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.course import noengine, recorded  # noqa: E402


def _timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def detection_rows() -> list[tuple[str, float]]:
    scenarios = {
        "COURSE_NO_ENGINE=1": {"COURSE_NO_ENGINE": "1"},
        "DOCKER_HOST=unix:///nonexistent": {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        "DOCKER_HOST=tcp://127.0.0.1:<closed>": {
            "DOCKER_HOST": f"tcp://127.0.0.1:{_closed_port()}"
        },
        "real engine (docker version)": {},
    }
    rows = []
    saved = {k: os.environ.get(k) for k in ("COURSE_NO_ENGINE", "DOCKER_HOST")}
    for name, env in scenarios.items():
        for k in saved:
            os.environ.pop(k, None)
        os.environ.update(env)
        rows.append((f"detect: {name}", _timed(noengine.probe)))
    for k, v in saved.items():
        os.environ.pop(k, None)
        if v is not None:
            os.environ[k] = v
    return rows


def recording_rows() -> list[tuple[str, float]]:
    keys = list(recorded.load_all())
    recorded._load.cache_clear()
    cold = _timed(lambda: (recorded._load.cache_clear(), recorded.lookup(keys[0])), repeat=5)
    warm = _timed(lambda: [recorded.lookup(k) for k in keys], repeat=5) / max(1, len(keys))
    os.environ["COURSE_NO_ENGINE"] = "1"
    noengine.engine_available.cache_clear()
    banner = _timed(lambda: str(noengine.banner("03-builders")), repeat=5)
    return [
        (f"recordings: load the store ({len(keys)} entries)", cold),
        ("recordings: one lookup, store loaded", warm),
        ("banner for one lab", banner),
    ]


def lab_rows() -> list[tuple[str, float]]:
    import papermill

    rows = []
    os.environ.pop("COURSE_NO_ENGINE", None)
    os.environ["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    for nb in sorted(ROOT.glob("labs/*/*.ipynb")):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / nb.parent.name
            shutil.copytree(nb.parent, work)
            start = time.perf_counter()
            # unanswered exercises raise; the test checks which errors are allowed
            with contextlib.suppress(papermill.PapermillExecutionError):
                papermill.execute_notebook(
                    str(work / nb.name), str(Path(tmp) / "out.ipynb"), cwd=str(work),
                    kernel_name="python3", progress_bar=False,
                )  # fmt: skip
            rows.append(
                (f"lab {nb.parent.name} without engine (papermill)", time.perf_counter() - start)
            )
    return rows


def main() -> None:
    rows = detection_rows() + recording_rows()
    if "--labs" in sys.argv:
        rows += lab_rows()
    width = max(len(name) for name, _ in rows)
    print(f"{'benchmark':<{width}}  seconds")
    print(f"{'-' * width}  -------")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.4f}")


if __name__ == "__main__":
    main()
