"""The ``cross-compile`` criterion: every stage that ends up in the image is built for
$TARGETPLATFORM.

The Dockerfile is read once per target platform the build asks for when a stage reference
names a platform ARG (``FROM binaries-$TARGETOS``): each platform's image may depend on other
stages. For each stage BuildKit builds (the final stage or ``--target``, the stages it is FROM,
and the stages it copies or mounts from) the check works out the platform it runs on
(``target``: no --platform; ``build``: $BUILDPLATFORM; ``const``: a fixed value) and the
compile commands in its RUN scripts. A compile in a ``target`` stage runs under emulation:
correct binaries at a cost (DF210, a warning). A compile in a ``build``/``const`` stage must
produce $TARGETARCH output: its compiler, GOARCH or build driver's toolchain must be derived
from a TARGET* ARG (taint-tracked through variables, ``case``/``if`` on $TARGETARCH, ENV, the
tonistiigi/xx tools), else it is the host compiler (DF211) or a fixed architecture (DF215).
Tools for the build machine (``go install``, ``cargo install`` on $BUILDPLATFORM) are no
finding. ARG scoping (DF212, DF217, DF221), ARG defaults that fix one architecture (DF219) and
platform pins on the final image (DF213, DF214) are checked on the way; when the build asks
for 32-bit ARM, a cross-compiled Go build's GOARM must follow the variant (DF222). Heuristic
by nature: it reads shell, it does not run it.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from grader.grading.checks.analysis import StaticAnalysis
from grader.grading.report import Finding
from grader.grading.rules import dockerfile as r
from grader.parse import dockerfile as dfm
from grader.parse import shell

TARGET = frozenset(dfm.TARGET_ARGS)
#: The taint of a value computed by a tonistiigi/xx tool (xx-info, xx-clang ...): the
#: target's when TARGETPLATFORM (or TARGETARCH) is in scope, which the tools read.
XX = "xx"
ARCHES = {"aarch64", "arm", "armv7", "armv7l", "armhf", "x86_64", "i686", "i386", "i586",
          "riscv64", "powerpc64le", "powerpc64", "ppc64le", "s390x", "mips64el", "mipsel",
          "mips", "loongarch64"}  # fmt: skip
#: Architecture names an ARG default may fix (Docker's and the kernel's spellings).
ARCH_VALUES = ARCHES | {"amd64", "arm64", "386", "armv6", "armel", "arm64v8", "mips64le",
                        "loong64"}  # fmt: skip
SINGLE_ARCH_NAMESPACES = {"amd64", "arm64v8", "arm32v5", "arm32v6", "arm32v7", "i386",
                          "ppc64le", "s390x", "riscv64", "mips64le", "windows-amd64"}  # fmt: skip
_C_COMPILER = re.compile(
    r"^(?:(?P<prefix>[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*)-)?"
    r"(?P<cc>gcc|g\+\+|cc|c\+\+|clang|clang\+\+|tcc)(?:-\d+(?:\.\d+)*)?$"
)
_INFO_FLAGS = {"--version", "-v", "-V", "--help", "-dumpmachine", "-dumpversion", "version"}
_XX_TOOLS = {"xx-clang", "xx-clang++", "xx-cc", "xx-c++", "xx-gcc", "xx-go", "xx-cargo"}
_XX_CALL = re.compile(r"\bxx-(?:info|clang\+\+|clang|cc|c\+\+|gcc|go|cargo|ld)\b")
_WRAPPERS = {"env", "sudo", "nice", "time", "command", "exec", "nohup"}
_ARCH_PROBE = re.compile(r"\buname\s+-m\b|\bdpkg\s+--print-architecture\b|\$\(\s*arch\s*\)|`arch`")
#: What a build driver (make, configure, cmake, cargo ...) reads from its command line and
#: from the environment to pick its toolchain.
_DRIVER_ENV = ("CC", "CXX", "CROSS_COMPILE", "GOARCH", "GO", "CARGO_BUILD_TARGET")
_FIX = {
    "go": "Declare `ARG TARGETOS TARGETARCH` in the stage and build with "
          "`CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build ...`.",
    "c": "Install a cross compiler for $TARGETARCH (`crossbuild-essential-${TARGETARCH}`) and "
         "call it by its triple (`aarch64-linux-gnu-gcc` for arm64, `x86_64-linux-gnu-gcc` "
         'for amd64) chosen with `case "$TARGETARCH"`; or use tonistiigi/xx (`xx-clang`).',
    "driver": "Hand the build the cross compiler chosen from $TARGETARCH: `make CC=...`, "
              "`GOOS=$TARGETOS GOARCH=$TARGETARCH make`, `./configure --host=...`, "
              "`cmake -DCMAKE_C_COMPILER=...`, `cargo build --target ...`.",
}  # fmt: skip


# Debian's -dev package for a library a C program links (`-lz` -> zlib1g-dev); libc's own
# (-lm, -lpthread, -ldl, -lrt) come with libc6-dev.
_DEV_PACKAGES = {
    "z": "zlib1g-dev",
    "ssl": "libssl-dev",
    "crypto": "libssl-dev",
    "curl": "libcurl4-openssl-dev",
}
_LIBC_PARTS = {"m", "pthread", "dl", "rt", "c"}


def _library_hint(c: Compile) -> str:
    """For a C compile that links libraries: the target's copies, as the labs teach them."""
    if c.kind != "c":
        return ""
    libs = [w[2:] for w in c.command.split() if w.startswith("-l") and len(w) > 2]
    packages = [_DEV_PACKAGES.get(n, f"lib{n}-dev") for n in libs if n not in _LIBC_PARTS]
    if not packages:
        return ""
    wanted = " ".join(f"{p}:$TARGETARCH" for p in dict.fromkeys(packages))
    return (
        " It links "
        + ", ".join(f"`-l{n}`" for n in libs if n not in _LIBC_PARTS)
        + ": install the target's copy too: `dpkg --add-architecture $TARGETARCH`, then "
        f"`apt-get install {wanted} libc6-dev:$TARGETARCH`."
    )


@dataclass
class Compile:
    kind: str  # go, c, driver, xx
    command: str  # shortened command text
    line: int
    verdict: str  # ok, host, fixed, needs-arg, tool (runs on the build machine only)
    why: str = ""
    output: str | None = None  # the -o path, absolute when the WORKDIR is known
    goarm: str = ""  # go: "ok" (from the target's variant), "missing", or the fixed value


@dataclass
class _State:
    """What a stage's earlier RUNs leave for the later ones (and for stages built FROM it)."""

    xx_go_wrapped: bool = False  # `xx-go --wrap`: `go` is xx-go from now on
    cross_configured: bool = False  # a configure judged cross-compiling: make follows it


# --- the criterion -------------------------------------------------------------------------


def check(a: StaticAnalysis) -> list[Finding]:
    early = _unreadable(a)
    if early is not None:
        return early
    df = a.dockerfile_parsed
    assert isinstance(df, dfm.Dockerfile)
    rel = a.dockerfile
    out = _syntax(df, rel)
    if not df.stages:
        return out
    if df.final(a.target) is None:
        detail = f"build.sh builds --target {a.target}, which is not a stage"
        return [*out, r.DOCKERFILE_SYNTAX.finding(rel, None, detail=detail)]
    shared: dict = {}  # the views share the analysis of the stages' RUNs
    platforms = build_platforms(a)
    variants = arm_variants(platforms)
    for view in platform_views(df, platforms, a.target):
        checker = _Checker(view, a.target, rel, shared)
        out += checker.findings()
        if variants:
            out += checker.lost_variants(variants)
    return _dedupe(out)


def arm_variants(platforms: list[str]) -> dict[str, str]:
    """The 32-bit ARM platforms asked for, with their GOARM: ``linux/arm/v7`` -> ``7``
    (``linux/arm`` alone normalises to v7)."""
    out = {}
    for p in platforms:
        parts = p.split("/")
        if len(parts) >= 2 and parts[1] == "arm":
            variant = parts[2] if len(parts) > 2 else "v7"
            out[p] = variant.lstrip("v")
    return out


def _unreadable(a: StaticAnalysis) -> list[Finding] | None:
    f, rel = a.dockerfile_file, a.dockerfile
    if f is None or f.missing:
        detail = a.dockerfile_note or (
            "" if rel == "Dockerfile" else " (it is the Dockerfile build.sh builds)"
        )
        return [r.DOCKERFILE_MISSING.finding(rel, None, path=rel, detail=detail)]
    if f.problem:
        return [r.DOCKERFILE_UNREADABLE.finding(rel, None, path=rel, reason=f.problem)]
    return None


def _syntax(df: dfm.Dockerfile, rel: str) -> list[Finding]:
    out = []
    for p in df.problems:
        if p.kind == "unknown-instruction":
            keyword = p.message.rsplit(" ", 1)[-1]
            out.append(r.UNKNOWN_INSTRUCTION.finding(rel, p.line, keyword=keyword))
        else:
            out.append(r.DOCKERFILE_SYNTAX.finding(rel, p.line, detail=p.message))
    return out


_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?")


def build_platforms(a: StaticAnalysis) -> list[str]:
    """The target platforms build.sh asks for (the required ones when it does not say)."""
    asked = [p.strip() for p in (a.primary.platforms if a.primary else [])]
    known = [p for p in asked if _PLATFORM.fullmatch(p)]
    return list(dict.fromkeys(known or a.platforms))


#: A build.sh may list any number of platforms; past these the others are not read.
MAX_PLATFORM_VIEWS = 16


def platform_views(
    df: dfm.Dockerfile, platforms: list[str], target: str | None = None
) -> list[dfm.Dockerfile]:
    """One Dockerfile per platform when the stages built depend on it, else the one; two
    platforms that build the same stages the same way share one."""
    if not platforms or not df.platform_dependent():
        return [df]
    views: dict[tuple, dfm.Dockerfile] = {}
    for p in platforms[:MAX_PLATFORM_VIEWS]:
        view = df.for_platform(p)
        key = tuple((s.index, tuple(d.index for d, _, _ in view.dependencies(s)))
                    for s in view.reachable(target))  # fmt: skip
        views.setdefault(key, view)
    return list(views.values())


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple] = set()
    out = []
    for f in findings:
        key = (f.rule, f.line, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def platform_kind(df: dfm.Dockerfile, s: dfm.Stage, _depth: int = 0) -> tuple[str, str | None]:
    """("target" | "build" | "const" | "unknown", the --platform value as written)."""
    if s.base_stage is not None and _depth < 64:
        return platform_kind(df, df.stages[s.base_stage], _depth + 1)
    if s.platform is None:
        return "target", None
    resolved = s.platform_resolved or s.platform
    names = {n for n, _ in dfm.variables(resolved)}
    if names & set(dfm.BUILD_ARGS):
        return "build", s.platform
    if names & TARGET:
        return "target", s.platform
    if "$" in resolved or not resolved.strip():
        return "unknown", s.platform
    return "const", resolved


class _Checker:
    """The findings of one platform's view of the Dockerfile."""

    def __init__(self, df: dfm.Dockerfile, target: str | None, rel: str, shared: dict):
        self.df, self.target, self.rel = df, target, rel
        self.reachable = df.reachable(target)
        self.kinds = {s.index: platform_kind(df, s)[0] for s in self.reachable}
        # a stage's compiles depend on it and the stages it is built FROM: the same in every
        # view where that chain is the same
        self._compiles: dict = shared
        self._keys: dict[int, int] = {}  # stage index -> its key in this view

    def findings(self) -> list[Finding]:
        out = self._final_platform()
        for s in self.reachable:
            out += self._stage(s)
        return out

    def _final_platform(self) -> list[Finding]:
        out = []
        for s in self.df.image_chain(self.target):
            if s.base_stage is not None:
                continue  # it inherits the platform; the stage that sets it is in the chain too
            kind, value = platform_kind(self.df, s)
            if kind in ("const", "unknown"):
                out.append(
                    r.CONST_PLATFORM_FINAL.finding(self.rel, s.line, stage=s.label, value=value)
                )
            elif kind == "build":
                out.append(r.BUILDPLATFORM_FINAL.finding(self.rel, s.line, stage=s.label))
        return out

    def _stage(self, s: dfm.Stage) -> list[Finding]:
        kind = self.kinds[s.index]
        compiles, _ = self.compiles(s)
        out = _base_image(s, kind, self.rel)
        out += _arg_scope(self.df, s, self.rel, {c.line for c in compiles})
        out += _insecure_runs(s, self.rel)
        if kind == "target":
            out += _arch_pinned(self.df, s, self.rel)
            if compiles:
                c = compiles[0]
                out.append(
                    r.COMPILE_UNDER_EMULATION.finding(
                        self.rel, c.line, command=c.command, stage=s.label
                    )
                )
            return out
        out += self._cross_compiles(s, compiles)
        return out + _arch_probes(s, self.rel)

    def compiles(self, s: dfm.Stage) -> tuple[list[Compile], _State]:
        """The stage's compiles and the state it leaves, computed once per chain of stages
        (from the first stage of the chain down to ``s``: no recursion, however long)."""
        chain = [s]
        while chain[-1].index not in self._keys and chain[-1].base_stage is not None:
            if chain[-1].base_stage >= chain[-1].index:
                break
            chain.append(self.df.stages[chain[-1].base_stage])
        key, state = -1, _State()
        if chain[-1].index in self._keys:  # known: start below it
            key = self._keys[chain.pop().index]
            state = self._compiles[key][1]
        for stage in reversed(chain):
            key = self._key(stage.index, key)
            self._keys[stage.index] = key
            if key not in self._compiles:
                self._compiles[key] = stage_compiles(self.df, stage, state)
            state = self._compiles[key][1]
        return self._compiles[self._keys[s.index]]

    def _key(self, index: int, base_key: int) -> int:
        """A small number for (stage, the chain it is built FROM), shared by the views."""
        keys = self._compiles.setdefault("keys", {})
        return keys.setdefault((index, base_key), len(keys))

    def _cross_compiles(self, s: dfm.Stage, compiles: list[Compile]) -> list[Finding]:
        out = []
        for c in self._shipped(s, compiles):
            f = self._verdict(s, c)
            if f is not None:
                out.append(f)
        return out

    def _shipped(self, s: dfm.Stage, compiles: list[Compile]) -> list[Compile]:
        """The compiles whose output ends up in the image (not the build machine's tools)."""
        shipped = _shipped_paths(self.df, s, self.target, self.reachable)
        out = []
        for c in compiles:
            if c.output and shipped is not None and not _is_shipped(c.output, shipped):
                continue  # a build tool for this stage (gcc -o /tmp/gen)
            if c.verdict == "tool" and not self._ships_to_target(s, c.output):
                continue  # go/cargo install of a tool that runs on the build machine
            out.append(c)
        return out

    def lost_variants(self, variants: dict[str, str]) -> list[Finding]:
        """DF222: a cross-compiled Go build for 32-bit ARM whose GOARM does not follow the
        variant asked for (``variants``: platform -> GOARM)."""
        out = []
        for s in self.reachable:
            if self.kinds[s.index] == "target":
                continue  # compiled on the target itself (under QEMU): Go detects the CPU
            for c in self._shipped(s, self.compiles(s)[0]):
                wrong = _wrong_variants(c, variants)
                if wrong:
                    out.append(
                        r.LOST_ARM_VARIANT.finding(
                            self.rel, c.line, command=c.command, stage=s.label,
                            platforms=", ".join(wrong), goarm=_goarm_said(c.goarm),
                        )
                    )  # fmt: skip
        return out

    def _verdict(self, s: dfm.Stage, c: Compile) -> Finding | None:
        rel = self.rel
        if c.verdict in ("host", "tool"):
            fix = _FIX.get(c.kind, _FIX["c"]) + _library_hint(c)
            return r.HOST_COMPILER.finding(rel, c.line, stage=s.label, command=c.command, fix=fix)
        if c.verdict == "fixed":
            return r.FIXED_ARCH_OUTPUT.finding(
                rel, c.line, stage=s.label, command=c.command, why=c.why
            )
        if c.verdict == "needs-arg":
            return r.UNDECLARED_PLATFORM_ARG.finding(
                rel,
                c.line,
                name=c.why,
                stage=s.label,
                effect=f", and `{c.command}` reads it to pick the target",
            )
        return None

    def _ships_to_target(self, s: dfm.Stage, output: str | None) -> bool:
        """Whether a stage on the target platform copies ``output`` out of ``s`` (or is
        built FROM it, or mounts it): then the tool installed there ends up in the image."""
        for other in self.reachable:
            if self.kinds[other.index] != "target":
                continue
            for dep, how, line in self.df.dependencies(other):
                if dep is not s:
                    continue
                if how != "COPY --from" or output is None:
                    return True
                ins = next(i for i in other.instructions if i.line == line)
                srcs = [p.strip("\"'") for p in dfm.split_args(ins.rest)[:-1]]
                if ins.exec_form is not None or ins.heredocs or _is_shipped(output, srcs):
                    return True
        return False


def _insecure_runs(s: dfm.Stage, rel: str) -> list[Finding]:
    out = []
    for ins in s.instructions:
        if ins.keyword != "RUN":
            continue
        for flag, bad in (("security", "insecure"), ("network", "host")):
            if ins.flag(flag) == bad:
                out.append(r.INSECURE_RUN.finding(rel, ins.line, flag=f"--{flag}={bad}"))
    return out


def _arch_probes(s: dfm.Stage, rel: str) -> list[Finding]:
    out = []
    for ins in s.instructions:
        m = _ARCH_PROBE.search(ins.script) if ins.keyword == "RUN" else None
        if m:
            out.append(
                r.BUILD_ARCH_PROBE.finding(
                    rel, ins.line, command=m.group(0).strip("$()`"), stage=s.label
                )
            )
    return out


def _shipped_paths(
    df: dfm.Dockerfile, s: dfm.Stage, target: str | None, reachable: list[dfm.Stage]
) -> list[str] | None:
    """Paths other stages copy out of ``s`` (``/`` when it is in the image); None: unknown."""
    if any(x.index == s.index for x in df.image_chain(target)):
        return ["/"]
    paths: list[str] = []
    for other in reachable:
        for dep, how, line in df.dependencies(other):
            if dep is not s:
                continue
            if how != "COPY --from":
                return None  # a FROM or a mount: everything may be used
            ins = next(i for i in other.instructions if i.line == line)
            if ins.exec_form is not None or ins.heredocs:
                return None
            srcs = dfm.split_args(ins.rest)[:-1]
            paths += [p.strip("\"'") for p in srcs]
    return paths


def _is_shipped(output: str, shipped: list[str]) -> bool:
    if not output.startswith("/") or "$" in output:
        return True  # unknown place: assume it ships
    out = posixpath.normpath(output)
    for src in shipped:
        if "$" in src or "*" in src or "?" in src or not src.startswith("/"):
            return True
        src = posixpath.normpath(src)
        if src == "/" or out == src or out.startswith(src + "/") or src.startswith(out + "/"):
            return True
    return False


def _base_image(s: dfm.Stage, kind: str, rel: str) -> list[Finding]:
    if s.base_stage is not None or kind != "target":
        return []
    ref = s.base_resolved
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
    head, _, rest = ref.partition("/")
    if head in SINGLE_ARCH_NAMESPACES and rest:
        return [
            r.SINGLE_ARCH_BASE.finding(
                rel, s.line, image=s.base_resolved, repo=head, suggestion=f"`FROM {rest}`"
            )
        ]
    return []


# --- ARGs ----------------------------------------------------------------------------------


def _strip_single_quotes(text: str) -> str:
    return re.sub(r"'[^']*'", "''", text)


def _scoped_text(ins: dfm.Instruction) -> tuple[str, set[str]] | None:
    """(the text whose $NAMEs are expanded, names the instruction assigns itself)."""
    if ins.keyword == "RUN":
        text = _strip_single_quotes(ins.script)
        return text, set(re.findall(r"(?:^|[\s;&|(])([A-Za-z_][A-Za-z0-9_]*)=", text))
    if ins.keyword in dfm.EXPANDED and ins.keyword != "FROM":
        return ins.args, set()
    return None


def _arg_scope(
    df: dfm.Dockerfile, s: dfm.Stage, rel: str, compile_lines: set[int]
) -> list[Finding]:
    """DF212/DF221 (a platform ARG not declared in the stage) and DF217 (a global ARG not
    redeclared). ``${TARGETOS:-linux}`` is never empty, so it is no finding."""
    out: list[Finding] = []
    reported: set[str] = set()
    for k, ins in enumerate(s.instructions):
        scoped = _scoped_text(ins)
        if scoped is None:
            continue
        text, assigned = scoped
        known = df.declared_args(s, k) | set(df.env_names(s, k)) | assigned | reported
        for name, op, _ in dfm.references(text):
            if name in known or (_has_default(op) and name in dfm.PLATFORM_ARGS):
                continue  # ${TARGETOS:-linux} is never empty (a global ARG's default may
                # still differ from the global value: DF217 stays)
            f = _undeclared(df, s, ins, name, text, ins.line in compile_lines, rel)
            if f is not None:
                reported.add(name)
                known.add(name)
                out.append(f)
    return out


def _has_default(op: str) -> bool:
    return op.startswith((":-", "-")) and bool(op.lstrip(":-"))


def _undeclared(df, s, ins, name, text, compiles, rel) -> Finding | None:
    if name in dfm.PLATFORM_ARGS:
        # an empty value in a path, ENV or a compile changes what ships; elsewhere (echo,
        # a LABEL, a download that then fails) it is a mistake worth a warning
        severe = compiles or ins.keyword in ("COPY", "ADD", "ENV")
        effect = ""
        if re.search(r"GOARCH=\S*" + name, text):
            effect = ", so GOARCH is empty and Go builds for the build machine"
        rule = r.UNDECLARED_PLATFORM_ARG if severe else r.UNDECLARED_PLATFORM_ARG_UNUSED
        return rule.finding(rel, ins.line, name=name, stage=s.label, effect=effect)
    if name in df.global_args:
        return r.GLOBAL_ARG_NOT_REDECLARED.finding(rel, ins.line, name=name, stage=s.label)
    return None


def _arch_value(value: str | None) -> bool:
    """Whether an ARG value names one architecture: ``amd64``, ``linux/arm64``,
    ``linux-amd64``."""
    if not value or "$" in value:
        return False
    parts = re.split(r"[/_-]", value.strip().lower())
    if len(parts) == 1:
        return parts[0] in ARCH_VALUES
    return (
        len(parts) <= 3
        and parts[0] in ("linux", "windows", "darwin")
        and (parts[1] in ARCH_VALUES or "".join(parts[1:]) in ARCH_VALUES)
    )


def _stage_arg_values(df: dfm.Dockerfile, s: dfm.Stage) -> list[dict[str, str | None]]:
    """The value of each ARG in scope before each instruction (defaults; global defaults
    for an ``ARG NAME`` without one; build.sh's --build-arg wins)."""
    values: dict[str, str | None] = {}
    out = []
    for ins in s.instructions:
        out.append(dict(values))
        if ins.keyword == "ARG":
            for name, default in dfm.arg_defaults(ins.rest).items():
                values[name] = default if default is not None else df.global_args.get(name)
    return out


def _arch_pinned(df: dfm.Dockerfile, s: dfm.Stage, rel: str) -> list[Finding]:
    """DF219: an ARG whose default is one architecture, in the FROM image or a COPY/ADD path
    of a stage every platform builds."""
    out = []
    if s.base_stage is None:
        for name, _ in dfm.variables(s.base):
            value = df.global_args.get(name)
            if name not in dfm.PLATFORM_ARGS and _arch_value(value):
                out.append(
                    r.ARCH_PINNED_BY_ARG.finding(
                        rel,
                        s.line,
                        name=name,
                        value=value,
                        where=f"the FROM image {s.base_resolved}",
                    )
                )
                break
    for ins, values in zip(s.instructions, _stage_arg_values(df, s), strict=True):
        if ins.keyword not in ("COPY", "ADD"):
            continue
        for name, _ in dfm.variables(ins.rest):
            value = values.get(name)
            if name not in dfm.PLATFORM_ARGS and _arch_value(value):
                where = f"{ins.keyword} {ins.rest[:60]}"
                out.append(
                    r.ARCH_PINNED_BY_ARG.finding(rel, ins.line, name=name, value=value, where=where)
                )
                break
    return out


# --- compile commands ----------------------------------------------------------------------


def stage_compiles(
    df: dfm.Dockerfile, s: dfm.Stage, inherited: _State | None = None
) -> tuple[list[Compile], _State]:
    """Every compile command in the stage's own RUN instructions, with a verdict, and the
    state the stage leaves for stages built FROM it."""
    mentions_target = any(
        {n for n, _ in dfm.variables(ins.script if ins.keyword == "RUN" else ins.args)} & TARGET
        for ins in s.instructions
        if ins.keyword in ("RUN", "ENV")
    )
    state = _State(**vars(inherited)) if inherited is not None else _State()
    verified = _last_verify(s)
    found: list[Compile] = []
    workdir: str | None = "/" if s.base_stage is None else None
    for k, ins in enumerate(s.instructions):
        if ins.keyword == "WORKDIR":
            workdir = _workdir(workdir, ins.rest)
        if ins.keyword != "RUN":
            continue
        walker = _RunWalker(_run_env(df, s, k), ins.line, df.declared_args(s, k),
                            mentions_target, state, k <= verified)  # fmt: skip
        walker.walk(shell.parse(ins.script).tree, frozenset())
        for c in walker.found:
            if c.output and not c.output.startswith("/"):
                c.output = posixpath.join(workdir, c.output) if workdir else None
        found += walker.found
    return found, state


def _workdir(current: str | None, rest: str) -> str | None:
    path = rest.strip().strip("\"'")
    if path.startswith("/"):
        return path
    if current is not None and "$" not in path:
        return posixpath.join(current, path)
    return None


def _last_verify(s: dfm.Stage) -> int:
    """The index of the last RUN that runs ``xx-verify`` (it fails the build unless the files
    it checks are the target's), -1 without one: the build drivers up to it are checked."""
    last = -1
    for k, ins in enumerate(s.instructions):
        if ins.keyword == "RUN" and re.search(r"\bxx-verify\b", ins.script):
            last = k
    return last


def _run_env(df: dfm.Dockerfile, s: dfm.Stage, k: int) -> dict[str, tuple[str, frozenset]]:
    env: dict[str, tuple[str, frozenset]] = {}
    for name in df.declared_args(s, k):
        env[name] = ("${" + name + "}", frozenset({name}) & TARGET)
    for name, value in df.env_names(s, k).items():
        env[name] = (value, _taint(value, env))
    return env


def _taint(raw: str, env: dict[str, tuple[str, frozenset]]) -> frozenset:
    names: set[str] = set()
    for n, _ in dfm.variables(raw):
        if n in TARGET:
            names.add(n)
        elif n in env:
            names |= env[n][1]
    if _XX_CALL.search(raw):
        names.add(XX)
    return frozenset(names)


def _shape(raw: str) -> str:
    """A word without its quotes (expansions left as written)."""
    return raw.replace('"', "").replace("'", "")


class _RunWalker:
    def __init__(self, env, line, declared, mentions_target, state: _State, verified: bool):
        self.env: dict[str, tuple[str, frozenset]] = dict(env)
        self.line = line
        self.declared = declared
        self.mentions_target = mentions_target
        self.state = state
        self.verified = verified  # xx-verify checks this RUN's outputs (now or later)
        self.found: list[Compile] = []

    def walk(self, node: shell.Node, control: frozenset) -> None:
        if isinstance(node, shell.Command):
            self._command(node, control)
        elif isinstance(node, shell.If):
            self._if(node, control)
        elif isinstance(node, shell.Case):
            sub = control | _taint(node.subject.raw, self.env)
            for _, body in node.arms:
                self.walk(body, sub)
        elif isinstance(node, shell.Loop):
            self._loop(node, control)
        else:
            for child in _children(node):
                self.walk(child, control)

    def _if(self, node: shell.If, control: frozenset) -> None:
        for cond, body in node.branches:
            self.walk(cond, control)
            self.walk(body, control | self._node_taint(cond))
        if node.orelse is not None:
            conds = frozenset().union(*(self._node_taint(c) for c, _ in node.branches))
            self.walk(node.orelse, control | conds)

    def _loop(self, node: shell.Loop, control: frozenset) -> None:
        if node.var and node.items:
            t = frozenset().union(*(_taint(w.raw, self.env) for w in node.items))
            self.env[node.var] = ("${" + node.var + "}", t | control)
        if node.cond is not None:
            self.walk(node.cond, control)
        self.walk(node.body, control)

    def _node_taint(self, node: shell.Node) -> frozenset:
        t: frozenset = frozenset()
        for cmd in shell.walk_commands(node):
            for w in cmd.words + cmd.assigns:
                t |= _taint(w.raw, self.env)
        return t

    def _assign(self, raw: str, control: frozenset) -> tuple[str, tuple[str, frozenset]] | None:
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\+?=(.*)$", raw, re.S)
        if not m:
            return None
        value = _shape(m.group(2))
        return m.group(1), (value, _taint(value, self.env) | control)

    def _command(self, cmd: shell.Command, control: frozenset) -> None:
        local = dict(self.env)
        for a in cmd.assigns:
            kv = self._assign(a.raw, control)
            if kv:
                local[kv[0]] = kv[1]
        if not cmd.words:
            self.env = local
            return
        words = [_shape(w.raw) for w in cmd.words]
        raws = [w.raw for w in cmd.words]
        words, raws = self._unwrap(words, raws, local, control)
        if not words:
            return
        if words[0] in ("export", "declare", "local", "readonly"):
            for w in words[1:]:
                kv = self._assign(w, control)
                if kv:
                    self.env[kv[0]] = kv[1]
            return
        c = self._classify(words, raws, local, control)
        if c is not None:
            self.found.append(c)

    def _unwrap(self, words, raws, local, control):
        """``env A=b sudo -E make``: the command after the wrappers, assignments kept."""
        while words and posixpath.basename(words[0]) in _WRAPPERS:
            words, raws = words[1:], raws[1:]
            while words and (words[0].startswith("-")
                             or re.match(r"[A-Za-z_][A-Za-z0-9_]*=", words[0])):  # fmt: skip
                kv = self._assign(words[0], control)
                if kv:
                    local[kv[0]] = kv[1]
                words, raws = words[1:], raws[1:]
        return words, raws

    def _judge(self, value: str, taint: frozenset, control: frozenset) -> tuple[str, str]:
        """(verdict, why): ok when derived from a TARGET* ARG or an xx tool with the target
        in scope; else host or fixed by the value's shape."""
        if (taint | control) & TARGET:
            return "ok", ""
        if XX in taint:
            return ("ok", "") if self.declared & TARGET else ("needs-arg", "TARGETPLATFORM")
        if "$(" in value or "`" in value:
            return ("ok", "") if self.mentions_target else ("fixed", "")
        return "fixed", ""

    def _classify(self, words, raws, env, control) -> Compile | None:
        base = posixpath.basename(words[0])
        if len(words) > 1 and all(w in _INFO_FLAGS or w.startswith("-print") for w in words[1:]):
            return None  # gcc --version, make -v: nothing is compiled
        shown, output = " ".join(words)[:70], _option_value(words, "-o")

        def compile_(kind: str, verdict: str, why: str = "") -> Compile:
            return Compile(kind, shown, self.line, verdict, why, output)

        if base in _XX_TOOLS:
            if base == "xx-go" and "--wrap" in words[1:]:
                self.state.xx_go_wrapped = True
                return None
            return compile_("xx", "ok" if self.declared & TARGET else "needs-arg",
                            "TARGETPLATFORM")  # fmt: skip
        if base == "go" and len(words) > 1 and words[1] in ("build", "install"):
            return self._go(words, env, control, compile_)
        if "$" in words[0]:
            return self._cc_variable(words[0], env, control, compile_)
        m = _C_COMPILER.match(base)
        if m:
            return self._cc(words, raws, m.group("prefix"), env, control, compile_)
        return self._driver(words, raws, env, control, compile_)

    def _go(self, words, env, control, compile_) -> Compile:
        install = words[1] == "install"
        if self.state.xx_go_wrapped:
            return compile_("go", "ok")
        if "GOARCH" not in env:
            # go install puts a tool for the build machine in $GOBIN ($GOPATH/bin, /go/bin
            # in the golang images)
            c = compile_("go", "tool" if install else "host")
            if install:
                c.output = _install_dir(env, "GOBIN", "GOPATH", "/go")
            return c
        value, taint = env["GOARCH"]
        verdict, _ = self._judge(value, taint, control)
        c = compile_("go", verdict, f"GOARCH={value}")
        c.goarm = _goarm(env, control)
        return c

    def _cc_variable(self, w0, env, control, compile_) -> Compile | None:
        """A C compiler named through a variable: ``$CC``, ``${TRIPLE}-gcc``."""
        tail = re.sub(r"\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_][A-Za-z0-9_]*", "", w0)
        var = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", w0)
        is_cc = (var is not None and var.group(1) in ("CC", "CXX", "HOSTCC", "TARGET_CC")) or bool(
            re.search(r"(^|-)(gcc|g\+\+|cc|c\+\+|clang|clang\+\+)(-\d+)?$", tail)
        )
        if not is_cc:
            return None
        if var is not None and var.group(1) not in env:
            return compile_("c", "host", f"${var.group(1)} is not set")
        value = env[var.group(1)][0] if var is not None else w0
        taint = _taint(w0, env) | (env[var.group(1)][1] if var is not None else frozenset())
        verdict, why = self._judge(value, taint, control)
        if verdict == "fixed" and var is not None and _is_host_compiler(value):
            verdict = "host"
        return compile_("c", verdict, why or f"{var.group(1) if var else 'compiler'}={value}")

    def _cc(self, words, raws, prefix, env, control, compile_) -> Compile:
        """gcc, aarch64-linux-gnu-gcc, clang --target=..."""
        if prefix and prefix.split("-")[0] in ARCHES:
            if control & TARGET:
                return compile_("c", "ok")
            return compile_("c", "fixed", f"{words[0]} compiles for {prefix.split('-')[0]}")
        target = _option(words, raws, ("--target", "-target"))
        if target is not None:
            value, raw = target
            verdict, why = self._judge(value, _taint(raw, env), control)
            return compile_("c", verdict, why or f"--target={value}")
        return compile_("c", "host")

    def _driver(self, words, raws, env, control, compile_) -> Compile | None:
        """make, configure, cmake, cargo, rustc, zig: what toolchain they are handed."""
        spec = _driver_spec(words)
        if spec is None:
            return None
        keys, env_keys, tool = spec
        values = _driver_values(words, raws, keys)
        verdicts = [(*self._judge(v, _taint(raw, env), control), v, v) for v, raw in values]
        verdicts += [(*self._judge(env[k][0], env[k][1], control), f"{k}={env[k][0]}", env[k][0])
                     for k in env_keys if k in env]  # fmt: skip
        inherits = posixpath.basename(words[0]) not in ("cargo", "rustc", "zig")
        if inherits and (self.state.xx_go_wrapped or self.state.cross_configured or self.verified):
            verdicts.append(("ok", "", "", ""))
        verdict, why = _combine(verdicts, tool)
        if verdict == "ok" and posixpath.basename(words[0]) == "configure":
            self.state.cross_configured = True
        c = compile_("driver", verdict, why)
        if verdict == "tool":  # cargo install: into --root, $CARGO_HOME or the rust image's
            root = _option(words, raws, ("--root",))
            c.output = (
                posixpath.join(root[0], "bin")
                if root
                else _install_dir(env, "CARGO_INSTALL_ROOT", "CARGO_HOME", "/usr/local/cargo")
            )
        return c


def _wrong_variants(c: Compile, variants: dict[str, str]) -> list[str]:
    """The arm platforms a cross-compiled go build gets the wrong GOARM for."""
    if c.kind != "go" or c.verdict != "ok" or c.goarm in ("", "ok"):
        return []
    return [p for p, goarm in variants.items() if c.goarm != goarm]


def _goarm_said(goarm: str) -> str:
    return "no GOARM" if goarm == "missing" else f"GOARM={goarm} for every one"


#: The ARGs that carry the variant (v6, v7): TARGETARCH alone says only "arm".
_VARIANT_ARGS = frozenset({"TARGETVARIANT", "TARGETPLATFORM"})


def _goarm(env: dict[str, tuple[str, frozenset]], control: frozenset) -> str:
    """How a go build sets GOARM: "ok" when derived from the target's variant (or by an xx
    tool), "missing", or the fixed value it has (``7``)."""
    if "GOARM" not in env:
        return "missing"
    value, taint = env["GOARM"]
    if (taint | control) & _VARIANT_ARGS or XX in taint:
        return "ok"
    if taint & TARGET:
        return "missing"  # from TARGETARCH: "arm" for every variant
    return "ok" if "$" in value else value.strip() or "missing"


def _install_dir(env, bin_var: str, home_var: str, default_home: str) -> str:
    if bin_var in env:
        return env[bin_var][0]
    home = env[home_var][0] if home_var in env else default_home
    return posixpath.join(home, "bin")


def _children(node: shell.Node) -> list[shell.Node]:
    if isinstance(node, shell.Sequence):
        return list(node.items)
    if isinstance(node, shell.AndOr):
        return [node.first] + [x for _, x in node.rest]
    if isinstance(node, shell.Pipeline):
        return list(node.commands)
    if isinstance(node, shell.Function | shell.Group):
        return [node.body]
    return []


def _combine(verdicts: list[tuple[str, str, str, str]], tool: bool) -> tuple[str, str]:
    """One verdict from every toolchain signal (verdict, why, label, value): one that is the
    target's is enough; a fixed value that is the host's own compiler counts as no signal."""
    for wanted in ("ok", "needs-arg", "fixed"):
        for verdict, why, label, value in verdicts:
            if verdict == wanted and not (wanted == "fixed" and _is_host_compiler(value)):
                return verdict, why or label
    return ("tool" if tool else "host"), ""


_CARGO_COMPILES = (("build",), ("rustc",), ("zigbuild",), ("auditable", "build"),
                   ("chef", "cook"))  # fmt: skip


def _driver_spec(words: list[str]) -> tuple[tuple[str, ...], tuple[str, ...], bool] | None:
    """(command-line keys, environment keys, builds a build-machine tool) of a driver."""
    base = posixpath.basename(words[0])
    if base in ("make", "gmake"):
        return ("CC=", "CXX=", "CROSS_COMPILE=", "GO=", "GOARCH="), _DRIVER_ENV, False
    if base == "configure":
        return ("--host=", "CC="), ("CC", "CXX"), False
    if base == "cmake":
        if any(w in ("--build", "-E", "--install", "-P") for w in words[1:2]):
            return None
        return ("-DCMAKE_C_COMPILER=", "-DCMAKE_CXX_COMPILER=", "-DCMAKE_TOOLCHAIN_FILE=",
                "--toolchain=", "--toolchain"), ("CC", "CXX"), False  # fmt: skip
    if base == "cargo":
        if len(words) > 1 and words[1] == "install":
            return ("--target=", "--target"), ("CARGO_BUILD_TARGET",), True
        if any(tuple(words[1 : 1 + len(sub)]) == sub for sub in _CARGO_COMPILES):
            return ("--target=", "--target"), ("CARGO_BUILD_TARGET",), False
        return None
    if base == "rustc":
        return ("--target=", "--target"), (), False
    if base == "zig" and len(words) > 1 and words[1] in ("cc", "c++", "build"):
        return ("-target", "-Dtarget="), (), False
    return None


def _driver_values(words, raws, keys) -> list[tuple[str, str]]:
    values: list[tuple[str, str]] = []  # (value, raw)
    for k, w in enumerate(words[1:], start=1):
        for key in keys:
            if key.endswith("=") and w.startswith(key):
                values.append((w[len(key) :], raws[k][raws[k].find("=") + 1 :]))
            elif not key.endswith("=") and w == key and k + 1 < len(words):
                values.append((words[k + 1], raws[k + 1]))
    return values


def _option_value(words: list[str], flag: str) -> str | None:
    """The value of ``-o PATH`` / ``-oPATH`` (gcc style), if given."""
    for k, w in enumerate(words[1:], start=1):
        if w == flag and k + 1 < len(words):
            return words[k + 1]
        if w.startswith(flag) and len(w) > len(flag) and not w.startswith("--"):
            return w[len(flag) :]
    return None


def _is_host_compiler(value: str) -> bool:
    m = _C_COMPILER.match(posixpath.basename(value.strip()))
    return bool(m) and not (m.group("prefix") and m.group("prefix").split("-")[0] in ARCHES)


def _option(words, raws, names) -> tuple[str, str] | None:
    for k, w in enumerate(words):
        for n in names:
            if w.startswith(n + "="):
                return w[len(n) + 1 :], raws[k]
            if w == n and k + 1 < len(words):
                return words[k + 1], raws[k + 1]
    return None
