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
from grader.known_errors import explain
from grader.report import Finding
from grader.rules import run as rules
from grader.sandbox import jail
from grader.sandbox.gate import Client, Gate, GateEvent
from grader.sandbox.limits import Cgroup, Limits, human
from grader.sandbox.policy import Policy, printable

ENTER = Path(__file__).with_name("enter.py")
SHIM = Path(__file__).with_name("shim.py")
#: Per-run uids come from this range (no /etc/passwd entries; never a real user's uid).
UID_RANGE = (200_000, 260_000)
MAX_SUBMISSION = 256 * 1024 * 1024
MAX_FILES = 20_000


def default_work_root() -> Path:
    import tempfile

    return Path(tempfile.gettempdir()) / "grader-sandbox"


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
    return None


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
        os.chmod(self.docker_config, 0o700)
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


def _sandbox_env(policy: Policy) -> dict[str, str]:
    return {
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


def run_once(ws: Workspace, gate: Gate, limits: Limits, run: int, command: list[str]) -> RunResult:
    """One sandboxed run of ``command`` (already inside the copy); never raises."""
    log = ws.logs / f"run{run}.log"
    cgroup = Cgroup.create(f"{ws.label}-{run}", limits)
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
    for f in cgroup.procs_files if cgroup else []:
        argv += ["--cgroup-procs", str(f)]
    for r in rl:
        argv += ["--rlimit", r]
    argv += [
        "--",
        *jail.sandbox_argv(
            copy=ws.copy,
            home=ws.home,
            gate_dir=ws.gate_dir,
            passwd=ws.dir / "passwd",
            group=ws.dir / "group",
            env=_sandbox_env(gate.policy),
            tmp_size=limits.tmp_size,
            command=command,
        ),
    ]
    start = time.monotonic()
    gate.deadline = start + limits.seconds
    timed_out = False
    code: int | None = None
    helper = ""
    try:
        done = proc.run(argv, timeout=limits.seconds, check=False, max_output=65536)
        code = done.returncode
        helper = done.stdout + done.stderr
    except proc.CommandTimeout:
        timed_out = True
    finally:
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
    """Remove containers and builder containers this submission's commands created, and
    (batch grading) the local copies of its images: the registry keeps what was pushed."""
    filters = [
        ["--filter", f"label=grader.sandbox={policy.label}"],
        ["--filter", f"name=buildx_buildkit_{policy.name_prefix}"],
    ]
    for f in filters:
        with contextlib.suppress(proc.CommandError):
            ids = proc.run(["docker", "ps", "-aq", *f], timeout=30, check=False).stdout.split()
            if ids:
                proc.run(["docker", "rm", "-fv", *ids], timeout=60, check=False)
    if policy.confine:
        remove_local_images(policy.repository)


def local_images() -> set[str]:
    """``repository:tag`` of every image the engine holds locally."""
    argv = ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]
    return set(proc.run(argv, timeout=60, check=False).stdout.split())


def remove_local_images(repository: str) -> None:
    """Untag the engine's local copies of images under ``repository/`` (never others)."""
    with contextlib.suppress(proc.CommandError):
        mine = sorted(n for n in local_images() if n.startswith(repository + "/"))
        if mine:
            proc.run(["docker", "image", "rm", *mine], timeout=120, check=False)


def run_findings(r: RunResult, limits: Limits) -> list[Finding]:
    """What one run's result says, as findings (empty when it succeeded)."""
    out: list[Finding] = []
    if r.process_limited:
        out.append(rules.PROCESS_LIMIT.finding(run=r.run, limit=limits.processes))
    if r.memory_limited:
        out.append(rules.MEMORY_LIMIT.finding(run=r.run, limit=human(limits.memory)))
    if r.output_limited:
        out.append(rules.OUTPUT_LIMIT.finding(run=r.run, limit=human(limits.output)))
    if r.timed_out:
        out.append(rules.SANDBOX_TIMEOUT.finding(run=r.run, seconds=limits.seconds))
    elif r.returncode != 0:
        known = explain(r.log_tail)
        hint = f"{known.title}: {known.fix}" if known else None
        out.append(
            rules.SANDBOX_EXIT.finding(
                file="build.sh",
                hint=hint,
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
) -> SandboxOutcome:
    """Run ``submission/build.sh`` ``runs`` times in one throwaway copy, behind the gate.

    Stops after a failed run (a second run of a broken script says nothing more).
    """
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
        )
        client = Client(ws.copy, ws.docker_config)
        gate = Gate(policy, client, ws.gate_dir / "gate.sock", uid=ws.uid, limits=limits)
        command = [interpreter(ws.copy / "build.sh"), "build.sh"]
        try:
            with gate:
                for n in range(1, runs + 1):
                    r = run_once(ws, gate, limits, n, command)
                    outcome.runs.append(r)
                    if not r.succeeded:
                        break
        finally:
            cleanup_engine(policy)
        outcome.findings += gate.findings
        outcome.pushed = list(gate.pushed)
        outcome.events = list(gate.events)
        for r in outcome.runs:
            outcome.findings += run_findings(r, limits)
    except OSError as e:
        outcome.error = f"{e.strerror or e}: {e.filename or ''}".strip(": ")
    finally:
        if own_ws:
            ws.remove()
    return outcome
