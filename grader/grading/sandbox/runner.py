"""Run a submission's build.sh in the sandbox (twice, for idempotence) behind the gate.

``Workspace`` is one submission's temporary area on the host::

    <work_root>/<label>/           0711 root (the sandbox uid may only pass through)
        copy/                      the throwaway copy build.sh runs in (owned by the uid)
        pristine/                  an untouched copy for the grader's own build
        home/                      the script's HOME
        docker-config/             the submission's DOCKER_CONFIG (gate side, never visible
                                   to the script): its builders, its login
        gate/gate.sock, gate/bin/docker   the socket and the shim
        logs/run1.log, run2.log    build.sh output (capped by RLIMIT_FSIZE)

``run_build_sh`` returns a :class:`SandboxOutcome`; it never raises for anything the
submission does.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from grader import proc
from grader.docker import engine_api
from grader.engine.rootless import RUN_UIDS, WorkerEngine
from grader.grading.report import Finding
from grader.grading.rules import run as rules
from grader.grading.sandbox import jail, seccomp
from grader.grading.sandbox.gate import Client, Gate, GateEvent
from grader.grading.sandbox.limits import Cgroup, Limits, human
from grader.grading.sandbox.policy import Policy, printable
from grader.known_errors import explain

ENTER = Path(__file__).with_name("enter.py")
SHIM = Path(__file__).with_name("shim.py")
#: Per-run uids come from this range (no /etc/passwd entries; never a real user's uid, and
#: clear of the subordinate ranges useradd hands out and of the worker engines' ranges).
UID_RANGE = RUN_UIDS
MAX_SUBMISSION = 256 * 1024 * 1024
MAX_FILES = 20_000


def default_work_root() -> Path:
    import tempfile

    # One per uid: a class hub's instructor grades as themselves, beside root's batches.
    uid = os.geteuid()
    return Path(tempfile.gettempdir()) / ("grader-sandbox" if uid == 0 else f"grader-sandbox-{uid}")


def sandbox_problem() -> str | None:
    """Why the sandbox cannot run here, or None when it can."""
    if jail.bwrap() is None:
        return "bwrap is not installed"
    if jail.system_python() is None:
        return "no Python under /usr for the docker shim"
    if proc.which("docker") is None:
        return "no docker client"
    if os.geteuid() != 0:
        return "the grader must run as root to give each run its own uid and cgroup"
    return seccomp.problem()


@dataclass
class RunResult:
    run: int
    returncode: int | None
    seconds: float
    timed_out: bool = False
    output_limited: bool = False
    process_limited: bool = False
    memory_limited: bool = False
    log_tail: str = ""
    log_size: int = 0
    limit_note: str = ""  # which limit was hit, when not the script's own

    @property
    def succeeded(self) -> bool:
        """Exit 0 without hitting a limit (a fork bomb that exits 0 still failed)."""
        return self.returncode == 0 and not (
            self.output_limited or self.process_limited or self.memory_limited
        )


@dataclass
class SandboxOutcome:
    runs: list[RunResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    events: list[GateEvent] = field(default_factory=list)
    error: str | None = None  # the sandbox itself could not run (never the learner's fault)
    skipped: Finding | None = None  # build.sh was not run (binary, too large, missing)

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.skipped is None
            and len(self.runs) > 0
            and all(r.succeeded for r in self.runs)
        )


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(text: str) -> str:
    """Output fit for a report: no control characters, no escape sequences."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def tail_lines(text: str, lines: int = 5, width: int = 200) -> str:
    kept = [ln.strip()[:width] for ln in clean_text(text).splitlines() if ln.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


def _read_tail(path: Path, size: int = 8192) -> tuple[str, int]:
    try:
        total = path.stat().st_size
        with open(path, "rb") as fh:
            fh.seek(max(0, total - size))
            return fh.read().decode("utf-8", errors="replace"), total
    except OSError:
        return "", 0


class Workspace:
    """One submission's temporary area (see the module docstring)."""

    def __init__(self, submission: Path, work_root: Path | None = None, label: str | None = None):
        self.submission = Path(submission)
        self.label = label or secrets.token_hex(5)
        self.work_root = work_root or default_work_root()
        self.dir = self.work_root / self.label
        self.uid = UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0])
        self.copy = self.dir / "copy"
        self.pristine = self.dir / "pristine"
        self.home = self.dir / "home"
        self.docker_config = self.dir / "docker-config"
        self.gate_dir = self.dir / "gate"
        self.logs = self.dir / "logs"

    def create(self) -> list[Finding]:
        """Make the area and copy the submission in; returns findings about the copy."""
        self.work_root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work_root, 0o711)
        # bwrap runs as the run's uid: it must be able to pass through every parent folder.
        for parent in self.work_root.resolve().parents:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                raise OSError(
                    13,
                    f"the sandbox's uid cannot enter {parent} (mode "
                    f"{stat.S_IMODE(os.stat(parent).st_mode):o}); put the work folder under "
                    "/tmp or make its parents world-searchable (chmod o+x)",
                    str(self.work_root),
                )
        self.dir.mkdir()
        os.chmod(self.dir, 0o711)
        for d in (self.home, self.docker_config, self.gate_dir / "bin", self.logs):
            d.mkdir(parents=True)
        os.chmod(self.logs, 0o700)
        # DOCKER_CONFIG: root's and read-only to the client (no plugins, no credential
        # helpers, no stored login); only buildx's state folder is the run uid's.
        os.chmod(self.docker_config, 0o755)
        (self.docker_config / "config.json").write_text("{}\n")
        os.chmod(self.docker_config / "config.json", 0o644)
        # buildx's state: root's while the client runs as root (no worker engine), the run
        # uid's once run_build_sh hands the client to it.
        (self.docker_config / "buildx").mkdir(mode=0o700)
        findings = copy_submission(self.submission, self.copy)
        copy_submission(self.submission, self.pristine)
        for top in (self.copy, self.home):
            for path in [top, *top.rglob("*")]:
                with contextlib.suppress(OSError):
                    os.lchown(path, self.uid, self.uid)
        python = jail.system_python() or "/usr/bin/python3"
        shim = self.gate_dir / "bin" / "docker"
        shim.write_text(f"#!{python} -IS\n" + SHIM.read_text())
        os.chmod(shim, 0o755)
        os.chmod(self.gate_dir, 0o755)
        (self.dir / "passwd").write_text(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"learner:x:{self.uid}:{self.uid}:learner:{jail.SANDBOX_HOME}:/bin/bash\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
        (self.dir / "group").write_text(f"root:x:0:\nlearner:x:{self.uid}:\nnogroup:x:65534:\n")
        return findings

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class SubmissionTooLarge(Exception):
    pass


def copy_submission(src: Path, dst: Path) -> list[Finding]:
    """Copy a submission without following links; links that leave it are left out.

    Only directories, regular files and links inside the submission are copied (no
    devices, fifos or sockets); raises SubmissionTooLarge past MAX_SUBMISSION/MAX_FILES.
    """
    findings: list[Finding] = []
    total = files = 0
    src = Path(src)
    dst.mkdir(parents=True)
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel_dir = os.path.relpath(dirpath, src)
        out_dir = dst / rel_dir if rel_dir != "." else dst
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = os.path.normpath(os.path.join(rel_dir, name))
            try:
                st = os.lstat(path)
            except OSError:
                continue
            files += 1
            if files > MAX_FILES:
                raise SubmissionTooLarge(f"more than {MAX_FILES} files")
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                resolved = os.path.normpath(os.path.join(rel_dir, target))
                if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
                    findings.append(
                        rules.SYMLINK_OUTSIDE.finding(
                            file=printable(rel), path=printable(rel), target=printable(target)
                        )
                    )
                    if name in dirnames:
                        dirnames.remove(name)
                    continue
                os.symlink(target, out_dir / name)
                if name in dirnames:
                    dirnames.remove(name)  # not followed; the link itself is copied
            elif stat.S_ISDIR(st.st_mode):
                (out_dir / name).mkdir()
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                if total > MAX_SUBMISSION:
                    raise SubmissionTooLarge(f"{human(total)} of files")
                shutil.copyfile(path, out_dir / name, follow_symlinks=False)
                os.chmod(out_dir / name, st.st_mode & 0o755 | 0o644)
    return findings


def script_problem(script: Path) -> str | None:
    """Why build.sh cannot be run as a shell script, or None."""
    if script.is_symlink():
        real = os.path.realpath(script)
        base = os.path.realpath(script.parent)
        if not real.startswith(base + os.sep):
            return "build.sh is a link to a file outside the submission"
    if not script.is_file():
        return "there is no build.sh"
    try:
        data = script.read_bytes()
    except OSError as e:
        return f"build.sh cannot be read ({e.strerror})"
    if b"\0" in data:
        return "build.sh is a binary file, not a shell script"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "build.sh is not UTF-8 text"
    return None


def interpreter(script: Path) -> str:
    """bash unless the shebang asks for sh (scripts are run as `INTERPRETER build.sh`)."""
    try:
        first = script.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return "/bin/bash"
    if first.startswith("#!") and re.search(r"(^|[/ ])(sh|dash)\s*$", first[2:].strip()):
        return "/bin/sh"
    return "/bin/bash"


def _sandbox_env(policy: Policy, gate: bool = True) -> dict[str, str]:
    env = {
        "PATH": f"{jail.GATE_DIR}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": jail.SANDBOX_HOME,
        "USER": "learner",
        "LOGNAME": "learner",
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "TMPDIR": "/tmp",
        "CI": "true",
        "DOCKER_CONFIG": f"{jail.SANDBOX_HOME}/.docker",
        "GRADER_GATE": f"{jail.GATE_DIR}/gate.sock",
        "GRADER_REGISTRY": policy.registry,
        "GRADER_REPOSITORY": policy.repository,
    }
    if not gate:  # the real client, straight at the worker engine
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        env["DOCKER_HOST"] = "unix:///run/docker.sock"
        env["DOCKER_CONFIG"] = jail.CLIENT_CONFIG
        del env["GRADER_GATE"]
    return env


def _enter_argv(
    ws: Workspace,
    cgroup: Cgroup | None,
    limits: Limits,
    log: Path,
    groups: list[str],
) -> list[str]:
    """enter.py's options: the log, the uid, the cgroups and the rlimits (before ``--``)."""
    rl = [
        f"nproc={limits.processes}",
        f"fsize={limits.output}",
        f"cpu={int(limits.seconds) + 5}",
        f"nofile={limits.open_files}",
        "core=0",
    ]
    if cgroup is None:
        rl.append(f"as={limits.memory * 4}")
    argv = [sys.executable, "-I", "-S", str(ENTER), "--log", str(log)]
    argv += ["--uid", str(ws.uid), "--gid", str(ws.uid)]
    if groups:
        argv += ["--groups", ",".join(groups)]
    for f in cgroup.procs_files if cgroup else []:
        argv += ["--cgroup-procs", str(f)]
    for r in rl:
        argv += ["--rlimit", r]
    return argv


def run_once(
    ws: Workspace,
    gate: Gate | None,
    limits: Limits,
    run: int,
    command: list[str],
    *,
    policy: Policy | None = None,
    engine: WorkerEngine | None = None,
) -> RunResult:
    """One sandboxed run of ``command`` (already inside the copy); never raises.

    ``gate`` None: the gate is off and the script drives ``engine`` itself."""
    policy = policy or (gate.policy if gate else None)
    assert policy is not None
    log = ws.logs / f"run{run}.log"
    filter_fd = seccomp.fd()  # inherited by enter.py, then bwrap (--seccomp)
    cgroup = Cgroup.create(f"{ws.label}-{run}", limits)
    groups = [str(engine.client_group)] if gate is None and engine is not None else []
    argv = [
        *_enter_argv(ws, cgroup, limits, log, groups),
        "--",
        *jail.sandbox_argv(
            copy=ws.copy,
            home=ws.home,
            gate_dir=ws.gate_dir,
            passwd=ws.dir / "passwd",
            group=ws.dir / "group",
            env=_sandbox_env(policy, gate=gate is not None),
            tmp_size=limits.tmp_size,
            command=command,
            seccomp_fd=filter_fd,
            engine_socket=str(engine.socket) if gate is None and engine else None,
            docker_config=ws.docker_config,
        ),
    ]
    start = time.monotonic()
    if gate is not None:
        gate.deadline = start + limits.seconds
    timed_out = False
    code: int | None = None
    helper = ""
    try:
        done = proc.run(
            argv, timeout=limits.seconds, check=False, max_output=65536, pass_fds=(filter_fd,)
        )
        code = done.returncode
        helper = done.stdout + done.stderr
    except proc.CommandTimeout:
        timed_out = True
    finally:
        os.close(filter_fd)
        if gate is not None:
            gate.client.cancel_all(final=False)
        if cgroup is not None:
            process_limited = cgroup.hit_process_limit()
            memory_limited = cgroup.hit_memory_limit()
            cgroup.remove()
        else:
            process_limited = memory_limited = False
    seconds = time.monotonic() - start
    text, size = _read_tail(log)
    if helper.strip():
        text += "\n" + helper
    # Without a cgroup the rlimits say it: the shell's own messages when they refuse.
    if not process_limited and re.search(r"fork: (retry|Resource temporarily)", text):
        process_limited = True
    if cgroup is None and re.search(r"xmalloc: .*cannot allocate|Cannot allocate memory", text):
        memory_limited = True
    if code is not None and code < 0:
        code = 128 - code
    return RunResult(
        run=run,
        returncode=None if timed_out else code,
        seconds=seconds,
        timed_out=timed_out,
        output_limited=size >= limits.output,
        process_limited=process_limited,
        memory_limited=memory_limited,
        log_tail=clean_text(text[-4000:]),
        log_size=size,
    )


def cleanup_engine(policy: Policy) -> None:
    """Remove containers, volumes and builder containers this submission's commands created,
    and (batch grading) the local copies of its images: the registry keeps what was pushed."""
    with contextlib.suppress(*engine_api.errors()):
        engine_api.remove_labelled(f"grader.grading.sandbox={policy.label}")
    with contextlib.suppress(*engine_api.errors()):
        engine_api.remove_named(f"buildx_buildkit_{policy.name_prefix}")
    if policy.confine:
        remove_local_images(policy.repository)


def local_images() -> set[str]:
    """``repository:tag`` of every image the engine holds locally."""
    return engine_api.image_tags()


def remove_local_images(repository: str) -> None:
    """Untag the engine's local copies of images under ``repository/`` (never others)."""
    with contextlib.suppress(*engine_api.errors()):
        engine_api.remove_images_under(repository)


def _engine_limits(r: RunResult, engine: WorkerEngine) -> None:
    """A limit the worker engine's cgroup hit during this run is this run's: what the
    script made the engine do (RUN steps, containers) counts against it."""
    used = engine.usage()
    if used.oom_kills:
        r.memory_limited = True
        r.limit_note = f"{human(engine.limits.memory)} (the build engine with what it ran)"
    if used.pids_refused:
        r.process_limited = True


def run_findings(r: RunResult, limits: Limits) -> list[Finding]:
    """What one run's result says, as findings (empty when it succeeded)."""
    out: list[Finding] = []
    if r.process_limited:
        out.append(rules.PROCESS_LIMIT.finding(run=r.run, limit=limits.processes))
    if r.memory_limited:
        limit = r.limit_note or human(limits.memory)
        out.append(rules.MEMORY_LIMIT.finding(run=r.run, limit=limit))
    if r.output_limited:
        out.append(rules.OUTPUT_LIMIT.finding(run=r.run, limit=human(limits.output)))
    if r.timed_out:
        out.append(rules.SANDBOX_TIMEOUT.finding(run=r.run, seconds=limits.seconds))
    elif r.returncode != 0:
        out.append(
            rules.SANDBOX_EXIT.finding(
                file="build.sh",
                known=explain(r.log_tail),
                run=r.run,
                status=r.returncode,
                tail=tail_lines(r.log_tail),
            )
        )
    return out


def run_build_sh(
    submission: Path,
    *,
    namespace: str,
    registry: str,
    limits: Limits | None = None,
    runs: int = 2,
    builder: str = "default",
    work_root: Path | None = None,
    label: str | None = None,
    workspace: Workspace | None = None,
    confine: bool = True,
    engine: WorkerEngine | None = None,
    gate: bool = True,
    scratch: bool = False,
    cache_from: str | None = None,
) -> SandboxOutcome:
    """Run ``submission/build.sh`` ``runs`` times in one throwaway copy, behind the gate.

    With ``engine`` (a worker engine) every docker client runs as the run's uid against it;
    ``gate=False`` (tests: the wall without the teaching layer) lets the script run the
    real client itself, which needs an engine. ``cache_from``: the seeded cache every build
    the gate runs imports (with the gate off the script's builds run as written).
    Stops after a failed run (a second run of a broken script says nothing more).
    """
    if not gate and engine is None:
        raise ValueError("the gate can only be switched off with a worker engine")
    limits = limits or Limits()
    outcome = SandboxOutcome()
    problem = sandbox_problem()
    if problem:
        outcome.error = problem
        return outcome
    script = Path(submission) / "build.sh"
    why = script_problem(script)
    if why:
        outcome.skipped = rules.NOT_A_SCRIPT.finding(file="build.sh", why=why)
        outcome.findings.append(outcome.skipped)
        return outcome
    own_ws = workspace is None
    ws = workspace or Workspace(submission, work_root, label)
    try:
        if own_ws:
            try:
                outcome.findings += ws.create()
            except SubmissionTooLarge as e:
                outcome.skipped = rules.TOO_LARGE.finding(limit=human(MAX_SUBMISSION), what=str(e))
                outcome.findings.append(outcome.skipped)
                return outcome
        policy = Policy(
            namespace=namespace,
            registry=registry,
            label=ws.label,
            host_root=ws.copy,
            builder=builder,
            limits=limits,
            confine=confine,
            aliases=(engine.registry_upstream,) if engine else (),
            scratch=scratch,
            cache_from=cache_from,
        )
        if engine is not None:
            os.chown(ws.docker_config / "buildx", ws.uid, ws.uid)
        client = Client(
            ws.copy,
            ws.docker_config,
            engine=str(engine.socket) if engine else None,
            uid=ws.uid if engine else None,
            groups=(engine.client_group,) if engine else (),
        )
        the_gate = Gate(policy, client, ws.gate_dir / "gate.sock", uid=ws.uid, limits=limits)
        command = [interpreter(ws.copy / "build.sh"), "build.sh"]
        try:
            with contextlib.ExitStack() as stack:
                active = stack.enter_context(the_gate) if gate else None
                for n in range(1, runs + 1):
                    if engine is not None:
                        engine.mark()
                    r = run_once(ws, active, limits, n, command, policy=policy, engine=engine)
                    if engine is not None:
                        _engine_limits(r, engine)
                    outcome.runs.append(r)
                    if not r.succeeded:
                        break
        finally:
            with proc.environment(**(engine.env() if engine else {})):
                cleanup_engine(policy)
        outcome.findings += the_gate.findings
        outcome.pushed = list(the_gate.pushed)
        outcome.events = list(the_gate.events)
        for r in outcome.runs:
            outcome.findings += run_findings(r, limits)
    except OSError as e:
        outcome.error = f"{e.strerror or e}: {e.filename or ''}".strip(": ")
    finally:
        if own_ws:
            ws.remove()
    return outcome
