"""``grader.check(path)``: grade one challenge submission; the CLI and nbgrader cells use it.

Static criteria (build.sh and Dockerfile) always run. Without ``static=True`` the registry
criteria (``grader.checks.registry.check_image``) and the engine criteria
(``grader.checks.engine.check_engine``) run too, on ``image`` or, by default, the tag
build.sh pushes when it resolves statically. Those modules are imported only when needed;
when one is missing or fails, its criteria are reported as ``error`` with the reason, never
as passed. Static-only runs report them as ``skipped``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from grader.criteria import BY_ID, CRITERIA
from grader.report import CriterionResult, Finding, Report
from grader.submission import FileText, SubmissionUnreadable, open_root

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")

__all__ = ["DEFAULT_PLATFORMS", "SubmissionUnreadable", "check", "parse_platforms"]


def parse_platforms(platforms: str | Iterable[str]) -> tuple[str, ...]:
    """``"linux/amd64,linux/arm64"`` or an iterable -> normalised tuple; ValueError if bad."""
    from grader.registry import Platform

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
) -> Report:
    """Grade the submission in ``path``; raises :class:`SubmissionUnreadable` when the folder
    itself cannot be read and ValueError for a bad ``platforms`` value."""
    from grader.checks import static as static_checks

    root = open_root(path)
    wanted = parse_platforms(platforms)
    try:
        analysis = static_checks.analyse(root, wanted)
        results = {c.id: c for c in static_checks.evaluate(analysis)}
    except Exception as e:  # a grader bug must be an `error` with a reason, not a traceback
        analysis = static_checks.StaticAnalysis(root=root, platforms=wanted,
                                                build_sh=FileText("build.sh"))  # fmt: skip
        results = {cid: static_checks.crashed(cid, e) for cid in static_checks.STATIC_CRITERIA}
    later = [c.id for c in CRITERIA if c.needs != "static"]
    if static:
        for cid in later:
            results[cid] = _status(cid, "skipped")
    else:
        # build.sh runs first (the engine checks push), then the registry checks read what it
        # pushed: --image if given, else the image the engine run used, else the static tag
        engine_results, ran_image = _engine(root, image, wanted, analysis)
        results.update(engine_results)
        ref = image or ran_image or analysis.pushed_image
        results.update(_registry(ref, wanted, registry_client, analysis))
    report = Report(submission=str(path))
    for c in CRITERIA:
        report.criteria.append(
            results.get(c.id)
            or _error(
                c.id, _finding("CHECK_CRASHED", check=c.needs, detail=f"no result for {c.id}")
            )
        )
    return report


def _registry(ref, wanted, client, analysis) -> dict[str, CriterionResult]:
    ids = [c.id for c in CRITERIA if c.needs == "registry"]
    if not ref:
        return _all_error(ids, _no_image(analysis))
    return _run("registry", "check_image", ids, ref, wanted, client)


def _engine(root: Path, image, wanted, analysis) -> tuple[dict[str, CriterionResult], str | None]:
    """The engine criteria, and the image their run started (what build.sh pushed)."""
    ids = [c.id for c in CRITERIA if c.needs == "engine"]
    options = getattr(_module("engine"), "engine_options", None)
    if not callable(options):
        return _run("engine", "check_engine", ids, root, image, wanted, analysis), None
    with options() as opts:  # check_engine leaves what it did in opts.outcome
        results = _run("engine", "check_engine", ids, root, image, wanted, analysis)
    outcome = getattr(opts, "outcome", None)
    ran = getattr(outcome, "image", None)
    return results, ran if isinstance(ran, str) and ran else None


def _module(name: str):
    try:
        return importlib.import_module(f"grader.checks.{name}")
    except ImportError:
        return None


def _run(module: str, func: str, ids: list[str], *args) -> dict[str, CriterionResult]:
    fn = _load(module, func)
    if isinstance(fn, str):
        return _all_error(ids, _finding("CHECK_UNAVAILABLE", check=module, detail=fn))
    try:
        got = fn(*args)
    except Exception as e:  # a bug in a check must not become a traceback for learners
        return _all_error(ids, _finding("CHECK_CRASHED", check=module,
                                        detail=f"{type(e).__name__}: {e}"))  # fmt: skip
    out = {r.id: r for r in got if isinstance(r, CriterionResult) and r.id in ids}
    for cid in ids:
        if cid not in out:
            out[cid] = _error(
                cid,
                _finding(
                    "CHECK_CRASHED", check=module, detail=f"{func} returned no result for {cid}"
                ),
            )
    return out


def _load(module: str, func: str) -> Callable | str:
    """The check function, or why it cannot be loaded."""
    try:
        mod = importlib.import_module(f"grader.checks.{module}")
    except ImportError as e:
        return f"grader.checks.{module} cannot be imported: {e}"
    fn = getattr(mod, func, None)
    if not callable(fn):
        return f"grader.checks.{module} has no {func}()"
    return fn


def _no_image(analysis) -> Finding:
    script = analysis.script
    if script is None:
        detail = "build.sh cannot be read and --image was not given"
    elif not any(b.exports_to_registry for b in script.builds):
        detail = "build.sh pushes no image and --image was not given"
    else:
        from grader.buildsh import pushed_image

        tag = pushed_image(script, analysis.platforms)
        what = tag.text if tag is not None else "(no -t)"
        detail = (
            f"build.sh pushes {what}, which cannot be resolved statically, and --image "
            "was not given"
        )
    return _finding("NO_IMAGE", detail=detail)


def _finding(rule_name: str, **fmt) -> Finding:
    from grader.checks.static import emit
    from grader.rules import grader as gr

    return emit(getattr(gr, rule_name), None, None, **fmt)


def _status(cid: str, status: str, findings: list[Finding] | None = None) -> CriterionResult:
    c = BY_ID[cid]
    return CriterionResult(id=cid, title=c.title, status=status, points=0.0,  # type: ignore[arg-type]
                           max_points=float(c.points), findings=findings or [])  # fmt: skip


def _error(cid: str, finding: Finding) -> CriterionResult:
    return _status(cid, "error", [finding])


def _all_error(ids: list[str], finding: Finding) -> dict[str, CriterionResult]:
    return {cid: _error(cid, finding) for cid in ids}
