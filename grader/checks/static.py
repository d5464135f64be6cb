"""The static criteria: ``buildx``, ``platforms``, ``push``, ``provenance``, ``builder`` (from
build.sh) and ``cross-compile`` (from the Dockerfile build.sh builds; see ``crosscompile``).

:func:`analyse` reads the submission once (never running anything from it);
:func:`evaluate` turns the analysis into one :class:`CriterionResult` per criterion. A
criterion fails when it has a finding of severity ``error``; warnings and info explain but
do not cost points. Points are all-or-nothing per criterion (``grader.criteria``).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from grader import buildsh
from grader.buildsh import BuildScript, BuildxBuild, parse_bool, parse_csv, platform_key
from grader.criteria import BY_ID
from grader.report import CriterionResult, Finding
from grader.rules import buildsh as bs
from grader.rules.catalogue import Rule
from grader.submission import FileText, read_member

BUILD_SH = "build.sh"
STATIC_CRITERIA = ("buildx", "platforms", "push", "provenance", "builder", "cross-compile")
# Builders every docker engine has: the docker driver instance of the current context.
KNOWN_BUILDERS = ("default", "desktop-linux")
_NOTE_KINDS = ("eval", "source", "subshell-script", "bake", "imagetools", "budget", "recursion")


def emit(rule: Rule, file: str | None, line: int | None, /, **fmt) -> Finding:
    """A finding of ``rule`` at ``file:line`` with ``{placeholders}`` filled in its message
    and hint (``{line}`` defaults to ``line``)."""
    fmt.setdefault("line", line)

    def fill(text: str) -> str:
        return re.sub(
            r"\{(\w+)\}", lambda m: str(fmt[m.group(1)]) if m.group(1) in fmt else m.group(0), text
        )

    return Finding(rule=rule.id, severity=rule.severity, message=fill(rule.message),
                   hint=fill(rule.hint), file=file, line=line)  # fmt: skip


@dataclass
class StaticAnalysis:
    """What the static checks read; the engine and registry checks may use it too."""

    root: Path
    platforms: tuple[str, ...]
    build_sh: FileText
    script: BuildScript | None = None
    primary: BuildxBuild | None = None  # the build the criteria are about
    dockerfile: str = "Dockerfile"  # the Dockerfile build.sh builds, relative to the submission
    context: str = "."  # the build context, relative to the submission
    dockerfile_note: str = ""  # why that Dockerfile was chosen, when it was a guess
    dockerfile_file: FileText | None = None
    dockerfile_parsed: object | None = None  # grader.dockerfile.Dockerfile
    target: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)

    @property
    def pushed_image(self) -> str | None:
        """The tag build.sh pushes, when it resolves statically (the default ``--image``)."""
        if self.script is None:
            return None
        v = buildsh.pushed_image(self.script, self.platforms)
        return v.text if v is not None and v.known else None


def analyse(root: Path, platforms: tuple[str, ...]) -> StaticAnalysis:
    a = StaticAnalysis(root=root, platforms=tuple(platforms),
                       build_sh=read_member(root, BUILD_SH, buildsh.MAX_SCRIPT_BYTES))  # fmt: skip
    if a.build_sh.text is not None:
        other = _foreign_interpreter(a.build_sh.text)
        if other:
            a.build_sh = FileText(BUILD_SH, problem=other)
    if a.build_sh.text is not None:
        a.script = buildsh.analyse(a.build_sh.text)
        a.primary = primary_build(a.script, a.platforms)
    _choose_dockerfile(a)
    from grader import dockerfile

    a.dockerfile_file = read_member(root, a.dockerfile, dockerfile.MAX_DOCKERFILE_BYTES)
    if a.dockerfile_file.text is not None:
        a.dockerfile_parsed = dockerfile.parse(a.dockerfile_file.text, a.build_args)
    return a


_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"}


def _foreign_interpreter(text: str) -> str | None:
    """Why build.sh is not a shell script, when its #! line names another interpreter."""
    first = text.split("\n", 1)[0].strip()
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if words and posixpath.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    if not words or posixpath.basename(words[0]) in _SHELLS:
        return None
    return f"its first line `{first}` runs {posixpath.basename(words[0])}, not a shell"


def primary_build(script: BuildScript, required: tuple[str, ...]) -> BuildxBuild | None:
    """The build the criteria judge: the one closest to a multi-platform push."""
    if not script.builds:
        return None

    def rank(b: BuildxBuild):
        keys = {platform_key(p) for p in b.platforms}
        return (buildsh.covers(b.platforms, required), b.exports_to_registry, len(keys),
                not b.where.conditional)  # fmt: skip

    return max(script.builds, key=rank)


def _choose_dockerfile(a: StaticAnalysis) -> None:
    """The Dockerfile the primary build uses: ``-f`` (relative to the working directory),
    else ``CONTEXT/Dockerfile``; ``Dockerfile`` when build.sh does not say."""
    b = a.primary
    if b is None:
        return
    cwd = b.cwd
    context = "."
    if b.context is not None:
        if not b.context.known or "://" in b.context.text or b.context.text in ("-",):
            a.dockerfile_note = f" (the build context {b.context.text} cannot be followed)"
        else:
            context = b.context.text
    a.context = posixpath.normpath(posixpath.join(cwd, context))
    if b.file is not None:
        if b.file.known and b.file.text != "-":
            a.dockerfile = posixpath.normpath(posixpath.join(cwd, b.file.text))
        else:
            a.dockerfile_note = f" (-f {b.file.text} cannot be resolved; read Dockerfile)"
    else:
        a.dockerfile = posixpath.normpath(posixpath.join(a.context, "Dockerfile"))
    if b.target is not None and b.target.known:
        a.target = b.target.text
    a.build_args = {k: v.text for k, v in b.build_args.items() if v.known}


# --- the criteria -----------------------------------------------------------------------


def evaluate(a: StaticAnalysis) -> list[CriterionResult]:
    from grader.checks import crosscompile

    checks = {
        "buildx": _buildx,
        "platforms": _platforms,
        "push": _push,
        "provenance": _provenance,
        "builder": _builder,
        "cross-compile": crosscompile.check,
    }
    out = []
    for cid in STATIC_CRITERIA:
        try:
            out.append(result(cid, checks[cid](a)))
        except Exception as e:  # a grader bug must be an `error` with a reason, not a traceback
            out.append(crashed(cid, e))
    return out


def crashed(cid: str, e: BaseException) -> CriterionResult:
    from grader.rules import grader as gr

    f = emit(gr.CHECK_CRASHED, None, None, check="static", detail=f"{type(e).__name__}: {e}")
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
        return [emit(bs.BUILD_SCRIPT_MISSING, BUILD_SH, None)]
    if f.problem:
        return [emit(bs.BUILD_SCRIPT_UNREADABLE, BUILD_SH, None, reason=f.problem)]
    return None


def _needs_build(a: StaticAnalysis) -> list[Finding] | None:
    """The shared early exit of the criteria that judge a `docker buildx build`."""
    missing = _file_findings(a)
    if missing:
        return missing
    if a.primary is None:
        return [emit(bs.NO_BUILDX_BUILD, BUILD_SH, None)]
    return None


def _buildx(a: StaticAnalysis) -> list[Finding]:
    missing = _file_findings(a)
    if missing:
        return missing
    s = a.script
    assert s is not None
    out: list[Finding] = []
    if a.build_sh.crlf:
        out.append(emit(bs.BUILD_SCRIPT_CRLF, BUILD_SH, 1))
    syntax = _bash_syntax_error(a) if (s.parser == "tolerant" or s.syntax_error) else None
    if syntax:
        line, detail = syntax
        out.append(emit(bs.SHELL_SYNTAX_ERROR, BUILD_SH, line, detail=detail))
    elif s.parser == "tolerant":
        detail = _bashlex_reason(s.bashlex_error or "")
        out.append(emit(bs.SHELL_PARSE_FALLBACK, BUILD_SH, None, detail=detail))
    seen_notes = set()
    for n in s.notes:
        if n.kind in _NOTE_KINDS and (n.kind, n.line) not in seen_notes:
            seen_notes.add((n.kind, n.line))
            out.append(emit(bs.UNANALYSED_COMMAND, BUILD_SH, n.line or None, line=n.line,
                            detail=n.text))  # fmt: skip
    if not s.builds:
        for p in s.plain_builds[:3]:
            out.append(emit(bs.PLAIN_DOCKER_BUILD, BUILD_SH, p.where.line, line=p.where.line,
                            form=p.form))  # fmt: skip
        for m in s.mentions[:3]:
            out.append(emit(bs.BUILDX_NOT_RUN, BUILD_SH, m.line, line=m.line, how=m.how))
        if not s.plain_builds and not s.mentions:
            out.append(emit(bs.NO_BUILDX_BUILD, BUILD_SH, None))
    for b in s.builds:
        if b.opaque:
            names = ", ".join(v.text.replace("${", "$").rstrip("}") for v in b.opaque)
            out.append(emit(bs.OPAQUE_BUILD_ARGS, BUILD_SH, b.line, line=b.line, names=names))
    return out


def _bashlex_reason(error: str) -> str:
    """bashlex's error in words a learner understands."""
    if "pattern" in error:
        return "it does not support `case`"
    if "arithmetic" in error:
        return "it does not support `$(( ))`"
    if "[[" in error or "'-" in error:
        return "it does not support `[[ ]]`"
    if "'('" in error:
        return "it does not support arrays"
    first = error.splitlines()[0] if error else "unknown reason"
    return first.replace("{", "(").replace("}", ")")[:120]


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
    if any(buildsh.covers(b.platforms, a.platforms) for b in s.builds):
        return []
    out: list[Finding] = []
    for b in s.builds[:3]:
        unknown = [v for v in b.platform_values if not v.known]
        if unknown:
            names = ", ".join(sorted({"$" + u for v in unknown for u in v.unknown}))
            out.append(emit(bs.UNRESOLVED_PLATFORM, BUILD_SH, b.line, line=b.line,
                            value=unknown[0].text, names=names))  # fmt: skip
        elif not b.platform_values:
            out.append(emit(bs.NO_PLATFORM_FLAG, BUILD_SH, b.line, line=b.line))
        else:
            have = {platform_key(p) for p in b.platforms}
            missing = [r for r in a.platforms if platform_key(r) not in have]
            out.append(
                emit(
                    bs.MISSING_PLATFORM,
                    BUILD_SH,
                    b.line,
                    line=b.line,
                    platforms=",".join(b.platforms),
                    missing=", ".join(missing),
                )
            )
    return out


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
            out.append(emit(bs.LOAD_MULTI_PLATFORM, BUILD_SH, b.line, line=b.line, how=how,
                            count=count))  # fmt: skip
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
        out.append(emit(bs.NOT_PUSHED, BUILD_SH, b.line, line=b.line, how=how))
        return out
    for b in pushing:
        if not b.image_names():
            out.append(emit(bs.PUSH_WITHOUT_TAG, BUILD_SH, b.line, line=b.line))
    tag = buildsh.pushed_image(s, a.platforms)
    if tag is not None and not tag.known:
        b = next(b for b in pushing if b.image_names())
        names = ", ".join(sorted("$" + u for u in set(tag.unknown)))
        out.append(emit(bs.PUSHED_TAG_UNRESOLVED, BUILD_SH, b.line, line=b.line,
                        value=tag.text, names=names))  # fmt: skip
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
            out.append(emit(bs.ATTESTATION_ENABLED, BUILD_SH, b.line, line=b.line, flag=flag))
        if enabling or disabled:
            continue
        unexported = [e for e in s.env_assignments
                      if e.name == "BUILDX_NO_DEFAULT_ATTESTATIONS" and not e.exported
                      and parse_bool(e.value.text)]  # fmt: skip
        if unexported:
            e = unexported[0]
            out.append(emit(bs.ATTESTATION_ENV_NOT_EXPORTED, BUILD_SH, e.line, line=e.line))
        else:
            out.append(emit(bs.PROVENANCE_NOT_DISABLED, BUILD_SH, b.line, line=b.line))
    return out


def _builder(a: StaticAnalysis) -> list[Finding]:
    early = _needs_build(a)
    if early:
        return early
    s = a.script
    assert s is not None and a.primary is not None
    out: list[Finding] = []
    ops = s.builder_ops
    created = {op.name for op in ops if op.action == "create" and op.name}
    reported_unknown: set[str] = set()
    for k, op in enumerate(ops):
        line = op.where.line
        if op.action == "create":
            if op.driver == "docker":
                out.append(emit(bs.DOCKER_DRIVER_CREATE, BUILD_SH, line, line=line))
            elif op.name is None:
                out.append(emit(bs.UNNAMED_BUILDER, BUILD_SH, line, line=line))
            elif not _create_is_idempotent(op, ops[:k]):
                errexit = (" and `set -e` stops the script there" if op.where.errexit
                           else "; bash prints the error and carries on")  # fmt: skip
                out.append(emit(bs.BUILDER_CREATE_NOT_IDEMPOTENT, BUILD_SH, line, line=line,
                                name=op.name, errexit=errexit))  # fmt: skip
        elif op.action == "rm" and op.name:
            if not (
                op.where.tolerated
                or _guarded(op, present=True)
                or any(p.action == "create" and p.name == op.name for p in ops[:k])
            ):
                out.append(emit(bs.BUILDER_RM_UNGUARDED, BUILD_SH, line, line=line,
                                name=op.name))  # fmt: skip
        elif op.action in ("use", "inspect", "stop") and op.name:
            if op.where.tolerated or op.where.guards:
                continue  # a probe: `inspect X || create X`
            if op.name not in created and op.name not in KNOWN_BUILDERS:
                reported_unknown.add(op.name)
                out.append(
                    emit(
                        bs.BUILDER_NEVER_CREATED,
                        BUILD_SH,
                        line,
                        line=line,
                        name=op.name,
                        command=f"docker buildx {op.action} {op.name}",
                    )
                )
    b = a.primary
    if b.builder is None:
        unused = [op for op in ops if op.action == "create" and op.name and not op.use]
        if unused:
            op = unused[0]
            out.append(emit(bs.BUILDER_CREATED_NOT_USED, BUILD_SH, op.where.line,
                            line=op.where.line, name=op.name))  # fmt: skip
        else:
            out.append(emit(bs.NO_BUILDER_SELECTED, BUILD_SH, b.line, line=b.line))
    elif b.builder in KNOWN_BUILDERS:
        out.append(emit(bs.DEFAULT_BUILDER, BUILD_SH, b.line, line=b.line))
    elif b.builder not in created | reported_unknown and b.builder != "(unnamed)":
        how = {"--builder": f"--builder {b.builder}",
               "BUILDX_BUILDER": f"BUILDX_BUILDER={b.builder}"}.get(
                   b.builder_source, f"docker buildx use {b.builder}")  # fmt: skip
        out.append(emit(bs.BUILDER_NEVER_CREATED, BUILD_SH, b.line, name=b.builder,
                        command=f"docker buildx build {how}"))  # fmt: skip
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


__all__ = ["STATIC_CRITERIA", "StaticAnalysis", "analyse", "evaluate", "primary_build"]
