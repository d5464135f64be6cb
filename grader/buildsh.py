"""build.sh read the way bash would run it, without running it.

:func:`analyse` parses the script (``grader.shell``) and walks the tree in execution order:
variables, ``export``, ``${VAR:-default}`` and ``set -e`` are tracked; functions count only
when called; ``echo``/``printf`` text, comments and heredocs are never commands; ``||``,
``&&``, ``if``/``else``, ``!`` and ``case`` give each command a context (is its failure
tolerated? does it run only when a builder exists or is missing?). The result lists every
``docker buildx build`` with its resolved options, every plain ``docker build`` and every
``docker buildx create/use/rm/inspect``; ``grader.checks.static`` turns those into findings.

The script is assumed to run from its own folder with no arguments and an environment that
sets nothing: ``${1:-x}`` is ``x``; ``$IMAGE`` without a default stays unknown (``${IMAGE}``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import posixpath
import re
from dataclasses import dataclass, field

from grader import shell
from grader.shell import Value

# Real build scripts are a few KB; past this the grader refuses rather than parse for seconds.
MAX_SCRIPT_BYTES = 64 * 1024
# Bound the walk of loops, recursion and eval so hostile scripts cannot hang the grader.
MAX_STEPS = 20_000
MAX_CALL_DEPTH = 25


# --- what the walk finds ------------------------------------------------------------------


@dataclass(frozen=True)
class Guard:
    """The command runs only when builder ``name`` exists (present) or is missing (absent)."""

    name: str | None  # None: some builder (a probe the grader could not pin to one name)
    present: bool


@dataclass(frozen=True)
class Where:
    line: int
    function: str | None = None  # reached through a call of this function
    tolerated: bool = False  # its failure neither stops nor fails the script
    guards: tuple[Guard, ...] = ()
    conditional: bool = False  # inside a branch that may not run
    errexit: bool = False  # `set -e` in effect


@dataclass
class BuildxBuild:
    where: Where
    argv: list[Value]
    platforms: list[str] = field(default_factory=list)  # comma-split --platform entries
    platform_values: list[Value] = field(default_factory=list)
    push: bool = False
    load: bool = False
    outputs: list[dict[str, str]] = field(default_factory=list)
    provenance: list[Value] = field(default_factory=list)
    sbom: list[Value] = field(default_factory=list)
    attest: list[Value] = field(default_factory=list)
    tags: list[Value] = field(default_factory=list)
    builder_flag: Value | None = None
    builder: str | None = None  # the builder in effect (flag, BUILDX_BUILDER, or last `use`)
    builder_source: str = ""  # how it was chosen: "--builder", "BUILDX_BUILDER", "use", ""
    file: Value | None = None
    context: Value | None = None
    target: Value | None = None
    build_args: dict[str, Value] = field(default_factory=dict)
    env: dict[str, Value] = field(default_factory=dict)  # BUILDX_* variables docker receives
    cwd: str = "."
    opaque: list[Value] = field(default_factory=list)  # arguments the grader cannot see into

    @property
    def line(self) -> int:
        return self.where.line

    @property
    def exports_to_registry(self) -> bool:
        return self.push or any(_output_pushes(o) for o in self.outputs)

    @property
    def loads(self) -> bool:
        return self.load or any(o.get("type") == "docker" for o in self.outputs)

    def image_names(self) -> list[Value]:
        names = list(self.tags)
        for o in self.outputs:
            if o.get("name"):
                names += [Value(n) for n in o["name"].split(",") if n]
        return names


@dataclass
class PlainBuild:
    where: Where
    form: str  # "docker build", "docker image build", "docker builder build"
    argv: list[Value]


@dataclass
class BuilderOp:
    action: str  # create, use, rm, inspect, ls, stop
    name: str | None  # resolved name (may contain ${VAR}); None: not given
    where: Where
    driver: str | None = None
    use: bool = False  # create --use
    append: bool = False
    argv: list[Value] = field(default_factory=list)


@dataclass
class Mention:
    """``docker buildx build`` text that bash would not run."""

    line: int
    how: str


@dataclass
class Note:
    kind: str  # eval, source, subshell-script, exit, bake, ...
    line: int
    text: str


@dataclass
class EnvAssignment:
    name: str
    value: Value
    line: int
    exported: bool


@dataclass
class BuildScript:
    parser: str = "bashlex"
    bashlex_error: str | None = None
    syntax_error: str | None = None
    builds: list[BuildxBuild] = field(default_factory=list)
    plain_builds: list[PlainBuild] = field(default_factory=list)
    builder_ops: list[BuilderOp] = field(default_factory=list)
    mentions: list[Mention] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    env_assignments: list[EnvAssignment] = field(default_factory=list)
    errexit: bool = False  # `set -e` was switched on at some point
    uncalled_functions: list[str] = field(default_factory=list)
    exit_line: int | None = None  # an unconditional exit stopped the walk here


# --- analysis ------------------------------------------------------------------------------


class _Stop(Exception):
    """An unconditional ``exit`` (or the step budget) ends the walk."""


class _Return(Exception):
    pass


@dataclass(frozen=True)
class _Ctx:
    tolerated: bool = False
    guards: tuple[Guard, ...] = ()
    conditional: bool = False
    function: str | None = None
    base: int = 0  # offset of the parsed text inside the script (substitutions, eval)
    dry: bool = False  # walking an uncalled function only to say what it would do


_DOCKER_GLOBAL_VALUE = {"-c", "--context", "-H", "--host", "-l", "--log-level", "--config",
                        "--tlscacert", "--tlscert", "--tlskey"}  # fmt: skip
_BUILD_VALUE_FLAGS = {
    "--add-host", "--allow", "--annotation", "--attest", "--build-arg", "--build-context",
    "--builder", "--cache-from", "--cache-to", "--cgroup-parent", "--file", "-f", "--iidfile",
    "--label", "--metadata-file", "--network", "--no-cache-filter", "--output", "-o",
    "--platform", "--progress", "--provenance", "--sbom", "--secret", "--shm-size", "--ssh",
    "--tag", "-t", "--target", "--ulimit", "--cpu-quota", "--cpu-period", "--cpu-shares",
    "--cpuset-cpus", "--cpuset-mems", "--isolation", "--memory", "-m", "--memory-swap",
    "--security-opt", "--call", "--check",
}  # fmt: skip
_CREATE_VALUE_FLAGS = {"--name", "--driver", "--driver-opt", "--buildkitd-flags",
                       "--buildkitd-config", "--config", "--platform", "--node", "--endpoint",
                       "--timeout"}  # fmt: skip
_WRAPPERS = {"sudo", "command", "exec", "time", "nohup", "nice", "env", "timeout", "builtin"}
_BUILDX_MENTION = re.compile(r"\bdocker\b(?:\s+-{1,2}[\w-]+(?:[= ]\S+)?)*\s+buildx\s+"
                             r"(?:--builder[= ]\S+\s+)?(?:build|b)\b")  # fmt: skip


def parse_bool(text: str) -> bool | None:
    """Go's strconv.ParseBool, which buildx uses for flag values."""
    t = text.strip()
    if t in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if t in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def parse_csv(text: str) -> dict[str, str]:
    """``type=image,name=x,push=true`` -> dict (a bare value becomes ``{"": value}``)."""
    out: dict[str, str] = {}
    for part in text.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            k = k.strip().lower()
            out[k] = f"{out[k]},{v}" if k == "name" and k in out else v.strip()
        elif part.strip():
            out.setdefault("", part.strip())
    return out


def _output_pushes(o: dict[str, str]) -> bool:
    if o.get("type") == "registry":
        return True
    return o.get("type") == "image" and parse_bool(o.get("push", "false")) is True


def analyse(text: str) -> BuildScript:
    """Walk a build script the way bash would and list what it builds and how."""
    result = BuildScript()
    parsed = shell.parse(text)
    result.parser = parsed.parser
    result.bashlex_error = parsed.bashlex_error
    result.syntax_error = parsed.error
    interp = _Interp(text, result)
    with contextlib.suppress(_Stop):
        interp.exec(parsed.tree, _Ctx())
    interp.finish(parsed.tree)
    return result


class _Interp:
    def __init__(self, text: str, result: BuildScript):
        self.text = text
        self.lines = shell.LineIndex(text)
        self.r = result
        self.vars: dict[str, Value | list[Value]] = {}
        self.exported: set[str] = set()
        self.funcs: dict[str, shell.Function] = {}
        self.called: set[str] = set()
        self.positional: list[Value] = []
        self.errexit = False
        self.pipefail = False
        self.allexport = False
        self.current_builder: str | None = None
        self.cwd = "."
        self.steps = 0
        self.depth = 0
        self.echo_lines: set[int] = set()
        self.dry_build_lines: dict[int, str] = {}

    # -- variables

    def lookup(self, name: str) -> Value | list[Value] | None:
        if name.isdigit():
            k = int(name)
            if k == 0:
                return Value("build.sh")
            return self.positional[k - 1] if k <= len(self.positional) else None
        if name in ("@", "*"):
            if not self.positional:
                return None
            sep = shell._FIELD_BREAK if name == "@" else " "
            return Value(sep.join(v.text for v in self.positional),
                         tuple(u for v in self.positional for u in v.unknown))  # fmt: skip
        if name == "#":
            return Value(str(len(self.positional)))
        if name in ("?", "$", "!", "-"):
            return Value("$" + name, ("$" + name,))
        return self.vars.get(name)

    def _set(self, name: str, value: Value | list[Value], line: int, export: bool = False):
        self.vars[name] = value
        if export or self.allexport:
            self.exported.add(name)
        if name.startswith("BUILDX_") and isinstance(value, Value):
            self.r.env_assignments.append(EnvAssignment(name, value, line, name in self.exported))

    def _expand(self, word: shell.Word, ctx: _Ctx, *, split: bool = True) -> list[Value]:
        ex = shell.expand(word.raw, self.lookup, start=word.start, split=split)
        for name, value in ex.assigned.items():
            self._set(name, value, self._line(word.start, ctx))
        for body, offset in ex.substitutions:
            self._run_text(body, dataclasses.replace(ctx, base=ctx.base + offset))
        return ex.fields

    def _peek(self, word: shell.Word) -> list[Value]:
        """Expand without side effects (for probes)."""
        return shell.expand(word.raw, self.lookup).fields

    def _line(self, offset: int, ctx: _Ctx) -> int:
        return self.lines.line(ctx.base + offset)

    def _where(self, offset: int, ctx: _Ctx) -> Where:
        return Where(self._line(offset, ctx), ctx.function, ctx.tolerated, ctx.guards,
                     ctx.conditional, self.errexit)  # fmt: skip

    def _run_text(self, body: str, ctx: _Ctx) -> None:
        """Walk text the script runs ($(...), eval, sh -c), nested at most MAX_CALL_DEPTH."""
        if not body.strip():
            return
        if self.depth >= MAX_CALL_DEPTH:
            self.r.notes.append(Note("recursion", self._line(0, ctx), "nested too deep"))
            return
        self.depth += 1
        try:
            # the script was already parsed once; nested text needs no second bashlex pass
            self.exec(shell.parse(body, use_bashlex=False).tree, ctx)
        finally:
            self.depth -= 1

    # -- walking

    def exec(self, node: shell.Node, ctx: _Ctx) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            self.r.notes.append(Note("budget", 0, f"stopped after {MAX_STEPS} steps"))
            raise _Stop
        if isinstance(node, shell.Command):
            self._command(node, ctx)
        elif isinstance(node, shell.Sequence):
            for item in node.items:
                self.exec(item, ctx)
        elif isinstance(node, shell.AndOr):
            self._and_or(node, ctx)
        elif isinstance(node, shell.Pipeline):
            last = len(node.commands) - 1
            for k, cmd in enumerate(node.commands):
                tolerated = ctx.tolerated or node.negated or (k < last and not self.pipefail)
                self.exec(cmd, dataclasses.replace(ctx, tolerated=tolerated))
        elif isinstance(node, shell.If):
            self._if(node, ctx)
        elif isinstance(node, shell.Loop):
            self._loop(node, ctx)
        elif isinstance(node, shell.Case):
            self._case(node, ctx)
        elif isinstance(node, shell.Function):
            self.funcs[node.name] = node
        elif isinstance(node, shell.Group):
            if node.subshell:
                saved = (dict(self.vars), set(self.exported), self.errexit, self.cwd)
                try:
                    self.exec(node.body, ctx)
                except _Stop:
                    if not ctx.conditional:
                        raise
                finally:
                    self.vars, self.exported, self.errexit, self.cwd = saved
            else:
                self.exec(node.body, ctx)

    def _and_or(self, node: shell.AndOr, ctx: _Ctx) -> None:
        nodes = [node.first] + [n for _, n in node.rest]
        ops = [op for op, _ in node.rest]
        for i, n in enumerate(nodes):
            tolerated = "||" in ops[i:] or (i == len(nodes) - 1 and ctx.tolerated)
            guards = ctx.guards
            if i > 0:
                probe = self._probe(nodes[i - 1])
                if probe is not None:
                    name, negated = probe
                    runs_when_ok = ops[i - 1] == "&&"
                    guards = (*guards, Guard(name, present=runs_when_ok != negated))
            sub = dataclasses.replace(ctx, tolerated=tolerated, guards=guards,
                                      conditional=ctx.conditional or i > 0)  # fmt: skip
            self.exec(n, sub)

    def _if(self, node: shell.If, ctx: _Ctx) -> None:
        cond_ctx = dataclasses.replace(ctx, tolerated=True)
        probes = []
        for cond, body in node.branches:
            self.exec(cond, cond_ctx)
            probe = self._probe(cond)
            probes.append(probe)
            guards = ctx.guards
            if probe is not None:
                guards = (*guards, Guard(probe[0], present=not probe[1]))
            self._branch(body, dataclasses.replace(ctx, guards=guards, conditional=True))
        if node.orelse is not None:
            guards = ctx.guards
            if len(probes) == 1 and probes[0] is not None:
                guards = (*guards, Guard(probes[0][0], present=probes[0][1]))
            self._branch(node.orelse, dataclasses.replace(ctx, guards=guards, conditional=True))

    def _branch(self, node: shell.Node, ctx: _Ctx) -> None:
        """A branch that may not run (exits inside it are conditional, so they do not stop)."""
        self.exec(node, ctx)

    def _loop(self, node: shell.Loop, ctx: _Ctx) -> None:
        body_ctx = dataclasses.replace(ctx, conditional=True)
        if node.kind in ("for", "select"):
            items: list[Value] = []
            if node.items is None:
                items = list(self.positional)
            else:
                for w in node.items:
                    items += self._expand(w, ctx)
            if node.var and items and all(v.known for v in items) and len(items) <= 16:
                for v in items:
                    self._set(node.var, v, self._line(node.start, ctx))
                    self._branch(node.body, body_ctx)
                return
            if node.var:
                self._set(node.var, Value("${" + node.var + "}", (node.var,)), 0)
            self._branch(node.body, body_ctx)
            return
        if node.cond is not None:
            self.exec(node.cond, dataclasses.replace(ctx, tolerated=True))
        self._branch(node.body, body_ctx)

    def _case(self, node: shell.Case, ctx: _Ctx) -> None:
        subject = self._expand(node.subject, ctx, split=False)
        value = subject[0] if subject else Value("")
        if value.known:
            for patterns, body in node.arms:
                pats = [self._peek(p) for p in patterns]
                if any(f and f[0].known and fnmatch.fnmatchcase(value.text, f[0].text)
                       for f in pats):  # fmt: skip
                    self.exec(body, ctx)
                    return
            return
        for _, body in node.arms:
            self._branch(body, dataclasses.replace(ctx, conditional=True))

    # -- probes: conditions that test whether a builder exists

    def _probe(self, node: shell.Node) -> tuple[str | None, bool] | None:
        """(builder name, negated) when ``node`` succeeds iff a builder exists."""
        negated = False
        while True:
            if isinstance(node, shell.Sequence) and node.items:
                node = node.items[-1]
            elif isinstance(node, shell.Group):
                node = node.body
            elif isinstance(node, shell.Pipeline) and len(node.commands) == 1:
                negated ^= node.negated
                node = node.commands[0]
            else:
                break
        if isinstance(node, shell.Pipeline):
            argvs = [self._argv(c) for c in node.commands if isinstance(c, shell.Command)]
            if len(argvs) >= 2 and _is_buildx(argvs[0], "ls"):
                grep = argvs[-1]
                if grep and grep[0] in ("grep", "egrep", "fgrep", "rg"):
                    pats = [a for a in grep[1:] if not a.startswith("-")]
                    name = pats[0].strip("^$ ") if pats else None
                    name = re.sub(r"\\[bs<>]|\s.*$", "", name) if name else None
                    return (name or None, negated ^ node.negated)
            return None
        if isinstance(node, shell.Command):
            argv = self._argv(node)
            for action in ("inspect", "use"):
                if _is_buildx(argv, action):
                    names = [a for a in _after_buildx(argv, action) if not a.startswith("-")]
                    return (names[0] if names else None, negated)
        return None

    def _argv(self, cmd: shell.Command) -> list[str]:
        out: list[str] = []
        for w in cmd.words:
            out += [v.text for v in self._peek(w)]
        return _strip_wrappers(out)[0]

    # -- simple commands

    def _command(self, cmd: shell.Command, ctx: _Ctx) -> None:
        line = self._line(cmd.start, ctx)
        prefix: dict[str, Value] = {}
        for a in cmd.assigns:
            name, value = self._assignment(a, ctx)
            if name:
                prefix[name] = value
        argv_v: list[Value] = []
        for w in cmd.words:
            argv_v += self._expand(w, ctx)
        for body in cmd.heredocs:
            if _BUILDX_MENTION.search(body):
                self.r.mentions.append(Mention(line, "it is text in a heredoc"))
        if not argv_v:
            for name, value in prefix.items():
                self._set(name, value, line)
            return
        argv_t = [v.text for v in argv_v]
        argv_t, skipped, env_extra = _strip_wrappers(argv_t)
        argv_v = argv_v[skipped:]
        prefix.update({k: Value(v) for k, v in env_extra.items()})
        if not argv_t:
            return
        name = argv_t[0]
        where = self._where(cmd.start, ctx)
        for k, v in prefix.items():
            if k.startswith("BUILDX_"):
                self.r.env_assignments.append(EnvAssignment(k, v, line, True))
        if ctx.dry:
            if _is_buildx(argv_t, "build") or _is_buildx(argv_t, "b"):
                self.dry_build_lines[line] = ctx.function or "?"
            if name in self.funcs and name not in self.called and self.depth < MAX_CALL_DEPTH:
                self.depth += 1
                try:
                    self.exec(self.funcs[name].body, ctx)
                finally:
                    self.depth -= 1
            return
        if name in self.funcs:
            self._call(name, argv_v[1:], prefix, ctx, line)
        elif name in ("export", "readonly", "declare", "typeset", "local"):
            self._declare(name, cmd, argv_v, ctx, line)
        elif name == "unset":
            for a in argv_t[1:]:
                self.vars.pop(a, None)
                self.exported.discard(a)
        elif name == "set":
            self._set_options(argv_t[1:], argv_v[1:])
        elif name == "shift":
            self.positional = self.positional[1:]
        elif name == "cd":
            self._cd(argv_v[1:])
        elif name == "eval":
            text = " ".join(v.text for v in argv_v[1:])
            if all(v.known for v in argv_v[1:]):
                self._run_text(text, ctx)
            else:
                self.r.notes.append(
                    Note("eval", line, "`eval` of text that depends on the environment")
                )
        elif name in ("bash", "sh", "dash", "zsh", "ksh") and "-c" in argv_t[1:]:
            k = argv_t.index("-c", 1)
            if k + 1 < len(argv_v) and argv_v[k + 1].known:
                saved = (dict(self.vars), set(self.exported))
                self.vars = {n: v for n, v in self.vars.items() if n in self.exported}
                try:
                    self._run_text(argv_v[k + 1].text, ctx)
                finally:
                    self.vars, self.exported = saved
            else:
                note = f"`{name} -c` with text that depends on the environment"
                self.r.notes.append(Note("subshell-script", line, note))
        elif name in ("bash", "sh", "source", "."):
            target = argv_t[1] if len(argv_t) > 1 else ""
            self.r.notes.append(Note("source", line, f"`{name} {target}` (another script)"))
        elif name in ("echo", "printf"):
            if _BUILDX_MENTION.search(" ".join(argv_t[1:])):
                self.echo_lines.add(line)
        elif name == "exit":
            if not ctx.conditional:
                self.r.exit_line = line
                raise _Stop
        elif name == "return" and ctx.function is not None:
            if not ctx.conditional:
                raise _Return
        elif posixpath.basename(name) in ("docker", "docker.exe"):
            self._docker(argv_v, prefix, where)

    def _assignment(self, word: shell.Word, ctx: _Ctx) -> tuple[str, Value | list[Value]]:
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])?(\+?)=", word.raw)
        if not m:
            return "", Value("")
        name, _index, append = m.groups()
        rest = shell.Word(word.raw[m.end() :], word.start + m.end())
        if rest.raw.startswith("(") and rest.raw.endswith(")"):
            items = []
            for w in shell.split_words(rest.raw[1:-1], rest.start + 1):
                items += self._expand(w, ctx)
            if append and isinstance(self.vars.get(name), list):
                items = list(self.vars[name]) + items  # type: ignore[operator]
            return name, items
        fields = self._expand(rest, ctx, split=False)
        value = fields[0] if fields else Value("")
        if append:
            old = self.vars.get(name)
            if isinstance(old, Value):
                value = Value(old.text + value.text, old.unknown + value.unknown)
        return name, value

    def _declare(self, name, cmd, argv_v, ctx, line) -> None:
        export = name == "export"
        for v in argv_v[1:]:
            t = v.text
            if t.startswith("-") or t.startswith("+"):
                export = export or ("x" in t and t.startswith("-"))
                continue
            m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)$", t, re.S)
            if m:
                value = Value(m.group(2), v.unknown)
                self._set(m.group(1), value, line, export)
            elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", t):
                if export:
                    self.exported.add(t)
                    cur = self.vars.get(t)
                    if t.startswith("BUILDX_") and isinstance(cur, Value):
                        self.r.env_assignments.append(EnvAssignment(t, cur, line, True))
                elif t not in self.vars:
                    self.vars[t] = Value("")

    def _set_options(self, args: list[str], values: list[Value]) -> None:
        k = 0
        while k < len(args):
            a = args[k]
            if a == "--":
                self.positional = values[k + 1 :]
                return
            if a in ("-o", "+o") and k + 1 < len(args):
                on = a == "-o"
                opt = args[k + 1]
                if opt == "errexit":
                    self.errexit = on
                elif opt == "pipefail":
                    self.pipefail = on
                elif opt == "allexport":
                    self.allexport = on
                k += 2
                continue
            if a[:1] in "-+" and len(a) > 1:
                on = a[0] == "-"
                for ch in a[1:]:
                    if ch == "e":
                        self.errexit = on
                    elif ch == "a":
                        self.allexport = on
                    elif ch == "o" and k + 1 < len(args):
                        k += 1
                        if args[k] == "pipefail":
                            self.pipefail = on
                        elif args[k] == "errexit":
                            self.errexit = on
            k += 1
        self.r.errexit = self.r.errexit or self.errexit

    def _cd(self, args: list[Value]) -> None:
        target = next((a for a in args if not a.text.startswith("-")), None)
        if target is None or not target.known or target.text.startswith(("/", "~")):
            self.cwd = "."  # `cd "$(dirname "$0")"` and friends: assume the script's folder
            return
        self.cwd = posixpath.normpath(posixpath.join(self.cwd, target.text))

    def _call(self, name, args, prefix, ctx, line) -> None:
        if self.depth >= MAX_CALL_DEPTH:
            self.r.notes.append(Note("recursion", line, f"{name}: calls nested too deep"))
            return
        self.called.add(name)
        saved_pos = self.positional
        saved_vars = {k: self.vars.get(k) for k in prefix}
        for k, v in prefix.items():
            self.vars[k] = v
        self.positional = args
        self.depth += 1
        try:
            self.exec(self.funcs[name].body, dataclasses.replace(ctx, function=name))
        except _Return:
            pass
        finally:
            self.depth -= 1
            self.positional = saved_pos
            for k, v in saved_vars.items():
                if v is None:
                    self.vars.pop(k, None)
                else:
                    self.vars[k] = v

    # -- docker

    def _docker_env(self, prefix: dict[str, Value]) -> dict[str, Value]:
        env: dict[str, Value] = {}
        for k in self.exported:
            v = self.vars.get(k)
            if k.startswith("BUILDX_") and isinstance(v, Value):
                env[k] = v
        env.update({k: v for k, v in prefix.items() if k.startswith("BUILDX_")})
        return env

    def _docker(self, argv: list[Value], prefix: dict[str, Value], where: Where) -> None:
        t = [v.text for v in argv]
        i = 1
        while i < len(t) and t[i].startswith("-"):
            i += 2 if t[i] in _DOCKER_GLOBAL_VALUE else 1
        if i >= len(t):
            return
        sub = t[i]
        if sub == "build":
            self.r.plain_builds.append(PlainBuild(where, "docker build", argv))
            return
        if sub in ("image", "builder") and i + 1 < len(t) and t[i + 1] == "build":
            self.r.plain_builds.append(PlainBuild(where, f"docker {sub} build", argv))
            return
        if sub != "buildx":
            return
        i += 1
        root_builder: Value | None = None
        while i < len(t) and t[i].startswith("-"):
            if t[i] == "--builder" and i + 1 < len(t):
                root_builder = argv[i + 1]
                i += 2
            elif t[i].startswith("--builder="):
                root_builder = Value(t[i].split("=", 1)[1], argv[i].unknown)
                i += 1
            else:
                i += 1
        if i >= len(t):
            return
        action = t[i]
        rest = argv[i + 1 :]
        env = self._docker_env(prefix)
        if action in ("build", "b"):
            self.r.builds.append(self._buildx_build(argv, rest, root_builder, env, where))
        elif action in ("create", "use", "rm", "remove", "inspect", "ls", "stop"):
            self._builder_op("rm" if action == "remove" else action, rest, where, argv,
                             root_builder)  # fmt: skip
        elif action == "bake" or (action == "imagetools" and t[i + 1 : i + 2] == ["create"]):
            what = "bake" if action == "bake" else "imagetools create"
            self.r.notes.append(Note(action, where.line, f"`docker buildx {what}`"))

    def _buildx_build(self, argv, rest: list[Value], root_builder, env, where) -> BuildxBuild:
        b = BuildxBuild(where=where, argv=argv, env=env, cwd=self.cwd)
        b.builder_flag = root_builder
        k = 0
        positional: list[Value] = []
        while k < len(rest):
            v = rest[k]
            a = v.text
            if not v.known and v.text.startswith("${") and v.text.endswith("}"):
                b.opaque.append(v)  # $EXTRA_ARGS: could be any flags
                k += 1
                continue
            if a == "--":
                positional += rest[k + 1 :]
                break
            flag, value = a, None
            if a.startswith("--") and "=" in a:
                flag, value = a.split("=", 1)
                value = Value(value, v.unknown)
            elif a[:2] in ("-t", "-f", "-o") and len(a) > 2 and not a.startswith("--"):
                flag, value = a[:2], Value(a[2:], v.unknown)
            if flag in _BUILD_VALUE_FLAGS:
                if value is None:
                    if k + 1 >= len(rest):
                        k += 1
                        continue
                    value = rest[k + 1]
                    k += 1
                self._build_flag(b, flag, value)
            elif flag in ("--push", "--load"):
                on = True if value is None else parse_bool(value.text) is True
                setattr(b, flag[2:], on)
            elif a.startswith("-") and a != "-":
                pass  # boolean flags (--pull, --no-cache, -q) and unknown ones
            else:
                positional.append(v)
            k += 1
        if positional:
            b.context = positional[0]
        if b.builder_flag is not None:
            b.builder, b.builder_source = b.builder_flag.text, "--builder"
        elif "BUILDX_BUILDER" in env:
            b.builder, b.builder_source = env["BUILDX_BUILDER"].text, "BUILDX_BUILDER"
        elif self.current_builder is not None:
            b.builder, b.builder_source = self.current_builder, "use"
        return b

    def _build_flag(self, b: BuildxBuild, flag: str, value: Value) -> None:
        if flag == "--platform":
            b.platform_values.append(value)
            b.platforms += [p.strip() for p in value.text.split(",") if p.strip()]
        elif flag in ("--tag", "-t"):
            b.tags.append(value)
        elif flag in ("--output", "-o"):
            o = parse_csv(value.text)
            if "type" not in o:
                o = {"type": "tar" if value.text == "-" else "local", "dest": value.text}
            b.outputs.append(o)
        elif flag == "--provenance":
            b.provenance.append(value)
        elif flag == "--sbom":
            b.sbom.append(value)
        elif flag == "--attest":
            b.attest.append(value)
        elif flag == "--builder":
            b.builder_flag = value
        elif flag in ("--file", "-f"):
            b.file = value
        elif flag == "--target":
            b.target = value
        elif flag == "--build-arg":
            k, _, v = value.text.partition("=")
            b.build_args[k] = Value(v, value.unknown)

    def _builder_op(self, action, rest: list[Value], where, argv, root_builder) -> None:
        op = BuilderOp(action, None, where, argv=argv)
        positional: list[str] = []
        k = 0
        while k < len(rest):
            a = rest[k].text
            flag, value = a, None
            if a.startswith("--") and "=" in a:
                flag, value = a.split("=", 1)
            if action == "create" and flag in _CREATE_VALUE_FLAGS:
                if value is None and k + 1 < len(rest):
                    value = rest[k + 1].text
                    k += 1
                if flag == "--name":
                    op.name = value
                elif flag == "--driver":
                    op.driver = value
            elif action == "create" and flag in ("--use", "--append"):
                setattr(op, flag[2:], value is None or parse_bool(value) is True)
            elif not a.startswith("-"):
                positional.append(a)
            k += 1
        if action in ("use", "rm", "inspect", "stop"):
            op.name = (
                positional[0]
                if positional
                else (root_builder.text if root_builder is not None else None)
            )
        self.r.builder_ops.append(op)
        if action == "use" and op.name:
            self.current_builder = op.name
        elif action == "create" and op.use:
            self.current_builder = op.name or "(unnamed)"
        elif action == "rm" and op.name and op.name == self.current_builder:
            self.current_builder = None

    # -- after the walk

    def finish(self, tree: shell.Sequence) -> None:
        self.r.errexit = self.r.errexit or self.errexit
        self.r.uncalled_functions = [n for n in self.funcs if n not in self.called]
        dry = _Ctx(dry=True)
        for name in self.r.uncalled_functions:
            with contextlib.suppress(_Stop, _Return):
                self.exec(self.funcs[name].body, dataclasses.replace(dry, function=name))
        self._mentions()

    def _mentions(self) -> None:
        """Text that looks like a buildx build but does not run, and why."""
        run_lines = {b.line for b in self.r.builds}
        seen = {m.line for m in self.r.mentions}
        joined = self.text.replace("\\\n", "  ")  # keep offsets: continuations -> 2 spaces
        for m in _BUILDX_MENTION.finditer(joined):
            line = self.lines.line(m.start())
            if line in run_lines or line in seen:
                continue
            line_start = joined.rfind("\n", 0, m.start()) + 1
            before = joined[line_start : m.start()]
            if re.search(r"(^|\s)#", before) or before.lstrip().startswith("#"):
                how = "it is commented out"
            elif line in self.echo_lines:
                how = "it is only printed (echo/printf)"
            elif line in self.dry_build_lines:
                how = f"it is in {self.dry_build_lines[line]}(), which is never called"
            elif self.r.exit_line is not None and line > self.r.exit_line:
                how = f"it comes after the `exit` on line {self.r.exit_line}"
            else:
                how = "it is text (a string or a heredoc), not a command"
            seen.add(line)
            self.r.mentions.append(Mention(line, how))
        self.r.mentions.sort(key=lambda m: m.line)


def _strip_wrappers(argv: list[str]) -> tuple[list[str], int, dict[str, str]]:
    """Drop ``sudo``/``env``/``command``/``time``... in front of a command.

    Returns the command, how many words were dropped and env assignments ``env`` made.
    ``command -v docker`` only prints a path: it becomes an empty command.
    """
    i = 0
    env: dict[str, str] = {}
    while i < len(argv) and posixpath.basename(argv[i]) in _WRAPPERS:
        w = posixpath.basename(argv[i])
        i += 1
        if w in ("command", "builtin") and i < len(argv) and argv[i] in ("-v", "-V"):
            return [], len(argv), env
        while i < len(argv) and argv[i].startswith("-"):
            opt = argv[i]
            i += 1
            if ((w == "sudo" and opt in ("-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"))
                    or (w == "nice" and opt == "-n")
                    or (w == "timeout" and opt in ("-s", "-k", "--signal", "--kill-after"))
                    or (w == "env" and opt in ("-u", "--unset", "-C", "--chdir"))):  # fmt: skip
                i += 1
        if w == "env":
            while i < len(argv) and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", argv[i]):
                k, _, v = argv[i].partition("=")
                env[k] = v
                i += 1
        elif w == "timeout" and i < len(argv):
            i += 1  # the duration
    return argv[i:], i, env


def _is_buildx(argv: list[str], action: str) -> bool:
    return bool(_after_buildx(argv, action) is not None and argv)


def _after_buildx(argv: list[str], action: str) -> list[str] | None:
    """Arguments after ``docker [opts] buildx [--builder X] ACTION``, or None."""
    if not argv or posixpath.basename(argv[0]) not in ("docker", "docker.exe"):
        return None
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in _DOCKER_GLOBAL_VALUE else 1
    if i >= len(argv) or argv[i] != "buildx":
        return None
    i += 1
    root: list[str] = []
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] == "--builder" and i + 1 < len(argv):
            root = [argv[i + 1]]
            i += 2
        else:
            i += 1
    if i >= len(argv) or argv[i] != action:
        return None
    return argv[i + 1 :] + root


def platform_key(text: str) -> str:
    """``linux/arm64/v8`` -> ``linux/arm64``; ``aarch64`` -> ``linux/arm64`` (containerd rules)."""
    from grader.registry import Platform

    t = text.strip()
    if "/" not in t:
        t = f"linux/{t}"
    try:
        return str(Platform.parse(t))
    except ValueError:
        return text.strip()


def covers(platforms: list[str], required: tuple[str, ...]) -> bool:
    have = {platform_key(p) for p in platforms}
    return all(platform_key(r) in have for r in required)


def pushed_image(script: BuildScript, required: tuple[str, ...] = ()) -> Value | None:
    """The image a multi-platform push writes: first tag of the first pushing build."""
    pushing = [b for b in script.builds if b.exports_to_registry]
    if required:
        pushing = [b for b in pushing if covers(b.platforms, required)] or pushing
    for b in pushing:
        names = b.image_names()
        if names:
            return names[0]
    return None
