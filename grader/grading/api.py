"""``grader.check(path)``: grade one challenge submission; the CLI and nbgrader cells use it.

Static criteria (build.sh and Dockerfile) always run. Without ``static=True`` the engine
criteria (:func:`grader.grading.checks.run.check_engine`) and the registry criteria
(:func:`grader.grading.checks.image.check_image`) run too, on ``image`` or, by default, the
image build.sh pushed. Those modules are imported only when needed (a static check stays
fast); when one cannot be imported (a dependency missing from the installation) or fails,
its criteria are reported as ``error`` with the reason, never as passed. Static-only runs
report them as ``skipped``. :func:`grade` also returns what the engine run did (the batch
records it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from grader.grading.caps import limit_findings
from grader.grading.criteria import BY_ID, CRITERIA
from grader.grading.report import CriterionResult, Finding, Report
from grader.grading.rules import grader as gr
from grader.grading.submission import FileText, SubmissionUnreadable, open_root

if TYPE_CHECKING:
    from grader.grading.checks.run import EngineOptions, EngineOutcome

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")

__all__ = ["DEFAULT_PLATFORMS", "SubmissionUnreadable", "check", "grade", "parse_platforms"]


def parse_platforms(platforms: str | Iterable[str]) -> tuple[str, ...]:
    """``"linux/amd64,linux/arm64"`` or an iterable -> normalised tuple; ValueError if bad."""
    from grader.docker.registry import Platform

    items = platforms.split(",") if isinstance(platforms, str) else list(platforms)
    out: list[str] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        p = str(Platform.parse(item))
        if p not in out:
            out.append(p)
    if not out:
        raise ValueError("no platform given")
    return tuple(out)


def check(
    path: str | os.PathLike,
    *,
    image: str | None = None,
    static: bool = False,
    platforms: str | Iterable[str] = DEFAULT_PLATFORMS,
    registry_client=None,
    scratch: bool = False,
) -> Report:
    """Grade the submission in ``path``; raises :class:`SubmissionUnreadable` when the folder
    itself cannot be read and ValueError for a bad ``platforms`` value. ``scratch``: build.sh's
    pushes go to a repository of the check's own (``REGISTRY/<folder>-check/``), never over
    the tags it names (a learner's own check in the lab)."""
    engine = None
    if scratch and not static:
        from grader.grading.checks.run import EngineOptions

        engine = EngineOptions(scratch=True)
    report, _ = grade(path, image=image, static=static, platforms=platforms,
                      registry_client=registry_client, engine=engine)  # fmt: skip
    return report


def grade(
    path: str | os.PathLike,
    *,
    image: str | None = None,
    static: bool = False,
    platforms: str | Iterable[str] = DEFAULT_PLATFORMS,
    registry_client=None,
    engine: EngineOptions | None = None,
) -> tuple[Report, EngineOutcome | None]:
    """:func:`check` with the engine run's settings (a batch's namespace and limits), also
    returning what that run did (None when it did not run)."""
    from grader.grading.checks import buildscript as static_checks

    root = open_root(path)
    wanted = parse_platforms(platforms)
    try:
        analysis = static_checks.analyse(root, wanted)
        results = {c.id: c for c in static_checks.evaluate(analysis)}
    except Exception as e:  # a grader bug must be an `error` with a reason, not a traceback
        analysis = static_checks.StaticAnalysis(root=root, platforms=wanted,
                                                build_sh=FileText("build.sh"))  # fmt: skip
        results = {cid: static_checks.crashed(cid, e) for cid in static_checks.STATIC_CRITERIA}
    outcome = None
    if static:
        results.update({c.id: _status(c.id, "skipped") for c in CRITERIA if c.needs != "static"})
    else:
        # build.sh runs first (the engine checks push), then the registry checks read what it
        # pushed: --image if given, else the image the engine run used, else the static tag
        engine_results, outcome = _engine(root, image, wanted, analysis, engine)
        results.update(engine_results)
        ref = image or (outcome.image if outcome else None) or analysis.pushed_image
        results.update(_registry(ref, wanted, registry_client, analysis))
    report = Report(submission=str(path))
    for c in CRITERIA:
        missing = gr.CHECK_CRASHED.finding(check=c.needs, detail=f"no result for {c.id}")
        report.criteria.append(results.get(c.id) or _error(c.id, missing))
    return limit_findings(report), outcome


def _registry(ref, wanted, client, analysis) -> dict[str, CriterionResult]:
    ids = [c.id for c in CRITERIA if c.needs == "registry"]
    if not ref:
        return _all_error(ids, _no_image(analysis))
    try:
        from grader.grading.checks.image import check_image
    except ImportError as e:
        return _unavailable("registry", ids, e)
    return _collect("registry", "check_image", ids, lambda: check_image(ref, wanted, client))


def _engine(
    root: Path, image, wanted, analysis, opts
) -> tuple[dict[str, CriterionResult], EngineOutcome | None]:
    """The engine criteria, and what their run did (the image it started, what it pushed)."""
    ids = [c.id for c in CRITERIA if c.needs == "engine"]
    try:
        from grader.grading.checks.run import check_engine
    except ImportError as e:
        return _unavailable("engine", ids, e), None
    outcome = None

    def run() -> list[CriterionResult]:
        nonlocal outcome
        outcome = check_engine(root, image, wanted, analysis, opts)
        return outcome.results

    results = _collect("engine", "check_engine", ids, run)
    return results, outcome


def _unavailable(check: str, ids: list[str], e: ImportError) -> dict[str, CriterionResult]:
    """GR001: the check family's module cannot be imported here (a dependency is missing)."""
    return _all_error(ids, gr.CHECK_UNAVAILABLE.finding(check=check, detail=str(e)))


def _collect(
    check: str, func: str, ids: list[str], call: Callable[[], list[CriterionResult]]
) -> dict[str, CriterionResult]:
    """The results ``call`` returns for ``ids``; GR003 for a crash or a missing result."""
    try:
        got = call()
    except Exception as e:  # a bug in a check must not become a traceback for learners
        crashed = gr.CHECK_CRASHED.finding(check=check, detail=f"{type(e).__name__}: {e}")
        return _all_error(ids, crashed)
    out = {r.id: r for r in got if isinstance(r, CriterionResult) and r.id in ids}
    for cid in ids:
        if cid not in out:
            detail = f"{func} returned no result for {cid}"
            out[cid] = _error(cid, gr.CHECK_CRASHED.finding(check=check, detail=detail))
    return out


def _no_image(analysis) -> Finding:
    script = analysis.script
    if script is None:
        detail = "build.sh cannot be read and --image was not given"
    elif not any(b.exports_to_registry for b in script.builds):
        detail = "build.sh pushes no image and --image was not given"
    else:
        from grader.parse.buildscript import pushed_image

        tag = pushed_image(script, analysis.platforms)
        what = tag.text if tag is not None else "(no -t)"
        detail = (
            f"build.sh pushes {what}, which cannot be resolved statically, and --image "
            "was not given"
        )
    return gr.NO_IMAGE.finding(detail=detail)


def _status(cid: str, status: str, findings: list[Finding] | None = None) -> CriterionResult:
    c = BY_ID[cid]
    return CriterionResult(id=cid, title=c.title, status=status, points=0.0,  # type: ignore[arg-type]
                           max_points=float(c.points), findings=findings or [])  # fmt: skip


def _error(cid: str, finding: Finding) -> CriterionResult:
    return _status(cid, "error", [finding])


def _all_error(ids: list[str], finding: Finding) -> dict[str, CriterionResult]:
    return {cid: _error(cid, finding) for cid in ids}
