"""The ``cross-compile`` criterion: every stage that ends up in the image is built for
$TARGETPLATFORM.

For each stage BuildKit builds (the final stage or ``--target``, the stages it is FROM, and
the stages it copies or mounts from) the check works out the platform it runs on
(``target``: no --platform; ``build``: $BUILDPLATFORM; ``const``: a fixed value) and the
compile commands in its RUN scripts. A compile in a ``target`` stage runs under emulation
(DF210); a compile in a ``build``/``const`` stage must produce $TARGETARCH output: its
compiler or GOARCH must be derived from a TARGET* ARG (taint-tracked through variables,
``case``/``if`` on $TARGETARCH, ENV), else it is the host compiler (DF211) or a fixed
architecture (DF215). ARG scoping (DF212, DF217) and platform pins on the final image
(DF213, DF214) are checked on the way. Heuristic by nature: it reads shell, it does not run it.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from grader import dockerfile as dfm
from grader import shell
from grader.checks.static import StaticAnalysis, emit
from grader.report import Finding
from grader.rules import dockerfile as r

TARGET = frozenset(dfm.TARGET_ARGS)
ARCHES = {"aarch64", "arm", "armv7", "armv7l", "armhf", "x86_64", "i686", "i386", "i586",
          "riscv64", "powerpc64le", "powerpc64", "ppc64le", "s390x", "mips64el", "mipsel",
          "mips", "loongarch64"}  # fmt: skip
SINGLE_ARCH_NAMESPACES = {"amd64", "arm64v8", "arm32v5", "arm32v6", "arm32v7", "i386",
                          "ppc64le", "s390x", "riscv64", "mips64le", "windows-amd64"}  # fmt: skip
_C_COMPILER = re.compile(
    r"^(?:(?P<prefix>[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*)-)?"
    r"(?P<cc>gcc|g\+\+|cc|c\+\+|clang|clang\+\+|tcc)(?:-\d+(?:\.\d+)*)?$"
)
_INFO_FLAGS = {"--version", "-v", "-V", "--help", "-dumpmachine", "-dumpversion", "version"}
_XX_TOOLS = {"xx-clang", "xx-clang++", "xx-cc", "xx-c++", "xx-gcc", "xx-go", "xx-cargo"}
_WRAPPERS = {"env", "sudo", "nice", "time", "command", "exec", "nohup"}
_ARCH_PROBE = re.compile(r"\buname\s+-m\b|\bdpkg\s+--print-architecture\b|\$\(\s*arch\s*\)|`arch`")
_FIX = {
    "go": "Declare `ARG TARGETOS TARGETARCH` in the stage and build with "
          "`CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build ...`.",
    "c": "Install a cross compiler for $TARGETARCH (`crossbuild-essential-${TARGETARCH}`) and "
         "call it by its triple (`aarch64-linux-gnu-gcc` for arm64, `x86_64-linux-gnu-gcc` "
         'for amd64) chosen with `case "$TARGETARCH"`; or use tonistiigi/xx (`xx-clang`).',
    "driver": "Hand the build the cross compiler chosen from $TARGETARCH: `make CC=...`, "
              "`./configure --host=...`, `cmake -DCMAKE_C_COMPILER=...`, "
              "`cargo build --target ...`.",
}  # fmt: skip


@dataclass
class Compile:
    kind: str  # go, c, driver, xx
    command: str  # shortened command text
    line: int
    verdict: str  # ok, host, fixed, needs-arg
    why: str = ""
    output: str | None = None  # the -o path, absolute when the WORKDIR is known


def check(a: StaticAnalysis) -> list[Finding]:
    f = a.dockerfile_file
    rel = a.dockerfile
    if f is None or f.missing:
        detail = a.dockerfile_note or (
            "" if rel == "Dockerfile" else " (it is the Dockerfile build.sh builds)"
        )
        return [emit(r.DOCKERFILE_MISSING, rel, None, path=rel, detail=detail)]
    if f.problem:
        return [emit(r.DOCKERFILE_UNREADABLE, rel, None, path=rel, reason=f.problem)]
    df = a.dockerfile_parsed
    assert isinstance(df, dfm.Dockerfile)
    out: list[Finding] = []
    for p in df.problems:
        if p.kind == "unknown-instruction":
            keyword = p.message.rsplit(" ", 1)[-1]
            out.append(emit(r.UNKNOWN_INSTRUCTION, rel, p.line, line=p.line, keyword=keyword))
        else:
            out.append(emit(r.DOCKERFILE_SYNTAX, rel, p.line, line=p.line, detail=p.message))
    if not df.stages:
        return out
    final = df.final(a.target)
    if final is None:
        out.append(
            emit(
                r.DOCKERFILE_SYNTAX,
                rel,
                None,
                detail=f"build.sh builds --target {a.target}, which is not a stage",
            )
        )
        return out
    for s in df.image_chain(a.target):
        if s.base_stage is not None:
            continue  # it inherits the platform; the stage that sets it is in the chain too
        kind, value = platform_kind(df, s)
        if kind in ("const", "unknown"):
            out.append(emit(r.CONST_PLATFORM_FINAL, rel, s.line, line=s.line, stage=s.label,
                            value=value))  # fmt: skip
        elif kind == "build":
            out.append(emit(r.BUILDPLATFORM_FINAL, rel, s.line, line=s.line, stage=s.label))
    for s in df.reachable(a.target):
        kind, _ = platform_kind(df, s)
        out += _base_image(df, s, kind, rel)
        out += _arg_scope(df, s, rel)
        for ins in s.instructions:
            if ins.keyword != "RUN":
                continue
            for flag, bad in (("security", "insecure"), ("network", "host")):
                if ins.flag(flag) == bad:
                    out.append(emit(r.INSECURE_RUN, rel, ins.line, line=ins.line,
                                    flag=f"--{flag}={bad}"))  # fmt: skip
        compiles = stage_compiles(df, s)
        if kind == "target":
            if compiles:
                c = compiles[0]
                out.append(emit(r.COMPILE_UNDER_EMULATION, rel, c.line, line=c.line,
                                command=c.command, stage=s.label))  # fmt: skip
            continue
        shipped = _shipped_paths(df, s, a.target)
        for c in compiles:
            if c.output and shipped is not None and not _is_shipped(c.output, shipped):
                continue  # a build tool for this stage (go install x@v, gcc -o /tmp/gen)
            if c.verdict == "host":
                out.append(
                    emit(
                        r.HOST_COMPILER,
                        rel,
                        c.line,
                        line=c.line,
                        stage=s.label,
                        command=c.command,
                        fix=_FIX.get(c.kind, _FIX["c"]),
                    )
                )
            elif c.verdict == "fixed":
                out.append(emit(r.FIXED_ARCH_OUTPUT, rel, c.line, line=c.line, stage=s.label,
                                command=c.command, why=c.why))  # fmt: skip
            elif c.verdict == "needs-arg":
                out.append(
                    emit(
                        r.UNDECLARED_PLATFORM_ARG,
                        rel,
                        c.line,
                        line=c.line,
                        name=c.why,
                        stage=s.label,
                        effect=f", and `{c.command}` reads it to pick the target",
                    )
                )
        for ins in s.instructions:
            if ins.keyword == "RUN":
                m = _ARCH_PROBE.search(ins.script)
                if m:
                    out.append(
                        emit(
                            r.BUILD_ARCH_PROBE,
                            rel,
                            ins.line,
                            line=ins.line,
                            command=m.group(0).strip("$()`"),
                            stage=s.label,
                        )
                    )
    return _dedupe(out)


def _shipped_paths(df: dfm.Dockerfile, s: dfm.Stage, target: str | None) -> list[str] | None:
    """Paths other stages copy out of ``s`` (``/`` when it is in the image); None: unknown."""
    if s in df.image_chain(target):
        return ["/"]
    paths: list[str] = []
    for other in df.reachable(target):
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


def _base_image(df: dfm.Dockerfile, s: dfm.Stage, kind: str, rel: str) -> list[Finding]:
    if s.base_stage is not None or kind != "target":
        return []
    ref = s.base_resolved
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
    head, _, rest = ref.partition("/")
    if head in SINGLE_ARCH_NAMESPACES and rest:
        return [emit(r.SINGLE_ARCH_BASE, rel, s.line, line=s.line, image=s.base_resolved,
                     repo=head, suggestion=f"`FROM {rest}`")]  # fmt: skip
    return []


def _strip_single_quotes(text: str) -> str:
    return re.sub(r"'[^']*'", "''", text)


def _arg_scope(df: dfm.Dockerfile, s: dfm.Stage, rel: str) -> list[Finding]:
    out: list[Finding] = []
    reported: set[str] = set()
    for k, ins in enumerate(s.instructions):
        if ins.keyword == "RUN":
            text = _strip_single_quotes(ins.script)
            assigned = set(re.findall(r"(?:^|[\s;&|(])([A-Za-z_][A-Za-z0-9_]*)=", text))
        elif ins.keyword in dfm.EXPANDED and ins.keyword != "FROM":
            text = ins.args
            assigned = set()
        else:
            continue
        declared = df.declared_args(s, k)
        env = df.env_names(s, k)
        for name, _ in dfm.variables(text):
            if name in declared or name in env or name in assigned or name in reported:
                continue
            if name in dfm.PLATFORM_ARGS:
                reported.add(name)
                effect = ""
                if re.search(r"GOARCH=\S*" + name, text):
                    effect = ", so GOARCH is empty and Go builds for the build machine"
                out.append(emit(r.UNDECLARED_PLATFORM_ARG, rel, ins.line, line=ins.line,
                                name=name, stage=s.label, effect=effect))  # fmt: skip
            elif name in df.global_args:
                reported.add(name)
                out.append(emit(r.GLOBAL_ARG_NOT_REDECLARED, rel, ins.line, line=ins.line,
                                name=name, stage=s.label))  # fmt: skip
    return out


# --- compile commands ----------------------------------------------------------------------


def stage_compiles(df: dfm.Dockerfile, s: dfm.Stage) -> list[Compile]:
    """Every compile command in the stage's own RUN instructions, with a verdict."""
    mentions_target = any(
        {n for n, _ in dfm.variables(ins.script if ins.keyword == "RUN" else ins.args)} & TARGET
        for ins in s.instructions
        if ins.keyword in ("RUN", "ENV")
    )
    found: list[Compile] = []
    xx_go_wrapped = False
    workdir: str | None = "/" if s.base_stage is None else None
    for k, ins in enumerate(s.instructions):
        if ins.keyword == "WORKDIR":
            path = ins.rest.strip().strip("\"'")
            if path.startswith("/"):
                workdir = path
            elif workdir is not None and "$" not in path:
                workdir = posixpath.join(workdir, path)
            else:
                workdir = None
        if ins.keyword != "RUN":
            continue
        declared = df.declared_args(s, k)
        env: dict[str, tuple[str, frozenset]] = {}
        for name in declared:
            env[name] = ("${" + name + "}", frozenset({name}) & TARGET)
        for name, value in df.env_names(s, k).items():
            env[name] = (value, _taint(value, env))
        walker = _RunWalker(env, ins.line, declared, mentions_target, xx_go_wrapped)
        tree = shell.parse(ins.script, use_bashlex=False).tree
        walker.walk(tree, frozenset())
        xx_go_wrapped = walker.xx_go_wrapped
        for c in walker.found:
            if c.output and not c.output.startswith("/"):
                c.output = posixpath.join(workdir, c.output) if workdir else None
        found += walker.found
    return found


def _taint(raw: str, env: dict[str, tuple[str, frozenset]]) -> frozenset:
    names: set[str] = set()
    for n, _ in dfm.variables(raw):
        if n in TARGET:
            names.add(n)
        elif n in env:
            names |= env[n][1]
    return frozenset(names)


def _shape(raw: str) -> str:
    """A word without its quotes (expansions left as written)."""
    return raw.replace('"', "").replace("'", "")


class _RunWalker:
    def __init__(self, env, line, declared, mentions_target, xx_go_wrapped):
        self.env: dict[str, tuple[str, frozenset]] = dict(env)
        self.line = line
        self.declared = declared
        self.mentions_target = mentions_target
        self.xx_go_wrapped = xx_go_wrapped
        self.found: list[Compile] = []

    def walk(self, node: shell.Node, control: frozenset) -> None:
        if isinstance(node, shell.Command):
            self._command(node, control)
        elif isinstance(node, shell.Sequence):
            for n in node.items:
                self.walk(n, control)
        elif isinstance(node, shell.AndOr):
            for n in [node.first] + [x for _, x in node.rest]:
                self.walk(n, control)
        elif isinstance(node, shell.Pipeline):
            for n in node.commands:
                self.walk(n, control)
        elif isinstance(node, shell.If):
            for cond, body in node.branches:
                self.walk(cond, control)
                self.walk(body, control | self._node_taint(cond))
            if node.orelse is not None:
                conds = frozenset().union(*(self._node_taint(c) for c, _ in node.branches))
                self.walk(node.orelse, control | conds)
        elif isinstance(node, shell.Case):
            sub = control | _taint(node.subject.raw, self.env)
            for _, body in node.arms:
                self.walk(body, sub)
        elif isinstance(node, shell.Loop):
            if node.var and node.items:
                t = frozenset().union(*(_taint(w.raw, self.env) for w in node.items))
                self.env[node.var] = ("${" + node.var + "}", t | control)
            if node.cond is not None:
                self.walk(node.cond, control)
            self.walk(node.body, control)
        elif isinstance(node, shell.Function | shell.Group):
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
        while words and posixpath.basename(words[0]) in _WRAPPERS:
            words, raws = words[1:], raws[1:]
            while words and (words[0].startswith("-")
                             or re.match(r"[A-Za-z_][A-Za-z0-9_]*=", words[0])):  # fmt: skip
                kv = self._assign(words[0], control)
                if kv:
                    local[kv[0]] = kv[1]
                words, raws = words[1:], raws[1:]
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

    def _judge(self, value: str, taint: frozenset, control: frozenset) -> str:
        """ok when derived from a TARGET* ARG; else host or fixed by the value's shape."""
        if (taint | control) & TARGET:
            return "ok"
        if "$(" in value or "`" in value:
            return "ok" if self.mentions_target else "fixed"
        return "fixed"

    def _classify(self, words, raws, env, control) -> Compile | None:
        w0 = words[0]
        base = posixpath.basename(w0)
        shown = " ".join(words)[:70]
        if len(words) > 1 and all(w in _INFO_FLAGS or w.startswith("-print") for w in words[1:]):
            return None  # gcc --version, make -v: nothing is compiled
        output = _option_value(words, "-o")

        def compile_(kind: str, verdict: str, why: str = "") -> Compile:
            return Compile(kind, shown, self.line, verdict, why, output)

        if base in _XX_TOOLS:
            if base == "xx-go" and "--wrap" in words[1:]:
                self.xx_go_wrapped = True
                return None
            if "TARGETPLATFORM" not in self.declared:
                return compile_("xx", "needs-arg", "TARGETPLATFORM")
            return compile_("xx", "ok")
        if base == "go" and len(words) > 1 and words[1] in ("build", "install"):
            if words[1] == "install" and any("@" in w for w in words[2:]):
                return None  # `go install tool@version`: a tool for the build machine
            if self.xx_go_wrapped:
                return compile_("go", "ok")
            if "GOARCH" not in env:
                return compile_("go", "host")
            value, taint = env["GOARCH"]
            verdict = self._judge(value, taint, control)
            return compile_("go", verdict, f"GOARCH={value}")
        # a C compiler named directly, by triple, or through a variable ($CC, ${TRIPLE}-gcc)
        if "$" in w0:
            tail = re.sub(r"\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_][A-Za-z0-9_]*", "", w0)
            var = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", w0)
            is_cc = ((var is not None and var.group(1) in ("CC", "CXX", "HOSTCC", "TARGET_CC"))
                     or bool(re.search(r"(^|-)(gcc|g\+\+|cc|c\+\+|clang|clang\+\+)(-\d+)?$",
                                       tail)))  # fmt: skip
            if not is_cc:
                return None
            if var is not None and var.group(1) not in env:
                return compile_("c", "host", f"${var.group(1)} is not set")
            taint = _taint(w0, env)
            value = env[var.group(1)][0] if var is not None else w0
            verdict = self._judge(value, taint, control)
            if verdict == "fixed" and var is not None and _is_host_compiler(value):
                verdict = "host"
            return compile_("c", verdict, f"{var.group(1) if var else 'compiler'}={value}")
        m = _C_COMPILER.match(base)
        if m:
            prefix = m.group("prefix")
            if prefix and prefix.split("-")[0] in ARCHES:
                if control & TARGET:
                    return compile_("c", "ok")
                return compile_("c", "fixed", f"{base} compiles for {prefix.split('-')[0]}")
            target = _option(words, raws, ("--target", "-target"))
            if target is not None:
                value, raw = target
                return compile_(
                    "c", self._judge(value, _taint(raw, env), control), f"--target={value}"
                )
            return compile_("c", "host")
        return self._driver(words, raws, env, control, compile_)

    def _driver(self, words, raws, env, control, compile_) -> Compile | None:
        w0 = words[0]
        base = posixpath.basename(w0)
        keys: tuple[str, ...]
        env_keys: tuple[str, ...] = ("CC", "CXX")
        if base in ("make", "gmake"):
            keys = ("CC=", "CXX=", "CROSS_COMPILE=")
            env_keys = ("CC", "CXX", "CROSS_COMPILE")
        elif base == "configure":
            keys = ("--host=", "CC=")
        elif base == "cmake":
            if any(w in ("--build", "-E", "--install", "-P") for w in words[1:2]):
                return None
            keys = ("-DCMAKE_C_COMPILER=", "-DCMAKE_CXX_COMPILER=", "-DCMAKE_TOOLCHAIN_FILE=",
                    "--toolchain=", "--toolchain")  # fmt: skip
        elif base == "cargo" and len(words) > 1 and words[1] in ("build", "install", "rustc"):
            keys = ("--target=", "--target")
            env_keys = ("CARGO_BUILD_TARGET",)
        elif base == "rustc":
            keys = ("--target=", "--target")
            env_keys = ()
        elif base == "zig" and len(words) > 1 and words[1] in ("cc", "c++", "build"):
            keys = ("-target", "-Dtarget=")
            env_keys = ()
        else:
            return None
        values: list[tuple[str, str]] = []  # (value, raw)
        for k, w in enumerate(words[1:], start=1):
            for key in keys:
                if key.endswith("=") and w.startswith(key):
                    values.append((w[len(key) :], raws[k][raws[k].find("=") + 1 :]))
                elif not key.endswith("=") and w == key and k + 1 < len(words):
                    values.append((words[k + 1], raws[k + 1]))
        for key in env_keys:
            if key in env and not values:
                value, taint = env[key]
                return compile_(
                    "driver",
                    self._judge(value, taint, control) if not _is_host_compiler(value) else "host",
                    f"{key}={value}",
                )
        if not values:
            return compile_("driver", "host")
        value, raw = values[0]
        verdict = self._judge(value, _taint(raw, env), control)
        if verdict == "fixed" and _is_host_compiler(value):
            verdict = "host"
        return compile_("driver", verdict, value)


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
