"""The seeded build cache without an engine: the gate adds the import to every build and
refuses exports into ``cache/``; names, fingerprints and the seed's progress lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.grading.batch import seeded_cache
from grader.grading.sandbox.policy import Policy

IMPORT = "type=registry,ref=127.0.0.1:5000/cache/07-challenge:latest"


def _policy(tmp_path: Path, **kw) -> Policy:
    (tmp_path / "copy").mkdir(exist_ok=True)
    return Policy(
        namespace="b/alice",
        registry="127.0.0.1:5000",
        label="abcdef0123",
        host_root=tmp_path / "copy",
        **kw,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["buildx", "build", "--platform", "linux/amd64,linux/arm64", "-t", "x", "--push", "."],
        ["build", "-t", "x", "."],
        ["buildx", "--builder", "multi", "b", "."],
        ["buildx", "build", "--cache-from", "type=registry,ref=127.0.0.1:5000/b/alice/c", "."],
        ["buildx", "build", "--no-cache", "."],
    ],
)
def test_every_build_imports_the_seeded_cache(tmp_path: Path, argv: list[str]) -> None:
    d = _policy(tmp_path, cache_from=IMPORT).decide(argv)
    assert d.refused is None
    assert f"--cache-from={IMPORT}" in d.argv
    assert d.argv[-1] == "."  # the context stays last


def test_without_a_seeded_cache_builds_run_as_written(tmp_path: Path) -> None:
    d = _policy(tmp_path).decide(["buildx", "build", "-t", "x", "."])
    assert not any(a.startswith("--cache-from") for a in d.argv)


def test_other_commands_get_no_import(tmp_path: Path) -> None:
    p = _policy(tmp_path, cache_from=IMPORT)
    for argv in (["push", "x"], ["buildx", "imagetools", "inspect", "x"], ["run", "busybox"]):
        assert not any(a.startswith("--cache-from") for a in p.decide(argv).argv)


@pytest.mark.parametrize(
    "value",
    [
        "type=registry,ref=127.0.0.1:5000/cache/07-challenge,mode=max",
        "127.0.0.1:5000/cache/07-challenge",
        'type=registry,"ref=localhost:5000/cache/07-challenge:latest",mode=max',
        "type=registry,ref=127.0.0.1:5000/cache/other-assignment",
    ],
)
def test_learners_cannot_export_into_the_seeded_cache(tmp_path: Path, value: str) -> None:
    d = _policy(tmp_path, cache_from=IMPORT).decide(["buildx", "build", "--cache-to", value, "."])
    assert d.refused is not None and d.refused.rule == "RN414"


def test_learners_cannot_push_into_the_cache_namespace(tmp_path: Path) -> None:
    p = _policy(tmp_path)
    for argv in (
        ["push", "127.0.0.1:5000/cache/07-challenge:latest"],
        ["buildx", "build", "-t", "127.0.0.1:5000/cache/07-challenge", "--push", "."],
        ["buildx", "imagetools", "create", "-t", "127.0.0.1:5000/cache/07-challenge", "x"],
    ):
        d = p.decide(argv)
        assert d.refused is not None and d.refused.rule == "RN414", argv


def test_cache_ref_and_names() -> None:
    assert seeded_cache.repository("07-challenge") == "cache/07-challenge"
    assert seeded_cache.import_option("127.0.0.1:5000", "07-challenge") == IMPORT
    for bad in ("", "07-Challenge", "../library", "a/b", "-x"):
        with pytest.raises(seeded_cache.SeedError):
            seeded_cache.repository(bad)


def test_fingerprint_follows_the_files_and_platforms(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / "app" / "hello.c").write_text("int main(){}\n")
    one = seeded_cache.fingerprint(tmp_path, ["linux/amd64", "linux/arm64"])
    assert one == seeded_cache.fingerprint(tmp_path, ["linux/arm64", "linux/amd64"])
    assert one != seeded_cache.fingerprint(tmp_path, ["linux/amd64"])
    (tmp_path / "app" / "hello.c").write_text("int main(){return 1;}\n")
    assert one != seeded_cache.fingerprint(tmp_path, ["linux/amd64", "linux/arm64"])
    both = ["linux/amd64", "linux/arm64"]
    base = seeded_cache.fingerprint(tmp_path, both, {"debian:bookworm-slim": "sha256:1"})
    assert base != seeded_cache.fingerprint(tmp_path, both, {"debian:bookworm-slim": "sha256:2"})


def test_seed_needs_a_dockerfile(tmp_path: Path) -> None:
    with pytest.raises(seeded_cache.SeedError, match="no Dockerfile"):
        seeded_cache.seed(tmp_path, registry="127.0.0.1:9", say=lambda _: None)


def test_progress_names_each_step_once_it_ends() -> None:
    steps: dict[str, str] = {}
    lines = [
        "#1 [internal] load build definition from Dockerfile",
        "#1 DONE 0.0s",
        "#7 [linux/arm64 build 2/5] RUN case ... apt-get update",
        "#7 0.512 Get:1 http://deb.debian.org/debian bookworm InRelease",
        "#7 DONE 31.2s",
        "#9 [linux/amd64 stage-1 2/2] COPY --from=build /src/hello /usr/local/bin/hello",
        "#9 CACHED",
        "#12 exporting cache to registry",
        "#12 DONE 2.1s",
    ]
    shown = [s for s in (seeded_cache._progress(ln, steps) for ln in lines) if s]
    assert shown == [
        "[linux/arm64 build 2/5] RUN case ... apt-get update: DONE 31.2s",
        "[linux/amd64 stage-1 2/2] COPY --from=build /src/hello /usr/local/bin/hello: CACHED",
        "exporting cache to registry: DONE 2.1s",
    ]


def test_the_seed_never_reuses_the_engines_local_cache(tmp_path):
    """Steps a learner's build left in the course engine's cache must not become the seed."""
    from grader.grading.batch.seeded_cache import _build_argv

    argv = _build_argv(tmp_path, "127.0.0.1:5000/cache/07-challenge", ["linux/amd64"], "default")
    assert "--no-cache" in argv and "--pull" in argv


@pytest.mark.parametrize(
    ("driver", "store", "problem"),
    [
        ("docker", '[["Backing Filesystem","extfs"]]', "containerd image store"),
        ("docker", '[["driver-type","io.containerd.snapshotter.v1"]]', None),
        ("docker-container", '[["Backing Filesystem","extfs"]]', None),
    ],
)
def test_the_builder_must_export_a_cache(monkeypatch, driver, store, problem) -> None:
    """What `buildx inspect` and `docker info` say decides (captured text, no engine)."""
    from grader import proc

    answers = {
        "buildx": f"Name:          default\nDriver:        {driver}\n",
        "info": store,
    }

    def fake_run(argv, **_):
        return proc.Completed(tuple(argv), 0, answers[argv[1]], "", 0.1)

    monkeypatch.setattr(seeded_cache.proc, "run", fake_run)
    why = seeded_cache.builder_problem("default")
    assert (why is None) if problem is None else (problem in why)
