"""The engine criteria: ``idempotent`` (build.sh run twice in the sandbox), ``build`` (the
grader's own two-platform build of the Dockerfile) and ``runs`` (the image starts and exits
0 on each platform).

``check_engine(submission, image, platforms, info, opts)`` returns an :class:`EngineOutcome`:
the three CriterionResults in that order of work (build.sh runs first, so the image it pushed
is what ``runs`` starts, and the grader's own build reuses the cache the script warmed), and
what the run pushed, for the registry checks and the batch's record. Settings for a batch
(the submission's namespace, limits) are an :class:`EngineOptions` passed in.

``status`` is ``error`` (never ``fail``) when the grading machine is at fault: no sandbox,
the engine or the registry stopped answering. A batch regrades those.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from grader import proc
from grader.docker import engine_api
from grader.docker.registry import registry_answers
from grader.engine import rootless, scope, services
from grader.engine.config import registry_host
from grader.grading.batch import seeded_cache
from grader.grading.criteria import BY_ID
from grader.grading.report import CriterionResult, Finding
from grader.grading.rules import run as rules
from grader.grading.sandbox import jail, registry_scope
from grader.grading.sandbox.gate import Client
from grader.grading.sandbox.limits import Limits, human
from grader.grading.sandbox.policy import Policy, Refused
from grader.grading.sandbox.runner import (
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
from grader.known_errors import explain

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")


@dataclass
class EngineOutcome:
    """What check_engine did beyond its results: the batch and registry checks read it."""

    results: list[CriterionResult]
    pushed: list[str] = field(default_factory=list)
    image: str | None = None  # the image `runs` started
    sandbox: SandboxOutcome | None = None
    infrastructure: str | None = None  # why the grading machine failed, if it did
    label: str = ""  # this check's id: container label grader.grading.sandbox=<label>, name prefix


@dataclass
class EngineOptions:
    # The submission's repository path under the registry. Set (batch grading): pushes are
    # confined to it. None (one learner's check): named after the folder, not confined.
    namespace: str | None = None
    # With no namespace: push into REGISTRY/<folder>-check/ (tags elsewhere in the registry
    # rewritten into it), so a learner's own full check never overwrites their pushed tag.
    scratch: bool = False
    registry: str | None = None  # default: the course registry
    limits: Limits = field(default_factory=Limits)
    build_timeout: float = 900.0
    run_timeout: float = 120.0
    builder: str = "default"
    work_root: Path | None = None
    log_dir: Path | None = None  # where build.sh's run logs are kept (batch: results/logs/)
    # The wall: a worker engine (rootless, its own uid) the submission's docker commands
    # reach. None: one is started for this check when the machine can run one (root,
    # user namespaces), unless ``isolate`` is False (the shared root engine: trusted code).
    engine: rootless.WorkerEngine | None = None
    isolate: bool = True
    gate: bool = True  # False (tests): the script drives the worker engine itself
    # The assignment whose seeded build cache (REGISTRY/cache/<assignment>, `grader cache
    # seed`) every build imports; None: builds start cold.
    seeded_cache: str | None = None


_WORKER: ContextVar[rootless.WorkerEngine | None] = ContextVar("worker_engine", default=None)


def namespace_for(name: str) -> str:
    """A registry path component from a student id: lowercase, [a-z0-9] with . _ - inside."""
    s = re.sub(r"[^a-z0-9._-]+", "-", name.lower())
    s = re.sub(r"[._-]{2,}", "-", s).strip("._-")
    return s[:60].rstrip("._-") or "submission"


def learner_namespace(student: str) -> str:
    """A batch student's namespace: never a name the course itself uses (a student folder
    ``lab04`` or ``library`` gets ``lab04-learner``: :data:`scope.COURSE_NAMES`)."""
    s = namespace_for(student)
    return f"{s[:52]}-learner" if scope.COURSE_NAMES.fullmatch(s) else s


def _own_namespace(folder: str, scratch: bool) -> str:
    """A learner's check pushes under its folder's name; a scratch check under ``<name>-check``
    (a repository the learner's own build.sh never pushes to)."""
    name = namespace_for(folder)
    return f"{name[:54]}-check" if scratch else name


def _result(cid: str, status: str, findings: list[Finding]) -> CriterionResult:
    c = BY_ID[cid]
    points = c.points if status == "pass" else 0.0
    return CriterionResult(c.id, c.title, status, points, c.points, findings)  # type: ignore[arg-type]


def engine_identity(engine: rootless.WorkerEngine | None = None) -> str | None:
    """The local dockerd's pid and start time (from /var/run/docker.pid), or None when the
    engine is elsewhere: a different value later means it restarted in between."""
    if engine is not None:
        return f"worker{engine.n}:{engine.pid}"
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
    worker = _WORKER.get()
    if engine_id is not None and engine_identity(worker) != engine_id:
        return "the Docker engine restarted while this submission was graded"
    if registry and not registry_answers(registry, timeout=5):
        return f"the grading registry {registry} does not answer"
    if _scoped(worker) and not registry_answers(worker.registry_upstream, timeout=5):
        return f"the registry scope proxy {worker.registry_upstream} does not answer"
    return None


def _infra_error(cid: str, why: str, extra: Sequence[Finding] = ()) -> CriterionResult:
    finding = rules.ENGINE_UNAVAILABLE.finding(why=why)
    return _result(cid, "error", [*extra, finding])


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
    worker: rootless.WorkerEngine | None = None,
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
    if opts.seeded_cache:  # the grader's own build imports the seeded cache too
        argv[-1:-1] = [f"--cache-from={_cache_from(registry, opts)}"]
    if jailed:
        if worker is not None:  # the client runs as the run's uid (build.sh may not have run)
            os.chown(ws.docker_config / "buildx", ws.uid, ws.uid)
        result = Client(
            ws.pristine,
            ws.docker_config,
            engine=str(worker.socket) if worker else None,
            uid=ws.uid if worker else None,
            groups=(worker.client_group,) if worker else (),
        ).run(argv, timeout=opts.build_timeout, max_output=2 * 1024 * 1024)
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
                known=known,
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
            "--pull=always", "--network=none", f"--label=grader.grading.sandbox={label}",
            f"--memory={lim.container_memory}", f"--pids-limit={lim.container_pids}",
            f"--cpus={lim.cpus:g}", image,
        ]  # fmt: skip
        try:
            done = proc.run(argv, timeout=opts.run_timeout, check=False, max_output=65536)
        except proc.CommandTimeout:
            with contextlib.suppress(*engine_api.errors()):
                engine_api.remove_container(name)
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
                    known=known,
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


def check_engine(
    submission: Path,
    image: str | None,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    info: object | None = None,
    opts: EngineOptions | None = None,
) -> EngineOutcome:
    """``idempotent``, ``build`` and ``runs`` for one submission, and what the run pushed
    (see the module docs): on ``opts.engine`` or a worker engine of this check's own (see
    ``EngineOptions``), else on the shared engine."""
    opts = opts or EngineOptions()
    upstream = opts.registry or registry_host()
    with contextlib.ExitStack() as stack:
        worker = opts.engine
        if worker is None and opts.isolate and rootless.rootless_problem() is None:
            try:
                worker = stack.enter_context(claim_worker(upstream))
            except rootless.EngineError as e:
                return _unavailable(f"no worker engine: {e}")
        if worker is None and not opts.gate:
            raise ValueError("the gate can only be switched off with a worker engine")
        if worker is not None:
            stack.enter_context(proc.environment(**worker.env()))
            token = _WORKER.set(worker)
            stack.callback(_WORKER.reset, token)
        return _engine_checks(submission, image, platforms, info, opts, worker)


def claim_worker(registry: str, limits=None) -> contextlib.AbstractContextManager:
    """A worker engine that names the registry as the host does (``registry``) and reaches the
    course registry only through the scope proxy, so that only the submission's own
    credential writes (:mod:`grader.grading.sandbox.registry_scope`); so do the per-run
    clients. Another registry (one the instructor names, which the proxy does not serve) is
    reached directly."""
    proxy = registry_scope.upstream(registry)
    if proxy is None:
        return rootless.claimed(registry, limits)
    # the per-run docker clients (gate on: `buildx imagetools`, `manifest inspect` speak to
    # the registry from the host's network) reach it through the proxy too, with their
    # submission's credential
    registry_scope.route_to_proxy(rootless.RUN_UIDS, registry, proxy)
    return rootless.claimed(proxy, limits, name=registry)


def _scoped(worker: rootless.WorkerEngine | None) -> bool:
    return worker is not None and worker.registry != worker.registry_upstream


def _engine_checks(
    submission: Path,
    image: str | None,
    platforms: Sequence[str],
    info: object | None,
    opts: EngineOptions,
    worker: rootless.WorkerEngine | None,
) -> EngineOutcome:
    registry = worker.registry if worker else (opts.registry or registry_host())
    namespace = opts.namespace or _own_namespace(Path(submission).resolve().name, opts.scratch)
    platforms = tuple(platforms) or DEFAULT_PLATFORMS
    why = infrastructure_problem(registry)
    if why:
        return _unavailable(why)
    if not _scoped(worker):
        return _engine_run(submission, image, platforms, info, opts, worker, namespace, None)
    label = secrets.token_hex(5)
    # Confined (batch) and scratch checks push into one namespace: the proxy holds them to it.
    # A learner's plain check of their own work may push anywhere in the registry, as their
    # build.sh does at home: its client's credential may write everywhere but library/ and
    # cache/ (RUN steps still only read base images).
    anywhere = opts.namespace is None and not opts.scratch
    try:
        with registry_scope.credential(namespace, worker.registry, label, admin=anywhere) as (
            caller, cfg, since,
        ):  # fmt: skip
            outcome = _engine_run(submission, image, platforms, info, opts, worker, namespace,
                                  cfg, label)  # fmt: skip
            return _with_refusals(outcome, registry_scope.refused(caller, since))
    except rootless.EngineError as e:
        return _unavailable(str(e))


def _unavailable(why: str) -> EngineOutcome:
    """All three engine criteria an infrastructure error: the machine's fault, regraded later."""
    return EngineOutcome(
        [_infra_error(c, why) for c in ("idempotent", "build", "runs")], infrastructure=why
    )


def _write_credential(ws: Workspace, docker_config: dict) -> None:
    """The submission's credential, readable by root and the run's uid alone (0640)."""
    path = ws.docker_config / "config.json"
    path.write_text(json.dumps(docker_config) + "\n")
    os.chown(path, 0, ws.uid)
    os.chmod(path, 0o640)


def _with_refusals(outcome: EngineOutcome, refused: list[Finding]) -> EngineOutcome:
    """What the registry's scope proxy refused counts against ``idempotent``."""
    if refused and outcome.results and outcome.results[0].id == "idempotent":
        idem = outcome.results[0]
        status = "fail" if idem.status == "pass" else idem.status
        outcome.results[0] = _result("idempotent", status, [*idem.findings, *refused])
    return outcome


def _engine_run(
    submission: Path,
    image: str | None,
    platforms: Sequence[str],
    info: object | None,
    opts: EngineOptions,
    worker: rootless.WorkerEngine | None,
    namespace: str,
    docker_config: dict | None,
    label: str | None = None,
) -> EngineOutcome:
    registry = worker.registry if worker else (opts.registry or registry_host())
    engine_id = engine_identity(worker)
    label = label or secrets.token_hex(5)
    ws = Workspace(Path(submission), opts.work_root, label)
    try:
        try:
            copy_findings = ws.create()
        except SubmissionTooLarge as e:
            f = rules.TOO_LARGE.finding(limit=human(MAX_SUBMISSION), what=str(e))
            return EngineOutcome([_result(c, "fail", [f]) for c in ("idempotent", "build", "runs")])
        if docker_config is not None:
            _write_credential(ws, docker_config)
        sandbox = run_build_sh(
            Path(submission),
            namespace=namespace,
            registry=registry,
            limits=opts.limits,
            builder=opts.builder,
            workspace=ws,
            confine=opts.namespace is not None,
            engine=worker,
            gate=opts.gate,
            scratch=opts.scratch and opts.namespace is None,
            cache_from=_cache_from(registry, opts),
        )
        sandbox.findings[:0] = copy_findings
        idem = _idempotent(sandbox, registry, engine_id)
        jailed = sandbox_problem() is None
        build = _build(ws, platforms, opts, registry, info, jailed, engine_id, worker)
        policy = Policy(
            namespace=namespace,
            registry=registry,
            label=label,
            confine=opts.namespace is not None,
            aliases=(worker.registry_upstream,) if worker else (),
            scratch=opts.scratch and opts.namespace is None,
        )
        chosen, why_none = _choose_image(image, sandbox, policy)
        pull_as = {"DOCKER_CONFIG": str(ws.docker_config)} if docker_config else {}
        with proc.environment(**pull_as):  # the engine pulls it with the submission's credential
            runs = _runs(chosen, why_none, platforms, opts, registry, label, engine_id)
    finally:
        if opts.log_dir is not None:
            _keep_logs(ws, opts.log_dir)
        ws.remove()
        if opts.namespace is not None and worker is None:  # what `runs` pulled
            remove_local_images(f"{registry}/{namespace}")
    results = [idem, build, runs]
    infra = next(
        (f.message for r in results if r.status == "error" for f in r.findings
         if f.rule == rules.ENGINE_UNAVAILABLE.id),
        None,
    )  # fmt: skip
    pushed = list(sandbox.pushed)
    if worker is not None:  # the registry checks read them by the host's name of the registry
        pushed = [_host_name(r, worker) for r in pushed]
        chosen = _host_name(chosen, worker) if chosen else chosen
    return EngineOutcome(results, pushed, chosen, sandbox, infra, label)


def _cache_from(registry: str, opts: EngineOptions) -> str | None:
    """The ``--cache-from`` value of the seeded cache, as the engine names the registry."""
    return seeded_cache.import_option(registry, opts.seeded_cache) if opts.seeded_cache else None


def _host_name(ref: str, worker: rootless.WorkerEngine) -> str:
    """An image name as the worker engine knows it, as the host knows it (same registry)."""
    if _scoped(worker):  # the engine names the registry as the host does; only the path differs
        return ref
    prefix = worker.registry + "/"
    return worker.registry_upstream + "/" + ref[len(prefix) :] if ref.startswith(prefix) else ref
