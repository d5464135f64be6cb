"""build.sh read the way bash would run it, without running it.

:func:`analyse` parses the script (``grader.parse.shell``) and walks the tree in execution order:
variables, ``export``, ``${VAR:-default}`` and ``set -e`` are tracked; functions count only
when called; ``echo``/``printf`` text, comments and heredocs are never commands; ``||``,
``&&``, ``if``/``else``, ``!`` and ``case`` give each command a context (is its failure
tolerated? does it run only when a builder exists or is missing?). The result lists every
``docker buildx build`` with its resolved options, every plain ``docker build`` and every
``docker buildx create/use/rm/inspect``; ``grader.grading.checks.buildscript`` turns those
into findings.

The script is assumed to run from its own folder with no arguments and an environment that
sets nothing: ``${1:-x}`` is ``x``; ``$IMAGE`` without a default stays unknown (``${IMAGE}``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import posixpath
import re
import time
from dataclasses import dataclass, field

from grader.docker import options
from grader.docker.options import parse_bool
from grader.parse import shell
from grader.parse.shell import Value

# Real build scripts are a few KB; past this the grader refuses rather than parse for seconds.
MAX_SCRIPT_BYTES = 64 * 1024
# Bound the walk of loops, recursion and eval so hostile scripts cannot hang the grader.
MAX_STEPS = 20_000
MAX_CALL_DEPTH = 25
#: Seconds the walk of one script may take (the fixtures take milliseconds); past it the walk
#: stops with a "budget" note, which the check turns into a finding.
TIME_BUDGET = 2.0


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
    unknown_flags: list[str] = field(default_factory=list)  # flags buildx does not have
    build_arg_lines: dict[str, int] = field(default_factory=dict)

    @property
    def line(self) -> int:
        return self.where.line

    @property
    def exports_to_registry(self) -> bool:
        return self.push or any(options.output_pushes(o) for o in self.outputs)

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
class UnsetUse:
    """``$NAME`` read under ``set -u`` where the script never sets NAME: bash stops there."""

    name: str
    line: int


@dataclass
class BuildScript:
    syntax_error: str | None = None
    builds: list[BuildxBuild] = field(default_factory=list)
    plain_builds: list[PlainBuild] = field(default_factory=list)
    builder_ops: list[BuilderOp] = field(default_factory=list)
    mentions: list[Mention] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    env_assignments: list[EnvAssignment] = field(default_factory=list)
    errexit: bool = False  # `set -e` was switched on at some point
    nounset: bool = False  # `set -u` was switched on at some point
    unset_uses: list[UnsetUse] = field(default_factory=list)  # what `set -u` would stop at
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


#: Build options kept as lists / as one value, by flag name (options.BUILDX_BUILD).
_BUILD_LISTS = {"tag": "tags", "provenance": "provenance", "sbom": "sbom", "attest": "attest"}
_BUILD_SINGLE = {"builder": "builder_flag", "file": "file", "target": "target"}
_WRAPPERS = {"sudo", "command", "exec", "time", "nohup", "nice", "env", "timeout", "builtin"}
_BUILDX_MENTION = re.compile(r"\bdocker\b(?:\s+-{1,2}[\w-]+(?:[= ]\S+)?)*\s+buildx\s+"
                             r"(?:--builder[= ]\S+\s+)?(?:build|b)\b")  # fmt: skip


def parse_csv(text: str) -> dict[str, str]:
    """A CSV ``key=value`` value (``mode=max``) as buildx reads it; ``{}`` where buildx
    would refuse it."""
    try:
        return options.csv_map(text, strip=True)
    except options.CSVError:
        return {}


def analyse(text: str) -> BuildScript:
    """Walk a build script the way bash would and list what it builds and how."""
    result = BuildScript()
    parsed = shell.parse(text)
    result.syntax_error = parsed.error
    interp = _Interp(text, result)
    with contextlib.suppress(_Stop):
        interp.exec(parsed.tree, _Ctx())
    interp.finish(parsed.tree)
    return result


@dataclass
class _Call:
    """One simple command, expanded, as its handler receives it."""

    cmd: shell.Command
    ctx: _Ctx
    line: int
    argv: list[Value]  # the words after wrappers (sudo, env...), as Values
    words: list[str]  # the same as text
    prefix: dict[str, Value]  # VAR=value assignments before it

    @property
    def name(self) -> str:
        return self.words[0]


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
        self.nounset = False  # `set -u`
        self.current_builder: str | None = None
        self.cwd = "."
        self.steps = 0
        self.deadline = time.monotonic() + TIME_BUDGET
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
        if self.nounset and not ctx.dry:
            line = self._line(word.start, ctx)
            self.r.unset_uses += [UnsetUse(n, line) for n in ex.unset if _may_be_unset(n)]
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
            self._once(Note("recursion", self._line(0, ctx), "nested too deep"))
            return
        self.depth += 1
        try:
            self.exec(shell.parse(body).tree, ctx)
        finally:
            self.depth -= 1

    def _once(self, note: Note) -> None:
        """A note kept once: a fork bomb hits the depth limit thousands of times."""
        if note not in self.r.notes:
            self.r.notes.append(note)

    # -- walking

    def exec(self, node: shell.Node, ctx: _Ctx) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            self.r.notes.append(Note("budget", 0, f"stopped after {MAX_STEPS} steps"))
            raise _Stop
        if time.monotonic() > self.deadline:
            note = f"stopped after {TIME_BUDGET:g} seconds ({self.steps} steps)"
            self.r.notes.append(Note("budget", 0, note))
            raise _Stop
        handler = _NODES.get(type(node))
        if handler is not None:
            handler(self, node, ctx)

    def _sequence(self, node: shell.Sequence, ctx: _Ctx) -> None:
        for item in node.items:
            self.exec(item, ctx)

    def _pipeline(self, node: shell.Pipeline, ctx: _Ctx) -> None:
        last = len(node.commands) - 1
        for k, cmd in enumerate(node.commands):
            tolerated = ctx.tolerated or node.negated or (k < last and not self.pipefail)
            self.exec(cmd, dataclasses.replace(ctx, tolerated=tolerated))

    def _function(self, node: shell.Function, ctx: _Ctx) -> None:
        self.funcs[node.name] = node

    def _group(self, node: shell.Group, ctx: _Ctx) -> None:
        if not node.subshell:
            self.exec(node.body, ctx)
            return
        saved = (dict(self.vars), set(self.exported), self.errexit, self.nounset, self.cwd)
        try:
            self.exec(node.body, ctx)
        except _Stop:
            if not ctx.conditional:
                raise
        finally:
            self.vars, self.exported, self.errexit, self.nounset, self.cwd = saved

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
            return self._ls_grep_probe(node, negated)
        if isinstance(node, shell.Command):
            argv = self._argv(node)
            for action in ("inspect", "use"):
                if _is_buildx(argv, action):
                    names = _after_buildx(argv, action) or []
                    return (names[0] if names else None, negated)
        return None

    def _ls_grep_probe(self, node: shell.Pipeline, negated: bool) -> tuple[str | None, bool] | None:
        """``docker buildx ls | grep NAME``."""
        argvs = [self._argv(c) for c in node.commands if isinstance(c, shell.Command)]
        if len(argvs) < 2 or not _is_buildx(argvs[0], "ls"):
            return None
        grep = argvs[-1]
        if not grep or grep[0] not in ("grep", "egrep", "fgrep", "rg"):
            return None
        pats = [a for a in grep[1:] if not a.startswith("-")]
        name = pats[0].strip("^$ ") if pats else None
        name = re.sub(r"\\[bs<>]|\s.*$", "", name) if name else None
        return (name or None, negated ^ node.negated)

    def _argv(self, cmd: shell.Command) -> list[str]:
        out: list[str] = []
        for w in cmd.words:
            out += [v.text for v in self._peek(w)]
        return _strip_wrappers(out)[0]

    # -- simple commands

    def _command(self, cmd: shell.Command, ctx: _Ctx) -> None:
        """A simple command: expand it, then hand it to the builtin or program it names."""
        c = self._simple(cmd, ctx)
        if c is None:
            return
        if ctx.dry:
            self._dry(c)
        elif c.name in self.funcs:
            self._call(c.name, c.argv[1:], c.prefix, ctx, c.line)
        else:
            key = "docker" if posixpath.basename(c.name) in ("docker", "docker.exe") else c.name
            handler = _COMMANDS.get(key)
            if handler is not None:
                handler(self, c)

    def _simple(self, cmd: shell.Command, ctx: _Ctx) -> _Call | None:
        """Expand a command's assignments and words (None: nothing runs, only assignments)."""
        line = self._line(cmd.start, ctx)
        prefix = self._prefix(cmd, ctx)
        argv_v: list[Value] = []
        for w in cmd.words:
            argv_v += self._expand(w, ctx)
        for body in cmd.heredocs:
            m = _BUILDX_MENTION.search(body)
            if m:  # the body starts on the line after the command's
                at = line + 1 + body.count("\n", 0, m.start())
                self.r.mentions.append(Mention(at, "it is text in a heredoc"))
        if not argv_v:
            for name, value in prefix.items():
                self._set(name, value, line)
            return None
        argv_t, skipped, env_extra = _strip_wrappers([v.text for v in argv_v])
        prefix.update({k: Value(v) for k, v in env_extra.items()})
        if not argv_t:
            return None
        for k, v in prefix.items():
            if k.startswith("BUILDX_"):
                self.r.env_assignments.append(EnvAssignment(k, v, line, True))
        return _Call(cmd, ctx, line, argv_v[skipped:], argv_t, prefix)

    def _prefix(self, cmd: shell.Command, ctx: _Ctx) -> dict[str, Value]:
        """``VAR=value cmd``: the assignments in front of a command."""
        prefix: dict[str, Value] = {}
        for a in cmd.assigns:
            name, value = self._assignment(a, ctx)
            if name:
                prefix[name] = value
        return prefix

    def _dry(self, c: _Call) -> None:
        """In a function nobody calls: note the builds it holds, and follow its calls."""
        if _is_buildx(c.words, "build") or _is_buildx(c.words, "b"):
            self.dry_build_lines[c.line] = c.ctx.function or "?"
        if c.name in self.funcs and c.name not in self.called and self.depth < MAX_CALL_DEPTH:
            self.depth += 1
            try:
                self.exec(self.funcs[c.name].body, c.ctx)
            finally:
                self.depth -= 1

    # one short handler per builtin or program (the table _COMMANDS below the class)

    def _c_declare(self, c: _Call) -> None:
        self._declare(c.name, c.cmd, c.argv, c.ctx, c.line)

    def _c_unset(self, c: _Call) -> None:
        for a in c.words[1:]:
            self.vars.pop(a, None)
            self.exported.discard(a)

    def _c_set(self, c: _Call) -> None:
        self._set_options(c.words[1:], c.argv[1:])

    def _c_shift(self, c: _Call) -> None:
        self.positional = self.positional[1:]

    def _c_cd(self, c: _Call) -> None:
        self._cd(c.argv[1:])

    def _c_eval(self, c: _Call) -> None:
        if all(v.known for v in c.argv[1:]):
            self._run_text(" ".join(v.text for v in c.argv[1:]), c.ctx)
        else:
            note = "`eval` of text that depends on the environment"
            self.r.notes.append(Note("eval", c.line, note))

    def _c_shell(self, c: _Call) -> None:
        """``bash -c TEXT`` runs TEXT (with only exported variables); ``bash x.sh``/``source``
        run another script the grader does not read."""
        if c.name in ("source", ".") or "-c" not in c.words[1:]:
            target = c.words[1] if len(c.words) > 1 else ""
            self.r.notes.append(Note("source", c.line, f"`{c.name} {target}` (another script)"))
            return
        k = c.words.index("-c", 1)
        if k + 1 >= len(c.argv) or not c.argv[k + 1].known:
            note = f"`{c.name} -c` with text that depends on the environment"
            self.r.notes.append(Note("subshell-script", c.line, note))
            return
        saved = (dict(self.vars), set(self.exported))
        self.vars = {n: v for n, v in self.vars.items() if n in self.exported}
        try:
            self._run_text(c.argv[k + 1].text, c.ctx)
        finally:
            self.vars, self.exported = saved

    def _c_echo(self, c: _Call) -> None:
        if _BUILDX_MENTION.search(" ".join(c.words[1:])):
            self.echo_lines.add(c.line)

    def _c_exit(self, c: _Call) -> None:
        if not c.ctx.conditional:
            self.r.exit_line = c.line
            raise _Stop

    def _c_return(self, c: _Call) -> None:
        if c.ctx.function is not None and not c.ctx.conditional:
            raise _Return

    def _c_docker(self, c: _Call) -> None:
        self._docker(c.argv, c.prefix, self._where(c.cmd.start, c.ctx))

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
        """``set -euo pipefail``, ``set +e``, ``set -o errexit``, ``set -- a b``."""
        k = 0
        while k < len(args):
            a = args[k]
            if a == "--":
                self.positional = values[k + 1 :]
                break
            if a[:1] in "-+" and len(a) > 1:
                for ch in a[1:]:
                    if ch == "o" and k + 1 < len(args):
                        k += 1
                        self._set_option(args[k], a[0] == "-")
                    else:
                        self._set_option(_SET_LETTERS.get(ch, ""), a[0] == "-")
            k += 1
        self.r.errexit = self.r.errexit or self.errexit
        self.r.nounset = self.r.nounset or self.nounset

    def _set_option(self, name: str, on: bool) -> None:
        if name in _SET_OPTIONS:
            setattr(self, name, on)

    def _cd(self, args: list[Value]) -> None:
        target = next((a for a in args if not a.text.startswith("-")), None)
        if target is None or not target.known or target.text.startswith(("/", "~")):
            self.cwd = "."  # `cd "$(dirname "$0")"` and friends: assume the script's folder
            return
        self.cwd = posixpath.normpath(posixpath.join(self.cwd, target.text))

    def _call(self, name, args, prefix, ctx, line) -> None:
        if self.depth >= MAX_CALL_DEPTH:
            self._once(Note("recursion", line, f"{name}: calls nested too deep"))
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
        sub = _subcommand(t, 1, options.DOCKER)
        if sub is None:
            return
        i = sub
        if t[i] == "build":
            self.r.plain_builds.append(PlainBuild(where, "docker build", argv))
            return
        if t[i] in ("image", "builder") and t[i + 1 : i + 2] == ["build"]:
            self.r.plain_builds.append(PlainBuild(where, f"docker {t[i]} build", argv))
            return
        if t[i] != "buildx":
            return
        root = options.parse(options.BUILDX, t[i + 1 :])
        if not root.positional:
            return
        opt = root.last("builder")
        root_builder = _opt_value(argv[i + 1 :], opt) if opt is not None else None
        i += 1 + root.positional[0]
        action = t[i]
        rest = argv[i + 1 :]
        env = self._docker_env(prefix)
        if action in ("build", "b"):
            self.r.builds.append(self._buildx_build(argv, rest, root_builder, env, where))
        elif action in ("create", "use", "rm", "remove", "inspect", "ls", "stop"):
            action = "rm" if action == "remove" else action
            self._builder_op(action, rest, where, argv, root_builder)
        elif action == "bake" or (action == "imagetools" and t[i + 1 : i + 2] == ["create"]):
            what = "bake" if action == "bake" else "imagetools create"
            self.r.notes.append(Note(action, where.line, f"`docker buildx {what}`"))

    def _buildx_build(self, argv, rest: list[Value], root_builder, env, where) -> BuildxBuild:
        b = BuildxBuild(where=where, argv=argv, env=env, cwd=self.cwd)
        b.builder_flag = root_builder
        parsed = options.parse(options.BUILDX_BUILD, [v.text for v in rest])
        for o in parsed.opts:
            self._build_flag(b, o, _opt_value(rest, o))
        b.unknown_flags = [name for _, name in parsed.unknown]
        positional = []
        for k in parsed.positional:
            v = rest[k]
            if not v.known and v.text.startswith("${") and v.text.endswith("}"):
                b.opaque.append(v)  # $EXTRA_ARGS: could be any flags
            else:
                positional.append(v)
        if positional:
            b.context = positional[0]
        if b.builder_flag is not None:
            b.builder, b.builder_source = b.builder_flag.text, "--builder"
        elif "BUILDX_BUILDER" in env:
            b.builder, b.builder_source = env["BUILDX_BUILDER"].text, "BUILDX_BUILDER"
        elif self.current_builder is not None:
            b.builder, b.builder_source = self.current_builder, "use"
        return b

    def _build_flag(self, b: BuildxBuild, o: options.Opt, value: Value) -> None:
        flag = o.name
        if flag in ("push", "load"):
            setattr(b, flag, o.value is None or parse_bool(o.value) is True)
        elif flag == "platform":
            b.platform_values.append(value)
            b.platforms += [p.strip() for p in value.text.split(",") if p.strip()]
        elif flag == "output":
            try:
                b.outputs.append(options.parse_output(value.text))
            except options.CSVError as e:
                b.outputs.append({"type": "?", "error": str(e)})
        elif flag == "build-arg":
            k, _, v = value.text.partition("=")
            b.build_args[k] = Value(v, value.unknown)
            b.build_arg_lines.setdefault(k, b.line)
        elif flag in _BUILD_LISTS:
            getattr(b, _BUILD_LISTS[flag]).append(value)
        elif flag in _BUILD_SINGLE:
            setattr(b, _BUILD_SINGLE[flag], value)

    def _builder_op(self, action, rest: list[Value], where, argv, root_builder) -> None:
        op = BuilderOp(action, None, where, argv=argv)
        table = options.command(f"buildx {action}")
        parsed = options.parse(table, [v.text for v in rest]) if table else options.Parsed()
        if action == "create":
            _create_options(op, parsed)
        if action in ("use", "rm", "inspect", "stop"):
            named = parsed.last("builder")
            if parsed.positional:
                op.name = rest[parsed.positional[0]].text
            elif named is not None:
                op.name = named.value
            elif root_builder is not None:
                op.name = root_builder.text
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
        self.r.unset_uses = _never_set(self.r.unset_uses, self.text)
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


#: How the walk treats each kind of node.
_NODES = {
    shell.Command: _Interp._command,
    shell.Sequence: _Interp._sequence,
    shell.AndOr: _Interp._and_or,
    shell.Pipeline: _Interp._pipeline,
    shell.If: _Interp._if,
    shell.Loop: _Interp._loop,
    shell.Case: _Interp._case,
    shell.Function: _Interp._function,
    shell.Group: _Interp._group,
}
#: `set` letters and the options they switch (`set -o NAME` names them directly).
_SET_LETTERS = {"e": "errexit", "a": "allexport", "u": "nounset"}
_SET_OPTIONS = {"errexit", "allexport", "nounset", "pipefail"}

#: What each builtin or program does to the walk (functions the script defines come first).
_COMMANDS = {
    **dict.fromkeys(("export", "readonly", "declare", "typeset", "local"), _Interp._c_declare),
    **dict.fromkeys(("bash", "sh", "dash", "zsh", "ksh", "source", "."), _Interp._c_shell),
    **dict.fromkeys(("echo", "printf"), _Interp._c_echo),
    "unset": _Interp._c_unset,
    "set": _Interp._c_set,
    "shift": _Interp._c_shift,
    "cd": _Interp._c_cd,
    "eval": _Interp._c_eval,
    "exit": _Interp._c_exit,
    "return": _Interp._c_return,
    "docker": _Interp._c_docker,
}


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


#: Set by any environment bash runs in (and by bash itself): reading them under `set -u` is fine.
_ENVIRONMENT = {
    "HOME", "PATH", "PWD", "OLDPWD", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "HOSTNAME",
    "UID", "EUID", "PPID", "RANDOM", "LINENO", "SECONDS", "IFS", "OSTYPE", "HOSTTYPE",
    "MACHTYPE", "BASH", "BASH_VERSION", "BASH_SOURCE", "BASHPID", "FUNCNAME", "SHLVL",
    "GROUPS", "PIPESTATUS", "EPOCHSECONDS", "EPOCHREALTIME", "SRANDOM", "BASH_LINENO",
}  # fmt: skip


def _may_be_unset(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)) and name not in _ENVIRONMENT


def _never_set(uses: list[UnsetUse], text: str) -> list[UnsetUse]:
    """The first use of each name the script never sets in any way the walk may miss
    (`read X`, `getopts o X`, `printf -v X`, `mapfile X`...): only names that appear
    nowhere in the script except as ``$NAME``/``${NAME...}`` count."""
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    out: dict[str, UnsetUse] = {}
    for u in uses:
        if u.name in out:
            continue
        bare = re.sub(r"\$\{?#?" + re.escape(u.name) + r"\b", "", code)
        if not re.search(r"\b" + re.escape(u.name) + r"\b", bare):
            out[u.name] = u
    return list(out.values())


def _create_options(op: BuilderOp, parsed: options.Parsed) -> None:
    """``buildx create``'s --name, --driver, --use and --append (the last of each wins)."""
    name, driver = parsed.last("name"), parsed.last("driver")
    op.name = name.value if name is not None else None
    op.driver = driver.value if driver is not None else None
    for o in parsed.opts:
        if o.name in ("use", "append"):
            setattr(op, o.name, o.value is None or parse_bool(o.value) is True)


def _subcommand(argv: list[str], start: int, table: options.Command) -> int | None:
    """Index of the first word after ``table``'s options from ``start`` (None: no more)."""
    parsed = options.parse(table, argv[start:])
    return start + parsed.positional[0] if parsed.positional else None


def _opt_value(args: list[Value], o: options.Opt) -> Value:
    """An option's value as a Value (keeping what the grader could not resolve in it)."""
    if o.value_index is not None:
        return args[o.value_index]
    return Value(o.value or "", args[o.index].unknown)


def _is_buildx(argv: list[str], action: str) -> bool:
    return bool(_after_buildx(argv, action) is not None and argv)


def _after_buildx(argv: list[str], action: str) -> list[str] | None:
    """The builder names ``docker [opts] buildx [--builder X] ACTION ...`` acts on (its
    positional arguments, then ``--builder`` values), or None for another command."""
    if not argv or posixpath.basename(argv[0]) not in ("docker", "docker.exe"):
        return None
    i = _subcommand(argv, 1, options.DOCKER)
    if i is None or argv[i] != "buildx":
        return None
    root = options.parse(options.BUILDX, argv[i + 1 :])
    if not root.positional or argv[i + 1 + root.positional[0]] != action:
        return None
    rest = argv[i + 2 + root.positional[0] :]
    table = options.command(f"buildx {action}")
    parsed = options.parse(table, rest) if table else options.Parsed()
    names = [rest[k] for k in parsed.positional] + parsed.values("builder")
    return names + root.values("builder")


def platform_key(text: str) -> str:
    """``linux/arm64/v8`` -> ``linux/arm64``; ``aarch64`` -> ``linux/arm64`` (containerd rules)."""
    from grader.docker.registry import Platform

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
