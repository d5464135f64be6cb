"""The registry checks: criteria ``manifest`` and ``image-arch`` on a pushed image.

``manifest``: the reference names an index (OCI image index or Docker manifest list) that
lists every required platform, compared after containerd's normalisation (``arm64/v8`` is
``arm64``). Attestation entries are reported, not counted; a single-platform manifest fails.

``image-arch``: for every platform image in the index, its config's os/architecture/variant
match the index entry, and the program ``docker run`` would start (ENTRYPOINT + CMD resolved
in the image; a ``#!`` script's interpreter) is an ELF binary for that architecture. Layers
are streamed only as far as needed (:mod:`grader.docker.layers`); platforms are checked in parallel.

Nothing here raises for bad input or a bad registry: every problem is a finding (rules
MF3xx, :mod:`grader.grading.rules.image`) and a status (registry unreachable: ``error``; tag
missing or content broken: ``fail``). Everything runs within ``timeout`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from grader.docker import elf
from grader.docker.layers import ImageFileError, Limits, Program, read_program
from grader.docker.registry import (
    ATTESTATION_TYPE,
    Descriptor,
    Document,
    Platform,
    Reference,
    RegistryClient,
    RegistryError,
    normalize,
)
from grader.grading.criteria import BY_ID
from grader.grading.report import CriterionResult, Finding, Status
from grader.grading.rules import image as rules

__all__ = ["DEFAULT_PLATFORMS", "check_image"]

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")

#: Registry failures that are the grading machine's problem, not the submission's.
_OUR_SIDE = ("unreachable", "timeout", "http", "auth", "bad-reference")


@dataclass
class _Outcome:
    """Findings for one criterion and the worst status they add up to."""

    id: str
    findings: list[Finding] = field(default_factory=list)
    failed: bool = False
    errored: bool = False

    def add(self, finding: Finding, status: Status | None = None) -> None:
        self.findings.append(finding)
        if status == "fail":
            self.failed = True
        elif status == "error":
            self.errored = True

    def result(self) -> CriterionResult:
        criterion = BY_ID[self.id]
        status: Status = "fail" if self.failed else "error" if self.errored else "pass"
        points = float(criterion.points) if status == "pass" else 0.0
        return CriterionResult(
            criterion.id, criterion.title, status, points, float(criterion.points), self.findings
        )


def _short(digest: str) -> str:
    """Digests in findings: whole, so they can be pasted into `imagetools inspect REF@DIGEST`."""
    return digest


def _read_failure(ref: str, e: RegistryError) -> tuple[Finding, Status]:
    """The MF30x finding and status for a registry error on the top-level reference."""
    reason = str(e)
    if e.kind == "bad-reference":
        return rules.BAD_REFERENCE.finding(ref=ref, reason=reason), "error"
    if e.kind == "not-found":
        return rules.IMAGE_NOT_FOUND.finding(ref=ref, reason=reason), "fail"
    if e.kind == "auth":
        return rules.REGISTRY_AUTH.finding(ref=ref, reason=reason), "error"
    if e.kind in _OUR_SIDE:
        return rules.REGISTRY_UNREACHABLE.finding(ref=ref, reason=reason), "error"
    return rules.CONTENT_UNREADABLE.finding(ref=ref, reason=reason), "fail"


def _is_attestation(desc: Descriptor) -> bool:
    return desc.annotations.get("vnd.docker.reference.type") == ATTESTATION_TYPE


# --- one platform image ---------------------------------------------------------------------


@dataclass
class _Inspected:
    """What one image manifest holds: its config platform and the program it runs."""

    digest: str
    config: dict | None = None
    program: Program | None = None
    problem: tuple[Finding, Status] | None = None  # could not read it at all
    program_problem: ImageFileError | None = None
    kind: str = ""  # the child's media type when it is not an image manifest


def _inspect(
    client: RegistryClient,
    parent: Document,
    desc: Descriptor | None,
    label: str,
    deadline: float,
    limits: Limits | None,
) -> _Inspected:
    digest = desc.digest if desc is not None else parent.digest
    seen = _Inspected(digest)

    def in_time() -> None:
        if time.monotonic() > deadline:
            raise RegistryError("timeout", "the registry check ran out of time")

    try:
        in_time()
        doc = client.fetch_child(parent, desc) if desc is not None else parent
        if doc.is_index or doc.config is None:
            seen.kind = doc.media_type or "not an image manifest"
            return seen
        in_time()
        seen.config = client.fetch_config(doc).json
        in_time()
        try:
            seen.program = read_program(
                client, doc.reference, doc.layers, seen.config, deadline=deadline, limits=limits
            )
        except ImageFileError as e:
            seen.program_problem = e
    except RegistryError as e:
        status: Status = "error" if e.kind in _OUR_SIDE else "fail"
        finding = rules.IMAGE_UNREADABLE.finding(
            platform=label, digest=_short(digest), reason=str(e)
        )
        seen.problem = (finding, status)
    return seen


def _judge(outcome: _Outcome, label: str, expected: Platform | None, seen: _Inspected) -> None:
    """Findings for one index entry (``expected`` is its platform; None for a lone manifest)."""
    digest = _short(seen.digest)
    if seen.problem is not None:
        outcome.add(*seen.problem)
        return
    if seen.kind:
        outcome.add(
            rules.NOT_AN_IMAGE.finding(platform=label, digest=digest, media_type=seen.kind),
            "fail",
        )
        return
    cfg = seen.config or {}
    values = {k: cfg.get(k) if isinstance(cfg.get(k), str) else "" for k in ("os", "architecture")}
    variant = cfg.get("variant") if isinstance(cfg.get("variant"), str) else ""
    config_platform = normalize(values["os"], values["architecture"], variant)
    shown = {
        "os": values["os"] or "(none)",
        "architecture": values["architecture"] or "(none)",
        "variant": variant or "(none)",
    }
    if expected is not None and config_platform != expected:
        outcome.add(
            rules.CONFIG_PLATFORM_MISMATCH.finding(
                platform=label, digest=digest, config_platform=str(config_platform), **shown
            ),
            "fail",
        )
    target = expected or config_platform
    if seen.program_problem is not None:
        e = seen.program_problem
        if e.kind == "no-command":
            outcome.add(rules.NO_COMMAND.finding(platform=label, digest=digest))
        else:
            outcome.add(
                rules.PROGRAM_NOT_FOUND.finding(
                    platform=label,
                    digest=digest,
                    reason=str(e),
                ),
                "fail",
            )
        return
    program = seen.program
    assert program is not None
    head = program.binary.head
    try:
        header = elf.identify(head)
    except elf.ElfError as e:
        header = None
        start = f"a broken ELF header: {e}"
    else:
        start = repr(head[:16])
    if not isinstance(header, elf.ElfHeader):
        outcome.add(
            rules.NOT_A_PROGRAM.finding(
                platform=label, digest=digest, route=program.route, start=start
            ),
            "fail",
        )
        return
    elf_arch = header.arch or f"unknown machine {header.machine}"
    if elf_arch != target.architecture:
        outcome.add(
            rules.BINARY_ARCH_MISMATCH.finding(
                platform=label,
                digest=digest,
                route=program.route,
                machine=header.machine_name,
                elf_arch=elf_arch,
                arch=target.architecture,
            ),
            "fail",
        )
        return
    outcome.add(
        rules.PLATFORM_CHECKED.finding(
            platform=label, digest=digest, route=program.route, elf=header.describe(), **shown
        )
    )


# --- the check ------------------------------------------------------------------------------


def check_image(
    ref: str,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    client: RegistryClient | None = None,
    *,
    timeout: float = 60.0,
    limits: Limits | None = None,
) -> list[CriterionResult]:
    """Check the pushed image ``ref``: results for ``manifest`` and ``image-arch``, in order.

    ``platforms`` are the ones the index must list (``linux/arm64/v8`` == ``linux/arm64``);
    a malformed platform string raises ValueError (a usage error, not a finding).
    """
    required = [Platform.parse(p) for p in platforms]
    deadline = time.monotonic() + timeout
    client = client or RegistryClient(timeout=min(10.0, timeout))
    manifest = _Outcome("manifest")
    image_arch = _Outcome("image-arch")
    try:
        top = client.fetch_manifest(Reference.parse(ref))
        entries = top.manifests if top.is_index else []  # a malformed descriptor raises
    except RegistryError as e:
        finding, status = _read_failure(ref, e)
        manifest.add(finding, status)
        image_arch.add(rules.IMAGE_NOT_CHECKED.finding(ref=ref, reason=finding.message), status)
    else:
        if top.is_index:
            found = _judge_index(manifest, ref, top, entries, required)
            _judge_images(image_arch, client, top, found, ref, deadline, limits)
        else:
            _judge_lone_image(manifest, image_arch, client, ref, top, deadline, limits)
    return [manifest.result(), image_arch.result()]


def _judge_lone_image(manifest, image_arch, client, ref, top, deadline, limits) -> None:
    """A single image where an index belongs: MF fails; its one platform is still checked."""
    seen = _inspect(client, top, None, "the image", deadline, limits)
    cfg = seen.config or {}
    lone = normalize(str(cfg.get("os", "")), str(cfg.get("architecture", "")), cfg.get("variant"))
    shown = str(lone) if seen.config else "platform unknown"
    manifest.add(rules.NOT_AN_INDEX.finding(ref=ref, platform=shown), "fail")
    _judge(image_arch, shown if seen.config else "the image", None, seen)


def _platform_images(manifest: _Outcome, entries: list[Descriptor]) -> list[Descriptor]:
    """The index's platform images; entries with no usable platform are findings."""
    images: list[Descriptor] = []
    for d in entries:
        platform = d.normalized_platform
        if platform is None or not platform.os or not platform.architecture:
            what = "no platform"
        elif platform.os == "unknown" or platform.architecture == "unknown":
            what = f"platform {platform}"
        else:
            images.append(d)
            continue
        manifest.add(rules.ENTRY_WITHOUT_PLATFORM.finding(digest=_short(d.digest), what=what))
    return images


def _judge_index(
    manifest: _Outcome, ref: str, top, entries: list[Descriptor], required: list[Platform]
) -> tuple[list[Descriptor], list[Descriptor]]:
    """The ``manifest`` criterion on an index: what it lists, duplicates, missing platforms.
    Returns (platform images, attestation manifests)."""
    attestations = [d for d in entries if _is_attestation(d)]
    images = _platform_images(manifest, [d for d in entries if d not in attestations])
    listed = ", ".join(f"{d.normalized_platform} ({_short(d.digest)})" for d in images)
    if attestations:
        listed += f", {len(attestations)} attestation manifest(s)"
    manifest.add(
        rules.INDEX_PLATFORMS.finding(
            ref=ref, media_type=top.media_type, digest=_short(top.digest), listed=listed or "none"
        )
    )
    if attestations:
        _list_attestations(manifest, images, attestations)
    present: dict[Platform, list[str]] = {}
    for d in images:
        present.setdefault(d.normalized_platform, []).append(_short(d.digest))
    for platform, digests in present.items():
        if len(digests) > 1:
            manifest.add(
                rules.DUPLICATE_PLATFORM.finding(
                    platform=str(platform), count=len(digests), digests=", ".join(digests)
                )
            )
    names = ", ".join(sorted(str(p) for p in present)) or "no platform images"
    for want in required:
        if want not in present:
            manifest.add(rules.PLATFORM_MISSING.finding(platform=str(want), listed=names), "fail")
    return images, attestations


def _list_attestations(manifest, images, attestations) -> None:
    by_digest = {d.digest: str(d.normalized_platform) for d in images}
    described = sorted(
        {
            by_digest.get(a.annotations.get("vnd.docker.reference.digest", ""), "an image")
            for a in attestations
        }
    )
    manifest.add(
        rules.ATTESTATIONS_LISTED.finding(count=len(attestations), described=", ".join(described))
    )


def _judge_images(image_arch, client, top, found, ref, deadline, limits) -> None:
    """The ``image-arch`` criterion: each platform image inspected (one inspection per
    distinct manifest digest, in parallel) and judged."""
    images, attestations = found
    if not images:  # top.manifests parsed already: it cannot raise here
        detail = f"{len(attestations)} attestation(s), {len(top.manifests)} entries in all"
        image_arch.add(rules.NO_PLATFORM_IMAGES.finding(ref=ref, detail=detail), "fail")
        return
    unique = list({d.digest: d for d in images}.values())
    with ThreadPoolExecutor(max_workers=min(4, len(unique))) as pool:
        futures = {
            d.digest: pool.submit(
                _inspect, client, top, d, str(d.normalized_platform), deadline, limits
            )
            for d in unique
        }
        inspected = {digest: future.result() for digest, future in futures.items()}
    for d in images:
        _judge(image_arch, str(d.normalized_platform), d.normalized_platform, inspected[d.digest])
