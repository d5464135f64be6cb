"""/etc/subuid and /etc/subgid are shared by every engine that starts: parallel starts (a
batch's workers, a class's learners) must neither lose a line nor rewrite a file that is
already right."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from grader.engine import rootless


def test_parallel_writers_keep_every_line(tmp_path) -> None:
    path = tmp_path / "subuid"
    path.write_text("someone:100000:65536\n")
    names = [f"grader-engine-{n}" for n in range(16)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: rootless._subid(path, names[i], 1_000_000 + i), range(16)))
    lines = path.read_text().splitlines()
    assert lines[0] == "someone:100000:65536"
    assert sorted(lines[1:]) == sorted(f"{n}:{1_000_000 + int(n.rsplit('-', 1)[1])}:"
                                       f"{rootless.RANGE}" for n in names)  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if "grader-tmp" in p.name]


def test_a_right_file_is_left_alone(tmp_path) -> None:
    path = tmp_path / "subgid"
    path.write_text(f"a:1:{rootless.RANGE}\nb:2:{rootless.RANGE}\n")
    before = path.stat().st_mtime_ns, path.stat().st_ino
    rootless._subid(path, "a", 1)  # right, though not the last line
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    rootless._subid(path, "a", 3)  # changed: one line for a, the new one
    assert path.read_text().splitlines() == ["b:2:65536", f"a:3:{rootless.RANGE}"]
