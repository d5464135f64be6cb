"""BuildPanel: compose a ``docker buildx build``, show the exact command, run it, and draw
one lane per platform while it runs, then a timing chart.

Three layers, each usable alone:

- :class:`BuildOptions`: the choices -> argv, and what is wrong with them (pure);
- :class:`BuildRun`: runs the argv through :func:`grader.proc.stream` (or replays captured
  lines), feeds :class:`grader.docker.progress.BuildProgress`, and calls ``on_update`` at most
  every ``interval`` seconds from its worker thread (state machine: idle -> running ->
  succeeded | failed | cancelled);
- :class:`BuildPanel`: the widgets. Each lane is its own HTML widget, re-rendered only when
  that lane changed; log lines are appended in batches (:class:`ThrottledLog`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import ipywidgets as widgets

from grader import proc
from grader.course.widgets.common import (
    ThrottledLog,
    can_run,
    command_html,
    esc,
    fmt_seconds,
    known_error_html,
    log_output,
    no_engine_html,
    notice_html,
    panel_box,
)
from grader.docker.progress import (
    CANCELLED,
    DONE,
    ERROR,
    KINDS,
    QUEUED,
    RUNNING,
    SHARED_LANE,
    BuildProgress,
    Lane,
    host_platform,
)
from grader.docker.registry import Reference, RegistryError
from grader.known_errors import KnownError, explain

#: Offered when the builder cannot be asked (no engine): what learners most often target.
COMMON_PLATFORMS = (
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/riscv64",
    "linux/ppc64le",
    "linux/s390x",
    "linux/386",
)
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")
OUTPUTS = {"push": "push to a registry", "load": "load one platform", "oci": "OCI tarball"}

IDLE, SUCCEEDED, FAILED = "idle", "succeeded", "failed"


# --- options -> command -----------------------------------------------------------------


@dataclass(frozen=True)
class BuildOptions:
    context: str = "."
    dockerfile: str = ""  # empty: <context>/Dockerfile
    tag: str = ""
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS
    builder: str = "default"
    output: str = "push"  # push | load | oci
    oci_dest: str = "image.oci.tar"
    provenance: bool = False
    sbom: bool = False
    registry_cache: bool = False

    @property
    def cache_ref(self) -> str | None:
        """The registry cache lives next to the image: ``<repository>:buildcache``."""
        try:
            ref = Reference.parse(self.tag)
        except RegistryError:
            return None
        host = "docker.io" if ref.host == "registry-1.docker.io" else ref.host
        return f"{host}/{ref.repository}:buildcache"

    def problems(self) -> list[str]:
        """What stops this build from running, each with what to do."""
        out = []
        if not self.platforms:
            out.append("Choose at least one platform.")
        if not Path(self.context).is_dir():
            out.append(f"The context directory {self.context!r} does not exist.")
        dockerfile = Path(self.dockerfile) if self.dockerfile else Path(self.context, "Dockerfile")
        if Path(self.context).is_dir() and not dockerfile.is_file():
            out.append(f"There is no Dockerfile at {str(dockerfile)!r}.")
        if self.tag:
            try:
                Reference.parse(self.tag)
            except RegistryError as e:
                out.append(f"{e}: use HOST/REPOSITORY:TAG, e.g. 127.0.0.1:5000/me/app:v1.")
        if self.output == "push" and not self.tag:
            out.append("Pushing needs a tag with a registry, e.g. 127.0.0.1:5000/me/app:v1.")
        if self.output == "load" and len(self.platforms) > 1:
            out.append(
                "--load puts the image in the engine's image store, which (classic store) holds "
                "one platform per tag: choose one platform, or push, or write an OCI tarball."
            )
        if self.output == "oci" and not self.oci_dest:
            out.append("Name the OCI tarball to write (e.g. image.oci.tar).")
        if self.output not in OUTPUTS:
            out.append(f"Unknown output {self.output!r}: one of {', '.join(OUTPUTS)}.")
        if self.registry_cache and self.cache_ref is None:
            out.append("The registry cache is stored next to the tag: set a tag first.")
        return out

    def argv(self) -> list[str]:
        argv = ["docker", "buildx", "build", "--builder", self.builder or "default"]
        # rawjson is what lets the panel draw lanes; a terminal user would leave it out.
        argv.append("--progress=rawjson")
        argv += ["--platform", ",".join(self.platforms)]
        if self.dockerfile:
            argv += ["--file", self.dockerfile]
        if self.tag:
            argv += ["--tag", self.tag]
        argv.append(f"--provenance={'true' if self.provenance else 'false'}")
        argv.append(f"--sbom={'true' if self.sbom else 'false'}")
        if self.registry_cache and self.cache_ref:
            argv += ["--cache-from", f"type=registry,ref={self.cache_ref}"]
            argv += ["--cache-to", f"type=registry,ref={self.cache_ref},mode=max"]
        if self.output == "push":
            argv.append("--push")
        elif self.output == "load":
            argv.append("--load")
        elif self.output == "oci":
            argv += ["--output", f"type=oci,dest={self.oci_dest}"]
        argv.append(self.context)
        return argv


# --- running a build --------------------------------------------------------------------

_END = object()


@dataclass
class BuildRun:
    """One build: command -> parser -> throttled ``on_update(run, final)`` calls."""

    options: BuildOptions
    build_platform: str | None = None
    interval: float = 0.1
    timeout: float = 1800.0
    env: Mapping[str, str] | None = None
    on_update: Callable[[BuildRun, bool], None] | None = None
    clock: Callable[[], float] = time.monotonic
    #: The command as typed, when someone else runs it (the ``%%docker`` magic); else the
    #: options' argv.
    command: tuple[str, ...] | None = None
    state: str = IDLE
    error: proc.CommandError | None = None
    known: KnownError | None = None
    duration: float = 0.0
    ticks: int = 0
    progress: BuildProgress = field(init=False)
    _stream: proc.Stream | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def __post_init__(self) -> None:
        self.progress = BuildProgress(self.options.platforms, self.build_platform)

    @property
    def argv(self) -> list[str]:
        return list(self.command) if self.command else self.options.argv()

    @property
    def finished(self) -> bool:
        return self.state in (SUCCEEDED, FAILED, CANCELLED)

    # the three ways to run
    def start(self) -> BuildRun:
        """Run the command in a worker thread; returns at once."""
        self._thread = threading.Thread(target=self._run_guarded, name="buildx-build", daemon=True)
        self._thread.start()
        return self

    def _run_guarded(self) -> None:
        """A worker thread's exception would vanish and leave the panel "building…" forever."""
        try:
            self.run()
        except Exception as e:
            if not self.finished:
                self.progress.text.append(f"ERROR: the panel failed: {type(e).__name__}: {e}")
                self._end(FAILED)

    def run(self) -> BuildRun:
        """Run the command here, blocking until it ends."""
        self.state = RUNNING
        if self._cancel.is_set():
            return self._end(CANCELLED)
        self._stream = proc.stream(self.argv, timeout=self.timeout, env=self.env)
        self._drive(self._stream)
        err = self._stream.error
        self.error = err
        if err is not None:
            self.known = self._explain(err.known)
        if self._cancel.is_set():
            return self._end(CANCELLED)
        return self._end(SUCCEEDED if err is None else FAILED)

    def replay(self, lines: Iterable[str], ok: bool | None = None) -> BuildRun:
        """Drive the same machinery from captured stderr lines (no command runs)."""
        self.state = RUNNING
        self._drive(("stderr", line) for line in lines)
        if ok is None:
            ok = not any(line.startswith("ERROR:") for line in self.progress.text)
        self.known = None if ok else self._explain(None)
        return self._end(SUCCEEDED if ok else FAILED, at=self.progress.latest)

    def follow(self, lines: Iterable[str], returncode: Callable[[], int | None]) -> BuildRun:
        """Drive the lanes from the stderr lines of a build another process runs (the
        ``%%docker`` magic's script), live; ``returncode()`` is asked once the lines end."""
        self.state = RUNNING
        self._drive(("stderr", line) for line in lines)
        code = returncode()
        if code not in (0, None):
            self.error = proc.CommandError(self.argv, code, "", "\n".join(self.progress.text))
            self.known = self._explain(None)
        return self._end(SUCCEEDED if code == 0 else FAILED)

    def _explain(self, from_stderr: KnownError | None) -> KnownError | None:
        """The failed step's own output first: rawjson carries RUN output base64-encoded, so
        an ``exec format error`` printed by a RUN is only found in the decoded step log."""
        failed = self.progress.errors()
        step_text = "\n".join(
            line for step in failed for line in [*step.log[-50:], step.error or ""]
        )
        return explain(step_text) or from_stderr or explain("\n".join(self.progress.text))

    def cancel(self) -> None:
        self._cancel.set()
        if self._stream is not None:
            self._stream.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    # internals
    def _drive(self, source: Iterable[tuple[str, str]]) -> None:
        started = self.clock()
        lines: queue.Queue = queue.Queue()

        def pump() -> None:
            try:
                for item in source:
                    lines.put(item)
            finally:
                lines.put(_END)

        threading.Thread(target=pump, name="buildx-lines", daemon=True).start()
        next_tick = self.clock() + self.interval
        while True:
            try:
                item = lines.get(timeout=max(0.0, next_tick - self.clock()))
            except queue.Empty:
                item = None
            if item is _END:
                break
            if item is not None:
                self.progress.feed_line(item[1])
            if self.clock() >= next_tick:
                self._update(final=False)
                next_tick = self.clock() + self.interval
        self.duration = self.clock() - started

    def _update(self, final: bool) -> None:
        self.ticks += 1
        if self.on_update is not None:
            self.on_update(self, final)

    def _end(self, state: str, at: float | None = None) -> BuildRun:
        self.progress.finish(state == SUCCEEDED, at=at)
        self.state = state
        try:
            self._update(final=True)
        finally:
            self._done.set()
        return self


# --- rendering ----------------------------------------------------------------------------

_ICONS = {
    QUEUED: "· queued",
    RUNNING: "⏳ running",
    DONE: "✓ done",
    "cached": "↺ cached",
    ERROR: "✗ error",
    CANCELLED: "⊘ cancelled",
}


def lane_state(lane: Lane, run_finished: bool) -> str:
    """What the lane shows: never "done" before the build ends (more steps may come)."""
    if run_finished:
        return lane.state
    states = {s.state for s in lane.steps}
    if ERROR in states:
        return ERROR
    if states - {QUEUED}:
        return RUNNING
    return QUEUED


def lane_html(lane: Lane, run_finished: bool) -> str:
    """One lane: a header with totals, one row per step (state, label, kind, duration)."""
    state = lane_state(lane, run_finished)
    counts = lane.counts
    done = counts[DONE] + counts["cached"]
    seconds = lane.seconds_by_kind()
    by_kind = ", ".join(f"{k} {fmt_seconds(seconds[k])}" for k in KINDS if seconds[k] > 0)
    title = "shared (BuildKit's own work)" if lane.platform == SHARED_LANE else lane.platform
    summary = (
        f"{esc(state)} · {done}/{len(lane.steps)} steps finished · "
        f"busy {fmt_seconds(lane.busy)}{f' ({esc(by_kind)})' if by_kind else ''} · "
        f"wall {fmt_seconds(lane.wall)}"
    )
    rows = []
    for step in lane.steps:
        s, kind = step.state, step.kind
        shared = (
            f' <span class="mp-shared">shared by {esc(", ".join(sorted(step.shared_by)))}</span>'
            if step.shared_by
            else ""
        )
        detail = ""
        if s == RUNNING and step.status_text:
            detail = f' <span class="mp-shared">{esc(step.status_text[:80])}</span>'
        if s == ERROR and step.error:
            detail = f'<br><span class="mp-missing">{esc(step.error[-300:])}</span>'
        duration = "" if step.cached else fmt_seconds(step.duration)
        rows.append(
            f'<tr class="mp-step mp-step--{s}" data-state="{s}" data-kind="{kind}">'
            f'<td class="mp-step-state">{_ICONS.get(s, s)}</td>'
            f'<td class="mp-step-label">{esc(step.label[:160])}{shared}{detail}</td>'
            f'<td><span class="mp-kind mp-kind--{kind}">{kind}</span></td>'
            f'<td class="mp-step-duration">{duration}</td></tr>'
        )
    body = "".join(rows) or '<tr><td class="mp-shared">waiting for BuildKit…</td></tr>'
    return (
        f'<div class="mp-lane-body" data-platform="{esc(lane.platform)}" data-state="{state}" '
        f'data-steps="{len(lane.steps)}" data-finished="{done}">'
        f'<span class="mp-lane-title">{esc(title)}</span>'
        f'<span class="mp-lane-summary">{summary}</span>'
        f'<table class="mp-steps">{body}</table></div>'
    )


def _slug(platform: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in platform)


# --- the panel ----------------------------------------------------------------------------


class BuildPanel:
    """The build panel. Display it (last expression of a cell, or ``display(panel)``)."""

    def __init__(
        self,
        context: str = ".",
        dockerfile: str = "",
        tag: str = "",
        platforms: Iterable[str] | None = None,
        builder: str | None = None,
        output: str = "push",
        oci_dest: str = "image.oci.tar",
        provenance: bool = False,
        sbom: bool = False,
        registry_cache: bool = False,
        *,
        env: Mapping[str, str] | None = None,
        engine: bool | None = None,
        interval: float = 0.1,
        timeout: float = 1800.0,
        form: bool = True,
    ) -> None:
        self.env = env
        self.engine = can_run() if engine is None else engine
        #: False: a panel that watches a command run elsewhere (:meth:`watching`): no form.
        self.form = form
        self.watched: tuple[str, ...] | None = None
        self.interval = interval
        self.timeout = timeout
        self.run: BuildRun | None = None
        self.render_count = 0
        self.builders: dict[str, tuple[str, ...]] = {}
        self.build_platforms: dict[str, str | None] = {}
        self._lane_widgets: dict[str, widgets.HTML] = {}
        self._lane_revisions: dict[str, tuple] = {}
        self._render_lock = threading.Lock()

        self.context = widgets.Text(value=context, description="Context")
        self.dockerfile = widgets.Text(
            value=dockerfile, description="Dockerfile", placeholder="<context>/Dockerfile"
        )
        self.tag = widgets.Text(value=tag, description="Tag", placeholder="HOST/REPO:TAG")
        self.builder = widgets.Dropdown(description="Builder")
        self.builder.add_class("mp-builder-picker")
        self.platform_box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.platform_box.add_class("mp-platforms")
        self.platform_checks: dict[str, widgets.Checkbox] = {}
        self.platform_note = widgets.HTML()
        self.output = widgets.ToggleButtons(
            options=[(label, key) for key, label in OUTPUTS.items()], value=output
        )
        self.oci_dest = widgets.Text(value=oci_dest, description="OCI file")
        self.provenance = widgets.Checkbox(value=provenance, description="provenance attestation")
        self.sbom = widgets.Checkbox(value=sbom, description="SBOM attestation")
        self.registry_cache = widgets.Checkbox(value=registry_cache, description="registry cache")
        self.command = widgets.HTML()
        self.command.add_class("mp-build-command")
        self.problems = widgets.HTML()
        self.notice = widgets.HTML()
        self.build_button = widgets.Button(description="Build", button_style="primary", icon="play")
        self.build_button.add_class("mp-build-button")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.cancel_button.add_class("mp-cancel-button")
        self.status = widgets.HTML()
        self.status.add_class("mp-build-status")
        self.lanes = widgets.VBox()
        self.lanes.add_class("mp-lanes")
        self.explanation = widgets.HTML()
        # hidden until it has a picture: an empty Image is a broken-image icon in the browser
        self.chart = widgets.Image(
            format="png", layout=widgets.Layout(max_width="100%", display="none")
        )
        self.chart.add_class("mp-timing-chart")
        self.chart_figure = None
        self.log_output = log_output()
        self.log = ThrottledLog(self.log_output, interval)

        if form:
            self._load_builders(builder)
        else:  # nothing to choose: the command is the learner's own
            platforms = list(platforms or DEFAULT_PLATFORMS)
            self.builders = {builder or "default": tuple(platforms)}
            self.builder.options = [builder or "default"]
            self.builder.value = builder or "default"
        self._set_platform_choices(platforms)
        for w in (
            self.context,
            self.dockerfile,
            self.tag,
            self.output,
            self.oci_dest,
            self.provenance,
            self.sbom,
            self.registry_cache,
        ):
            w.observe(self._changed, "value")
        self.builder.observe(self._builder_changed, "value")
        self.build_button.on_click(lambda _b: self.build())
        self.cancel_button.on_click(lambda _b: self.cancel())

        form_rows = [self.notice, widgets.HBox([self.context, self.dockerfile]),
                     widgets.HBox([self.tag, self.builder]),
                     widgets.HTML("<b>Platforms</b> (what this builder reports):"),
                     self.platform_box, self.platform_note,
                     widgets.HBox([widgets.HTML("<b>Output</b>&nbsp;"), self.output,
                                   self.oci_dest]),
                     widgets.HBox([self.provenance, self.sbom, self.registry_cache])]  # fmt: skip
        buttons = [self.build_button, self.cancel_button] if form else []
        self.widget = panel_box(
            [
                widgets.HTML("<h4>Build for several platforms</h4>"),
                *(form_rows if form else []),
                self.command,
                *([self.problems] if form else []),
                widgets.HBox([*buttons, self.status]),
                self.lanes,
                self.explanation,
                self.chart,
                self.log_output,
            ],
            "mp-build-panel",
        )
        if not form:
            self.widget.add_class("mp-build-panel--watching")
        if not self.engine and form:
            self.notice.value = no_engine_html("Build.")
        self._changed()

    @classmethod
    def watching(cls, argv: Sequence[str], platforms: Iterable[str], **kwargs) -> BuildPanel:
        """A panel for a build someone else runs (the ``%%docker`` magic): it shows ``argv``
        as the exact command, one lane per platform, and no form; :meth:`follow` drives it."""
        panel = cls(platforms=list(platforms), form=False, engine=True, **kwargs)
        panel.watched = tuple(argv)
        panel._changed()
        return panel

    def follow(self, lines: Iterable[str], returncode: Callable[[], int | None]) -> BuildRun:
        """Draw the lanes of the watched build from its rawjson ``lines`` as they arrive (in a
        worker thread, so the lanes also tick between lines); returns the run at once."""
        opts = replace(self.options, platforms=tuple(self.platform_checks))
        run = BuildRun(opts, build_platform=host_platform(), interval=self.interval,
                       on_update=self._on_update, command=self.watched)  # fmt: skip
        self._prepare(run)

        def work() -> None:
            try:
                run.follow(lines, returncode)
            except Exception as e:  # the lanes must end, whatever the stream did
                if not run.finished:
                    run.progress.text.append(f"ERROR: the panel failed: {type(e).__name__}: {e}")
                    run._end(FAILED)

        threading.Thread(target=work, name="buildx-follow", daemon=True).start()
        return run

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # builders and platforms
    def _load_builders(self, wanted: str | None) -> None:
        names: list[str] = []
        current = None
        if self.engine:
            from grader.course.widgets.builders import Builders

            logic = Builders(env=self.env, timeout=60)
            try:
                rows = logic.list()
            except proc.CommandError as e:
                rows = []
                self.notice.value = known_error_html(e.known, str(e))
            for row in rows:
                names.append(row.name)
                self.builders[row.name] = row.platforms
                self.build_platforms[row.name] = row.native_platform
                if row.current:
                    current = row.name
        if not names:
            names = [wanted or "default"]
            self.builders[names[0]] = () if self.engine else COMMON_PLATFORMS
        if wanted and wanted not in names:
            names.append(wanted)
            self.builders.setdefault(wanted, ())
        self.builder.options = names
        self.builder.value = wanted or current or names[0]
        self.builder.disabled = not self.engine

    def _builder_changed(self, _change=None) -> None:
        self._set_platform_choices([p for p, c in self.platform_checks.items() if c.value])
        self._changed()

    def _set_platform_choices(self, wanted: Iterable[str] | None) -> None:
        available = list(self.builders.get(self.builder.value) or ())
        if not available:
            available = list(COMMON_PLATFORMS)
            if self.engine:
                self.notice.value = notice_html(
                    f"Builder <b>{esc(self.builder.value)}</b> reports no platforms yet (not "
                    "bootstrapped?): run <code>docker buildx inspect --bootstrap "
                    f"{esc(self.builder.value)}</code> (BuilderPanel does it), then re-open this "
                    "panel. Common platforms are listed meanwhile."
                )
        wanted = list(DEFAULT_PLATFORMS if wanted is None else wanted)
        checks = {}
        for plat in available:
            box = widgets.Checkbox(
                value=plat in wanted,
                description=plat,
                indent=False,
                layout=widgets.Layout(width="150px"),
            )
            box.add_class("mp-platform")
            box.add_class(f"mp-platform-{_slug(plat)}")
            box.observe(self._changed, "value")
            checks[plat] = box
        self.platform_checks = checks
        self.platform_box.children = tuple(checks.values())
        missing = [p for p in wanted if p not in available]
        self.platform_note.value = (
            f'<div class="mp-warning">This builder does not report {esc(", ".join(missing))}, '
            "so it is not offered: register its emulator (BinfmtPanel), or pick another "
            "builder.</div>"
            if missing
            else ""
        )

    # options and command
    @property
    def options(self) -> BuildOptions:
        return BuildOptions(
            context=self.context.value.strip(),
            dockerfile=self.dockerfile.value.strip(),
            tag=self.tag.value.strip(),
            platforms=tuple(p for p, c in self.platform_checks.items() if c.value),
            builder=self.builder.value or "default",
            output=self.output.value,
            oci_dest=self.oci_dest.value.strip(),
            provenance=self.provenance.value,
            sbom=self.sbom.value,
            registry_cache=self.registry_cache.value,
        )

    def set_options(self, **changes) -> None:
        """Change options from code (tests, lab cells) as a learner would in the form."""
        opts = replace(self.options, **changes)
        self.context.value, self.dockerfile.value, self.tag.value = (
            opts.context,
            opts.dockerfile,
            opts.tag,
        )
        for plat, box in self.platform_checks.items():
            box.value = plat in opts.platforms
        self.output.value, self.oci_dest.value = opts.output, opts.oci_dest
        self.provenance.value, self.sbom.value = opts.provenance, opts.sbom
        self.registry_cache.value = opts.registry_cache

    def _changed(self, _change=None) -> None:
        if not self.form:
            self.command.value = command_html(list(self.watched or ()), "The command you ran")
            return
        opts = self.options
        self.oci_dest.layout.display = "" if opts.output == "oci" else "none"
        label = "Command this panel will run" if self.engine else "Command (run it elsewhere)"
        self.command.value = command_html(opts.argv(), label)
        problems = opts.problems()
        self.problems.value = "".join(f'<div class="mp-problems">{esc(p)}</div>' for p in problems)
        running = self.run is not None and not self.run.finished
        self.build_button.disabled = bool(problems) or not self.engine or running

    # building
    def build(self, wait: bool = False) -> BuildRun | None:
        """Start the build (the Build button); ``wait=True`` blocks until it ends."""
        if self.run is not None and not self.run.finished:
            return self.run
        opts = self.options
        problems = opts.problems()
        if problems or not self.engine:
            self._changed()
            return None
        run = BuildRun(
            opts,
            build_platform=self._build_platform(opts.builder),
            interval=self.interval,
            timeout=self.timeout,
            env=self.env,
            on_update=self._on_update,
        )
        self._prepare(run)
        run.start()
        if wait:
            run.wait()
        return run

    def replay(self, lines: Iterable[str], options: BuildOptions | None = None) -> BuildRun:
        """Show a captured rawjson stream as if it were being built (tests, demos offline)."""
        opts = options or self.options
        run = BuildRun(
            opts,
            build_platform=self._build_platform(opts.builder),
            interval=self.interval,
            on_update=self._on_update,
        )
        self._prepare(run)
        return run.replay(lines)

    def _build_platform(self, builder: str) -> str:
        native = self.build_platforms.get(builder)
        if native:
            parts = native.split("/")
            return "/".join(parts[:3] if len(parts) > 2 and parts[1] == "arm" else parts[:2])
        return host_platform()

    def _prepare(self, run: BuildRun) -> None:
        self.run = run
        self._lane_widgets = {}
        self._lane_revisions = {}
        self.lanes.children = tuple(self._lane_widget(p) for p in run.options.platforms)
        self.explanation.value = ""
        self.chart.value = b""
        self.chart.layout.display = "none"
        self.chart_figure = None
        self.log_output.outputs = ()
        self.log.add([f"$ {' '.join(run.argv)}"])
        self.status.value = '<span class="mp-build-state" data-state="running">building…</span>'
        self.build_button.disabled = True
        self.cancel_button.disabled = False

    def _lane_widget(self, name: str) -> widgets.HTML:
        w = self._lane_widgets.get(name)
        if w is None:
            w = widgets.HTML()
            w.add_class("mp-lane")
            w.add_class(f"mp-lane-{_slug(name)}")
            self._lane_widgets[name] = w
            if self.run is not None and name not in self.run.options.platforms:
                self.lanes.children = (*self.lanes.children, w)
        return w

    def _on_update(self, run: BuildRun, final: bool) -> None:
        with self._render_lock:
            for name, lane in run.progress.lanes.items():
                revision = lane.revision
                live = any(s.state == RUNNING for s in lane.steps)
                if not final and not live and self._lane_revisions.get(name) == revision:
                    continue
                self._lane_revisions[name] = revision
                html = lane_html(lane, run.finished)
                w = self._lane_widget(name)
                if w.value != html:
                    w.value = html
                    self.render_count += 1
            self.log.add(run.progress.drain_log())
            self.log.flush(force=final)
            if final:
                self._finished(run)

    def _finished(self, run: BuildRun) -> None:
        total = fmt_seconds(run.duration)
        self.status.value = (
            f'<span class="mp-build-state" data-state="{run.state}">{esc(run.state)} '
            f"in {total}</span>"
        )
        if run.state == FAILED:
            message = str(run.error) if run.error else "\n".join(run.progress.text[-8:])
            self.explanation.value = known_error_html(run.known, message)
        if any(s.started is not None for s in run.progress.steps.values()):
            from grader.course.widgets.timing_chart import figure_png, timing_figure

            try:
                self.chart_figure = timing_figure(run.progress, f"{run.state}: {run.options.tag}")
                self.chart.value = figure_png(self.chart_figure)
                self.chart.layout.display = ""
            except Exception as e:  # the build's result matters more than its picture
                self.explanation.value += f"<i>timing chart unavailable: {esc(e)}</i>"
        self.cancel_button.disabled = True
        self._changed()

    def cancel(self) -> None:
        if self.run is not None:
            self.run.cancel()

    # for tests and lab checks
    def lane_summary(self) -> dict[str, dict]:
        """platform -> {state, steps: [(label, state, kind)]} as the lanes show them."""
        if self.run is None:
            return {}
        out = {}
        for name, lane in self.run.progress.lanes.items():
            out[name] = {
                "state": lane_state(lane, self.run.finished),
                "steps": [(s.label, s.state, s.kind) for s in lane.steps],
                "totals": lane.totals(),
            }
        return out
