"""The one docker/buildx option table (grader.docker.options): held against the installed
binaries' --help, read as pflag reads it, and CSV values read as Go's encoding/csv does."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from grader.docker import options as O

# --- the table against --help ----------------------------------------------------------------

HELP_LINE = re.compile(r"^\s+(?:-(\w), )?--([\w-]+)(?: ([a-z][\w-]*))?(?:\s|$)")
#: pflag's type words that collect every use of the flag (the rest take one value).
REPEATING = {"stringArray", "strings", "list", "ulimit", "filter", "map", "mount", "network"}


def help_flags(path: str) -> dict[str, tuple[str, str | None]]:
    """``docker PATH --help`` -> {long: (short, type word or None for a bool)}."""
    out = subprocess.run(["docker", *path.split(), "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout  # fmt: skip
    section = out.split("Options:", 1)[1] if "Options:" in out else ""
    if path == "":
        section = out.split("Global Options:", 1)[1]
    section = section.split("\n\n", 1)[0]
    flags = {}
    for line in section.splitlines():
        m = HELP_LINE.match(line)
        if m:
            flags[m.group(2)] = (m.group(1) or "", m.group(3))
    return flags


needs_docker = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
CHECKED = [name for name in O.COMMANDS if name not in ("docker",)] + ["docker"]


@needs_docker
@pytest.mark.parametrize("name", CHECKED)
def test_table_matches_installed_help(name: str) -> None:
    cmd = O.COMMANDS[name]
    shown = help_flags("" if name == "docker" else name)
    ours = {f.name: f for f in cmd.flags if f.name != "help"}
    for long, (short, typ) in shown.items():
        if long == "help":
            continue
        f = ours.get(long)
        assert f is not None, f"docker {name} --help lists --{long}; the table lacks it"
        assert cmd.installed(f), f"--{long} is installed here but marked since {f.since}"
        assert not f.hidden, f"--{long} is shown by --help but marked hidden"
        assert f.short == short, f"--{long}: short -{short} in --help, -{f.short} in the table"
        # docker run's --blkio-weight shows a type (uint16); --gpus shows gpu-request
        assert f.takes_value == (typ is not None), f"--{long}: --help says {typ or 'bool'}"
        if typ in REPEATING:
            assert f.repeat, f"--{long} ({typ}) may be given several times"
    for f in ours.values():
        if cmd.installed(f) and not f.hidden:
            assert f.name in shown, f"the table has --{f.name}, docker {name} --help does not"


@needs_docker
def test_flags_newer_than_installed_are_unknown_to_it() -> None:
    """A `since` flag must really be missing here (else the version is wrong)."""
    shown = help_flags("buildx build")
    newer = [f.name for f in O.BUILDX_BUILD.flags if f.since]
    assert {"check", "call", "policy", "resource"} <= set(newer)
    assert not set(newer) & set(shown)
    assert O.BUILDX_BUILD.flag("--check").since == (0, 15, 0)


# --- parsing as pflag does ------------------------------------------------------------------------


def parsed(cmd: O.Command, line: str) -> tuple[list[tuple[str, str | None]], list[str]]:
    args = line.split()
    p = O.parse(cmd, args)
    return [(o.name, o.value) for o in p.opts], [args[i] for i in p.positional]


def test_check_is_optional_valued_and_never_eats_the_next_flag() -> None:
    opts, pos = parsed(O.BUILDX_BUILD, "--check --builder X .")
    assert opts == [("check", None), ("builder", "X")] and pos == ["."]
    opts, _ = parsed(O.BUILDX_BUILD, "--check=false --push .")
    assert opts == [("check", "false"), ("push", None)]


def test_short_clusters_and_attached_values() -> None:
    opts, pos = parsed(O.BUILDX_BUILD, "-qt a:1 -tb:2 -t=c:3 -f=Dockerfile -- -x")
    assert opts == [("quiet", None), ("tag", "a:1"), ("tag", "b:2"), ("tag", "c:3"),
                    ("file", "Dockerfile")]  # fmt: skip
    assert pos == ["-x"]


def test_unknown_and_missing_are_reported_not_guessed() -> None:
    p = O.parse(O.BUILDX_BUILD, ["--parallel", "--platform"])
    assert p.unknown == [(0, "--parallel")] and p.missing == [(1, "--platform")]


def test_not_interspersed_commands_stop_at_the_first_positional() -> None:
    opts, pos = parsed(O.RUN, "--rm img --privileged")
    assert opts == [("rm", None)] and pos == ["img", "--privileged"]
    opts, pos = parsed(O.BUILDX_BUILD, ". --push")
    assert opts == [("push", None)] and pos == ["."]


# --- CSV as Go's encoding/csv ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "fields"), [
    ("a,b,c", ["a", "b", "c"]),
    ('"a,b",c', ["a,b", "c"]),
    ('"say ""hi""",x', ['say "hi"', "x"]),
    ("a,", ["a", ""]),
    ("", None),
    ('a"b', None),                       # bare quote in an unquoted field
    ('"a"b', None),                      # text after the closing quote
    ('"a', None),                        # never closed
    ("type=local,dest=x\ntype=image", ["type=local", "dest=x"]),  # first record only
    ("\n\na,b", ["a", "b"]),             # empty lines before it are skipped
    ('"multi\nline",b\nc', ["multi\nline", "b"]),
    ("a,b\r\n", ["a", "b"]),
    (' "a",b', None),                    # a space before the quote: a bare quote
])  # fmt: skip
def test_read_csv_matches_go(text: str, fields: list[str] | None) -> None:
    if fields is None:
        with pytest.raises(O.CSVError):
            O.read_csv(text)
    else:
        assert O.read_csv(text) == fields


def test_output_reads_as_buildx() -> None:
    assert O.parse_output("out=dir") == {"type": "local", "dest": "out=dir"}
    assert O.parse_output("-") == {"type": "tar", "dest": "-"}
    o = O.parse_output('type=image,"name=a/b:1,a/c:1",push=true,push=false')
    assert o["name"] == "a/b:1,a/c:1" and o["push"] == "false"  # the last push= wins
    assert O.output_pushes(O.parse_output("type=registry,name=x"))
    assert O.parse_output(" TYPE =local,dest=d")["type"] == "local"  # keys trimmed, lowered
    assert O.parse_output("dest=x") == {"type": "local", "dest": "dest=x"}  # one field: a path
    for bad in ("type=image,name=a,b", "push=true,dest=x", '"out"'):
        with pytest.raises(O.CSVError):
            O.parse_output(bad)


def test_cache_secret_mount_network() -> None:
    assert O.parse_cache("r/a:c,r/b:c") == [{"type": "registry", "ref": "r/a:c"},
                                            {"type": "registry", "ref": "r/b:c"}]  # fmt: skip
    assert O.parse_cache("type=local,src=a,src=b") == [{"type": "local", "src": "b"}]
    with pytest.raises(O.CSVError):
        O.parse_cache("mode=max")
    assert O.parse_secret("id=x,source=/a,src=/b")["src"] == "/b"
    assert O.parse_secret("type=env,id=x,src=TOKEN") == {"type": "env", "id": "x", "env": "TOKEN"}
    with pytest.raises(O.CSVError):
        O.parse_secret("id=x,path=/etc/shadow")
    assert O.parse_mount('type=tmpfs,"type=bind",src=/')["type"] == "bind"
    assert O.parse_mount("TYPE=BIND,src=/,ro")["type"] == "bind"
    with pytest.raises(O.CSVError):
        O.parse_mount("type=bind, src=/")
    assert O.parse_network("name=HOST,alias=x") == "host"
    assert O.parse_network("none") == "none"


@pytest.mark.parametrize("fields", [["a", "b"], ["a,b", 'q"q', " lead", "x\ny"], ["", "x"]])
def test_write_csv_reads_back(fields: list[str]) -> None:
    assert O.read_csv(O.write_csv(fields)) == fields
