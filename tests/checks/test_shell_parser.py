"""grader.parse.shell: the tree bash's grammar gives; words expand as bash would."""

from __future__ import annotations

import pytest

from grader.parse import shell
from grader.parse.shell import Value

SCRIPT = """\
#!/bin/sh
# a comment with docker buildx build in it
A=1 B="two words"
f() { docker buildx create --name "$B" || true; }
if ! docker buildx inspect x >/dev/null 2>&1; then f; else echo no; fi
for p in a "b c"; do echo "$p"; done
cat <<'END'
docker buildx build .
END
docker buildx build \\
  --platform linux/amd64 . | tee log
"""


def _shape(node):
    """The tree without offsets, to compare the two parsers."""
    if isinstance(node, shell.Command):
        return ("cmd", [w.raw for w in node.assigns], [w.raw for w in node.words])
    if isinstance(node, shell.Sequence):
        items = [_shape(i) for i in node.items]
        return items[0] if len(items) == 1 else ("seq", items)
    if isinstance(node, shell.AndOr):
        return ("andor", _shape(node.first), [(op, _shape(n)) for op, n in node.rest])
    if isinstance(node, shell.Pipeline):
        return ("pipe", node.negated, [_shape(c) for c in node.commands])
    if isinstance(node, shell.If):
        orelse = _shape(node.orelse) if node.orelse else None
        return ("if", [(_shape(c), _shape(b)) for c, b in node.branches], orelse)
    if isinstance(node, shell.Loop):
        return ("loop", node.kind, node.var, [w.raw for w in node.items or []], _shape(node.body))
    if isinstance(node, shell.Function):
        return ("func", node.name, _shape(node.body))
    if isinstance(node, shell.Group):
        return ("group", node.subshell, _shape(node.body))
    raise AssertionError(node)


#: The tree bashlex (a port of bash's grammar, dropped: benchmarks/bench_bashlex.py) built for
#: SCRIPT; the project's parser must keep building it.
SCRIPT_TREE = ("seq", [
    ("cmd", ["A=1", 'B="two words"'], []),
    ("func", "f", ("group", False, ("andor",
        ("cmd", [], ["docker", "buildx", "create", "--name", '"$B"']),
        [("||", ("cmd", [], ["true"]))]))),
    ("if", [(("pipe", True, [("cmd", [], ["docker", "buildx", "inspect", "x"])]),
             ("cmd", [], ["f"]))],
     ("cmd", [], ["echo", "no"])),
    ("loop", "for", "p", ["a", '"b c"'], ("cmd", [], ["echo", '"$p"'])),
    ("cmd", [], ["cat"]),
    ("pipe", False, [("cmd", [], ["docker", "buildx", "build", "--platform", "linux/amd64", "."]),
                     ("cmd", [], ["tee", "log"])]),
])  # fmt: skip


def test_tree_matches_bash_grammar() -> None:
    assert _shape(shell.parse(SCRIPT).tree) == SCRIPT_TREE


def test_comments_and_heredocs_are_not_commands() -> None:
    tree = shell.parse(SCRIPT).tree
    firsts = [c.words[0].raw for c in shell.walk_commands(tree) if c.words]
    assert firsts.count("docker") == 3  # create, inspect, the real build
    assert "#" not in " ".join(firsts)


def test_case_statement_is_read() -> None:
    """`case` (which bashlex could not parse) is a real branch: the arm that matches runs."""
    text = 'case "$1" in\n  push|p) OUT=--push ;;\n  *) exit 2 ;;\nesac\n[[ -n $X ]] && echo y\n'
    r = shell.parse(text)
    assert r.error is None
    [case] = [n for n in r.tree.items if isinstance(n, shell.Case)]
    assert [[w.raw for w in pats] for pats, _ in case.arms] == [["push", "p"], ["*"]]


def test_case_arm_chooses_the_build() -> None:
    from grader.parse import buildscript

    script = buildscript.analyse(
        'MODE="${MODE:-push}"\n'
        'case "$MODE" in\n  push) OUT=--push ;;\n  *) OUT=--load ;;\nesac\n'
        "docker buildx build --platform linux/amd64,linux/arm64 $OUT -t r/a .\n"
    )
    [b] = script.builds
    assert b.push and not b.load


def test_deep_nesting_is_read_quickly() -> None:
    r = shell.parse("echo " + "$(" * 400 + "x" + ")" * 400)
    assert r.tree.items


def test_line_numbers_follow_continuations() -> None:
    tree = shell.parse(SCRIPT).tree
    build = next(c for c in shell.walk_commands(tree)
             if [w.raw for w in c.words[:3]] == ["docker", "buildx", "build"])  # fmt: skip
    assert shell.LineIndex(SCRIPT).line(build.start) == 10


def test_unclosed_quote_is_reported_not_raised() -> None:
    r = shell.parse('echo "never closed\n')
    assert r.error and "unclosed" in r.error


def _expand(raw, **variables):
    lookup = {k: (Value(v) if isinstance(v, str) else [Value(x) for x in v])
              for k, v in variables.items()}.get  # fmt: skip
    return [(f.text, f.unknown) for f in shell.expand(raw, lookup).fields]


@pytest.mark.parametrize(
    ("raw", "variables", "fields"),
    [
        ('"$A"', {"A": "a b"}, [("a b", ())]),
        ("$A", {"A": "a b"}, [("a", ()), ("b", ())]),
        ("'$A'", {"A": "x"}, [("$A", ())]),
        ("${A:-d}", {}, [("d", ())]),
        ("${A:-d}", {"A": ""}, [("d", ())]),
        ("${A-d}", {"A": ""}, []),
        ('"${P:-linux/amd64,linux/arm64}"', {}, [("linux/amd64,linux/arm64", ())]),
        ("--platform=$P", {"P": "linux/arm64"}, [("--platform=linux/arm64", ())]),
        ('"$IMAGE"', {}, [("${IMAGE}", ("IMAGE",))]),
        ("${IMAGE:?set it}", {}, [("${IMAGE}", ("IMAGE",))]),
        ('"$(date)"', {}, [("$(...)", ("$(...)",))]),
        ("$1", {}, []),
        ("${1:-push}", {}, [("push", ())]),
        ('"${ARR[@]}"', {"ARR": ["x", "y z"]}, [("x", ()), ("y z", ())]),
        ("${T%%-*}", {"T": "x86_64-linux-gnu"}, [("x86_64", ())]),
        ("${T#*-}", {"T": "x86_64-linux-gnu"}, [("linux-gnu", ())]),
        ("${T/_/-}", {"T": "x86_64"}, [("x86-64", ())]),
        ("${T,,}", {"T": "ARM64"}, [("arm64", ())]),
        ("a\\ b", {}, [("a b", ())]),
        ('""', {}, [("", ())]),
        ("$'a\\tb'", {}, [("a\tb", ())]),
    ],
)
def test_expand(raw, variables, fields) -> None:
    assert _expand(raw, **variables) == fields


def test_expand_returns_substitution_bodies() -> None:
    ex = shell.expand('X="$(docker buildx inspect x)"', lambda n: None, start=100)
    assert ex.substitutions == [("docker buildx inspect x", 105)]
