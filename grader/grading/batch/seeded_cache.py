"""The seeded build cache: the instructor builds the assignment's reference solution once and
exports its build cache into the registry's read-only ``cache/`` namespace; every build a
graded submission runs imports it (the gate adds ``--cache-from``), so a cold worker engine
skips the steps a submission shares with the reference (the challenge's ``apt-get``).

    grader cache seed REFERENCE_DIR [--assignment 07-challenge] [--force]
    grader cache status [--assignment 07-challenge]

Learners only read it: the scope proxy serves ``cache/`` read-only to every caller (a
``--cache-to`` or a push there is refused, RN409), and the gate refuses it first (RN414).

    repository(assignment)           -> "cache/<assignment>"
    lookup(registry, assignment)     -> the seeded cache's digest, or None
    seed(reference, ...)             -> a SeedResult (skips work already done)
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grader import proc
from grader.engine.config import PLATFORMS, registry_host, state_dir
from grader.grading.criteria import ASSIGNMENT

#: The registry namespace the scope proxy serves read-only (``scope.DEFAULT_READ_ONLY``).
NAMESPACE = "cache"
TAG = "latest"
_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
#: Build output (``--progress=plain``): a step's name, and how it ended.
_STEP = re.compile(r"^#(\d+) (\[.*\] .*|exporting cache.*)$")
_END = re.compile(r"^#(\d+) (CACHED|DONE [\d.]+s|ERROR.*)$")


class SeedError(Exception):
    """The cache could not be seeded; the message says why and what to do."""


@dataclass
class SeedResult:
    assignment: str
    ref: str
    digest: str
    fingerprint: str
    platforms: list[str]
    seconds: float
    skipped: bool = False  # already seeded from the same files: nothing was built
    bases: dict[str, str] = field(default_factory=dict)  # base image -> digest when seeded
    reference: str = ""  # the folder seeded from


def repository(assignment: str) -> str:
    """``cache/<assignment>``: the repository path of an assignment's seeded cache."""
    if not _NAME.fullmatch(assignment):
        raise SeedError(
            f"assignment {assignment!r} is not a registry name: lower-case letters, digits "
            "and . _ - inside"
        )
    return f"{NAMESPACE}/{assignment}"


def cache_ref(registry: str, assignment: str) -> str:
    return f"{registry}/{repository(assignment)}:{TAG}"


def lookup(registry: str, assignment: str) -> str | None:
    """The digest of the seeded cache of ``assignment`` in ``registry``, or None (not seeded,
    or the registry cannot say)."""
    from grader.docker.registry import RegistryClient, RegistryError

    try:
        doc = RegistryClient(credentials={}).fetch_manifest(cache_ref(registry, assignment))
    except (RegistryError, SeedError):
        return None
    return doc.digest


def import_option(registry: str, assignment: str) -> str:
    """The ``--cache-from`` value a graded build imports the seeded cache with."""
    return f"type=registry,ref={cache_ref(registry, assignment)}"


# --- seeding ------------------------------------------------------------------------------


def record_path(assignment: str) -> Path:
    return state_dir() / "seeded-cache" / f"{assignment}.json"


def base_images(dockerfile: Path, registry: str) -> dict[str, str]:
    """Each base image the Dockerfile builds FROM -> its digest in ``registry`` (Docker Hub
    names are read from the course registry, which the engines use as their Hub mirror).
    A cache key starts at the base's digest: a rebuilt base image makes the cache miss."""
    from grader.docker.registry import Reference, RegistryClient, RegistryError
    from grader.parse.dockerfile import parse

    out: dict[str, str] = {}
    client = RegistryClient(credentials={})
    for stage in parse(dockerfile.read_text(errors="replace")).stages:
        name = stage.base_resolved
        if stage.base_stage is not None or "$" in name or name == "scratch":
            continue
        try:
            ref = Reference.parse(name)
            out[name] = client.fetch_manifest(f"{registry}/{ref.repository}:{ref.reference}").digest
        except RegistryError as e:
            out[name] = f"unreadable: {e.kind}"
    return out


def changed_bases(registry: str, assignment: str) -> list[str]:
    """Base images whose digest changed since the last seed (its cache no longer matches)."""
    bases = _read_record(assignment).get("bases") or {}
    reference = _read_record(assignment).get("reference")
    if not bases or not reference or not (Path(reference) / "Dockerfile").is_file():
        return []
    now = base_images(Path(reference) / "Dockerfile", registry)
    return sorted(name for name, digest in bases.items() if now.get(name) != digest)


def fingerprint(
    reference: Path, platforms: Sequence[str], bases: dict[str, str] | None = None
) -> str:
    """A hash of the build's inputs: every file of the reference, the platforms and the
    base images' digests."""
    h = hashlib.sha256(json.dumps([sorted(platforms), bases or {}], sort_keys=True).encode())
    for p in sorted(reference.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(reference)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def _read_record(assignment: str) -> dict:
    try:
        return json.loads(record_path(assignment).read_text())
    except (OSError, ValueError):
        return {}


def _write_record(result: SeedResult) -> None:
    path = record_path(result.assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1) + "\n")
    tmp.replace(path)


def builder_problem(builder: str) -> str | None:
    """Why ``builder`` cannot export a registry cache, or None. The docker driver can only
    with the containerd image store; docker-container and remote builders always can."""
    try:
        out = proc.run(["docker", "buildx", "inspect", builder], timeout=60, check=False)
    except proc.CommandError as e:
        return f"`docker buildx inspect {builder}` failed: {e}"
    if out.returncode != 0:
        return f"no builder {builder!r}: {out.stderr.strip()[:300]}"
    driver = re.search(r"^Driver:\s*(\S+)", out.stdout, re.M)
    if driver is None or driver.group(1) != "docker":
        return None
    info = proc.run(
        ["docker", "info", "--format", "{{json .DriverStatus}}"], timeout=60, check=False
    )
    if "io.containerd.snapshotter" in info.stdout:
        return None
    return (
        f"builder {builder!r} uses the docker driver with the classic image store, which "
        "cannot export a build cache. Turn on the containerd image store "
        '("features": {"containerd-snapshotter": true} in daemon.json; `grader engine up` '
        "does) or pass --builder with a docker-container builder"
    )


def _build_argv(reference: Path, ref: str, platforms: Sequence[str], builder: str) -> list[str]:
    """``--no-cache --pull``: the seed is the reference built from the base images alone,
    never steps the engine's local cache holds (learners' code may have run there)."""
    return [
        "docker", "buildx", "build", f"--builder={builder}", "--no-cache", "--pull",
        f"--platform={','.join(platforms)}", "--provenance=false", "--progress=plain",
        f"--cache-to=type=registry,ref={ref},mode=max", "--output=type=cacheonly",
        f"--file={reference / 'Dockerfile'}", str(reference),
    ]  # fmt: skip


def _build(argv: list[str], timeout: float, say: Callable[[str], None]) -> None:
    """Run the build, showing its steps; a failure raises with the build's last lines."""
    stream = proc.stream(argv, timeout=timeout)
    tail: list[str] = []
    steps: dict[str, str] = {}
    for _, line in stream:
        tail = [*tail[-29:], line]
        shown = _progress(line.strip(), steps)
        if shown:
            say(f"  {shown}")
    if stream.returncode != 0 or stream.error is not None:
        raise SeedError(
            f"the reference build failed ({stream.error or stream.returncode}):\n"
            + "\n".join(tail[-15:])
        )


def _progress(line: str, steps: dict[str, str]) -> str | None:
    """A step's end as one line (``[linux/arm64 build 2/5] RUN ...: DONE 31.2s``), else None."""
    start = _STEP.match(line)
    if start:
        steps[start.group(1)] = start.group(2)
        return None
    end = _END.match(line)
    name = steps.get(end.group(1), "") if end else ""
    if not end or name.startswith("[internal]"):
        return None
    return f"{name[:110]}: {end.group(2)}"


def _check_reference(reference: Path) -> None:
    if not (reference / "Dockerfile").is_file():
        raise SeedError(f"{reference}: no Dockerfile (give the reference solution's folder)")


def seed(
    reference: Path,
    *,
    assignment: str = ASSIGNMENT,
    platforms: Sequence[str] = PLATFORMS,
    registry: str | None = None,
    builder: str = "default",
    force: bool = False,
    timeout: float = 1800.0,
    say: Callable[[str], None] = print,
) -> SeedResult:
    """Build ``reference`` for ``platforms`` on the course engine and export its cache
    (``mode=max``: every step) to ``REGISTRY/cache/<assignment>``. Idempotent: when the
    registry holds what the last seed of the same files pushed, nothing is built."""
    reference = Path(reference).resolve()
    _check_reference(reference)
    registry = registry or registry_host()
    ref = cache_ref(registry, assignment)
    bases = base_images(reference / "Dockerfile", registry)
    fp = fingerprint(reference, platforms, bases)
    last, now = _read_record(assignment), lookup(registry, assignment)
    if not force and now and last.get("fingerprint") == fp and last.get("digest") == now:
        say(f"grader cache seed: {ref} is up to date ({now[:19]}); --force seeds it again")
        return SeedResult(**{**last, "skipped": True})
    why = builder_problem(builder)
    if why:
        raise SeedError(why)
    say(f"grader cache seed: building {reference} for {','.join(platforms)} -> {ref}")
    start = time.monotonic()
    _build(_build_argv(reference, ref, platforms, builder), timeout, say)
    digest = lookup(registry, assignment)
    if digest is None:
        raise SeedError(f"the build finished but {ref} cannot be read back from {registry}")
    result = SeedResult(assignment, ref, digest, fp, list(platforms), time.monotonic() - start)
    result.bases, result.reference = bases, str(reference)
    _write_record(result)
    say(f"grader cache seed: {ref} seeded in {result.seconds:.1f} s ({digest[:19]})")
    return result


# --- command line -------------------------------------------------------------------------


def add_subparser(sub) -> None:
    """``grader cache``: registered by grader.cli."""
    p = sub.add_parser("cache", help="the build cache graded builds import (seed it once)")
    p.add_argument("action", choices=["seed", "status"])
    p.add_argument("reference", nargs="?", metavar="REFERENCE_DIR",
                   help="seed: the reference solution's folder (its Dockerfile)")  # fmt: skip
    p.add_argument("--assignment", default=ASSIGNMENT, help="default: %(default)s")
    p.add_argument("--platforms", default=",".join(PLATFORMS))
    p.add_argument("--registry", help="host:port (default: the course registry)")
    p.add_argument("--builder", default="default", help="buildx builder (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="seed again even when up to date")
    p.set_defaults(func=cli)


def _status(args) -> int:
    registry = args.registry or registry_host()
    digest = lookup(registry, args.assignment)
    if digest is None:
        print(f"{cache_ref(registry, args.assignment)}: not seeded (graded builds start cold)")
        return 1
    last = _read_record(args.assignment)
    seeded = f", seeded in {last['seconds']:.0f} s" if last.get("digest") == digest else ""
    print(f"{cache_ref(registry, args.assignment)}: {digest}{seeded}")
    stale = changed_bases(registry, args.assignment)
    if stale:
        print(f"stale: {', '.join(stale)} changed since; run `grader cache seed` again")
        return 1
    return 0


def cli(args) -> int:
    try:
        if args.action == "status":
            return _status(args)
        if not args.reference:
            print("grader cache seed: give the reference solution's folder", file=sys.stderr)
            return 2
        platforms = [p for p in args.platforms.split(",") if p]
        seed(Path(args.reference), assignment=args.assignment, platforms=platforms,
             registry=args.registry, builder=args.builder, force=args.force)  # fmt: skip
    except SeedError as e:
        print(f"grader cache {args.action}: {e}", file=sys.stderr)
        return 1
    return 0
