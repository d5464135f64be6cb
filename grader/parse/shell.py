"""Shell scripts as a small syntax tree, for reading build.sh and Dockerfile ``RUN`` lines.

``parse(text)`` is a tolerant tokenizer and recursive-descent parser: it reads all of bash a
build.sh uses (``case``, ``[[ ]]``, arrays, ``$(( ))``, heredocs, functions) and never fails;
what it cannot make sense of becomes a plain command, and an unclosed quote or block is
reported in ``error``. ``bash -n`` stays the judge of syntax errors (BS104). Words keep
their raw source text (quotes included) so that :func:`expand` can tell ``'$X'`` from
``"$X"``; nothing here runs anything.
"""

from __future__ import annotations

import bisect
import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

# --- the tree -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    raw: str  # source text, quotes and escapes included
    start: int  # offset in the parsed text


@dataclass
class Command:
    """A simple command: ``A=1 B=2 cmd arg ...`` (redirection targets are left out)."""

    assigns: list[Word]
    words: list[Word]
    start: int
    heredocs: list[str] = field(default_factory=list)  # bodies fed to this command


@dataclass
class Pipeline:
    commands: list[Node]
    negated: bool
    start: int


@dataclass
class AndOr:
    first: Node
    rest: list[tuple[str, Node]]  # ("&&" | "||", node)
    start: int


@dataclass
class Sequence:
    items: list[Node]
    start: int = 0


@dataclass
class If:
    branches: list[tuple[Node, Node]]  # (condition, body) for if and each elif
    orelse: Node | None
    start: int


@dataclass
class Loop:
    kind: str  # for, select, while, until
    var: str | None
    items: list[Word] | None  # for/select word list (None: "$@")
    cond: Node | None  # while/until condition
    body: Node
    start: int


@dataclass
class Case:
    subject: Word
    arms: list[tuple[list[Word], Node]]
    start: int


@dataclass
class Function:
    name: str
    body: Node
    start: int


@dataclass
class Group:
    body: Node
    subshell: bool
    start: int


Node = Command | Pipeline | AndOr | Sequence | If | Loop | Case | Function | Group


@dataclass
class ParseResult:
    tree: Sequence
    error: str | None = None  # a syntax error the parser found (unclosed quote, ...)


def parse(text: str) -> ParseResult:
    """Parse a shell script (never raises; see ``error``)."""
    parser = _Parser(text)
    tree = parser.parse()
    return ParseResult(tree, parser.error)


def walk_commands(node: Node) -> Iterator[Command]:
    """Every simple command in the tree, in source order (function bodies included)."""
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Command):
            yield n
            continue
        children: list[Node] = []
        if isinstance(n, Pipeline):
            children = list(n.commands)
        elif isinstance(n, AndOr):
            children = [n.first] + [x for _, x in n.rest]
        elif isinstance(n, Sequence):
            children = list(n.items)
        elif isinstance(n, If):
            for c, b in n.branches:
                children += [c, b]
            if n.orelse is not None:
                children.append(n.orelse)
        elif isinstance(n, Loop):
            children = ([n.cond] if n.cond is not None else []) + [n.body]
        elif isinstance(n, Case):
            children = [b for _, b in n.arms]
        elif isinstance(n, Function | Group):
            children = [n.body]
        stack.extend(reversed(children))


class LineIndex:
    """Offsets -> 1-based line numbers."""

    def __init__(self, text: str):
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset)


# --- tolerant tokenizer and parser ----------------------------------------------------------

_OPERATORS = ("&&", "||", ";;&", ";;", ";&", "|&", "|", "&", ";", "(", ")", "\n")
_REDIRECTS = ("<<<", "<<-", "<<", ">>", "&>>", "&>", ">&", "<&", ">|", "<>", "<", ">")
_WORD_END = frozenset(" \t\r\n;&|<>")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")


@dataclass
class _Tok:
    kind: str  # "word", "op", "redir"
    text: str
    start: int
    heredoc: str | None = None  # body, for a "<<" redirection


class _Tokenizer:
    """Shell tokens with raw word text; heredoc bodies attached to their ``<<`` token."""

    def __init__(self, text: str):
        self.s = text
        self.i = 0
        self.error: str | None = None
        self._pending: list[tuple[_Tok, str, bool]] = []  # (token, delimiter, strip tabs)

    def tokens(self) -> list[_Tok]:
        out: list[_Tok] = []
        s, n = self.s, len(self.s)
        expect_delim: tuple[_Tok, bool] | None = None
        while self.i < n:
            c = s[self.i]
            if c in " \t\r":
                self.i += 1
                continue
            if c == "\\" and s.startswith("\\\n", self.i):
                self.i += 2
                continue
            if c == "#":
                j = s.find("\n", self.i)
                self.i = n if j < 0 else j
                continue
            if c == "\n":
                out.append(_Tok("op", "\n", self.i))
                self.i += 1
                self._read_heredocs()
                continue
            special = c in "<>&|;()"
            redir = special and next((r for r in _REDIRECTS if s.startswith(r, self.i)), None)
            if redir:
                tok = _Tok("redir", redir, self.i)
                out.append(tok)
                self.i += len(redir)
                if redir in ("<<", "<<-"):
                    expect_delim = (tok, redir == "<<-")
                continue
            op = special and next((o for o in _OPERATORS if s.startswith(o, self.i)), None)
            if op:
                out.append(_Tok("op", op, self.i))
                self.i += len(op)
                continue
            start = self.i
            raw = self._word()
            if expect_delim is not None:
                tok, strip = expect_delim
                self._pending.append((tok, _unquote(raw), strip))
                expect_delim = None
                continue  # the delimiter is not a command word
            if raw.isdigit() and self.i < n and s[self.i] in "<>":
                continue  # a file descriptor number: "2>/dev/null"
            out.append(_Tok("word", raw, start))
        return out

    def _read_heredocs(self) -> None:
        s = self.s
        for tok, delim, strip in self._pending:
            body: list[str] = []
            while self.i < len(s):
                j = s.find("\n", self.i)
                line = s[self.i : len(s) if j < 0 else j]
                self.i = len(s) if j < 0 else j + 1
                if (line.lstrip("\t") if strip else line) == delim:
                    break
                body.append(line)
            else:
                self.error = self.error or f"heredoc delimited by {delim!r} is not terminated"
            tok.heredoc = "\n".join(body)
        self._pending = []

    def _word(self) -> str:
        s, n = self.s, len(self.s)
        start = self.i
        while self.i < n:
            c = s[self.i]
            if c in _WORD_END:
                break
            if c in "()":
                # NAME=( array ) stays one word; any other paren ends the word
                if c == "(" and self.i > start and s[self.i - 1] == "=":
                    self._skip_balanced("(", ")")
                    continue
                break
            if c == "\\":
                self.i += 2
            elif c == "'":
                self._skip_to("'", self.i + 1)
            elif c == '"':
                self._skip_double()
            elif c == "`":
                self._skip_to("`", self.i + 1)
            elif c == "$" and s.startswith("$(", self.i):
                self.i += 1
                self._skip_balanced("(", ")")
            elif c == "$" and s.startswith("${", self.i):
                self.i += 1
                self._skip_balanced("{", "}")
            elif c == "$" and s.startswith("$'", self.i):
                self.i += 1
                self._skip_ansi()
            else:
                self.i += 1
        return s[start : self.i]

    def _skip_to(self, ch: str, j: int) -> None:
        k = self.s.find(ch, j)
        if k < 0:
            self.error = self.error or f"unclosed {ch} quote (opened at offset {j - 1})"
            self.i = len(self.s)
        else:
            self.i = k + 1

    def _skip_ansi(self) -> None:
        s = self.s
        j = self.i + 1
        while j < len(s) and s[j] != "'":
            j += 2 if s[j] == "\\" else 1
        if j >= len(s):
            self.error = self.error or "unclosed $' quote"
        self.i = min(j + 1, len(s))

    def _skip_double(self) -> None:
        s = self.s
        j = self.i + 1
        while j < len(s):
            c = s[j]
            if c == "\\":
                j += 2
            elif c == '"':
                self.i = j + 1
                return
            elif c == "$" and s.startswith("$(", j):
                self.i = j + 1
                self._skip_balanced("(", ")")
                j = self.i
            elif c == "`":
                k = s.find("`", j + 1)
                j = len(s) if k < 0 else k + 1
            else:
                j += 1
        self.error = self.error or 'unclosed " quote'
        self.i = len(s)

    def _skip_balanced(self, open_: str, close: str) -> None:
        """From an opening bracket to its match, skipping quotes (iterative: no recursion)."""
        s = self.s
        depth = 0
        j = self.i
        while j < len(s):
            c = s[j]
            if c == "\\":
                j += 2
                continue
            if c == "'" and open_ != "{":
                k = s.find("'", j + 1)
                j = len(s) if k < 0 else k + 1
                continue
            if c == '"':
                k = j + 1
                while k < len(s) and s[k] != '"':
                    k += 2 if s[k] == "\\" else 1
                j = k + 1
                continue
            if c == open_:
                depth += 1
            elif c == close:
                depth -= 1
                if depth == 0:
                    self.i = j + 1
                    return
            j += 1
        self.error = self.error or f"unclosed {open_}"
        self.i = len(s)


def split_words(text: str, start: int = 0) -> list[Word]:
    """The words of ``text`` (an array body, say), operators dropped."""
    return [Word(t.text, start + t.start) for t in _Tokenizer(text).tokens() if t.kind == "word"]


def _unquote(raw: str) -> str:
    return raw.replace("'", "").replace('"', "").replace("\\", "")


class _Parser:
    """Recursive descent over tokens that never fails: unknown shapes become plain commands."""

    MAX_DEPTH = 100

    def __init__(self, text: str):
        tz = _Tokenizer(text)
        self.toks = tz.tokens()
        self.error = tz.error
        self.i = 0
        self.depth = 0

    # token helpers
    def _peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _is_word(self, *texts: str) -> bool:
        t = self._peek()
        return t is not None and t.kind == "word" and t.text in texts

    def _is_op(self, *texts: str) -> bool:
        t = self._peek()
        return t is not None and t.kind == "op" and t.text in texts

    def _skip_separators(self) -> None:
        while self._is_op("\n", ";", "&"):
            self.i += 1

    def parse(self) -> Sequence:
        items: list[Node] = []
        while self._peek() is not None:
            before = self.i
            seq = self._list(stop_words=(), stop_ops=())
            items.extend(seq.items)
            if self.i == before:
                self.i += 1  # a stray keyword or ")" at top level: skip it
        return Sequence(items, 0)

    def _list(self, stop_words: tuple[str, ...], stop_ops: tuple[str, ...]) -> Sequence:
        items: list[Node] = []
        start = self._peek().start if self._peek() else 0
        while True:
            self._skip_separators()
            t = self._peek()
            if t is None:
                break
            if t.kind == "word" and t.text in stop_words:
                break
            if t.kind == "op" and t.text in stop_ops:
                break
            if t.kind == "word" and t.text in ("then", "do", "done", "fi", "esac", "elif",
                                                "else", "}"):  # fmt: skip
                if stop_words or stop_ops:
                    break  # let an enclosing construct (or the top level) deal with it
                self.i += 1
                continue
            if t.kind == "op" and t.text in (")", ";;", ";&", ";;&"):
                if stop_words or stop_ops:
                    break
                self.i += 1
                continue
            before = self.i
            items.append(self._and_or())
            if self.i == before:
                self.i += 1
        return Sequence(items, start)

    def _and_or(self) -> Node:
        first = self._pipeline()
        rest: list[tuple[str, Node]] = []
        while self._is_op("&&", "||"):
            op = self._peek().text
            self.i += 1
            while self._is_op("\n"):
                self.i += 1
            rest.append((op, self._pipeline()))
        return AndOr(first, rest, first.start) if rest else first

    def _pipeline(self) -> Node:
        t = self._peek()
        start = t.start if t else 0
        negated = False
        while self._is_word("!"):
            negated = not negated
            self.i += 1
        cmds = [self._command()]
        while self._is_op("|", "|&"):
            self.i += 1
            while self._is_op("\n"):
                self.i += 1
            cmds.append(self._command())
        if len(cmds) == 1 and not negated:
            return cmds[0]
        return Pipeline(cmds, negated, start)

    def _command(self) -> Node:
        t = self._peek()
        if t is None:
            return Sequence([], len(self.toks))
        if self.depth >= self.MAX_DEPTH:
            return self._simple()
        self.depth += 1
        try:
            if t.kind == "op" and t.text == "(":
                self.i += 1
                body = self._list(stop_words=(), stop_ops=(")",))
                if self._is_op(")"):
                    self.i += 1
                return Group(body, True, t.start)
            if t.kind == "word":
                if t.text == "if":
                    return self._if()
                if t.text in ("while", "until"):
                    return self._while(t.text)
                if t.text in ("for", "select"):
                    return self._for(t.text)
                if t.text == "case":
                    return self._case()
                if t.text == "{":
                    self.i += 1
                    body = self._list(stop_words=("}",), stop_ops=())
                    if self._is_word("}"):
                        self.i += 1
                    return Group(body, False, t.start)
                if t.text == "function":
                    self.i += 1
                    name_tok = self._peek()
                    name = name_tok.text if name_tok and name_tok.kind == "word" else "?"
                    self.i += 1
                    if self._is_op("("):
                        self.i += 1
                        if self._is_op(")"):
                            self.i += 1
                    return self._function_body(name, t.start)
                nxt = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
                nxt2 = self.toks[self.i + 2] if self.i + 2 < len(self.toks) else None
                if (_NAME.fullmatch(t.text) and nxt and nxt.kind == "op" and nxt.text == "("
                        and nxt2 and nxt2.kind == "op" and nxt2.text == ")"):  # fmt: skip
                    self.i += 3
                    return self._function_body(t.text, t.start)
            return self._simple()
        finally:
            self.depth -= 1

    def _function_body(self, name: str, start: int) -> Node:
        while self._is_op("\n"):
            self.i += 1
        return Function(name, self._command(), start)

    def _simple(self) -> Command:
        t = self._peek()
        cmd = Command([], [], t.start if t else 0)
        while True:
            t = self._peek()
            if t is None or t.kind == "op":
                break
            if t.kind == "redir":
                self.i += 1
                if t.heredoc is not None:
                    cmd.heredocs.append(t.heredoc)
                elif t.text not in ("<<", "<<-"):
                    nxt = self._peek()
                    if nxt is not None and nxt.kind == "word":
                        self.i += 1  # the redirection target
                continue
            w = Word(t.text, t.start)
            if not cmd.words and _ASSIGN.match(t.text):
                cmd.assigns.append(w)
            else:
                cmd.words.append(w)
            self.i += 1
        return cmd

    def _if(self) -> If:
        start = self._peek().start
        branches: list[tuple[Node, Node]] = []
        orelse: Node | None = None
        self.i += 1  # if
        while True:
            cond = self._list(stop_words=("then",), stop_ops=())
            if self._is_word("then"):
                self.i += 1
            body = self._list(stop_words=("elif", "else", "fi"), stop_ops=())
            branches.append((cond, body))
            if self._is_word("elif"):
                self.i += 1
                continue
            if self._is_word("else"):
                self.i += 1
                orelse = self._list(stop_words=("fi",), stop_ops=())
            if self._is_word("fi"):
                self.i += 1
            return If(branches, orelse, start)

    def _do_body(self) -> Node:
        self._skip_separators()
        if self._is_word("do"):
            self.i += 1
        body = self._list(stop_words=("done",), stop_ops=())
        if self._is_word("done"):
            self.i += 1
        return body

    def _while(self, kind: str) -> Loop:
        start = self._peek().start
        self.i += 1
        cond = self._list(stop_words=("do",), stop_ops=())
        return Loop(kind, None, None, cond, self._do_body(), start)

    def _for(self, kind: str) -> Loop:
        start = self._peek().start
        self.i += 1
        var = None
        items: list[Word] | None = None
        if self._is_op("("):  # for (( ... )): skip the arithmetic header
            while self._peek() is not None and not self._is_word("do"):
                self.i += 1
            return Loop(kind, None, [], None, self._do_body(), start)
        t = self._peek()
        if t is not None and t.kind == "word":
            var = t.text
            self.i += 1
        while self._is_op("\n"):
            self.i += 1
        if self._is_word("in"):
            self.i += 1
            items = []
            while (t := self._peek()) is not None and t.kind == "word" and t.text != "do":
                items.append(Word(t.text, t.start))
                self.i += 1
        return Loop(kind, var, items, None, self._do_body(), start)

    def _case(self) -> Case:
        start = self._peek().start
        self.i += 1
        t = self._peek()
        subject = Word(t.text, t.start) if t is not None and t.kind == "word" else Word("", start)
        if t is not None and t.kind == "word":
            self.i += 1
        while self._is_op("\n"):
            self.i += 1
        if self._is_word("in"):
            self.i += 1
        arms: list[tuple[list[Word], Node]] = []
        while True:
            self._skip_separators()
            t = self._peek()
            if t is None or self._is_word("esac"):
                break
            if self._is_op("("):
                self.i += 1
            patterns: list[Word] = []
            while (t := self._peek()) is not None and not (t.kind == "op" and t.text == ")"):
                if t.kind == "word":
                    patterns.append(Word(t.text, t.start))
                if t.kind == "op" and t.text == "\n":
                    break
                self.i += 1
            if self._is_op(")"):
                self.i += 1
            body = self._list(stop_words=("esac",), stop_ops=(";;", ";&", ";;&"))
            arms.append((patterns, body))
            if self._is_op(";;", ";&", ";;&"):
                self.i += 1
            elif not self._is_word("esac"):
                break
        if self._is_word("esac"):
            self.i += 1
        return Case(subject, arms, start)


# --- word expansion -------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """An expanded word: ``text`` with unresolved parts shown as ``${NAME}`` or ``$(...)``."""

    text: str
    unknown: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return not self.unknown

    def __str__(self) -> str:
        return self.text


Lookup = Callable[[str], "Value | list[Value] | None"]


@dataclass
class Expansion:
    fields: list[Value]  # after field splitting of unquoted expansions
    substitutions: list[tuple[str, int]]  # $(...) / `...` bodies and their offsets
    assigned: dict[str, Value]  # ${X:=default} assignments made while expanding
    unset: list[str] = field(default_factory=list)  # unset names read with no default

    @property
    def value(self) -> Value:
        """The fields joined by spaces, as ``"$*"`` would."""
        if len(self.fields) == 1:
            return self.fields[0]
        return Value(" ".join(f.text for f in self.fields),
                     tuple(u for f in self.fields for u in f.unknown))  # fmt: skip


_IFS = re.compile(r"[ \t\n]+")
#: Longest expanded word, and most fields one word expands to. ``A=$A$A`` doubles a value on
#: each line: without a cap, 20 lines make 13 bytes into 13 MiB. Past the cap the text is cut
#: and marked unknown (``${...}``): the grader never pretends to know such a value.
MAX_VALUE = 16 * 1024
MAX_FIELDS = 1024
CUT = "${...}"


def _capped(v: Value) -> Value:
    if len(v.text) <= MAX_VALUE:
        return v
    return Value(v.text[:MAX_VALUE] + CUT, (*v.unknown[:16], CUT))


_FIELD_BREAK = "\x1f"  # between the elements of "${ARR[@]}" until fields are split


def expand(
    raw: str, lookup: Lookup, *, start: int = 0, split: bool = True, _depth: int = 0
) -> Expansion:
    """Expand one raw word: quotes, escapes, ``$X``, ``${X:-default}`` and friends.

    ``lookup(name)`` returns a Value, a list of Values (an array), or None when unset.
    Command substitutions are never run: their value is unknown, their body is returned.
    """
    ex = _Expander(raw, lookup, start, _depth)
    segments = ex.run()
    fields: list[Value] = []
    cur_text: list[str] = []
    cur_unknown: list[str] = []
    have = False
    for text, unknown, quoted in segments:
        if quoted or not split:
            # "${ARR[@]}" keeps one field per element
            parts = text.split(_FIELD_BREAK) if split else [text.replace(_FIELD_BREAK, " ")]
            for k, part in enumerate(parts):
                if k > 0:
                    fields.append(Value("".join(cur_text), tuple(cur_unknown)))
                    cur_text, cur_unknown = [], []
                cur_text.append(part)
                cur_unknown.extend(unknown)
            have = True
            continue
        pieces = _IFS.split(text.replace(_FIELD_BREAK, " "))
        for k, piece in enumerate(pieces):
            if k > 0:
                if have:
                    fields.append(Value("".join(cur_text), tuple(cur_unknown)))
                cur_text, cur_unknown, have = [], [], False
            if piece:
                cur_text.append(piece)
                cur_unknown.extend(unknown)
                have = True
    if have:
        fields.append(Value("".join(cur_text), tuple(cur_unknown)))
    if len(fields) > MAX_FIELDS:
        fields = [*fields[:MAX_FIELDS], Value(CUT, (CUT,))]
    return Expansion([_capped(f) for f in fields], ex.substitutions, ex.assigned, ex.unset)


class _Expander:
    MAX_DEPTH = 32  # ${A:-${B:-${C:-...}}} nesting

    def __init__(self, raw: str, lookup: Lookup, start: int, depth: int = 0):
        self.depth = depth
        self.s = raw
        self.lookup = lookup
        self.start = start
        self.substitutions: list[tuple[str, int]] = []
        self.assigned: dict[str, Value] = {}
        self.unset: list[str] = []  # what `set -u` would stop at: $X, ${X}, ${X#p}, ${#X}

    def run(self) -> list[tuple[str, tuple[str, ...], bool]]:
        """Segments (text, unknown names, quoted). A quoted empty string still makes a field."""
        s = self.s
        out: list[tuple[str, tuple[str, ...], bool]] = []
        i = 0
        lit: list[str] = []

        def flush(quoted: bool = False) -> None:
            if lit:
                out.append(("".join(lit), (), True))  # literal text never splits
                lit.clear()

        while i < len(s):
            c = s[i]
            if c == "\\":
                if s.startswith("\\\n", i):
                    i += 2
                    continue
                lit.append(s[i + 1 : i + 2])
                i += 2
            elif c == "'":
                j = s.find("'", i + 1)
                j = len(s) if j < 0 else j
                lit.append(s[i + 1 : j])
                out.append(("", (), True))
                i = j + 1
            elif c == '"':
                flush()
                j, segs = self._double(i + 1)
                out.append(("", (), True))
                out.extend((t, u, True) for t, u in segs)
                i = j
            elif c == "$" and s.startswith("$'", i):
                j = i + 2
                buf = []
                while j < len(s) and s[j] != "'":
                    if s[j] == "\\" and j + 1 < len(s):
                        buf.append(
                            {"n": "\n", "t": "\t", "\\": "\\", "'": "'"}.get(s[j + 1], s[j + 1])
                        )
                        j += 2
                    else:
                        buf.append(s[j])
                        j += 1
                lit.append("".join(buf))
                i = j + 1
            elif c == "$" or c == "`":
                flush()
                j, text, unknown = self._dollar(i)
                if j == i:
                    lit.append(c)
                    i += 1
                    continue
                out.append((text, unknown, False))
                i = j
            else:
                lit.append(c)
                i += 1
        flush()
        return out

    def _double(self, i: int) -> tuple[int, list[tuple[str, tuple[str, ...]]]]:
        s = self.s
        segs: list[tuple[str, tuple[str, ...]]] = []
        lit: list[str] = []
        while i < len(s) and s[i] != '"':
            c = s[i]
            if c == "\\" and i + 1 < len(s) and s[i + 1] in '$`"\\\n':
                if s[i + 1] != "\n":
                    lit.append(s[i + 1])
                i += 2
            elif c in "$`":
                j, text, unknown = self._dollar(i)
                if j == i:
                    lit.append(c)
                    i += 1
                    continue
                if lit:
                    segs.append(("".join(lit), ()))
                    lit = []
                segs.append((text, unknown))
                i = j
            else:
                lit.append(c)
                i += 1
        if lit:
            segs.append(("".join(lit), ()))
        return i + 1, segs

    def _dollar(self, i: int) -> tuple[int, str, tuple[str, ...]]:
        """Expand the $-thing at i; returns (end, text, unknown names)."""
        s = self.s
        if s[i] == "`":
            j = s.find("`", i + 1)
            j = len(s) if j < 0 else j
            self.substitutions.append((s[i + 1 : j], self.start + i + 1))
            return j + 1, "$(...)", ("$(...)",)
        if s.startswith("$((", i):
            j = _match(s, i + 1, "(", ")")
            return j, "$((...))", ("$((...))",)
        if s.startswith("$(", i):
            j = _match(s, i + 1, "(", ")")
            self.substitutions.append((s[i + 2 : j - 1], self.start + i + 2))
            return j, "$(...)", ("$(...)",)
        if s.startswith("${", i):
            j = _match(s, i + 1, "{", "}")
            text, unknown = self._braced(s[i + 2 : j - 1])
            return j, text, unknown
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]|[@*#?$!-]").match(s, i + 1)
        if not m:
            return i, "", ()
        return m.end(), *self._get(m.group())

    def _get(self, name: str) -> tuple[str, tuple[str, ...]]:
        v = self.lookup(name)
        if isinstance(v, list):
            v = v[0] if v else Value("")
        if v is None:
            self.unset.append(name)
            return _unset(name)
        return v.text, v.unknown

    def _braced(self, inner: str) -> tuple[str, tuple[str, ...]]:
        m = re.match(r"(#?)([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])(\[[^\]]*\])?(.*)$", inner,
                     re.S)  # fmt: skip
        if not m:
            return "${" + inner + "}", (inner,)
        length, name, index, rest = m.groups()
        raw_v = self.lookup(name)
        v: Value | None
        if isinstance(raw_v, list):
            if index in ("[@]", "[*]"):
                sep = _FIELD_BREAK if index == "[@]" else " "
                elems = raw_v[:MAX_FIELDS]
                v = Value(
                    sep.join(x.text for x in elems), tuple(u for x in elems for u in x.unknown)
                )
            else:
                k = index[1:-1] if index else "0"
                v = raw_v[int(k)] if k.isdigit() and int(k) < len(raw_v) else None
        else:
            v = raw_v
        placeholder = "${" + name + "}"
        if v is None and not re.match(r":?[-=+?]", rest):
            self.unset.append(name)  # read with no default (${X:?} stops bash anyway)
        if length:
            return (str(len(v.text)), ()) if v is not None and v.known else (placeholder, (name,))
        if not rest:
            if v is None:
                return _unset(name)
            return v.text, v.unknown
        op_m = re.match(r"(:?[-=+?])(.*)$", rest, re.S)
        if op_m:
            op, word = op_m.groups()
            colon = op.startswith(":")
            unset = v is None or (colon and v.known and v.text == "")
            if v is not None and not v.known and colon:
                return placeholder, (name,)  # may be empty at run time: unknown which branch
            if op.endswith("-") or op.endswith("="):
                if unset:
                    w = self._word(word)
                    if op.endswith("="):
                        self.assigned[name] = w
                    return w.text, w.unknown
                return v.text, v.unknown
            if op.endswith("+"):
                if unset:
                    return "", ()
                w = self._word(word)
                return w.text, w.unknown
            return (placeholder, (name,)) if unset else (v.text, v.unknown)  # :? error if unset
        if v is None or not v.known:
            return placeholder, (name,)
        text = v.text
        if rest in (",,", "^^", ",", "^"):
            return (text.lower() if rest.startswith(",") else text.upper()), ()
        pm = re.match(r"(##?|%%?)(.*)$", rest, re.S)
        if pm:
            op, pat = pm.groups()
            pat = self._word(pat).text
            return _trim(text, op, pat), ()
        rm = re.match(r"/(/?)([^/]*)/?(.*)$", rest, re.S)
        if rm:
            every, pat, rep = rm.groups()
            pat, rep = self._word(pat).text, self._word(rep).text
            return (text.replace(pat, rep) if every else text.replace(pat, rep, 1)), ()
        return placeholder, (name,)

    def _word(self, raw: str) -> Value:
        if self.depth >= self.MAX_DEPTH:
            return Value("${...}", ("${...}",))
        sub = expand(raw, self.lookup, split=False, _depth=self.depth + 1)
        self.substitutions.extend(sub.substitutions)
        self.unset.extend(sub.unset)
        return sub.value if sub.fields else Value("")


def _unset(name: str) -> tuple[str, tuple[str, ...]]:
    """An unset variable: positional ones are empty (scripts run without arguments); others
    may come from the environment, so they stay visible as an unknown ``${NAME}``."""
    if name.isdigit() or name in "@*":
        return "", ()
    if name == "#":
        return "0", ()
    return "${" + name + "}", (name,)


_GLOB = re.compile(r"[*?\[]")
#: Longest value a glob trim that is neither a literal, ``*lit`` nor ``lit*`` scans (it tries
#: each cut point: quadratic); a longer value is left unchanged.
MAX_TRIM_SCAN = 4096


def _trim(text: str, op: str, pat: str) -> str:
    """``${A#pat}`` ``${A##pat}`` ``${A%pat}`` ``${A%%pat}``: linear for the patterns scripts
    use (a literal, ``*lit``, ``lit*``); other globs only on values up to MAX_TRIM_SCAN."""
    fast = _trim_fast(text, op, pat)
    if fast is not None:
        return fast
    if len(text) > MAX_TRIM_SCAN:
        return text
    rng = range(len(text) + 1)
    if op == "#":
        cut = next((k for k in rng if fnmatch.fnmatchcase(text[:k], pat)), 0)
        return text[cut:]
    if op == "##":
        cut = next((k for k in reversed(rng) if fnmatch.fnmatchcase(text[:k], pat)), 0)
        return text[cut:]
    if op == "%":
        cut = next((k for k in reversed(rng) if fnmatch.fnmatchcase(text[k:], pat)), len(text))
        return text[:cut]
    cut = next((k for k in rng if fnmatch.fnmatchcase(text[k:], pat)), len(text))
    return text[:cut]


def _trim_fast(text: str, op: str, pat: str) -> str | None:
    """The literal, ``*lit`` and ``lit*`` cases with str methods; None for other globs."""
    if not _GLOB.search(pat):  # a literal: the shortest and the longest match are the same
        if op.startswith("#"):
            return text[len(pat) :] if text.startswith(pat) else text
        return text[: len(text) - len(pat)] if pat and text.endswith(pat) else text
    star_lead = pat.startswith("*") and not _GLOB.search(pat[1:])
    star_tail = pat.endswith("*") and not _GLOB.search(pat[:-1])
    if star_lead == star_tail:
        return None
    lit = pat[1:] if star_lead else pat[:-1]
    if op.startswith("#"):
        if star_tail:  # lit*: "#" removes lit, "##" removes everything
            return ("" if op == "##" else text[len(lit) :]) if text.startswith(lit) else text
        k = text.find(lit) if op == "#" else text.rfind(lit)  # *lit
        return text[k + len(lit) :] if k >= 0 else text
    if star_lead:  # *lit: "%" removes lit, "%%" removes everything
        return ("" if op == "%%" else text[: len(text) - len(lit)]) if text.endswith(lit) else text
    k = text.rfind(lit) if op == "%" else text.find(lit)  # lit*
    return text[:k] if k >= 0 else text


def _match(s: str, i: int, open_: str, close: str) -> int:
    """Index after the bracket matching s[i] (== open_), skipping quotes."""
    depth = 0
    j = i
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == "'" and open_ == "(":
            k = s.find("'", j + 1)
            j = len(s) if k < 0 else k + 1
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return len(s)
