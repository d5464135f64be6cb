"""Lab 08's GitHub Actions workflow checker: read a workflow that builds a multi-platform
image with docker/build-push-action, statically, and grade it (criteria ``ga-*`` in
``grader.grading.criteria.WORKFLOW_CRITERIA``, rules GA5xx in ``grader.grading.rules.workflow``).

    report = check_workflow(Path(".github/workflows/build.yml"))
    report = check_workflow(text, platforms=("linux/amd64", "linux/arm64"))

The YAML is read with PyYAML's safe loader into mappings that remember their line numbers, so
every finding points at a line. Bad input (not UTF-8, not YAML, too large, alias bombs, a list
where a mapping belongs) becomes a GA501/GA502 finding, never an exception.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from grader.docker.registry import Platform
from grader.grading.criteria import WORKFLOW_CRITERIA
from grader.grading.report import CriterionResult, Finding, Report
from grader.grading.rules import workflow as rules
from grader.grading.rules.catalogue import Rule

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")
#: Real workflows are a few KB; past this the checker refuses to read one.
MAX_WORKFLOW_BYTES = 256 * 1024
#: YAML nodes converted at most (aliases can make a small file expand enormously).
MAX_NODES = 50_000
#: Matrix combinations expanded at most (GitHub itself allows 256 jobs per matrix).
MAX_COMBOS = 256

#: docker/build-push-action's inputs (action.yml of v6).
BUILD_PUSH_INPUTS = frozenset(
    {
        "add-hosts",
        "allow",
        "annotations",
        "attests",
        "build-args",
        "build-contexts",
        "builder",
        "cache-from",
        "cache-to",
        "call",
        "cgroup-parent",
        "context",
        "file",
        "labels",
        "load",
        "network",
        "no-cache",
        "no-cache-filters",
        "outputs",
        "platforms",
        "provenance",
        "pull",
        "push",
        "sbom",
        "secrets",
        "secret-envs",
        "secret-files",
        "shm-size",
        "ssh",
        "tags",
        "target",
        "ulimit",
        "github-token",
    }
)

_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)
_MATRIX = re.compile(r"\$\{\{\s*matrix\.([A-Za-z0-9_-]+)\s*\}\}")
_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}


class WorkflowUnreadable(Exception):
    """The text is not a workflow at all (GA501); the message says why."""


# --- YAML with line numbers ----------------------------------------------------------------


class Mapping(dict):
    """A YAML mapping: ``line`` is where it starts, ``key_lines[key]`` where each key is."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class Sequence(list):
    line: int = 0
    item_lines: list


def _convert(node: yaml.Node, loader: yaml.SafeLoader, budget: list[int], depth: int = 0):
    budget[0] -= 1
    if budget[0] < 0 or depth > 100:
        raise WorkflowUnreadable(f"it nests or repeats more than {MAX_NODES} YAML nodes")
    if isinstance(node, yaml.MappingNode):
        out = Mapping()
        out.line, out.key_lines = node.start_mark.line + 1, {}
        for key_node, value_node in node.value:
            # Keys stay text: YAML 1.1 would turn a bare `on` into True.
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            out[key] = _convert(value_node, loader, budget, depth + 1)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = Sequence()
        seq.line = node.start_mark.line + 1
        seq.item_lines = []
        for item in node.value:
            seq.append(_convert(item, loader, budget, depth + 1))
            seq.item_lines.append(item.start_mark.line + 1)
        return seq
    return loader.construct_object(node, deep=True)


def load_workflow(text: str) -> Mapping:
    """Parse ``text`` into line-aware mappings; raises :class:`WorkflowUnreadable`."""
    if len(text.encode("utf-8", "replace")) > MAX_WORKFLOW_BYTES:
        raise WorkflowUnreadable(f"it is larger than {MAX_WORKFLOW_BYTES // 1024} KB")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise WorkflowUnreadable("it is empty")
        data = _convert(node, loader, [MAX_NODES])
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise WorkflowUnreadable(f"{problem}{where}") from None
    except RecursionError:
        raise WorkflowUnreadable("it nests too deeply") from None
    finally:
        loader.dispose()
    if not isinstance(data, Mapping):
        kind = "list" if isinstance(data, list) else f"single value ({type(data).__name__})"
        raise WorkflowUnreadable(f"its top level is a {kind}, not a mapping of keys")
    return data


# --- the model -------------------------------------------------------------------------------


@dataclass
class Step:
    index: int  # 1-based, as a reader counts them
    line: int
    uses: str | None
    action: str | None  # "docker/build-push-action", lower case, without @ref
    ref: str | None
    with_: Mapping
    run: str | None


@dataclass
class Job:
    name: str
    line: int
    data: Mapping
    steps: list[Step] = field(default_factory=list)
    combos: list[dict[str, str]] = field(default_factory=lambda: [{}])
    matrix_unresolved: bool = False

    def first(self, action: str) -> Step | None:
        return next((s for s in self.steps if s.action == action), None)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_uses(uses: str) -> tuple[str | None, str | None]:
    """``docker/build-push-action@v6`` -> (``docker/build-push-action``, ``v6``)."""
    if uses.startswith(("./", "docker://")):
        return None, None
    name, _, ref = uses.partition("@")
    parts = name.strip().lower().split("/")
    action = "/".join(parts[:2]) if len(parts) >= 2 else name.strip().lower()
    return action, (ref.strip() or None) if "@" in uses else None


def _expand_matrix(strategy) -> tuple[list[dict[str, str]], bool]:
    """GitHub's matrix expansion (lists multiplied, include merged or appended, exclude
    removed), capped; (combos, unresolved) where unresolved means an expression."""
    if not isinstance(strategy, dict) or "matrix" not in strategy:
        return [{}], False
    matrix = strategy["matrix"]
    if not isinstance(matrix, dict):
        return [{}], True
    axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    if any(not isinstance(v, list) for v in axes.values()):
        return [{}], True
    size = 1
    for values in axes.values():
        size *= max(1, len(values))
    if size > MAX_COMBOS:
        return [{}], True
    combos = [
        {k: _text(v) for k, v in zip(axes, values, strict=True)}
        for values in itertools.product(*axes.values())
    ] or [{}]
    for entry in matrix.get("exclude") or []:
        if isinstance(entry, dict):
            combos = [c for c in combos if not all(c.get(k) == _text(v) for k, v in entry.items())]
    for entry in matrix.get("include") or []:
        if not isinstance(entry, dict):
            continue
        extra = {k: _text(v) for k, v in entry.items()}
        matched = False
        for c in combos:
            if axes and all(c.get(k) == v for k, v in extra.items() if k in axes):
                c.update({k: v for k, v in extra.items() if k not in axes})
                matched = True
        if not matched:
            combos.append(extra)
    combos = [c for c in combos if c] or [{}]
    return combos[:MAX_COMBOS], False


def _substitute(text: str, combo: dict[str, str]) -> str:
    return _MATRIX.sub(lambda m: combo.get(m.group(1), m.group(0)), text)


def _items(value: str, commas: bool = True) -> list[str]:
    """An action input's list, blanks dropped: newline-separated, and also comma-separated
    unless the action reads the input with ``ignoreComma`` (cache-from/to, build-args)."""
    return [p.strip() for p in re.split(r"[,\n]" if commas else r"\n", value) if p.strip()]


def _runner_arch(runs_on, combo: dict[str, str]) -> str:
    if isinstance(runs_on, dict):
        runs_on = runs_on.get("labels", runs_on.get("group", ""))
    labels = runs_on if isinstance(runs_on, list) else [runs_on]
    text = " ".join(_substitute(_text(label), combo) for label in labels).lower()
    return "arm64" if "arm" in text else "amd64"


def _registry_of(tag: str) -> str | None:
    """The registry host a tag pushes to, or None when an expression hides it."""
    tag = tag.strip()
    if not tag or tag.startswith("${{"):
        return None
    first = tag.split("/", 1)[0]
    if "/" in tag and ("." in first or ":" in first or first == "localhost"):
        host = first.lower()
    else:
        host = "docker.io"
    return "docker.io" if host in _HUB else host


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    return name in ("localhost", "[::1]") or name.startswith("127.")


def _grants_packages_write(permissions) -> bool:
    if isinstance(permissions, str):
        return permissions.strip() == "write-all"
    return isinstance(permissions, dict) and _text(permissions.get("packages")) == "write"


def _triggers(on) -> set[str]:
    if isinstance(on, str):
        return {on}
    if isinstance(on, list):
        return {_text(t) for t in on}
    if isinstance(on, dict):
        return set(on)
    return set()


# --- the checks ------------------------------------------------------------------------------


class _Findings:
    def __init__(self, file: str) -> None:
        self.file = file
        self.by_criterion: dict[str, list[Finding]] = {c.id: [] for c in WORKFLOW_CRITERIA}

    def add(self, rule: Rule, line: int | None, /, **fmt) -> None:
        finding = rule.finding(file=self.file, line=line, **fmt)
        if finding not in self.by_criterion[rule.criterion]:
            self.by_criterion[rule.criterion].append(finding)


def _jobs(wf: Mapping, out: _Findings) -> list[Job]:
    if "on" not in wf:
        out.add(rules.SHAPE, wf.line, what="trigger (`on:`, e.g. `on: push`)")
    jobs = wf.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        out.add(rules.SHAPE, wf.line_of("jobs"), what="`jobs:` mapping with at least one job")
        return []
    result = []
    for name, data in jobs.items():
        line = jobs.line_of(name) if isinstance(jobs, Mapping) else None
        if not isinstance(data, dict):
            out.add(rules.SHAPE, line, what=f"valid job `{name}` (it is not a mapping)")
            continue
        if "uses" in data:  # a reusable workflow: no runner, no steps of its own
            _check_pin(_text(data["uses"]), data.line_of("uses"), out)
            continue
        if "runs-on" not in data:
            out.add(rules.SHAPE, line, what=f"`runs-on:` in job `{name}`")
        job = Job(str(name), line or 0, data)
        job.combos, job.matrix_unresolved = _expand_matrix(data.get("strategy"))
        steps = data.get("steps")
        if not isinstance(steps, list) or not steps:
            out.add(rules.SHAPE, line, what=f"list of `steps:` in job `{name}`")
            steps = []
        for i, raw in enumerate(steps, start=1):
            item_line = steps.item_lines[i - 1] if isinstance(steps, Sequence) else line
            if not isinstance(raw, dict):
                out.add(rules.SHAPE, item_line, what=f"valid step {i} in job `{name}`")
                continue
            uses = _text(raw["uses"]) if "uses" in raw else None
            action, ref = _parse_uses(uses) if uses else (None, None)
            if uses:
                _check_pin(uses, raw.line_of("uses"), out)
            with_ = raw.get("with")
            if with_ is not None and not isinstance(with_, dict):
                out.add(rules.SHAPE, raw.line_of("with"), what=f"mapping under `with:` (step {i})")
                with_ = None
            job.steps.append(
                Step(i, item_line or 0, uses, action, ref, with_ or Mapping(), raw.get("run"))
            )
        result.append(job)
    return result


def _check_pin(uses: str, line: int | None, out: _Findings) -> None:
    if uses.startswith(("./", "docker://")):
        return
    if "@" not in uses:
        out.add(rules.UNPINNED, line, uses=uses)
    elif uses.rsplit("@", 1)[1].strip().lower() in ("master", "main", "head"):
        out.add(rules.MOVING_REF, line, uses=uses)


def _check_build(job: Job, step: Step, wf: Mapping, wanted: tuple[str, ...], out) -> None:
    w = step.with_
    where = {"step": step.index, "job": job.name}

    def line(key: str) -> int:
        return w.line_of(key) if isinstance(w, Mapping) and key in w else step.line

    _check_inputs(w, out, line, where)
    _check_platforms(job, step, wanted, out, line, where)
    _check_setup(job, step, "docker/setup-buildx-action", out)
    _check_push(job, step, wf, out, line, where)
    _check_cache(step, out, line, where)
    _check_attestations(step, out, line, where)


def _check_inputs(w: Mapping, out: _Findings, line, where) -> None:
    """Inputs build-push-action does not have (it ignores them), and list-shaped values."""
    for key in w:
        if key not in BUILD_PUSH_INPUTS:
            close = difflib.get_close_matches(key, sorted(BUILD_PUSH_INPUTS), n=1, cutoff=0.7)
            suggestion = f"; did you mean `{close[0]}`?" if close else ""
            out.add(rules.UNKNOWN_INPUT, line(key), key=key, suggestion=suggestion, **where)
    for key in ("platforms", "tags", "cache-from", "cache-to", "build-args", "push"):
        if isinstance(w.get(key), (list, dict)):
            out.add(
                rules.SHAPE,
                line(key),
                what=f"text value for `{key}` (a YAML list or "
                "mapping is not allowed under `with:`; write one item per line after `|`)",
            )


def _check_platforms(job: Job, step: Step, wanted: tuple[str, ...], out, line, where) -> None:
    """``platforms`` per matrix combination: spelled twice, unresolved, foreign to the runner
    without QEMU, and the wanted ones missing from every combination."""
    w = step.with_
    raw = _text(w.get("platforms")) if not isinstance(w.get("platforms"), (list, dict)) else ""
    targets: set[str] = set()
    for combo in job.combos:
        seen = _combo_platforms(_substitute(raw, combo), raw, out, line, where)
        targets |= set(seen)
        runner = _runner_arch(job.data.get("runs-on"), combo)
        foreign = sorted(p for p in seen if Platform.parse(p).architecture != runner)
        if foreign and job.first("docker/setup-qemu-action") is None:
            out.add(
                rules.NO_QEMU, step.line, job=job.name, platforms=", ".join(foreign), runner=runner
            )
        elif foreign:
            _check_setup(job, step, "docker/setup-qemu-action", out)
    missing = [p for p in wanted if p not in targets]
    if missing and not (raw and "${{" in raw and not targets):
        got = ", ".join(sorted(targets)) or "only the runner's own platform"
        out.add(
            rules.PLATFORMS_MISSING, line("platforms"), got=got, missing=", ".join(missing), **where
        )


def _combo_platforms(value: str, raw: str, out, line, where) -> dict[str, str]:
    """The platforms one combination builds (normalised -> as written)."""
    seen: dict[str, str] = {}
    unresolved = False
    for item in _items(value):
        try:
            platform = str(Platform.parse(item)) if "${{" not in item else None
        except ValueError:
            platform = None
        if platform is None:
            unresolved = True
            continue
        if platform in seen:
            out.add(
                rules.PLATFORM_TWICE,
                line("platforms"),
                platform=platform,
                spellings=f"{seen[platform]}, {item}",
                **where,
            )
        seen.setdefault(platform, item)
    if unresolved:
        out.add(rules.PLATFORMS_UNRESOLVED, line("platforms"), value=raw.strip(), **where)
    return seen


def _check_setup(job: Job, step: Step, action: str, out) -> None:
    """A setup action the build needs comes before it (buildx: NO_BUILDX when absent)."""
    setup = job.first(action)
    if setup is None:
        if action == "docker/setup-buildx-action":
            out.add(rules.NO_BUILDX, step.line, job=job.name)
    elif setup.index > step.index:
        out.add(
            rules.SETUP_AFTER_BUILD,
            setup.line,
            job=job.name,
            action=action,
            setup_step=setup.index,
            build_step=step.index,
        )


def _check_attestations(step: Step, out, line, where) -> None:
    w = step.with_
    if "provenance" not in w and "type=provenance" not in _text(w.get("attests")):
        out.add(rules.PROVENANCE_IMPLICIT, step.line, **where)
    for arg in _items(_text(w.get("build-args")), commas=False):
        if re.search(r"\$\{\{[^}]*\bsecrets\.", arg):
            out.add(rules.SECRET_BUILD_ARG, line("build-args"), arg=arg.split("=", 1)[0], **where)


def _check_push(job: Job, step: Step, wf: Mapping, out: _Findings, line, where) -> None:
    w = step.with_
    push_value = w.get("push")
    outputs = _text(w.get("outputs"))
    pushes_by_output = "type=registry" in outputs or "push=true" in outputs
    always = push_value is True or _text(push_value).strip().lower() == "true"
    sometimes = "${{" in _text(push_value)
    if not (always or sometimes or pushes_by_output):
        out.add(rules.NOT_PUSHED, line("push") if "push" in w else step.line, **where)
        return
    tags = _items(_text(w.get("tags")))
    if not tags and "name=" not in outputs:
        out.add(rules.NO_TAGS, step.line, **where)
    hosts = {_registry_of(t) for t in tags}
    if None in hosts:  # tags from an expression: the metadata-action step's images name them
        hosts.discard(None)
        meta = job.first("docker/metadata-action")
        if meta is not None:
            hosts |= {_registry_of(i) for i in _items(_text(meta.with_.get("images")))} - {None}
    logins = {}
    for s in job.steps:
        if s.action == "docker/login-action" and s.index < step.index:
            registry = _text(s.with_.get("registry")).strip().lower() or "docker.io"
            logins["docker.io" if registry in _HUB else registry] = s
    for host in sorted(h for h in hosts if h and not _loopback(h)):
        if host not in logins and not any("${{" in r for r in logins):
            out.add(rules.NO_LOGIN, step.line, registry=host, **where)
    ghcr_login = logins.get("ghcr.io")
    if "ghcr.io" in hosts and ghcr_login is not None:
        password = _text(ghcr_login.with_.get("password"))
        if re.search(r"secrets\.GITHUB_TOKEN|github\.token", password) and not (
            _grants_packages_write(job.data.get("permissions"))
            or ("permissions" not in job.data and _grants_packages_write(wf.get("permissions")))
        ):
            out.add(rules.GHCR_PERMISSION, job.line, job=job.name)
    on = wf.get("on")
    if always and _triggers(on) & {"pull_request", "pull_request_target"}:
        out.add(rules.PUSH_ON_PR, line("push"), step=step.index)


def _check_cache(step: Step, out: _Findings, line, where) -> None:
    w = step.with_
    has_from = bool(_items(_text(w.get("cache-from")), commas=False))
    cache_to = _items(_text(w.get("cache-to")), commas=False)
    if not has_from and not cache_to:
        out.add(rules.NO_CACHE, step.line, **where)
        return
    if has_from and not cache_to:
        out.add(
            rules.CACHE_ONE_WAY,
            line("cache-from"),
            present="cache-from",
            absent="cache-to",
            why="nothing is ever written to the cache",
            **where,
        )
    if cache_to and not has_from:
        out.add(
            rules.CACHE_ONE_WAY,
            line("cache-to"),
            present="cache-to",
            absent="cache-from",
            why="the cache it writes is never read",
            **where,
        )
    for entry in cache_to:
        fields = dict(f.split("=", 1) for f in entry.split(",") if "=" in f)
        kind = fields.get("type", "registry")  # a bare ref is a registry cache
        if kind in ("gha", "registry", "s3", "azblob") and fields.get("mode") != "max":
            out.add(rules.CACHE_MIN_MODE, line("cache-to"), value=entry, **where)


def _evaluate(wf: Mapping, wanted: tuple[str, ...], out: _Findings) -> None:
    jobs = _jobs(wf, out)
    builds = [(j, s) for j in jobs for s in j.steps if s.action == "docker/build-push-action"]
    if not builds:
        shell_builds = [
            f"job `{j.name}` step {s.index}"
            for j in jobs
            for s in j.steps
            if s.run and "buildx build" in _text(s.run)
        ]
        also = (
            f" ({', '.join(shell_builds)} runs `docker buildx build` itself)"
            if shell_builds
            else ""
        )
        out.add(rules.NO_BUILD, None, also=also)
        return
    for job, step in builds:
        _check_build(job, step, wf, wanted, out)


def check_workflow(
    source: str | Path, *, platforms: Iterable[str] = DEFAULT_PLATFORMS, name: str | None = None
) -> Report:
    """Grade a workflow (a path, or its text): one result per ``WORKFLOW_CRITERIA`` entry."""
    wanted = tuple(str(Platform.parse(p)) for p in platforms)
    file = name or (Path(source).name if isinstance(source, Path) else "workflow.yml")
    out = _Findings(file)
    readable = True
    try:
        if isinstance(source, Path):
            try:
                data = source.read_bytes()
            except OSError as e:
                raise WorkflowUnreadable(f"cannot open {source}: {e.strerror or e}") from None
            if len(data) > MAX_WORKFLOW_BYTES:
                raise WorkflowUnreadable(f"it is larger than {MAX_WORKFLOW_BYTES // 1024} KB")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise WorkflowUnreadable("it is not UTF-8 text") from None
        else:
            text = source
        wf = load_workflow(text)
    except WorkflowUnreadable as e:
        out.add(rules.NOT_YAML, None, why=str(e))
        readable = False
    if readable:
        _evaluate(wf, wanted, out)
    report = Report(submission=file)
    for c in WORKFLOW_CRITERIA:
        findings = out.by_criterion[c.id]
        if not readable and c.id != "ga-valid":
            status = "skipped"
        else:
            status = "fail" if any(f.severity == "error" for f in findings) else "pass"
        points = float(c.points) if status == "pass" else 0.0
        report.criteria.append(
            CriterionResult(c.id, c.title, status, points, float(c.points), findings)
        )
    return report


__all__ = ["DEFAULT_PLATFORMS", "WorkflowUnreadable", "check_workflow", "load_workflow"]
