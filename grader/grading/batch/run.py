"""``grader batch SUBMISSIONS_DIR --out results/``: grade every submission, resumably.

Layout of ``--out``::

    reports/<student>.json   one per graded submission (atomic: temp file, fsync, rename)
    logs/<student>/run*.log  build.sh's output (capped), for the instructor to read
    grades.csv               student, score, max_score, complete, one status per criterion
    .lock                    one batch per results folder at a time

A submission is graded again only when its report is missing, unreadable, incomplete (a
finding blames the grading machine, see ``MACHINE_FAULTS``), or its files or the grading
settings changed. So a rerun after a crash, Ctrl-C, a full disk or an engine
failure finishes exactly what is missing and keeps every finished result.

Workers share the engine's build cache (every build runs on the one grading builder). When a
submission ends with an infrastructure error, no new one starts until the engine and
registry answer again (up to ``engine_wait`` s, else the batch stops cleanly); at the end,
infrastructure errors are retried once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from grader.engine.rootless import EngineError
from grader.grading.batch.results import (
    Collision,
    assign_ids,
    atomic_write,
    is_finished,
    load_record,
    report_path,
    safe_name,
    shown,
    write_grades_csv,
)
from grader.grading.criteria import ASSIGNMENT, BY_ID, CRITERIA
from grader.grading.report import CriterionResult, Finding, Report
from grader.grading.rules import run as rules
from grader.grading.sandbox.limits import Limits

FORMAT = 1  # bump when reports change shape: every submission is regraded


@dataclass(frozen=True)
class Submission:
    student: str
    path: Path
    key: str = ""  # its report file and log folder (see results.assign_ids)
    namespace: str = ""  # its registry namespace, under the batch's prefix

    @property
    def file_key(self) -> str:
        return self.key or safe_name(self.student)


@dataclass
class BatchOptions:
    out: Path
    workers: int = 1
    platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64")
    registry: str | None = None  # default: the course registry
    namespace_prefix: str = ""  # images go to REGISTRY/[prefix/]<student>/...
    assignment: str | None = ASSIGNMENT  # nbgrader layout: SUBMISSIONS/<student>/<assignment>
    static_only: bool = False
    limits: Limits = field(default_factory=Limits)
    build_timeout: float = 900.0
    run_timeout: float = 120.0
    engine_wait: float = 120.0  # how long to wait for a failed engine/registry to come back
    retries: int = 1  # extra passes over submissions that ended in infrastructure errors
    work_root: Path | None = None
    progress: Callable[[str], None] | None = None  # default: stderr
    # Each worker grades on a worker engine of its own (rootless, reset between
    # submissions). False: the shared root engine, which untrusted code can take over.
    isolate: bool = True
    # Builds import the assignment's seeded cache when the registry has one (`grader cache
    # seed`); ``seeded_cache`` is the assignment found at the start, None: builds start cold.
    use_seeded_cache: bool = True
    seeded_cache: str | None = None

    def settings_key(self) -> str:
        """What changes a grade besides the files: a change regrades everything."""
        data = {
            "format": FORMAT,
            "platforms": list(self.platforms),
            "static": self.static_only,
            "registry": self.registry,
            "prefix": self.namespace_prefix,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class BatchSummary:
    total: int = 0
    graded: int = 0  # graded in this run
    kept: int = 0  # finished before, not regraded
    complete: int = 0  # reports on disk with no infrastructure error
    incomplete: list[str] = field(default_factory=list)  # students to regrade next run
    unsaved: list[str] = field(default_factory=list)  # graded but the report write failed
    stopped: str | None = None  # why the batch stopped early
    seconds: float = 0.0
    collisions: list[tuple[str, ...]] = field(default_factory=list)  # ids told apart

    @property
    def exit_code(self) -> int:
        if self.stopped or self.unsaved:
            return 3
        return 0 if not self.incomplete else 1


# --- finding submissions --------------------------------------------------------------


def discover(root: Path, assignment: str | None = ASSIGNMENT) -> list[Submission]:
    """One submission per folder of ``root``; with nbgrader's layout
    (``<student>/<assignment>/``) the assignment folder is graded."""
    subs = []
    for child in sorted(Path(root).iterdir()):
        if child.name.startswith(".") or child.is_symlink() or not child.is_dir():
            continue
        inner = child / assignment if assignment else None
        # A link named like the assignment is the learner's, not nbgrader's: never followed.
        path = inner if inner and inner.is_dir() and not inner.is_symlink() else child
        subs.append(Submission(child.name, path))
    return subs


def with_ids(subs: list[Submission]) -> tuple[list[Submission], list[Collision]]:
    """``subs`` with one report file and one registry namespace each (see assign_ids)."""
    assigned, collisions = assign_ids(s.student for s in subs)
    out = [
        Submission(s.student, s.path, assigned[s.student].key, assigned[s.student].namespace)
        for s in subs
    ]
    return out, collisions


def fingerprint(path: Path, max_bytes: int = 64 * 1024 * 1024) -> str:
    """A hash of the submission's names, types, link targets and contents (past
    ``max_bytes`` in total, sizes and mtimes stand in for contents)."""
    h = hashlib.sha256()
    budget = max_bytes
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(Path(dirpath) / d)]):
            p = Path(dirpath) / name
            rel = os.path.relpath(p, path)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{st.st_size}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
            elif stat.S_ISREG(st.st_mode):
                if st.st_size <= budget:
                    budget -= st.st_size
                    with contextlib.suppress(OSError), open(p, "rb") as fh:
                        for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                            h.update(block)
                else:
                    h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()


# --- files -----------------------------------------------------------------------------


#: Findings that blame the grading machine, not the learner: a submission with one is
#: graded again. Other `error`s (e.g. no image pushed, GR002) are final.
MACHINE_FAULTS = frozenset({"RN450", "RN408", "MF301", "GR001", "GR003"})


def machine_faults(report: Report, grading_registry: str | None = None) -> list[Finding]:
    """The findings that blame the grading machine. "Registry unreachable" (MF301) does so
    only while the grading registry itself is down: when build.sh pushed nothing, the
    checker reads the tag build.sh names, e.g. on Docker Hub, which grading never reaches."""
    faults = [f for c in report.criteria for f in c.findings if f.rule in MACHINE_FAULTS]
    if grading_registry and any(f.rule == "MF301" for f in faults):
        from grader.docker.registry import registry_answers

        if registry_answers(grading_registry):
            faults = [f for f in faults if f.rule != "MF301"]
    return faults


# --- grading one submission -------------------------------------------------------------


def _error_result(cid: str, finding: Finding) -> CriterionResult:
    c = BY_ID[cid]
    return CriterionResult(c.id, c.title, "error", 0.0, float(c.points), [finding])


def _crashed_report(sub: Submission, why: str) -> Report:
    report = Report(submission=str(sub.path))
    finding = rules.ENGINE_UNAVAILABLE.finding(why=why)
    report.criteria = [_error_result(c.id, finding) for c in CRITERIA]
    return report


def grade(
    sub: Submission, opts: BatchOptions, log_dir: Path | None = None, worker=None
) -> tuple[Report, dict]:
    """Grade one submission as ``grader.check`` does (``grader.grading.api.grade``), with this
    batch's engine settings: build.sh runs sandboxed and pushes into the submission's namespace,
    then the registry criteria read what it pushed.

    Returns the report and extra facts for the record (pushed image, infrastructure error).
    """
    from grader.grading import api
    from grader.grading.checks import run as engine

    extra: dict = {"pushed": [], "image": None, "infrastructure": None}
    own = sub.namespace or engine.learner_namespace(sub.student)
    namespace = "/".join(p for p in (opts.namespace_prefix.strip("/"), own) if p)
    eopts = engine.EngineOptions(
        namespace=namespace,
        registry=opts.registry,
        limits=opts.limits,
        build_timeout=opts.build_timeout,
        run_timeout=opts.run_timeout,
        work_root=opts.work_root,
        log_dir=log_dir,
        engine=worker,
        isolate=opts.isolate,
        seeded_cache=opts.seeded_cache,
    )
    try:
        report, outcome = api.grade(
            sub.path, static=opts.static_only, platforms=opts.platforms, engine=eopts
        )
    except api.SubmissionUnreadable as e:
        return _crashed_report(sub, f"the submission cannot be read: {e}"), extra
    if outcome is not None:
        extra.update(
            pushed=outcome.pushed, image=outcome.image, infrastructure=outcome.infrastructure
        )
    return report, extra


# --- the batch -------------------------------------------------------------------------


def _fmt_secs(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Batch:
    def __init__(self, submissions_dir: Path, opts: BatchOptions):
        self.root = Path(submissions_dir)
        self.opts = opts
        self.out = Path(opts.out)
        self.say = opts.progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.summary = BatchSummary()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._started = 0.0
        self._done_now = 0
        self._errors = 0  # the grading machine failed (graded again later)
        self._below_full = 0  # graded, with some criterion not passed
        self._interrupted = False
        self._seen: set[str] = set()
        self._engines: queue.Queue | None = None  # the workers' engines, one per worker
        self._used: set[int] = set()

    # -- infrastructure --

    def _grading_registry(self) -> str | None:
        if self.opts.static_only:
            return None
        from grader.engine.config import registry_host

        return self.opts.registry or registry_host()

    def _infra_problem(self) -> str | None:
        if self.opts.static_only:
            return None
        from grader.engine.config import registry_host
        from grader.grading.checks.run import infrastructure_problem

        return infrastructure_problem(self.opts.registry or registry_host())

    def _wait_for_infra(self) -> bool:
        """True when the engine and registry answer (waiting up to engine_wait s)."""
        deadline = time.monotonic() + self.opts.engine_wait
        told = False
        while True:
            why = self._infra_problem()
            if why is None:
                if told:
                    self.say("grader batch: the engine answers again; continuing")
                return True
            if time.monotonic() >= deadline or self._stop.is_set():
                self.summary.stopped = f"{why} (waited {self.opts.engine_wait:g} s)"
                return False
            if not told:
                self.say(f"grader batch: {why}; waiting up to {self.opts.engine_wait:g} s")
                told = True
            time.sleep(2)

    # -- one submission --

    def _one(self, sub: Submission, fp: str) -> tuple[Submission, dict | None, str | None]:
        if self._stop.is_set():
            return sub, None, None
        start = time.monotonic()
        logs = self.out / "logs" / sub.file_key
        worker = self._engines.get() if self._engines is not None else None
        try:
            if worker is not None and worker.n in self._used:
                worker.reset()  # nothing of the last submission is left for this one
            if worker is not None:
                self._used.add(worker.n)
            report, extra = grade(sub, self.opts, log_dir=logs, worker=worker)
        except Exception as e:  # a grader bug: this submission is an error, the batch goes on
            report = _crashed_report(sub, f"the grader failed: {type(e).__name__}: {e}")
            extra = {"infrastructure": f"grader failure: {e}"}
        finally:
            if worker is not None:
                self._engines.put(worker)
        complete = not machine_faults(report, self._grading_registry())
        record = {
            "student": sub.student,
            "key": sub.file_key,
            "namespace": sub.namespace,
            "submission": str(sub.path),
            "fingerprint": fp,
            "settings": self.opts.settings_key(),
            "complete": complete,
            "graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - start, 2),
            **extra,
            "report": report.to_dict(),
        }
        if self._interrupted:  # abandoned mid-way (its engine stopped under it): no report,
            return sub, None, None  # so the next run grades it again from the start
        try:
            atomic_write(report_path(self.out, sub.file_key), json.dumps(record, indent=2).encode())
        except OSError as e:
            return sub, record, f"{e.strerror or e}"
        return sub, record, None

    def _progress(self, sub: Submission, record: dict | None, write_error: str | None) -> None:
        s = self.summary
        self._done_now += 1
        self._seen.add(sub.student)
        done = s.kept + len(self._seen)  # a retried submission is counted once
        elapsed = time.monotonic() - self._started
        left = s.total - done
        eta = elapsed / len(self._seen) * left if self._seen else 0
        if record is None:
            what = "not graded (stopping)"
        else:
            rep = record["report"]
            what = f"{rep['score']:g}/{rep['max_score']:g}"
            if not record["complete"]:
                what += " ERROR (graded again later)"
                self._errors += 1
            elif rep["score"] < rep["max_score"]:
                self._below_full += 1
        if write_error:
            what += f" NOT SAVED: {write_error}"
        self.say(
            f"[{done:>{len(str(s.total))}}/{s.total}] {shown(sub.student):<20} {what:<16} "
            f"({record['seconds'] if record else 0:.1f} s)  elapsed {_fmt_secs(elapsed)}  "
            f"ETA {_fmt_secs(eta)}  errors {self._errors}  below full marks {self._below_full}"
        )

    # -- the run --

    def run(self) -> BatchSummary:
        start = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        lock = open(self.out / ".lock", "a+")  # noqa: SIM115 - held for the whole run
        try:
            import fcntl

            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.summary.stopped = f"another grader batch is writing to {self.out}"
                return self.summary
            self._prepare_work_root()
            subs = self._discover()
            self.summary.total = len(subs)
            todo = self._todo(subs)
            self.say(
                f"grader batch: {len(subs)} submissions, {self.summary.kept} already graded, "
                f"{len(todo)} to grade with {self.opts.workers} worker(s)"
            )
            self._started = time.monotonic()
            pending = todo
            engines = contextlib.ExitStack()
            try:
                if todo and not self.opts.static_only and self.opts.isolate:
                    self._start_engines(engines)
                if todo and not self.opts.static_only:
                    self._find_seeded_cache()
                for attempt in range(1 + self.opts.retries):
                    if not pending or self.summary.stopped:
                        break
                    if attempt:
                        self.say(
                            f"grader batch: retrying {len(pending)} with infrastructure errors"
                        )
                        if not self._wait_for_infra():
                            break
                    pending = self._pass(pending)
            except KeyboardInterrupt:
                self._interrupted = True
                self._stop.set()
                self.summary.stopped = "interrupted"
                self._finish()
                raise
            except EngineError as e:
                self.summary.stopped = f"worker engines: {e}"
            finally:
                engines.close()
            self._finish()
        finally:
            if self.opts.work_root is not None and not self._interrupted:
                shutil.rmtree(self.opts.work_root, ignore_errors=True)
            self.summary.seconds = time.monotonic() - start
            lock.close()
        return self.summary

    def _discover(self) -> list[Submission]:
        """The submissions, each with its own report file and namespace; ids that would
        have shared one are said once per run (and kept in the summary)."""
        subs, collisions = with_ids(discover(self.root, self.opts.assignment))
        if not self.summary.collisions:
            for c in collisions:
                self.say(c.message())
            self.summary.collisions = [c.students for c in collisions]
        return subs

    def _start_engines(self, stack: contextlib.ExitStack) -> None:
        """One worker engine per worker (started at once, in parallel)."""
        from grader.engine.config import registry_host
        from grader.grading.checks import run as engine

        upstream = self.opts.registry or registry_host()
        self._engines = queue.Queue()
        started = time.monotonic()
        for _ in range(max(1, self.opts.workers)):
            self._engines.put(stack.enter_context(engine.claim_worker(upstream)))
        self.say(
            f"grader batch: {self._engines.qsize()} worker engine(s) started in "
            f"{time.monotonic() - started:.1f} s"
        )

    def _find_seeded_cache(self) -> None:
        """Whether builds import a seeded cache: said once, at the start."""
        from grader.grading.batch import seeded_cache

        assignment = self.opts.assignment or ASSIGNMENT
        registry = self._grading_registry() or ""
        digest = seeded_cache.lookup(registry, assignment) if self.opts.use_seeded_cache else None
        self.opts.seeded_cache = assignment if digest else None
        if digest:
            ref = seeded_cache.cache_ref(registry, assignment)
            self.say(f"grader batch: builds import the seeded cache {ref} ({digest[:19]})")
            stale = seeded_cache.changed_bases(registry, assignment)
            if stale:
                self.say(
                    f"grader batch: warning: {', '.join(stale)} changed since the cache was "
                    f"seeded, so builds will miss it: run `grader cache seed` again"
                )
        elif self.opts.use_seeded_cache:
            self.say(
                f"grader batch: no seeded cache for {assignment}: every build starts cold "
                f"(`grader cache seed REFERENCE_DIR --assignment {assignment}` seeds one)"
            )

    def _prepare_work_root(self) -> None:
        from grader.grading.sandbox.runner import default_work_root

        if self.opts.work_root is None:
            key = hashlib.sha256(str(self.out.resolve()).encode()).hexdigest()[:10]
            self.opts.work_root = default_work_root() / f"batch-{key}"
        # Leftovers of a crashed run of this batch (we hold its lock).
        shutil.rmtree(self.opts.work_root, ignore_errors=True)
        for tmp in (self.out / "reports").glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            from grader.grading.sandbox.limits import remove_stale

            remove_stale()

    def _todo(self, subs: list[Submission]) -> list[tuple[Submission, str]]:
        key = self.opts.settings_key()
        todo = []
        for sub in subs:
            fp = fingerprint(sub.path)
            rec = load_record(report_path(self.out, sub.file_key))
            if is_finished(rec, fp, key, sub.student):
                self.summary.kept += 1
            else:
                todo.append((sub, fp))
        return todo

    def _pass(self, todo: list[tuple[Submission, str]]) -> list[tuple[Submission, str]]:
        """Grade ``todo``; returns the ones that ended with infrastructure errors."""
        retry: list[tuple[Submission, str]] = []
        queue = list(todo)
        running: dict[Future, tuple[Submission, str]] = {}
        workers = max(1, self.opts.workers)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grade")
        try:
            while queue or running:
                while queue and len(running) < workers and not self._stop.is_set():
                    item = queue.pop(0)
                    running[pool.submit(self._one, *item)] = item
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    item = running.pop(fut)
                    _, record, write_error = fut.result()
                    self._account(item, record, write_error, retry)
        except KeyboardInterrupt:
            # Known before the pool shuts down, so Ctrl-C does not wait for running gradings.
            self._interrupted = True
            self._stop.set()
            raise
        finally:
            # On Ctrl-C, do not wait for running submissions: their reports are not written
            # and they are graded again next run.
            pool.shutdown(wait=not self._interrupted, cancel_futures=True)
        return retry

    def _account(self, item, record, write_error, retry) -> None:
        sub = item[0]
        self._progress(sub, record, write_error)
        if record is None:
            return
        self.summary.graded += 1
        if write_error:
            self.summary.unsaved.append(sub.student)
            if not self._stop.is_set():
                self.summary.stopped = (
                    f"cannot write results to {self.out}: {write_error}; "
                    "free space and run the same command again"
                )
                self._stop.set()
            return
        if not record["complete"]:
            retry.append(item)
            if not self._stop.is_set() and not self._wait_for_infra():
                self._stop.set()

    def _write_page(self) -> None:
        """The instructor's results page; a failure to draw it never loses the grades."""
        from grader.grading.batch.page import write_page

        try:
            path = write_page(self.out)
        except OSError:
            raise
        except Exception as e:  # a plotting bug: the CSV and reports are already written
            self.say(f"grader batch: cannot write index.html: {type(e).__name__}: {e}")
            return
        self.say(f"grader batch: class results page: {path}")

    def _finish(self) -> None:
        s = self.summary
        key = self.opts.settings_key()
        s.incomplete = []
        s.complete = 0
        for sub in self._discover():
            rec = load_record(report_path(self.out, sub.file_key))
            if (
                rec
                and rec.get("student") == sub.student
                and rec.get("complete")
                and rec.get("settings") == key
            ):
                s.complete += 1
            else:
                s.incomplete.append(sub.student)
        try:
            rows = write_grades_csv(self.out)
            self.say(f"grader batch: grades.csv has {rows} rows")
            self._write_page()
        except OSError as e:
            err = e.strerror or str(e)
            self.say(f"grader batch: cannot write grades.csv: {err}")
            if not s.stopped:
                s.stopped = f"cannot write results to {self.out}: {err}"
        if s.stopped:
            self.say(f"grader batch: stopped: {s.stopped}")
        self.say(
            f"grader batch: {s.complete}/{s.total} complete, {len(s.incomplete)} to regrade "
            f"({', '.join(map(shown, s.incomplete[:10]))}"
            f"{' ...' if len(s.incomplete) > 10 else ''}); "
            f"{_fmt_secs(s.seconds or (time.monotonic() - self._started))}"
            + ("; run the same command again to finish them" if s.incomplete else "")
        )


def run_batch(submissions_dir: Path, opts: BatchOptions) -> BatchSummary:
    return Batch(submissions_dir, opts).run()


# --- command line ----------------------------------------------------------------------


def add_subparser(sub) -> None:
    """``grader batch``: registered by grader.cli."""
    p = sub.add_parser(
        "batch",
        help="grade every submission in a folder (resumable; one JSON report each + grades.csv)",
    )
    p.add_argument("submissions", metavar="SUBMISSIONS_DIR")
    p.add_argument("--out", required=True, metavar="RESULTS_DIR")
    p.add_argument("--workers", type=int, default=1, help="submissions graded at once")
    p.add_argument("--platforms", default="linux/amd64,linux/arm64")
    p.add_argument("--assignment", default=ASSIGNMENT,
                   help="nbgrader layout: grade SUBMISSIONS_DIR/<student>/<assignment> when it "
                   "exists (default: %(default)s)")  # fmt: skip
    p.add_argument("--registry", help="grading registry host:port (default: the course's)")
    p.add_argument("--namespace-prefix", default="",
                   help="push images to REGISTRY/PREFIX/<student>/...")  # fmt: skip
    p.add_argument("--static", action="store_true", help="static checks only (no engine)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run of build.sh")
    p.add_argument("--build-timeout", type=float, default=900)
    p.add_argument("--run-timeout", type=float, default=120)
    p.add_argument("--engine-wait", type=float, default=120,
                   help="seconds to wait for a stopped engine or registry")  # fmt: skip
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--no-seeded-cache", action="store_true",
                   help="builds start cold even with a cache from `grader cache seed`")  # fmt: skip
    p.add_argument("--unsafe-shared-engine", action="store_true",
                   help="where worker engines cannot run (no user namespaces, no rootless "
                   "tools): grade on the shared root engine anyway. Any submission can then "
                   "take over this machine as root: only for code you trust")  # fmt: skip
    p.add_argument("--gradebook", metavar="DB_URL",
                   help="also write the grades into this nbgrader gradebook "
                   "(e.g. sqlite:///gradebook.db)")  # fmt: skip
    p.set_defaults(func=cli)


def cli(args) -> int:
    from grader.grading.api import parse_platforms

    root = Path(args.submissions)
    if not root.is_dir():
        print(f"grader batch: {root}: not a directory", file=sys.stderr)
        return 2
    try:
        platforms = parse_platforms(args.platforms)
    except ValueError as e:
        print(f"grader batch: --platforms: {e}", file=sys.stderr)
        return 2
    opts = BatchOptions(
        out=Path(args.out),
        workers=max(1, args.workers),
        platforms=platforms,
        registry=args.registry,
        namespace_prefix=args.namespace_prefix,
        assignment=args.assignment or None,
        static_only=args.static,
        limits=Limits(seconds=args.timeout, command_seconds=args.timeout),
        build_timeout=args.build_timeout,
        run_timeout=args.run_timeout,
        engine_wait=args.engine_wait,
        retries=max(0, args.retries),
        use_seeded_cache=not args.no_seeded_cache,
    )
    if not args.static:
        from grader.engine.rootless import rootless_problem
        from grader.grading.sandbox import sandbox_problem

        problem = sandbox_problem()
        if problem:
            print(f"grader batch: cannot run build.sh safely here: {problem}", file=sys.stderr)
            return 2
        wall = rootless_problem()
        if wall and not args.unsafe_shared_engine:
            print(
                f"grader batch: refusing to run learners' code: worker engines cannot run "
                f"here ({wall}). Without them every build.sh, Dockerfile and RUN step "
                "reaches the shared root engine, and any submission can take over this "
                "machine. Fix that, grade with --static, or accept the risk for code you "
                "trust with --unsafe-shared-engine.",
                file=sys.stderr,
            )
            return 2
        opts.isolate = wall is None
    received: list[int] = []

    def terminated(signum, _frame) -> None:  # `kill`, `timeout`, a service manager
        received.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    try:
        summary = run_batch(root, opts)
    except KeyboardInterrupt:
        why = "terminated" if received else "interrupted"
        print(f"grader batch: {why}; finished reports are kept, run the same command "
              "again to continue", file=sys.stderr)  # fmt: skip
        sys.stderr.flush()
        # Running gradings are abandoned (their sandboxes die with this process).
        os._exit(128 + (received[0] if received else signal.SIGINT))
    if args.gradebook and not summary.stopped:
        from grader.grading.batch.gradebook import export

        try:
            n = export(opts.out, args.gradebook, assignment=opts.assignment or ASSIGNMENT)
        except Exception as e:
            print(f"grader batch: gradebook export failed: {e}", file=sys.stderr)
            return 3
        print(f"grader batch: {n} grades written to {args.gradebook}", file=sys.stderr)
    return summary.exit_code
