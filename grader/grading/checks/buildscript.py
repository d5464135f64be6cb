"""The static criteria: ``buildx``, ``platforms``, ``push``, ``provenance``, ``builder`` (from
build.sh) and ``cross-compile`` (from the Dockerfile build.sh builds; see ``dockerfile``).

:func:`analyse` reads the submission once (never running anything from it);
:func:`evaluate` turns the analysis into one :class:`CriterionResult` per criterion. A
criterion fails when it has a finding of severity ``error``; warnings and info explain but
do not cost points. Points are all-or-nothing per criterion (``grader.grading.criteria``).
"""

from __future__ import annotations

import difflib
import re

from grader.docker import options
from grader.grading.checks import dockerfile as dockerfile_checks
from grader.grading.checks.analysis import (
    BUILD_SH,
    StaticAnalysis,
    analyse,
    primary_build,
)
from grader.grading.criteria import BY_ID
from grader.grading.report import CriterionResult, Finding
from grader.grading.rules import buildscript as bs
from grader.parse import buildscript as buildsh
from grader.parse.buildscript import BuildxBuild, parse_bool, parse_csv, platform_key

STATIC_CRITERIA = ("buildx", "platforms", "push", "provenance", "builder", "cross-compile")
# Builders every docker engine has: the docker driver instance of the current context.
KNOWN_BUILDERS = ("default", "desktop-linux")
_NOTE_KINDS = ("eval", "source", "subshell-script", "bake", "imagetools", "budget", "recursion")


# --- the criteria -----------------------------------------------------------------------


def evaluate(a: StaticAnalysis) -> list[CriterionResult]:

    checks = {
        "buildx": _buildx,
        "platforms": _platforms,
        "push": _push,
        "provenance": _provenance,
        "builder": _builder,
        "cross-compile": dockerfile_checks.check,
    }
    out = []
    for cid in STATIC_CRITERIA:
        try:
            out.append(result(cid, checks[cid](a)))
        except Exception as e:  # a grader bug must be an `error` with a reason, not a traceback
            out.append(crashed(cid, e))
    return out


def crashed(cid: str, e: BaseException) -> CriterionResult:
    from grader.grading.rules import grader as gr

    f = gr.CHECK_CRASHED.finding(None, None, check="static", detail=f"{type(e).__name__}: {e}")
    c = BY_ID[cid]
    return CriterionResult(id=cid, title=c.title, status="error", points=0.0,
                           max_points=float(c.points), findings=[f])  # fmt: skip


def result(cid: str, findings: list[Finding]) -> CriterionResult:
    c = BY_ID[cid]
    failed = any(f.severity == "error" for f in findings)
    return CriterionResult(id=cid, title=c.title, status="fail" if failed else "pass",
                           points=0.0 if failed else float(c.points),
                           max_points=float(c.points), findings=findings)  # fmt: skip


def _file_findings(a: StaticAnalysis) -> list[Finding] | None:
    """build.sh missing or unreadable: the finding every build.sh criterion reports."""
    f = a.build_sh
    if f.missing:
        return [bs.BUILD_SCRIPT_MISSING.finding(BUILD_SH, None)]
    if f.problem:
        return [bs.BUILD_SCRIPT_UNREADABLE.finding(BUILD_SH, None, reason=f.problem)]
    return None


def _needs_build(a: StaticAnalysis) -> list[Finding] | None:
    """The shared early exit of the criteria that judge a `docker buildx build`."""
    missing = _file_findings(a)
    if missing:
        return missing
    if a.primary is None:
        return [bs.NO_BUILDX_BUILD.finding(BUILD_SH, None)]
    return None


def _buildx(a: StaticAnalysis) -> list[Finding]:
    missing = _file_findings(a)
    if missing:
        return missing
    s = a.script
    assert s is not None
    out: list[Finding] = []
    if a.build_sh.crlf:
        out.append(bs.BUILD_SCRIPT_CRLF.finding(BUILD_SH, 1))
    syntax = _bash_syntax_error(a)
    if syntax:
        line, detail = syntax
        out.append(bs.SHELL_SYNTAX_ERROR.finding(BUILD_SH, line, detail=detail))
    seen_notes = set()
    for n in s.notes:
        if n.kind in _NOTE_KINDS and (n.kind, n.line) not in seen_notes:
            seen_notes.add((n.kind, n.line))
            out.append(bs.UNANALYSED_COMMAND.finding(BUILD_SH, n.line or None, detail=n.text))
    if not s.builds:
        for p in s.plain_builds[:3]:
            out.append(bs.PLAIN_DOCKER_BUILD.finding(BUILD_SH, p.where.line, form=p.form))
        for m in s.mentions[:3]:
            out.append(bs.BUILDX_NOT_RUN.finding(BUILD_SH, m.line, how=m.how))
        if not s.plain_builds and not s.mentions:
            out.append(bs.NO_BUILDX_BUILD.finding(BUILD_SH, None))
    for u in s.unset_uses[:3]:
        out.append(bs.UNSET_VARIABLE.finding(BUILD_SH, u.line, name=u.name))
    for b in s.builds:
        if b.opaque:
            names = ", ".join(v.text.replace("${", "$").rstrip("}") for v in b.opaque)
            out.append(bs.OPAQUE_BUILD_ARGS.finding(BUILD_SH, b.line, names=names))
        for flag in dict.fromkeys(b.unknown_flags):
            out.append(bs.UNKNOWN_BUILD_FLAG.finding(
                BUILD_SH, b.line, flag=flag, suggestion=_did_you_mean(flag)))  # fmt: skip
    return out


def _did_you_mean(flag: str) -> str:
    """`; did you mean --platform?` for a near miss of a real buildx build option."""
    names = [f"--{f.name}" for f in options.BUILDX_BUILD.flags if not f.hidden]
    close = difflib.get_close_matches(flag, names, n=1, cutoff=0.8)
    return f"; did you mean {close[0]}?" if close else ""


def _bash_syntax_error(a: StaticAnalysis) -> tuple[int | None, str] | None:
    """Ask ``bash -n`` (parse only, runs nothing) whether bash itself rejects the script."""
    from grader import proc

    text = a.build_sh.text or ""
    try:
        done = proc.run(["bash", "-n"], input=text, timeout=10, check=False)
    except proc.CommandError:
        s = a.script
        return (None, s.syntax_error) if s is not None and s.syntax_error else None
    if done.ok:
        return None
    msg = done.stderr.strip().splitlines()
    first = msg[0] if msg else "bash -n failed"
    m = re.search(r"line (\d+): (.*)", first)
    if m:
        return int(m.group(1)), m.group(2).strip()
    return None, first


def _platforms(a: StaticAnalysis) -> list[Finding]:
    early = _needs_build(a)
    if early:
        return early
    s = a.script
    assert s is not None
    out = _platform_overrides(s.builds)
    if any(buildsh.covers(b.platforms, a.platforms) for b in s.builds):
        return out
    for b in s.builds[:3]:
        unknown = [v for v in b.platform_values if not v.known]
        if unknown:
            names = ", ".join(sorted({"$" + u for v in unknown for u in v.unknown}))
            out.append(
                bs.UNRESOLVED_PLATFORM.finding(BUILD_SH, b.line, value=unknown[0].text, names=names)
            )
        elif not b.platform_values:
            out.append(bs.NO_PLATFORM_FLAG.finding(BUILD_SH, b.line))
        else:
            have = {platform_key(p) for p in b.platforms}
            missing = [r for r in a.platforms if platform_key(r) not in have]
            out.append(
                bs.MISSING_PLATFORM.finding(
                    BUILD_SH,
                    b.line,
                    platforms=",".join(b.platforms),
                    missing=", ".join(missing),
                )
            )
    return out


#: The ARGs BuildKit sets for each platform (--build-arg must not override them).
PLATFORM_ARGS = tuple(f"{w}{p}" for w in ("BUILD", "TARGET")
                      for p in ("PLATFORM", "OS", "ARCH", "VARIANT"))  # fmt: skip


def _platform_overrides(builds: list[BuildxBuild]) -> list[Finding]:
    return [
        bs.PLATFORM_BUILD_ARG.finding(BUILD_SH, b.line, name=k, value=b.build_args[k].text)
        for b in builds
        for k in PLATFORM_ARGS
        if k in b.build_args
    ]


def _multi_builds(a: StaticAnalysis) -> list[BuildxBuild]:
    """The builds the push/provenance criteria judge: those covering the required
    platforms, else those with several platforms, else all."""
    s = a.script
    assert s is not None
    return ([b for b in s.builds if buildsh.covers(b.platforms, a.platforms)]
            or [b for b in s.builds if len({platform_key(p) for p in b.platforms}) > 1]
            or s.builds)  # fmt: skip


def _push(a: StaticAnalysis) -> list[Finding]:
    early = _needs_build(a)
    if early:
        return early
    s = a.script
    assert s is not None
    out: list[Finding] = []
    for b in s.builds:
        count = len({platform_key(p) for p in b.platforms})
        if b.loads and count > 1:
            how = "--load" if b.load else "--output type=docker"
            out.append(bs.LOAD_MULTI_PLATFORM.finding(BUILD_SH, b.line, how=how, count=count))
    multi = _multi_builds(a)
    pushing = [b for b in multi if b.exports_to_registry]
    if not pushing:
        b = multi[0]
        if out and b.loads:
            return out  # BS131 already says why this build is not pushed
        if b.loads:
            how = "it is loaded into the local image store with --load"
        elif b.outputs:
            how = f"--output type={b.outputs[0].get('type', '?')} writes it elsewhere"
        else:
            how = "no --push or --output type=registry"
        out.append(bs.NOT_PUSHED.finding(BUILD_SH, b.line, how=how))
        return out
    for b in pushing:
        if not b.image_names():
            out.append(bs.PUSH_WITHOUT_TAG.finding(BUILD_SH, b.line))
    tag = buildsh.pushed_image(s, a.platforms)
    if tag is not None and not tag.known:
        b = next(b for b in pushing if b.image_names())
        names = ", ".join(sorted("$" + u for u in set(tag.unknown)))
        out.append(bs.PUSHED_TAG_UNRESOLVED.finding(BUILD_SH, b.line, value=tag.text, names=names))
    return out


def attestations(b: BuildxBuild) -> tuple[bool, list[str]]:
    """(default attestations disabled?, flags that turn an attestation on)."""
    disabled = False
    enabling: list[str] = []
    for v in b.provenance:
        on = parse_bool(v.text)
        if on is None and v.known:
            on = parse_bool(parse_csv(v.text).get("disabled", "false")) is not True
        if on is False:
            disabled = True
        elif on is True:
            enabling.append(f"--provenance={v.text}")
    for v in b.sbom:
        on = parse_bool(v.text)
        if on is None and v.known:
            on = parse_bool(parse_csv(v.text).get("disabled", "false")) is not True
        if on:
            enabling.append(f"--sbom={v.text}")
    for v in b.attest:
        opts = parse_csv(v.text)
        if parse_bool(opts.get("disabled", "false")) is not True:
            enabling.append(f"--attest {v.text}")
    env = b.env.get("BUILDX_NO_DEFAULT_ATTESTATIONS")
    if env is not None and parse_bool(env.text) is True:
        disabled = True
    return disabled, enabling


def _provenance(a: StaticAnalysis) -> list[Finding]:
    early = _needs_build(a)
    if early:
        return early
    s = a.script
    assert s is not None
    multi = _multi_builds(a)
    judged = [b for b in multi if b.exports_to_registry] or multi
    out: list[Finding] = []
    for b in judged[:3]:
        disabled, enabling = attestations(b)
        for flag in enabling:
            out.append(bs.ATTESTATION_ENABLED.finding(BUILD_SH, b.line, flag=flag))
        if enabling or disabled:
            continue
        unexported = [e for e in s.env_assignments
                      if e.name == "BUILDX_NO_DEFAULT_ATTESTATIONS" and not e.exported
                      and parse_bool(e.value.text)]  # fmt: skip
        if unexported:
            e = unexported[0]
            out.append(bs.ATTESTATION_ENV_NOT_EXPORTED.finding(BUILD_SH, e.line))
        else:
            out.append(bs.PROVENANCE_NOT_DISABLED.finding(BUILD_SH, b.line))
    return out


def builder_op_findings(ops: list[buildsh.BuilderOp]) -> tuple[list[Finding], set[str]]:
    """What is wrong with a script's ``buildx create/rm/use/inspect`` lines on their own (no
    build needed): a create that fails on the second run (BS150), an unguarded rm (BS151), a
    docker-driver or unnamed create, a builder used but never created. Also returns the names
    reported as never created. Lab 03 grades its ``%%docker`` cell with it."""
    out: list[Finding] = []
    created = {op.name for op in ops if op.action == "create" and op.name}
    reported_unknown: set[str] = set()
    for k, op in enumerate(ops):
        line = op.where.line
        if op.action == "create":
            if op.driver == "docker":
                out.append(bs.DOCKER_DRIVER_CREATE.finding(BUILD_SH, line))
            elif op.name is None:
                out.append(bs.UNNAMED_BUILDER.finding(BUILD_SH, line))
            elif not _create_is_idempotent(op, ops[:k]):
                errexit = (" and `set -e` stops the script there" if op.where.errexit
                           else "; bash prints the error and carries on")  # fmt: skip
                out.append(
                    bs.BUILDER_CREATE_NOT_IDEMPOTENT.finding(
                        BUILD_SH, line, name=op.name, errexit=errexit
                    )
                )
        elif op.action == "rm" and op.name:
            if not (
                op.where.tolerated
                or _guarded(op, present=True)
                or any(p.action == "create" and p.name == op.name for p in ops[:k])
            ):
                out.append(bs.BUILDER_RM_UNGUARDED.finding(BUILD_SH, line, name=op.name))
        elif op.action in ("use", "inspect", "stop") and op.name:
            if op.where.tolerated or op.where.guards:
                continue  # a probe: `inspect X || create X`
            if op.name not in created and op.name not in KNOWN_BUILDERS:
                reported_unknown.add(op.name)
                out.append(
                    bs.BUILDER_NEVER_CREATED.finding(
                        BUILD_SH,
                        line,
                        name=op.name,
                        command=f"docker buildx {op.action} {op.name}",
                    )
                )
    return out, reported_unknown


def _builder(a: StaticAnalysis) -> list[Finding]:
    early = _needs_build(a)
    if early:
        return early
    s = a.script
    assert s is not None and a.primary is not None
    ops = s.builder_ops
    created = {op.name for op in ops if op.action == "create" and op.name}
    out, reported_unknown = builder_op_findings(ops)
    b = a.primary
    if b.builder is None:
        unused = [op for op in ops if op.action == "create" and op.name and not op.use]
        if unused:
            op = unused[0]
            out.append(bs.BUILDER_CREATED_NOT_USED.finding(BUILD_SH, op.where.line, name=op.name))
        else:
            out.append(bs.NO_BUILDER_SELECTED.finding(BUILD_SH, b.line))
    elif b.builder in KNOWN_BUILDERS:
        out.append(bs.DEFAULT_BUILDER.finding(BUILD_SH, b.line))
    elif b.builder not in created | reported_unknown and b.builder != "(unnamed)":
        how = {"--builder": f"--builder {b.builder}",
               "BUILDX_BUILDER": f"BUILDX_BUILDER={b.builder}"}.get(
                   b.builder_source, f"docker buildx use {b.builder}")  # fmt: skip
        out.append(
            bs.BUILDER_NEVER_CREATED.finding(
                BUILD_SH, b.line, name=b.builder, command=f"docker buildx build {how}"
            )
        )
    return out


def _guarded(op: buildsh.BuilderOp, *, present: bool) -> bool:
    return any(g.present is present and (g.name is None or g.name == op.name)
               for g in op.where.guards)  # fmt: skip


def _create_is_idempotent(op: buildsh.BuilderOp, before: list[buildsh.BuilderOp]) -> bool:
    """A named create survives a second run when its failure is tolerated (``|| true``),
    when it runs only if the builder is missing, or when an ``rm`` of it comes first."""
    if op.where.tolerated or _guarded(op, present=False):
        return True
    return any(p.action == "rm" and p.name == op.name for p in before)


__all__ = [
    "STATIC_CRITERIA",
    "StaticAnalysis",
    "analyse",
    "builder_op_findings",
    "evaluate",
    "primary_build",
]
