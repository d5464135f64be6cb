"""The engine criteria: ``idempotent`` (build.sh run twice in the sandbox), ``build`` (the
grader's own two-platform build of the Dockerfile) and ``runs`` (the image starts and exits
0 on each platform).

``check_engine(submission, image, platforms, info)`` returns the three CriterionResults in
that order of work: build.sh runs first, so the image it pushed is what ``runs`` starts, and
the grader's own build reuses the cache the script warmed. Settings for a batch (the
submission's namespace, limits) come from ``engine_options(...)``; what the run pushed is
left in ``EngineOptions.outcome`` for the registry checks.

``status`` is ``error`` (never ``fail``) when the grading machine is at fault: no sandbox,
the engine or the registry stopped answering. A batch regrades those.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path

from grader import proc
from grader.criteria import BY_ID
from grader.engine import services
from grader.engine.config import settings
from grader.known_errors import explain
from grader.report import CriterionResult, Finding
from grader.rules import run as rules
from grader.sandbox import jail
from grader.sandbox.gate import Client
from grader.sandbox.limits import Limits, human
from grader.sandbox.policy import Policy, Refused
from grader.sandbox.runner import (
    MAX_SUBMISSION,
    SandboxOutcome,
    SubmissionTooLarge,
    Workspace,
    clean_text,
    remove_local_images,
    run_build_sh,
    sandbox_problem,
    tail_lines,
)

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")


@dataclass
class EngineOutcome:
    """What check_engine did beyond its results: the batch and registry checks read it."""

    results: list[CriterionResult]
    pushed: list[str] = field(default_factory=list)
    image: str | None = None  # the image `runs` started
    sandbox: SandboxOutcome | None = None
    infrastructure: str | None = None  # why the grading machine failed, if it did
    label: str = ""  # this check's id: container label grader.sandbox=<label>, name prefix


@dataclass
class EngineOptions:
    # The submission's repository path under the registry. Set (batch grading): pushes are
    # confined to it. None (one learner's check): named after the folder, not confined.
    namespace: str | None = None
    registry: str | None = None  # default: the course registry
    limits: Limits = field(default_factory=Limits)
    build_timeout: float = 900.0
    run_timeout: float = 120.0
    builder: str = "default"
    work_root: Path | None = None
    log_dir: Path | None = None  # where build.sh's run logs are kept (batch: results/logs/)
    outcome: EngineOutcome | None = None


_OPTIONS: ContextVar[EngineOptions | None] = ContextVar("engine_options", default=None)


@contextlib.contextmanager
def engine_options(**kwargs) -> Iterator[EngineOptions]:
    """Settings for check_engine calls in this thread/context (a batch worker sets these).

    Nested calls start from the enclosing settings, so ``grader.check`` opening its own
    ``engine_options()`` inside a batch worker keeps the batch's namespace and limits.
    """
    outer = _OPTIONS.get()
    opts = replace(outer, outcome=None, **kwargs) if outer else EngineOptions(**kwargs)
    token = _OPTIONS.set(opts)
    try:
        yield opts
    finally:
        _OPTIONS.reset(token)
        if outer is not None and opts.outcome is not None:
            outer.outcome = opts.outcome  # the enclosing caller sees what was pushed too


def current_options() -> EngineOptions:
    return _OPTIONS.get() or EngineOptions()


def namespace_for(name: str) -> str:
    """A registry path component from a student id: lowercase, [a-z0-9] with . _ - inside."""
    s = re.sub(r"[^a-z0-9._-]+", "-", name.lower())
    s = re.sub(r"[._-]{2,}", "-", s).strip("._-")
    return s[:60] or "submission"


def _result(cid: str, status: str, findings: list[Finding]) -> CriterionResult:
    c = BY_ID[cid]
    points = c.points if status == "pass" else 0.0
    return CriterionResult(c.id, c.title, status, points, c.points, findings)  # type: ignore[arg-type]


def engine_identity() -> str | None:
    """The local dockerd's pid and start time (from /var/run/docker.pid), or None when the
    engine is elsewhere: a different value later means it restarted in between."""
    try:
        pid = int(Path("/var/run/docker.pid").read_text().strip())
        started = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, ValueError, IndexError):
        return None
    return f"{pid}:{started}"


def infrastructure_problem(registry: str | None, engine_id: str | None = None) -> str | None:
    """Why the grading machine cannot grade right now (or, given the ``engine_id`` seen when
    grading started, why it could not while grading), or None."""
    if not services.docker_answers(timeout=15):
        return "the Docker engine does not answer"
    if engine_id is not None and engine_identity() != engine_id:
        return "the Docker engine restarted while this submission was graded"
    if registry and not services.registry_answers(registry, timeout=5):
        return f"the grading registry {registry} does not answer"
    return None


def _infra_error(cid: str, why: str, extra: Sequence[Finding] = ()) -> CriterionResult:
    finding = rules.ENGINE_UNAVAILABLE.finding(why=why)
    return _result(cid, "error", [*extra, replace(finding)])


# --- idempotent ------------------------------------------------------------------------


def _built_something(outcome: SandboxOutcome) -> bool:
    return any(
        e.allowed and e.returncode == 0 and re.match(r"docker (buildx (build|b)|build) ", e.command)
        for e in outcome.events
    )


def _idempotent(
    outcome: SandboxOutcome, registry: str, engine_id: str | None = None
) -> CriterionResult:
    if outcome.error:
        return _result(
            "idempotent", "error", [rules.SANDBOX_UNAVAILABLE.finding(why=outcome.error)]
        )
    findings = list(outcome.findings)
    if outcome.skipped is not None:
        return _result("idempotent", "fail", findings)
    if outcome.ok:
        if not _built_something(outcome):
            return _result("idempotent", "fail", [*findings, rules.NO_BUILD.finding()])
        return _result("idempotent", "pass", findings)
    why = infrastructure_problem(registry, engine_id)
    if why:
        return _infra_error("idempotent", why, findings)
    return _result("idempotent", "fail", findings)


# --- build -----------------------------------------------------------------------------

_INSECURE = re.compile(r"--(security=insecure|network=host)", re.IGNORECASE)


def insecure_run_flag(dockerfile_text: str) -> tuple[int, str] | None:
    """(line, flag) of the first RUN whose own flags (before the command) include
    --security=insecure or --network=host; continuation lines are joined first."""
    logical, start = "", 0
    for n, line in enumerate(dockerfile_text.splitlines(), 1):
        if not logical:
            start = n
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        m = re.match(r"\s*RUN\s+(.*)", logical, re.IGNORECASE)
        logical = ""
        if not m:
            continue
        for token in m.group(1).split():
            if not token.startswith("--"):
                break  # the command starts: its own arguments are not RUN flags
            hit = _INSECURE.fullmatch(token)
            if hit:
                return start, token
    return None


def _build_paths(info: object | None) -> tuple[str, str]:
    """(dockerfile, context) relative to the submission: from the static analysis if it
    resolved them, else the defaults."""
    dockerfile = getattr(info, "dockerfile", None)
    context = getattr(info, "context", None)
    return (
        dockerfile if isinstance(dockerfile, str) and dockerfile else "Dockerfile",
        context if isinstance(context, str) and context else ".",
    )


def _build(
    ws: Workspace,
    platforms: Sequence[str],
    opts: EngineOptions,
    registry: str,
    info: object | None,
    jailed: bool,
    engine_id: str | None = None,
) -> CriterionResult:
    dockerfile, context = _build_paths(info)
    policy = Policy(namespace="x", registry=registry, label=ws.label, host_root=ws.pristine)
    try:
        policy.inside(context, jail.SANDBOX_ROOT, "build context", "build")
        policy.inside(dockerfile, jail.SANDBOX_ROOT, "--file", "build")
    except Refused:
        return _result("build", "fail", [rules.NO_DOCKERFILE.finding(path=dockerfile)])
    df = ws.pristine / dockerfile
    if not df.is_file():
        return _result("build", "fail", [rules.NO_DOCKERFILE.finding(path=dockerfile)])
    text = df.read_text(errors="replace")
    bad = insecure_run_flag(text)
    if bad:
        line, flag = bad
        return _result(
            "build",
            "fail",
            [rules.INSECURE_DOCKERFILE.finding(file=dockerfile, line=line, flag=flag)],
        )
    argv = [
        "buildx", "build", f"--builder={opts.builder}", f"--platform={','.join(platforms)}",
        "--output=type=cacheonly", "--provenance=false", "--progress=plain",
        f"--file={dockerfile}", context,
    ]  # fmt: skip
    if jailed:
        result = Client(ws.pristine, ws.docker_config).run(
            argv, timeout=opts.build_timeout, max_output=2 * 1024 * 1024
        )
        code, output, timed_out = result.returncode, result.output, result.timed_out
    else:
        # No jail available: the pristine copy holds no links out of it and nothing runs
        # in it, so the client reads only the submission's own files.
        try:
            done = proc.run(
                ["docker", *argv], timeout=opts.build_timeout, check=False, cwd=ws.pristine
            )
            code, output, timed_out = done.returncode, done.stdout + done.stderr, False
        except proc.CommandTimeout as e:
            code, output, timed_out = 124, e.stderr, True
    if timed_out:
        return _result("build", "fail", [rules.BUILD_TIMEOUT.finding(seconds=opts.build_timeout)])
    if code == 0:
        return _result("build", "pass", [])
    why = infrastructure_problem(registry, engine_id)
    if why:
        return _infra_error("build", why)
    error_lines = [ln for ln in clean_text(output).splitlines() if "ERROR" in ln or "error" in ln]
    tail = tail_lines("\n".join(error_lines) or output, lines=3)
    known = explain(output)
    return _result(
        "build",
        "fail",
        [
            rules.BUILD_FAILED.finding(
                file=dockerfile,
                hint=f"{known.title}: {known.fix}" if known else None,
                platforms=", ".join(platforms),
                tail=tail,
            )
        ],
    )


# --- runs ------------------------------------------------------------------------------


def _choose_image(
    image: str | None, outcome: SandboxOutcome | None, policy: Policy
) -> tuple[str | None, str]:
    """The image to run and, when there is none, why."""
    pushed = outcome.pushed if outcome else []
    if image:
        try:
            own, _ = policy.own(image, "check")
        except Refused:
            own = image
        # The sandbox pushed the learner's tag under their namespace: run that one.
        return (own if own in pushed else image), ""
    if pushed:
        return pushed[0], ""
    return None, "build.sh pushed no image and none was given (--image)"


def _runs(
    image: str | None,
    why_none: str,
    platforms: Sequence[str],
    opts: EngineOptions,
    registry: str,
    label: str,
    engine_id: str | None = None,
) -> CriterionResult:
    if image is None:
        return _result("runs", "fail", [rules.NO_IMAGE.finding(why=why_none)])
    findings: list[Finding] = []
    lim = opts.limits
    for platform in platforms:
        name = f"g{label[:10]}-runs-{platform.replace('/', '-')}"
        argv = [
            "docker", "run", "--rm", f"--name={name}", f"--platform={platform}",
            "--pull=always", "--network=none", f"--label=grader.sandbox={label}",
            f"--memory={lim.container_memory}", f"--pids-limit={lim.container_pids}",
            f"--cpus={lim.cpus:g}", image,
        ]  # fmt: skip
        try:
            done = proc.run(argv, timeout=opts.run_timeout, check=False, max_output=65536)
        except proc.CommandTimeout:
            proc.run(["docker", "rm", "-f", name], timeout=60, check=False)
            findings.append(
                rules.RUN_TIMEOUT.finding(platform=platform, image=image, seconds=opts.run_timeout)
            )
            continue
        if done.returncode != 0:
            why = infrastructure_problem(registry, engine_id)
            if why:
                return _infra_error("runs", why, findings)
            known = explain(done.stderr + done.stdout)
            findings.append(
                rules.RUN_FAILED.finding(
                    hint=f"{known.title}: {known.fix}" if known else None,
                    platform=platform,
                    image=image,
                    status=done.returncode,
                    tail=tail_lines(done.stderr + "\n" + done.stdout, lines=3),
                )
            )
    return _result("runs", "fail" if findings else "pass", findings)


# --- the three together ----------------------------------------------------------------


def _keep_logs(ws: Workspace, log_dir: Path) -> None:
    """Copy the run logs out of the workspace; a full disk must not fail the grading."""
    with contextlib.suppress(OSError):
        log_dir.mkdir(parents=True, exist_ok=True)
        for old in log_dir.glob("run*.log"):
            old.unlink()
        for log in sorted(ws.logs.glob("run*.log")):
            shutil.copyfile(log, log_dir / log.name)


def run_engine_checks(
    submission: Path,
    image: str | None,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    info: object | None = None,
    opts: EngineOptions | None = None,
) -> EngineOutcome:
    opts = opts or current_options()
    registry = opts.registry or settings().registry_host
    namespace = opts.namespace or namespace_for(Path(submission).resolve().name)
    platforms = tuple(platforms) or DEFAULT_PLATFORMS
    why = infrastructure_problem(registry)
    engine_id = engine_identity()
    if why:
        return EngineOutcome(
            [_infra_error(c, why) for c in ("idempotent", "build", "runs")], infrastructure=why
        )
    label = secrets.token_hex(5)
    ws = Workspace(Path(submission), opts.work_root, label)
    try:
        try:
            copy_findings = ws.create()
        except SubmissionTooLarge as e:
            f = rules.TOO_LARGE.finding(limit=human(MAX_SUBMISSION), what=str(e))
            return EngineOutcome([_result(c, "fail", [f]) for c in ("idempotent", "build", "runs")])
        sandbox = run_build_sh(
            Path(submission),
            namespace=namespace,
            registry=registry,
            limits=opts.limits,
            builder=opts.builder,
            workspace=ws,
            confine=opts.namespace is not None,
        )
        sandbox.findings[:0] = copy_findings
        idem = _idempotent(sandbox, registry, engine_id)
        jailed = sandbox_problem() is None
        build = _build(ws, platforms, opts, registry, info, jailed, engine_id)
        policy = Policy(
            namespace=namespace, registry=registry, label=label, confine=opts.namespace is not None
        )
        chosen, why_none = _choose_image(image, sandbox, policy)
        runs = _runs(chosen, why_none, platforms, opts, registry, label, engine_id)
    finally:
        if opts.log_dir is not None:
            _keep_logs(ws, opts.log_dir)
        ws.remove()
        if opts.namespace is not None:  # batch: what `runs` pulled (the registry keeps it)
            remove_local_images(f"{registry}/{namespace}")
    results = [idem, build, runs]
    infra = next(
        (f.message for r in results if r.status == "error" for f in r.findings
         if f.rule == rules.ENGINE_UNAVAILABLE.id),
        None,
    )  # fmt: skip
    return EngineOutcome(results, list(sandbox.pushed), chosen, sandbox, infra, label)


def check_engine(
    submission: Path,
    image: str | None,
    platforms: Sequence[str],
    info: object | None = None,
) -> list[CriterionResult]:
    """``idempotent``, ``build`` and ``runs`` for one submission (see the module docs)."""
    opts = current_options()
    outcome = run_engine_checks(Path(submission), image, platforms, info, opts)
    opts.outcome = outcome
    return outcome.results
