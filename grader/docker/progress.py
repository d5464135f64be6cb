"""Read ``docker buildx build --progress=rawjson`` into one lane per platform.

buildx 0.13 writes rawjson to stderr as a sequence of *pretty-printed* JSON objects (each
opens with ``{`` and closes with ``}`` at column 0), one per status update from BuildKit::

    {"vertexes": [{"digest", "name", "inputs", "started", "completed", "cached", "error"}],
     "statuses": [{"id", "vertex", "name", "current", "total", "timestamp", ...}],
     "logs":     [{"vertex", "stream", "data" (base64), "timestamp"}],
     "warnings": [{"vertex", "level", "short" (base64), "detail", "url"}]}

A vertex is re-sent whole whenever it changes, so the latest copy wins. After the JSON, a
failing build prints plain text (the Dockerfile excerpt and ``ERROR: failed to solve: ...``);
those lines are kept as :attr:`BuildProgress.text`.

Vertex names say which platform a step belongs to (captured from this engine, see
``tests/fixtures/rawjson/``)::

    [internal] load build definition from Dockerfile        no platform: shared
    [linux/arm64 internal] load metadata for ...busybox      internal, for linux/arm64
    [linux/arm64 2/2] RUN uname -m                           runs as linux/arm64
    [linux/amd64 build 4/4] RUN go build ...                 stage "build", runs as amd64
    [linux/amd64->arm64 build 4/4] RUN GOARCH=arm64 go ...   runs as amd64, *for* arm64
    [2/2] RUN uname -m                                       single-platform build

The ``A->B`` form appears in a ``FROM --platform=$BUILDPLATFORM`` stage once a step depends on
the target (``ARG TARGETARCH``): it runs on the build platform A for target B. Steps of such a
stage that do not depend on the target are built once and shared; BuildKit names such a
vertex after whichever target asked first (a real capture has ``[linux/amd64->arm64 build 3/4]
COPY main.go .`` feeding the amd64 build too). :attr:`Step.shared_by` finds them from the
``inputs`` graph, and their lane is the platform they run on, not the one in the name.

The name only says what the Dockerfile asked for: an arm64 stage built FROM an amd64-only
base still says ``[linux/arm64 ...]`` while its RUN executes amd64 binaries natively.

Classification of a step (:attr:`Step.kind`):

- ``emulated``: a RUN whose executing platform differs from the build platform (QEMU runs it);
- ``cross``: a RUN in an ``A->B`` stage (runs natively on A, produces output for B);
- ``native``: a RUN on the build platform for the build platform, and every other
  Dockerfile instruction (FROM, COPY, WORKDIR, ...: BuildKit does those itself, no emulation);
- ``internal``: BuildKit's own work (load build definition/metadata/context, exporting,
  pushing, cache import/export).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import platform as _platform
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from grader.docker import boundedjson

SHARED_LANE = "shared"

QUEUED, RUNNING, DONE, CACHED, ERROR, CANCELLED = (
    "queued",
    "running",
    "done",
    "cached",
    "error",
    "cancelled",
)
STATES = (QUEUED, RUNNING, DONE, CACHED, ERROR, CANCELLED)
FINISHED_STATES = frozenset({DONE, CACHED, ERROR, CANCELLED})

EMULATED, CROSS, NATIVE, INTERNAL = "emulated", "cross", "native", "internal"
KINDS = (EMULATED, CROSS, NATIVE, INTERNAL)

#: Operating systems that can follow ``->`` in a name (otherwise it is an arch[/variant]).
_KNOWN_OS = frozenset({"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "wasip1"})
_PLATFORM_TOKEN = re.compile(
    r"^(?P<os>[a-z][a-z0-9]*)/(?P<arch>[a-z0-9_]+)(?:/(?P<variant>v?[a-z0-9]+))?"
    r"(?:->(?P<target>[a-z0-9_/]+))?$"
)
_INDEX_TOKEN = re.compile(r"^(\d+)/(\d+)$")
#: Caps for untrusted streams: lines kept per step's log, and lines of one JSON object.
MAX_LOG_LINES_PER_STEP = 2000
MAX_OBJECT_LINES = 200_000


# --- names ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VertexName:
    """What a vertex name says: ``[linux/amd64->arm64 build 4/4] RUN go build``."""

    platform: str | None  # where the step runs, as written (linux/amd64)
    target: str | None  # the ``->`` target, made a full platform (linux/arm64)
    stage: str | None
    index: int | None
    total: int | None
    internal: bool
    text: str  # after the bracket: ``RUN go build``

    @property
    def instruction(self) -> str | None:
        """FROM / RUN / COPY ...: only for Dockerfile steps (those numbered N/M)."""
        if self.index is None:
            return None
        word = self.text.split(None, 1)[0] if self.text.strip() else ""
        return word.upper() or None


def _full_target(base: str, target: str) -> str:
    """``->arm64`` in a ``linux/amd64`` name means linux/arm64; ``->windows/amd64`` is whole."""
    first = target.split("/", 1)[0]
    if first in _KNOWN_OS:
        return target
    return f"{base.split('/', 1)[0]}/{target}"


def parse_vertex_name(name: str) -> VertexName:
    """Split a vertex name into platform, ``->`` target, stage, step index and text."""
    if not name.startswith("["):
        return VertexName(None, None, None, None, None, True, name)
    close = name.find("]")
    if close < 0:
        return VertexName(None, None, None, None, None, True, name)
    inside = name[1:close].split()
    text = name[close + 1 :].strip()
    plat = target = stage = None
    index = total = None
    internal = False
    for token in inside:
        m = _PLATFORM_TOKEN.match(token)
        if m and plat is None and index is None:
            plat = token.split("->", 1)[0]
            if m["target"]:
                target = _full_target(plat, m["target"])
            continue
        n = _INDEX_TOKEN.match(token)
        if n:
            index, total = int(n[1]), int(n[2])
            continue
        if token == "internal":
            internal = True
            continue
        if stage is None:
            stage = token
    if index is None:
        # [auth] ..., [internal] ...: anything not a numbered Dockerfile step is BuildKit's own.
        internal = True
    return VertexName(plat, target, stage, index, total, internal, text)


def host_platform() -> str:
    """The platform of this machine, normalised (``linux/amd64``, ``linux/arm64``)."""
    from grader.docker.registry import normalize

    system = _platform.system().lower() or "linux"
    # Docker Desktop builds in a Linux VM of the host's architecture.
    os_ = "linux" if system in ("darwin", "windows") else system
    return str(normalize(os_, _platform.machine() or "amd64"))


def _arch_key(plat: str | None) -> tuple[str, ...]:
    """What must match for a step to run without emulation: os and arch (and arm variant)."""
    if not plat:
        return ()
    parts = plat.split("/")
    if len(parts) >= 3 and parts[1] == "arm":
        return (parts[0], parts[1], parts[2])
    return tuple(parts[:2])


# --- timestamps -------------------------------------------------------------------------

_SECOND_CACHE: dict[str, int] = {}


def parse_timestamp(text: str | None) -> float | None:
    """RFC 3339 with nanoseconds (``2026-11-25T05:34:45.216Z``) -> seconds since the epoch."""
    if not text or len(text) < 19:
        return None
    head = text[:19]
    whole = _SECOND_CACHE.get(head)
    if whole is None:
        try:
            whole = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            return None
        if len(_SECOND_CACHE) > 4096:
            _SECOND_CACHE.clear()
        _SECOND_CACHE[head] = whole
    rest = text[19:]
    frac = 0.0
    if rest.startswith("."):
        end = 1
        while end < len(rest) and rest[end].isdigit():
            end += 1
        digits = rest[1:end]
        if digits:
            frac = int(digits[:9]) / 10 ** len(digits[:9])
        rest = rest[end:]
    offset = 0
    if rest and rest[0] in "+-" and len(rest) >= 6:
        try:
            offset = int(rest[1:3]) * 3600 + int(rest[4:6]) * 60
        except ValueError:
            offset = 0
        if rest[0] == "+":
            offset = -offset
    return whole + frac + offset


# --- steps and lanes --------------------------------------------------------------------


@dataclass(eq=False)
class Step:
    """One vertex of the build graph, in the lane of the platform it is for."""

    digest: str
    name: str
    parsed: VertexName
    base_lane: str  # what the name says (the ``->`` target, else its platform)
    order: int
    progress: BuildProgress = field(repr=False)
    inputs: tuple[str, ...] = ()
    started: float | None = None
    completed: float | None = None
    cached: bool = False
    error: str | None = None
    log: list[str] = field(default_factory=list, repr=False)
    status_text: str = ""
    warnings: list[str] = field(default_factory=list)
    version: int = 0
    cancelled_at_end: bool = False

    @property
    def lane(self) -> str:
        """A step several platforms share runs once, on the build platform: its lane is
        that platform, whatever target BuildKit happened to name it after."""
        if self.shared_by and self.parsed.platform:
            return self.parsed.platform
        return self.base_lane

    @property
    def shared_by(self) -> frozenset[str]:
        """The platform lanes this step serves, when it serves more than one."""
        return self.progress._shared(self.digest)

    @property
    def state(self) -> str:
        if self.error:
            return CANCELLED if "context canceled" in self.error else ERROR
        if self.cancelled_at_end:
            return CANCELLED
        if self.cached:
            return CACHED
        if self.completed is not None:
            return DONE
        if self.started is not None:
            return RUNNING
        return QUEUED

    @property
    def timed(self) -> bool:
        """Has a start time that belongs to this build (a cached vertex may carry an old one)."""
        return self.started is not None and not self.cached

    @property
    def duration(self) -> float | None:
        """Seconds from start to completion (to now while running); None before it starts."""
        if self.started is None:
            return None
        if self.cached:
            return 0.0
        end = self.completed
        if end is None:
            end = self.progress.now()
        return max(0.0, end - self.started)

    @property
    def runs_on(self) -> str | None:
        """The platform whose binaries execute in this step (the part before ``->``)."""
        if self.parsed.platform:
            return self.parsed.platform
        if self.base_lane != SHARED_LANE:
            return self.base_lane
        return None

    @property
    def target(self) -> str | None:
        """The platform this step produces output for (None when shared)."""
        if self.shared_by:
            return None
        return self.parsed.target or self.runs_on

    @property
    def instruction(self) -> str | None:
        return self.parsed.instruction

    @property
    def kind(self) -> str:
        if self.parsed.internal or self.parsed.index is None:
            return INTERNAL
        if self.instruction != "RUN":
            return NATIVE
        build = _arch_key(self.progress.build_platform)
        if self.runs_on and _arch_key(self.runs_on) != build:
            return EMULATED
        if self.target and _arch_key(self.target) != build:
            return CROSS
        return NATIVE

    @property
    def label(self) -> str:
        """``build 4/4 RUN go build ...``: the name without the platform prefix."""
        p = self.parsed
        head = " ".join(
            x for x in (p.stage, f"{p.index}/{p.total}" if p.index is not None else None) if x
        )
        return f"{head} {p.text}".strip() if head else p.text

    def to_dict(self) -> dict:
        return {
            "digest": self.digest,
            "name": self.name,
            "lane": self.lane,
            "label": self.label,
            "state": self.state,
            "kind": self.kind,
            "instruction": self.instruction,
            "runs_on": self.runs_on,
            "target": self.target,
            "shared_by": sorted(self.shared_by),
            "started": self.started,
            "completed": self.completed,
            "duration": self.duration,
            "cached": self.cached,
            "error": self.error,
        }


@dataclass(eq=False)
class Lane:
    """The steps for one platform (or :data:`SHARED_LANE` for platform-less BuildKit work)."""

    platform: str
    steps: list[Step] = field(default_factory=list)

    @property
    def revision(self) -> tuple:
        """Changes whenever anything shown about this lane changes (for throttled views)."""
        return (
            tuple(s.digest for s in self.steps),
            sum(s.version for s in self.steps),
            self.state,
        )

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for s in self.steps:
            out[s.state] += 1
        return out

    @property
    def state(self) -> str:
        """error > running > queued > done: what a lane's badge shows."""
        states = {s.state for s in self.steps}
        if not states:
            return QUEUED
        if ERROR in states:
            return ERROR
        if RUNNING in states:
            return RUNNING
        if states <= FINISHED_STATES:
            return CANCELLED if states == {CANCELLED} else DONE
        return RUNNING if states & FINISHED_STATES else QUEUED

    def seconds_by_kind(self) -> dict[str, float]:
        """Busy seconds per kind (cached steps count 0)."""
        out = dict.fromkeys(KINDS, 0.0)
        for s in self.steps:
            if s.timed:
                out[s.kind] += s.duration or 0.0
        return out

    @property
    def busy(self) -> float:
        """Sum of this lane's step durations (steps running in parallel add up)."""
        return sum(self.seconds_by_kind().values())

    @property
    def span(self) -> tuple[float, float] | None:
        """(first start, last end) of this lane's timed steps, or None before any starts."""
        timed = [s for s in self.steps if s.timed]
        if not timed:
            return None
        return (
            min(s.started for s in timed),  # type: ignore[type-var]
            max(s.started + (s.duration or 0.0) for s in timed),  # type: ignore[operator]
        )

    @property
    def wall(self) -> float:
        span = self.span
        return 0.0 if span is None else span[1] - span[0]

    def totals(self) -> dict[str, float]:
        return {"busy": self.busy, "wall": self.wall, **self.seconds_by_kind()}


class BuildProgress:
    """Incremental rawjson parser: feed lines (``feed_line``) or objects (``feed_event``).

    ``platforms`` are the requested ones (lanes exist for them before any event arrives; a
    single-platform build's unprefixed names go to its only lane). ``build_platform`` is the
    node's own platform; unknown, it is read from ``A->B`` names, else this machine's.
    """

    def __init__(
        self,
        platforms: Iterable[str] = (),
        build_platform: str | None = None,
        *,
        clock=time.time,
    ) -> None:
        self.requested = list(dict.fromkeys(p for p in platforms if p))
        self._build_platform = build_platform
        self._inferred_build: str | None = None
        self.clock = clock
        self.steps: dict[str, Step] = {}
        self._lanes: dict[str, Lane] = {p: Lane(p) for p in self.requested}
        self._dirty = False
        self._shared_map: dict[str, frozenset[str]] = {}
        self.text: list[str] = []
        self.warnings: list[str] = []
        self.events = 0
        self.version = 0
        self.finished_at: float | None = None
        #: The newest timestamp seen in the stream (a replayed capture ends there).
        self.latest: float | None = None
        self._buffer: list[str] = []
        self._new_log: list[str] = []

    # platforms
    @property
    def build_platform(self) -> str:
        return self._build_platform or self._inferred_build or host_platform()

    def now(self) -> float:
        return self.finished_at if self.finished_at is not None else self.clock()

    def _base_lane(self, parsed: VertexName) -> str:
        if parsed.target:
            return parsed.target
        if parsed.platform:
            return parsed.platform
        if len(self.requested) == 1 and (
            not parsed.internal or parsed.text.startswith("load metadata")
        ):
            return self.requested[0]
        return SHARED_LANE

    @property
    def lanes(self) -> dict[str, Lane]:
        """Platform -> lane: requested platforms first, :data:`SHARED_LANE` last."""
        if self._dirty:
            self._regroup()
        return self._lanes

    @property
    def platform_lanes(self) -> list[Lane]:
        return [lane for name, lane in self.lanes.items() if name != SHARED_LANE]

    # input
    def feed_line(self, line: str) -> None:
        """One line of buildx's stderr: part of a JSON object, or plain text."""
        if line and line[-1] in "\r\n":
            line = line.rstrip("\r\n")
        buffer = self._buffer
        if buffer:
            # The hot path: a line inside a pretty-printed object.
            buffer.append(line)
            if line == "}":
                self._flush_object()
            elif len(buffer) > MAX_OBJECT_LINES:
                self._give_up_object()
            return
        if line.startswith("{"):
            stripped = line.rstrip()
            if stripped == "{":
                self._buffer = [line]
                return
            if stripped.endswith("}"):
                try:
                    obj = boundedjson.loads(stripped)
                except ValueError:
                    obj = None
                if isinstance(obj, dict):
                    self.feed_event(obj)
                    return
        self._add_text(line)

    def feed_lines(self, lines: Iterable[str]) -> BuildProgress:
        for line in lines:
            self.feed_line(line)
        return self

    def _flush_object(self) -> None:
        lines, self._buffer = self._buffer, []
        try:
            obj = boundedjson.loads("\n".join(lines))
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            self.feed_event(obj)
        else:
            for line in lines:
                self._add_text(line)

    def _give_up_object(self) -> None:
        lines, self._buffer = self._buffer, []
        self._add_text(f"(dropped {len(lines)} lines of an unterminated JSON object)")

    def _add_text(self, line: str) -> None:
        if not line.strip():
            return
        self.text.append(line)
        del self.text[:-500]
        self._new_log.append(line)
        self.version += 1

    def feed_event(self, obj: dict) -> None:
        """One decoded status update."""
        self.events += 1
        for v in obj.get("vertexes") or ():
            if isinstance(v, dict):
                self._vertex(v)
        for s in obj.get("statuses") or ():
            if isinstance(s, dict):
                self._status(s)
        for entry in obj.get("logs") or ():
            if isinstance(entry, dict):
                self._log(entry)
        for w in obj.get("warnings") or ():
            if isinstance(w, dict):
                self._warning(w)

    def _vertex(self, v: dict) -> None:
        digest = v.get("digest")
        if not isinstance(digest, str):
            return
        step = self.steps.get(digest)
        if step is None:
            name = str(v.get("name") or digest)
            parsed = parse_vertex_name(name)
            if parsed.target and parsed.platform and self._inferred_build is None:
                self._inferred_build = parsed.platform
            step = Step(digest, name, parsed, self._base_lane(parsed), len(self.steps), self)
            self.steps[digest] = step
            self._dirty = True
        inputs = v.get("inputs")
        if isinstance(inputs, list) and tuple(inputs) != step.inputs:
            step.inputs = tuple(i for i in inputs if isinstance(i, str))
            self._dirty = True
        # Each update carries the vertex's whole current state: a restart drops "completed".
        step.started = parse_timestamp(v.get("started"))
        step.completed = parse_timestamp(v.get("completed"))
        step.cached = bool(v.get("cached"))
        if not step.cached:
            for t in (step.started, step.completed):
                if t is not None and (self.latest is None or t > self.latest):
                    self.latest = t
        err = v.get("error")
        step.error = str(err) if err else None
        self._touch(step)

    def _status(self, s: dict) -> None:
        step = self.steps.get(s.get("vertex"))  # type: ignore[arg-type]
        if step is None:
            return
        what = str(s.get("name") or s.get("id") or "")
        current, total = s.get("current"), s.get("total")
        if isinstance(current, int) and isinstance(total, int) and total > 0:
            what += f" {_size(current)}/{_size(total)}"
        elif isinstance(current, int) and current > 0:
            what += f" {_size(current)}"
        if s.get("completed"):
            what += " done"
        step.status_text = what.strip()
        self._touch(step)

    def _log(self, entry: dict) -> None:
        step = self.steps.get(entry.get("vertex"))  # type: ignore[arg-type]
        try:
            text = base64.b64decode(entry.get("data") or "", validate=False).decode(
                "utf-8", errors="replace"
            )
        except (binascii.Error, ValueError):
            return
        lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln != ""]
        if not lines:
            return
        prefix = ""
        if step is not None:
            prefix = f"[{step.base_lane} {step.label[:40]}] "
            step.log.extend(lines)
            del step.log[:-MAX_LOG_LINES_PER_STEP]
            self._touch(step)
        self._new_log.extend(prefix + ln for ln in lines)
        self.version += 1

    def _warning(self, w: dict) -> None:
        try:
            short = base64.b64decode(w.get("short") or "").decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            short = str(w.get("short"))
        self.warnings.append(short)
        step = self.steps.get(w.get("vertex"))  # type: ignore[arg-type]
        if step is not None:
            step.warnings.append(short)
            self._touch(step)
        self._new_log.append(f"WARNING: {short}")
        self.version += 1

    def _touch(self, step: Step) -> None:
        step.version += 1
        self.version += 1

    def finish(self, ok: bool, at: float | None = None) -> None:
        """The command ended (``at``, default now): a failed build leaves running steps
        cancelled."""
        if self._buffer:
            self._flush_object()
        self.finished_at = at if at is not None else self.clock()
        for step in self.steps.values():
            if not ok and step.state == RUNNING:
                step.cancelled_at_end = True
            self._touch(step)
        self.version += 1

    def drain_log(self) -> list[str]:
        """Log and text lines that arrived since the last call (for a throttled view)."""
        out, self._new_log = self._new_log, []
        return out

    # the graph
    def _shared(self, digest: str) -> frozenset[str]:
        if self._dirty:
            self._regroup()
        return self._shared_map.get(digest, frozenset())

    def _regroup(self) -> None:
        """Find steps that feed several platforms (from ``inputs``) and put steps in lanes."""
        self._dirty = False
        children: dict[str, list[str]] = {}
        for step in self.steps.values():
            for parent in step.inputs:
                children.setdefault(parent, []).append(step.digest)
        serves: dict[str, frozenset[str]] = {}

        def lanes_served(digest: str) -> frozenset[str]:
            # Iterative post-order: build graphs can be deep, recursion is not safe.
            visiting: set[str] = set()
            stack = [(digest, False)]
            while stack:
                d, expanded = stack.pop()
                if d in serves:
                    continue
                if not expanded:
                    if d in visiting:  # a cycle: only garbage input has one
                        continue
                    visiting.add(d)
                    stack.append((d, True))
                    stack.extend((k, False) for k in children.get(d, ()) if k not in serves)
                    continue
                acc: set[str] = set()
                own = self.steps.get(d)
                if own is not None and own.base_lane != SHARED_LANE:
                    acc.add(own.base_lane)
                for k in children.get(d, ()):
                    acc |= serves.get(k, frozenset())
                serves[d] = frozenset(acc)
            return serves.get(digest, frozenset())

        shared: dict[str, frozenset[str]] = {}
        for digest, step in self.steps.items():
            below: set[str] = set()
            for k in children.get(digest, ()):
                below |= lanes_served(k)
            if step.base_lane != SHARED_LANE:
                below.add(step.base_lane)
            if len(below) > 1:
                shared[digest] = frozenset(below)
        self._shared_map = shared
        grouped: dict[str, list[Step]] = {name: [] for name in self.requested}
        for step in self.steps.values():
            grouped.setdefault(step.lane, []).append(step)
        order = [*self.requested]
        order += sorted(n for n in grouped if n not in order and n != SHARED_LANE)
        if SHARED_LANE in grouped:
            order.append(SHARED_LANE)
        lanes: dict[str, Lane] = {}
        for name in order:
            lane = self._lanes.get(name) or Lane(name)
            lane.steps = grouped.get(name, [])
            lanes[name] = lane
        self._lanes = lanes

    @property
    def started_at(self) -> float | None:
        """When this build's first (non-cached) step started."""
        starts = [s.started for s in self.steps.values() if s.timed]
        return min(starts) if starts else None  # type: ignore[type-var]

    def errors(self) -> list[Step]:
        return [s for s in self.steps.values() if s.state == ERROR]

    def summary(self) -> dict:
        """Per-lane totals and step states, JSON-ready (tests, reports)."""
        return {
            "build_platform": self.build_platform,
            "events": self.events,
            "lanes": {
                name: {
                    "state": lane.state,
                    "counts": lane.counts,
                    "totals": lane.totals(),
                    "steps": [s.to_dict() for s in lane.steps],
                }
                for name, lane in self.lanes.items()
            },
        }


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return str(n)


def parse(
    source: str | Iterable[str], platforms: Iterable[str] = (), build_platform: str | None = None
) -> BuildProgress:
    """A whole captured stream (text or lines) -> a finished :class:`BuildProgress`."""
    lines: Iterable[str] = source.splitlines() if isinstance(source, str) else source
    progress = BuildProgress(platforms, build_platform)
    progress.feed_lines(lines)
    ok = not any(line.startswith("ERROR:") for line in progress.text)
    progress.finish(ok, at=progress.latest)
    return progress
