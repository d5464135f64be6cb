"""The rawjson parser on real streams captured from this engine (tests/fixtures/rawjson/,
re-captured by its capture.py), and on the edge cases a stream can throw at it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from grader.docker import progress as bp
from grader.known_errors import explain

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rawjson"


def load(name: str, build_platform: str | None = "from-meta") -> bp.BuildProgress:
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    if build_platform == "from-meta":
        build_platform = meta["build_platform"]
    return bp.parse((FIXTURES / f"{name}.rawjson").read_text(), meta["platforms"], build_platform)


def run_steps(lane: bp.Lane) -> list[bp.Step]:
    return [s for s in lane.steps if s.instruction == "RUN"]


# --- each captured stream: what its lanes must say ------------------------------------

EXPECTED = {
    # fixture: {lane: (lane state, kinds of its RUN steps, states of its RUN steps)}
    "emulated-two-platform": {
        "linux/amd64": ("done", ["native"], ["done"]),
        "linux/arm64": ("done", ["emulated"], ["done"]),
    },
    "cached-rebuild": {
        "linux/amd64": ("done", ["native"], ["cached"]),
        "linux/arm64": ("done", ["emulated"], ["cached"]),
    },
    "cross-go-two-platform": {
        "linux/amd64": ("done", ["native"], ["done"]),
        "linux/arm64": ("done", ["cross"], ["done"]),
    },
    "failing-run-arm64": {
        "linux/amd64": ("done", ["native"], ["done"]),
        "linux/arm64": ("error", ["emulated"], ["error"]),
    },
    "failing-no-match-platform": {
        "linux/amd64": ("cancelled", [], []),
        "linux/riscv64": ("error", [], []),
    },
    "single-platform-arm64": {
        "linux/arm64": ("done", ["emulated"], ["done"]),
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lanes_match_what_the_build_did(name):
    progress = load(name)
    assert [lane.platform for lane in progress.platform_lanes] == list(EXPECTED[name])
    for platform, (state, kinds, states) in EXPECTED[name].items():
        lane = progress.lanes[platform]
        assert lane.state == state, platform
        assert [s.kind for s in run_steps(lane)] == kinds, platform
        assert [s.state for s in run_steps(lane)] == states, platform


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_step_has_a_known_state_kind_and_sane_times(name):
    progress = load(name)
    assert progress.events > 5
    for step in progress.steps.values():
        assert step.state in bp.STATES
        assert step.kind in bp.KINDS
        if step.state in (bp.DONE, bp.ERROR):
            assert step.started is not None and step.completed is not None
            assert 0 <= step.duration < 600
    for lane in progress.lanes.values():
        totals = lane.totals()
        assert totals["busy"] == pytest.approx(sum(totals[k] for k in bp.KINDS))
        assert 0 <= totals["wall"] < 600


def test_emulated_step_takes_longer_than_its_native_twin_and_logs_its_machine():
    progress = load("emulated-two-platform")
    amd, arm = (run_steps(progress.lanes[p])[0] for p in ("linux/amd64", "linux/arm64"))
    assert arm.duration > amd.duration  # QEMU: the same loop, several times slower
    assert "aarch64" in arm.log and "x86_64" in amd.log
    assert progress.lanes["linux/arm64"].totals()["emulated"] == pytest.approx(arm.duration)
    assert progress.lanes["linux/amd64"].totals()["emulated"] == 0
    shared = [s.label for s in progress.lanes[bp.SHARED_LANE].steps]
    assert "exporting to image" in shared and any(x.startswith("pushing ") for x in shared)


def test_cached_rebuild_counts_no_step_time():
    progress = load("cached-rebuild")
    for platform in ("linux/amd64", "linux/arm64"):
        totals = progress.lanes[platform].totals()
        assert totals["emulated"] == 0 and totals["native"] < 0.5
        # A cached vertex can carry the start time of an older build: never in the span.
        assert progress.lanes[platform].wall < 1


def test_cross_compile_runs_on_the_build_platform_and_shares_its_stage():
    progress = load("cross-go-two-platform", build_platform=None)
    # Inferred from the "linux/amd64->arm64" names, with no hint given.
    assert progress.build_platform == "linux/amd64"
    cross = run_steps(progress.lanes["linux/arm64"])[0]
    assert cross.parsed.platform == "linux/amd64" and cross.target == "linux/arm64"
    assert cross.runs_on == "linux/amd64"
    assert "GOARCH=arm64" in cross.name
    assert not any(s.kind == bp.EMULATED for s in progress.steps.values())
    # FROM golang / WORKDIR / COPY are built once and feed both targets: the build
    # platform's lane, marked shared, even when BuildKit named one after arm64.
    shared = [s for s in progress.steps.values() if s.shared_by]
    assert {s.parsed.stage for s in shared if s.instruction} == {"build"}
    for step in shared:
        if step.instruction:
            assert step.lane == "linux/amd64"
            assert step.shared_by == {"linux/amd64", "linux/arm64"}
            assert step.target is None


def test_failing_step_carries_its_error_and_stderr_log():
    progress = load("failing-run-arm64")
    (failed,) = progress.errors()
    assert failed.lane == "linux/arm64"
    assert "exit code: 3" in failed.error
    assert "this step only works on x86_64, got aarch64" in failed.log
    assert any(line.startswith("ERROR: failed to solve") for line in progress.text)


def test_missing_base_platform_maps_to_the_known_error():
    progress = load("failing-no-match-platform")
    (failed,) = progress.errors()
    assert failed.lane == "linux/riscv64" and failed.kind == bp.INTERNAL
    known = explain("\n".join(progress.text))
    assert known is not None and known.id == "no-match-platform"
    # The other platform's work was cancelled, not failed.
    assert {s.state for s in progress.lanes["linux/amd64"].steps} == {bp.CANCELLED}


def test_single_platform_names_have_no_prefix_and_still_land_in_its_lane():
    progress = load("single-platform-arm64")
    assert list(progress.lanes) == ["linux/arm64", bp.SHARED_LANE]
    (run,) = run_steps(progress.lanes["linux/arm64"])
    assert run.parsed.platform is None and run.kind == bp.EMULATED


def test_on_an_arm64_node_the_amd64_half_is_the_emulated_one():
    progress = load("emulated-two-platform", build_platform="linux/arm64")
    assert run_steps(progress.lanes["linux/amd64"])[0].kind == bp.EMULATED
    assert run_steps(progress.lanes["linux/arm64"])[0].kind == bp.NATIVE


def test_compact_one_object_per_line_parses_the_same():
    text = (FIXTURES / "emulated-two-platform.rawjson").read_text()
    pretty = bp.parse(text, ["linux/amd64", "linux/arm64"], "linux/amd64")
    objects, dec, i = [], json.JSONDecoder(), 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text):
            obj, i = dec.raw_decode(text, i)
            objects.append(json.dumps(obj))
    compact = bp.parse("\n".join(objects), ["linux/amd64", "linux/arm64"], "linux/amd64")
    assert compact.summary() == pretty.summary()


# --- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "platform", "target", "stage", "index", "internal", "instruction"),
    [
        ("[internal] load build definition from Dockerfile", None, None, None, None, True, None),
        ("[linux/arm64 internal] load metadata for x", "linux/arm64", None, None, None, True, None),
        ("[linux/arm64 2/2] RUN uname -m", "linux/arm64", None, None, 2, False, "RUN"),
        (
            "[linux/amd64->arm64 build 4/4] RUN go",
            "linux/amd64",
            "linux/arm64",
            "build",
            4,
            False,
            "RUN",
        ),
        # buildkit pads the index to the width of the total
        (
            "[linux/amd64->arm/v7 build  4/10] RUN x",
            "linux/amd64",
            "linux/arm/v7",
            "build",
            4,
            False,
            "RUN",
        ),
        (
            "[linux/amd64->windows/amd64 b 1/2] RUN x",
            "linux/amd64",
            "windows/amd64",
            "b",
            1,
            False,
            "RUN",
        ),
        (
            "[linux/arm/v7 stage-1 1/3] FROM busybox",
            "linux/arm/v7",
            None,
            "stage-1",
            1,
            False,
            "FROM",
        ),
        ("[2/2] RUN uname -m", None, None, None, 2, False, "RUN"),
        (
            "[auth] library/busybox:pull token for registry-1.docker.io",
            None,
            None,
            "auth",
            None,
            True,
            None,
        ),
        ("exporting to image", None, None, None, None, True, None),
        ("[unterminated", None, None, None, None, True, None),
    ],
)
def test_vertex_names(name, platform, target, stage, index, internal, instruction):
    parsed = bp.parse_vertex_name(name)
    assert (parsed.platform, parsed.target, parsed.stage, parsed.index, parsed.internal) == (
        platform,
        target,
        stage,
        index,
        internal,
    )
    assert parsed.instruction == instruction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T05:34:45Z", 1795584885.0),
        ("2026-11-25T05:34:45.216973345Z", 1795584885.216973345),
        ("2026-11-25T06:34:45.5+01:00", 1795584885.5),
        ("garbage", None),
        (None, None),
    ],
)
def test_timestamps(text, expected):
    got = bp.parse_timestamp(text)
    assert got == (None if expected is None else pytest.approx(expected, abs=1e-6))


# --- state changes and hostile input ----------------------------------------------------

RUN = "[linux/arm64 2/2] RUN make"


def vertex(**fields) -> dict:
    return {"vertexes": [{"digest": "sha256:aa", "name": RUN, **fields}]}


def test_a_restarted_vertex_is_running_again_and_latest_copy_wins():
    p = bp.BuildProgress(["linux/arm64"], "linux/amd64", clock=lambda: 1795584900.0)
    p.feed_event(vertex())
    step = p.steps["sha256:aa"]
    assert step.state == bp.QUEUED and step.duration is None
    p.feed_event(vertex(started="2026-11-25T05:34:45Z", completed="2026-11-25T05:34:46Z"))
    assert step.state == bp.DONE and step.duration == pytest.approx(1.0)
    p.feed_event(vertex(started="2026-11-25T05:34:50Z"))
    assert step.state == bp.RUNNING
    assert step.duration == pytest.approx(1795584900.0 - 1795584890.0)  # to "now"
    p.finish(ok=False)
    assert step.state == bp.CANCELLED


def test_logs_are_decoded_prefixed_and_drained_once():
    p = bp.BuildProgress(["linux/arm64"], "linux/amd64")
    p.feed_event(vertex(started="2026-11-25T05:34:45Z"))
    data = base64.b64encode(b"line one\nline two\n").decode()
    p.feed_event({"logs": [{"vertex": "sha256:aa", "stream": 1, "data": data}]})
    drained = p.drain_log()
    assert drained == ["[linux/arm64 2/2 RUN make] line one", "[linux/arm64 2/2 RUN make] line two"]
    assert p.drain_log() == []
    assert p.steps["sha256:aa"].log == ["line one", "line two"]


@pytest.mark.parametrize(
    "lines",
    [
        ["not json at all", "ERROR: boom"],
        ["{", '  "vertexes": [', "}"],  # a broken object: kept as text, not raised
        ["[1, 2, 3]", "{}", '{"vertexes": "nope"}', '{"vertexes": [{"name": "no digest"}]}'],
        ['{"logs": [{"vertex": "sha256:none", "data": "!!!not base64"}]}'],
        ['{"statuses": [{"vertex": "sha256:unknown", "current": 5}]}'],
        ['{"vertexes": [{"digest": "x", "name": "[linux/arm64 1/1] RUN a", "inputs": ["x"]}]}'],
    ],
)
def test_garbage_never_raises(lines):
    p = bp.BuildProgress(["linux/amd64"], "linux/amd64")
    p.feed_lines(lines)
    p.finish(ok=False)
    p.summary()
    assert all(isinstance(t, str) for t in p.text)


def test_an_unterminated_object_is_flushed_as_text_at_the_end():
    p = bp.BuildProgress()
    p.feed_lines(["{", '  "vertexes": ['])
    p.finish(ok=False)
    assert p.text == ["{", '  "vertexes": [']


def test_deeply_nested_json_in_build_output_is_text_not_a_crash():
    # A RUN step can print anything: json.loads on it raised RecursionError (not ValueError)
    # and took the grader down. Past the depth limit it is kept as plain text.
    deep = '{"vertexes": ' + "[" * 100_000 + "]" * 100_000 + "}"
    p = bp.BuildProgress(["linux/arm64"], "linux/amd64")
    p.feed_line(deep)
    p.feed_lines(["{", '  "vertexes": ' + "[" * 100_000, "]" * 100_000, "}"])
    p.feed_line('{"vertexes": []}')  # and it goes on reading
    assert any(line.startswith('{"vertexes": [[[') for line in p.text)
