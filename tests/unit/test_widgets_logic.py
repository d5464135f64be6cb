"""The panels' logic without an engine: commands they compose, problems they report, lanes
they draw from real captured streams, throttling, the chart's styles, binfmt and builder
parsing, and no-engine mode (every panel renders, shows commands, runs nothing)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from grader.course import noengine
from grader.course.widgets import BinfmtPanel, BuilderPanel, BuildPanel, ManifestExplorer
from grader.course.widgets.binfmt import BinfmtStatus, install_plan
from grader.course.widgets.build import BuildOptions, BuildRun, lane_html, lane_state
from grader.course.widgets.builders import Builders
from grader.course.widgets.timing_chart import KIND_STYLE, chart_rows, figure_png, timing_figure
from grader.docker.progress import parse

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rawjson"
EMULATED = FIXTURES / "contexts" / "emulated"


def fixture_lines(name: str) -> list[str]:
    return (FIXTURES / f"{name}.rawjson").read_text().splitlines()


def fixture_progress(name: str):
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    return parse((FIXTURES / f"{name}.rawjson").read_text(), meta["platforms"], "linux/amd64")


# --- BuildOptions -> argv ---------------------------------------------------------------


def opts(**kw) -> BuildOptions:
    base = {"context": str(EMULATED), "tag": "127.0.0.1:5000/me/app:v1"}
    return BuildOptions(**(base | kw))


def test_push_command_is_exact():
    assert opts().argv() == [
        "docker", "buildx", "build", "--builder", "default", "--progress=rawjson",
        "--platform", "linux/amd64,linux/arm64", "--tag", "127.0.0.1:5000/me/app:v1",
        "--provenance=false", "--sbom=false", "--push", str(EMULATED),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "present", "absent"),
    [
        ({"output": "load", "platforms": ("linux/arm64",)}, ["--load"], ["--push"]),
        (
            {"output": "oci", "oci_dest": "out.tar"},
            ["--output", "type=oci,dest=out.tar"],
            ["--push", "--load"],
        ),
        ({"provenance": True, "sbom": True}, ["--provenance=true", "--sbom=true"], []),
        (
            {"registry_cache": True},
            [
                "type=registry,ref=127.0.0.1:5000/me/app:buildcache",
                "type=registry,ref=127.0.0.1:5000/me/app:buildcache,mode=max",
            ],
            [],
        ),
        ({"builder": "multi", "dockerfile": "x/Dockerfile.arm"}, ["multi", "x/Dockerfile.arm"], []),
    ],
)
def test_options_change_the_command(changes, present, absent):
    argv = opts(**changes).argv()
    for item in present:
        assert item in argv
    for item in absent:
        assert item not in argv
    assert argv[-1] == str(EMULATED)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"platforms": ()}, "at least one platform"),
        ({"output": "load"}, "one platform per tag"),
        ({"tag": ""}, "Pushing needs a tag"),
        ({"tag": "Not A Tag!"}, "not a valid image reference"),
        ({"context": "/nonexistent/ctx"}, "does not exist"),
        ({"dockerfile": str(EMULATED / "Nope")}, "no Dockerfile"),
        ({"output": "oci", "oci_dest": ""}, "OCI tarball"),
        ({"registry_cache": True, "tag": "", "output": "oci"}, "registry cache"),
    ],
)
def test_problems_say_what_to_do(changes, problem):
    problems = opts(**changes).problems()
    assert any(problem in p for p in problems), problems


def test_good_options_have_no_problems():
    assert opts().problems() == []
    assert opts(output="load", platforms=("linux/arm64",), tag="").problems() == []


# --- lanes ------------------------------------------------------------------------------


def test_lane_html_marks_states_kinds_and_platform():
    progress = fixture_progress("emulated-two-platform")
    html = lane_html(progress.lanes["linux/arm64"], run_finished=True)
    assert 'data-platform="linux/arm64"' in html and 'data-state="done"' in html
    assert 'class="mp-step mp-step--done" data-state="done" data-kind="emulated"' in html
    assert "mp-kind--emulated" in html
    html = lane_html(progress.lanes["linux/amd64"], run_finished=True)
    assert "mp-kind--emulated" not in html and 'data-kind="native"' in html


def test_a_lane_is_never_done_before_the_build_ends():
    progress = fixture_progress("emulated-two-platform")
    lane = progress.lanes["linux/arm64"]
    assert lane.state == "done"
    assert lane_state(lane, run_finished=False) == "running"
    assert 'data-state="running"' in lane_html(lane, run_finished=False)


def test_failed_lane_shows_the_error():
    progress = fixture_progress("failing-run-arm64")
    html = lane_html(progress.lanes["linux/arm64"], run_finished=True)
    assert 'data-state="error"' in html and "exit code: 3" in html


def slow(lines: list[str], seconds: float):
    """Yield lines spread over ``seconds``, as a running build does."""
    pause = seconds / len(lines)
    for line in lines:
        time.sleep(pause)
        yield line


def test_updates_are_throttled_not_per_line():
    panel = BuildPanel(context=str(EMULATED), tag="127.0.0.1:5000/x/y:1", engine=False)
    lines = fixture_lines("cross-go-two-platform")
    run = panel.replay(slow(lines, 1.0))
    assert run.state == "succeeded"
    # ~1 s at <= 10 updates/s (+ the final one), for ~1000 lines.
    assert len(lines) > 900
    assert 5 <= run.ticks <= 14
    assert panel.log.appends <= run.ticks
    assert panel.render_count <= 3 * run.ticks
    summary = panel.lane_summary()
    assert summary["linux/arm64"]["state"] == "done"
    assert (
        "build 4/4 RUN CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -o /out/hello main.go "
        "&& echo built for arm64",
        "done",
        "cross",
    ) in summary["linux/arm64"]["steps"]
    assert "built for arm64" in panel.log.text()
    assert bytes(panel.chart.value).startswith(b"\x89PNG")


def test_replayed_failure_explains_the_known_error():
    panel = BuildPanel(context=str(EMULATED), tag="127.0.0.1:5000/x/y:1", engine=False)
    run = panel.replay(fixture_lines("failing-no-match-platform"))
    assert run.state == "failed" and run.known is not None
    assert 'data-known="no-match-platform"' in panel.explanation.value
    assert 'data-state="failed"' in panel.status.value


def test_build_run_calls_back_from_one_thread_with_a_final_update():
    calls = []
    run = BuildRun(
        opts(), build_platform="linux/amd64", on_update=lambda r, final: calls.append(final)
    )
    run.replay(fixture_lines("emulated-two-platform"))
    assert calls[-1] is True and calls.count(True) == 1


# --- the chart ------------------------------------------------------------------------


def test_chart_draws_emulated_steps_hatched_and_red():
    progress = fixture_progress("emulated-two-platform")
    rows = chart_rows(progress)
    emulated = [r for r in rows if r.kind == "emulated"]
    assert [r.lane for r in emulated] == ["linux/arm64"]
    fig = timing_figure(progress)
    gantt, totals = fig.axes
    # One bar per row that is not cached (cached rows are markers), in row order.
    drawn = [r for r in rows if r.state != "cached"]
    assert len(drawn) == len(gantt.patches)
    bar_of = {(r.lane, r.label): p for r, p in zip(drawn, gantt.patches, strict=True)}
    run_label = next(r.label for r in emulated)
    hatched, plain = bar_of[("linux/arm64", run_label)], bar_of[("linux/amd64", run_label)]
    assert hatched.get_hatch() == KIND_STYLE["emulated"]["hatch"] and not plain.get_hatch()
    assert hatched.get_facecolor() != plain.get_facecolor()
    assert [t.get_text() for t in totals.get_yticklabels()] == ["linux/amd64", "linux/arm64"]
    assert figure_png(fig).startswith(b"\x89PNG")


def test_chart_of_a_cross_build_has_no_emulated_bar():
    rows = chart_rows(fixture_progress("cross-go-two-platform"))
    assert {r.kind for r in rows} >= {"cross", "native", "internal"}
    assert "emulated" not in {r.kind for r in rows}


# --- binfmt ---------------------------------------------------------------------------

ENTRIES = {
    "qemu-aarch64": {"enabled": "enabled", "interpreter": "/usr/libexec/q/aarch64", "flags": "PF"},
    "qemu-riscv64": {"enabled": "enabled", "interpreter": "/usr/bin/qemu-riscv64", "flags": "P"},
    "qemu-s390x": {"enabled": "disabled", "interpreter": "/usr/bin/qemu-s390x", "flags": "F"},
}


def test_binfmt_problems_per_platform():
    status = BinfmtStatus.read(ENTRIES, host="linux/amd64")
    problems = status.problems(
        ["linux/amd64", "linux/386", "linux/arm64", "linux/riscv64", "linux/s390x",
         "linux/ppc64le"]
    )  # fmt: skip
    assert set(problems) == {"linux/riscv64", "linux/s390x", "linux/ppc64le"}
    assert "lacks the F flag" in problems["linux/riscv64"]
    assert "disabled" in problems["linux/s390x"]
    assert "no emulator registered (qemu-ppc64le)" in problems["linux/ppc64le"]
    # On an arm64 machine it is amd64 that needs an emulator.
    assert "linux/amd64" in BinfmtStatus.read(ENTRIES, host="linux/arm64").problems(
        ["linux/amd64", "linux/arm64"]
    )


@pytest.mark.parametrize(
    ("kw", "method", "shown", "runnable"),
    [
        ({"system": "Linux", "debian": True, "root": True}, "debian", "grader engine up", True),
        ({"system": "Linux", "debian": True, "root": False}, "debian", "grader engine up", False),
        (
            {"system": "Linux", "debian": False, "root": True},
            "binfmt-image",
            "docker run --privileged --rm tonistiigi/binfmt --install arm64,riscv64",
            True,
        ),
        (
            {"system": "Darwin", "debian": False, "root": False},
            "desktop",
            "docker run --privileged --rm tonistiigi/binfmt --install arm64,riscv64",
            True,
        ),
    ],
)
def test_install_plan_fits_the_machine(kw, method, shown, runnable):
    plan = install_plan(["linux/arm64", "linux/riscv64"], engine=True, **kw)
    assert plan.method == method
    assert " ".join(plan.shown) == shown
    assert plan.runnable is runnable
    assert not install_plan(["linux/arm64"], engine=False, **kw).runnable


def test_nothing_to_install_when_nothing_is_missing():
    plan = install_plan([], engine=True, system="Linux", debian=True, root=True)
    assert plan.method == "nothing" and not plan.runnable


# --- builders ---------------------------------------------------------------------------

LS_0_13 = (
    '{"Name":"default","Driver":"docker","Nodes":[{"Name":"default","Endpoint":"default",'
    '"Status":"running","Version":"v0.0.0+unknown","Platforms":["linux/amd64","linux/arm64"]}]}\n'
)


def test_buildx_ls_json_parsed_and_its_duplicate_lines_dropped():
    # buildx 0.13.1 prints every builder twice.
    rows = Builders.parse_ls(
        LS_0_13 * 2 + '{"Name":"multi","Driver":"docker-container","Nodes":[{"Name":"multi0",'
        '"Endpoint":"unix:///var/run/docker.sock","Status":"inactive"}]}\nnot json\n',
        current="multi",
    )
    assert [r.name for r in rows] == ["default", "multi"]
    assert rows[0].platforms == ("linux/amd64", "linux/arm64")
    assert rows[0].native_platform == "linux/amd64" and not rows[0].current
    assert rows[1].status == "inactive" and rows[1].platforms == () and rows[1].current


@pytest.mark.parametrize("name", ["", "-x", "a b", "x;rm -rf /", "a" * 80])
def test_bad_builder_names_are_refused(name):
    assert Builders.check_name(name)


# --- no engine --------------------------------------------------------------------------


@pytest.fixture
def no_engine(monkeypatch):
    monkeypatch.setenv("COURSE_NO_ENGINE", "1")
    noengine.engine_available.cache_clear()
    yield
    noengine.engine_available.cache_clear()


def test_every_panel_renders_explains_and_disables_running_without_an_engine(no_engine):
    build = BuildPanel(context=str(EMULATED), tag="127.0.0.1:5000/me/app:v1")
    assert "No Docker engine" in build.notice.value
    assert "docker buildx build" in build.command.value and build.build_button.disabled
    assert list(build.platform_checks)[:2] == ["linux/amd64", "linux/arm64"]
    assert build.build() is None and build.run is None

    builders = BuilderPanel(name="multi")
    assert "No Docker engine" in builders.notice.value
    assert "docker buildx create --name multi --driver docker-container" in builders.command.value
    assert all(b.disabled for b in builders.buttons.values())
    assert builders.do("create") is None

    binfmt = BinfmtPanel(platforms=["linux/arm64", "linux/riscv64"])
    assert "No Docker engine" in binfmt.notice.value
    assert binfmt.install_button.disabled and binfmt.verify_button.disabled
    assert "docker run --rm --platform linux/riscv64 busybox:latest uname -m" in (
        binfmt.command.value
    )

    explorer = ManifestExplorer()
    assert explorer.widget is not None and not explorer.button.disabled
    for panel in (build, builders, binfmt, explorer):
        assert "mp-panel" in panel.widget._dom_classes
        assert panel._repr_mimebundle_()  # displayable


def test_explorer_reports_unreachable_registries_without_a_traceback(no_engine):
    explorer = ManifestExplorer()
    assert explorer.explore("127.0.0.1:1/nothing:here") is None
    assert "cannot reach registry" in explorer.status.value
    assert explorer.explore("") is None and "Type an image reference" in explorer.status.value


def test_an_error_printed_by_a_run_step_is_explained_from_its_decoded_log():
    # rawjson carries RUN output base64-encoded: the raw stderr never shows the message.
    name = "[linux/arm64 2/2] RUN /app/hello"
    data = base64.b64encode(b"exec /app/hello: exec format error\n").decode()
    events = [
        {"vertexes": [{"digest": "sha256:r", "name": name, "started": "2026-11-25T05:00:00Z"}]},
        {"logs": [{"vertex": "sha256:r", "stream": 2, "data": data}]},
        {
            "vertexes": [
                {
                    "digest": "sha256:r",
                    "name": name,
                    "started": "2026-11-25T05:00:00Z",
                    "completed": "2026-11-25T05:00:01Z",
                    "error": 'process "/bin/sh -c /app/hello" did not complete successfully: '
                    "exit code: 255",
                }
            ]
        },
    ]
    lines = [json.dumps(e) for e in events] + ["ERROR: failed to solve: process ... 255"]
    run = BuildRun(opts(), build_platform="linux/amd64").replay(lines)
    assert run.state == "failed"
    assert "exec format error" not in "\n".join(lines)
    assert run.known is not None and run.known.id == "exec-format"


def test_platforms_the_builder_lacks_are_named_not_silently_dropped():
    panel = BuildPanel(
        context=str(EMULATED), tag="127.0.0.1:5000/x/y:1", engine=False,
        platforms=["linux/amd64", "linux/sparc64"],
    )  # fmt: skip
    assert panel.options.platforms == ("linux/amd64",)
    assert "does not report linux/sparc64" in panel.platform_note.value


def test_a_worker_that_dies_still_ends_the_run(monkeypatch):
    import grader.course.widgets.build as build_module

    def broken_stream(*_a, **_k):
        raise OSError("no such thing")

    monkeypatch.setattr(build_module.proc, "stream", broken_stream)
    finals = []
    run = BuildRun(opts(), on_update=lambda r, final: finals.append(final)).start()
    assert run.wait(10)
    assert run.state == "failed" and finals == [True]
    assert "the panel failed: OSError: no such thing" in run.progress.text[-1]
