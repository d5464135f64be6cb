"""THE docker / buildx option table, and how docker reads an option's value.

Every part of the grader that reads a docker command line (the build.sh analyser in
``grader.parse.buildscript``, the sandbox's gate in ``grader.grading.sandbox.policy``) reads it
through :func:`parse` with a :class:`Command` from :data:`COMMANDS`, so the two can never
disagree about which flag takes a value.

The table follows the CLIs' own flag definitions (docker/cli ``cli/command/...``, docker/buildx
``commands/*.go``), parsed as spf13/pflag does: ``--name=value``, ``--name value``, ``-n value``,
``-nvalue``, ``-n=value``, short clusters (``-qt tag``), ``--`` ends the options. Flags a newer
buildx added stay in the table with ``since=`` (learners copy them from today's docs); the
engine installed here is :data:`INSTALLED`. ``tests/unit/test_docker_options.py`` holds the table
against ``--help`` of the installed binaries.

Values that docker and buildx read as CSV (``--output``, ``--cache-to``, ``--secret``,
``--mount``...) are read by :func:`read_csv`, which behaves as Go's ``encoding/csv`` reading one
record (quoted fields, doubled quotes, only the first line), and the per-flag readers below
(:func:`parse_output`, :func:`parse_cache`, :func:`parse_secret`, :func:`parse_mount`) follow
buildx 0.13's ``util/buildflags`` and docker's ``opts/mount.go``: a repeated key, last one wins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

#: The versions on the course engine (``docker version``, ``docker buildx version``).
INSTALLED = {"docker": (28, 2, 2), "buildx": (0, 13, 1), "compose": (2, 26, 1)}


# --- the table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    name: str  # long name, without the dashes
    kind: str  # "value": takes a value; "bool": --x or --x=false; "optional": --x or --x=v
    short: str = ""  # one letter, without the dash
    repeat: bool = False  # may be given several times, each adds (pflag's Array/Slice types)
    csv: bool = False  # the value is read as CSV (read_csv)
    since: tuple[int, ...] = ()  # the release that added it, when newer than INSTALLED
    until: tuple[int, ...] = ()  # the release that removed it
    hidden: bool = False  # accepted but not shown by --help (deprecated or experimental)

    @property
    def takes_value(self) -> bool:
        return self.kind == "value"

    def version_text(self) -> str:
        return ".".join(map(str, self.since))


@dataclass(frozen=True)
class Command:
    """The options of one docker command (``"buildx build"``, ``"run"``...)."""

    name: str
    tool: str  # "docker", "buildx" or "compose": whose version ``since`` counts in
    flags: tuple[Flag, ...]
    interspersed: bool = True  # False: options end at the first positional argument
    by_long: dict[str, Flag] = field(init=False, repr=False, compare=False)
    by_short: dict[str, Flag] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_long", {f.name: f for f in self.flags})
        object.__setattr__(self, "by_short", {f.short: f for f in self.flags if f.short})

    def flag(self, name: str) -> Flag | None:
        """``"--tag"``, ``"tag"`` or ``"-t"`` -> its Flag (None: docker does not know it)."""
        if name.startswith("--"):
            return self.by_long.get(name[2:])
        if name.startswith("-") and len(name) == 2:
            return self.by_short.get(name[1])
        return self.by_long.get(name)

    def installed(self, f: Flag) -> bool:
        """Does the engine installed here know this flag?"""
        have = INSTALLED[self.tool]
        return (not f.since or f.since <= have) and (not f.until or have < f.until)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _table(name: str, tool: str, spec: str, *, interspersed: bool = True) -> Command:
    """One flag a line: ``[-s] --long KIND [repeat] [csv] [hidden] [since=X.Y] [until=X.Y]``."""
    flags = []
    for line in spec.strip().splitlines():
        words = line.split("#", 1)[0].split()
        short = words.pop(0)[1:] if not words[0].startswith("--") else ""
        long, kind, *attrs = words
        opts = dict(a.split("=", 1) if "=" in a else (a, "") for a in attrs)
        flags.append(Flag(
            long[2:], kind, short, "repeat" in opts, "csv" in opts,
            _version(opts["since"]) if "since" in opts else (),
            _version(opts["until"]) if "until" in opts else (),
            "hidden" in opts,
        ))  # fmt: skip
    flags.append(Flag("help", "bool", "h" if not any(f.short == "h" for f in flags) else ""))
    return Command(name, tool, tuple(flags), interspersed)


# The tables are data, one flag a line: the formatter keeps out.
# fmt: off
DOCKER = _table("docker", "docker", """
    --config     value
 -c --context    value
 -D --debug      bool
 -H --host       value repeat
 -l --log-level  value
    --tls        bool
    --tlscacert  value
    --tlscert    value
    --tlskey     value
    --tlsverify  bool
 -v --version    bool
""", interspersed=False)

BUILDX = _table("buildx", "buildx", """
    --builder    value
 -D --debug      bool  since=0.17.0
""", interspersed=False)

# docker/buildx commands/build.go. `docker build` is this command when buildx is the builder.
BUILDX_BUILD = _table("buildx build", "buildx", """
    --add-host         value repeat
    --allow            value repeat
    --annotation       value repeat
    --attest           value repeat csv
    --build-arg        value repeat
    --build-context    value repeat     # name=path: split at the first '=', not CSV
    --builder          value
    --cache-from       value repeat csv
    --cache-to         value repeat csv
    --call             value csv since=0.15.0
    --cgroup-parent    value
    --check            optional since=0.15.0   # --check alone is --call=check
 -f --file             value
    --iidfile          value
    --label            value repeat
    --load             bool
    --metadata-file    value
    --network          value
    --no-cache         bool
    --no-cache-filter  value repeat
 -o --output           value repeat csv
    --platform         value repeat
    --policy           value repeat csv since=0.31.0
    --progress         value
    --provenance       value csv
    --pull             bool
    --push             bool
 -q --quiet            bool
    --resource         value repeat since=0.35.0
    --sbom             value csv
    --secret           value repeat csv
    --shm-size         value
    --ssh              value repeat
 -t --tag              value repeat
    --target           value
    --ulimit           value repeat
    --print            value hidden              # experimental (BUILDX_EXPERIMENTAL=1)
    --invoke           value hidden until=0.12.0 # experimental
    --root             value hidden until=0.24.0 # experimental
    --detach           bool  hidden until=0.24.0 # experimental
    --server-config    value hidden until=0.24.0 # experimental
    --compress         bool  hidden   # docker build's legacy flags: accepted, ignored
    --force-rm         bool  hidden
    --rm               bool  hidden
    --squash           bool  hidden
    --isolation        value hidden
    --security-opt     value repeat hidden
 -m --memory           value hidden
    --memory-swap      value hidden
 -c --cpu-shares       value hidden
    --cpu-period       value hidden
    --cpu-quota        value hidden
    --cpuset-cpus      value hidden
    --cpuset-mems      value hidden
""")

BUILDX_CREATE = _table("buildx create", "buildx", """
    --append            bool
    --bootstrap         bool
    --buildkitd-config  value
    --buildkitd-flags   value
    --config            value hidden   # an alias of --buildkitd-config
    --driver            value
    --driver-opt        value repeat csv
    --leave             bool
    --name              value
    --node              value
    --platform          value repeat
    --timeout           value since=0.32.0
    --use               bool
""")
BUILDX_USE = _table("buildx use", "buildx", """
    --builder  value
    --default  bool
    --global   bool
""")
BUILDX_RM = _table("buildx rm", "buildx", """
    --all-inactive  bool
    --builder       value
 -f --force         bool
    --keep-daemon   bool
    --keep-state    bool
    --timeout       value since=0.32.0
""")
BUILDX_INSPECT = _table("buildx inspect", "buildx", """
    --bootstrap  bool
    --builder    value
    --timeout    value since=0.32.0
""")
BUILDX_LS = _table("buildx ls", "buildx", """
    --format    value
    --no-trunc  bool  since=0.18.0
    --timeout   value since=0.32.0
""")
BUILDX_STOP = _table("buildx stop", "buildx", "    --builder value")
BUILDX_VERSION = _table("buildx version", "buildx", "")
BUILDX_DU = _table("buildx du", "buildx", """
    --builder  value
    --filter   value repeat
    --verbose  bool
""")
BUILDX_PRUNE = _table("buildx prune", "buildx", """
 -a --all           bool
    --builder       value
    --filter        value repeat
 -f --force         bool
    --keep-storage  value
    --verbose       bool
""")
IMAGETOOLS_CREATE = _table("buildx imagetools create", "buildx", """
    --annotation     value repeat
    --append         bool
    --builder        value
    --dry-run        bool
 -f --file           value repeat
    --metadata-file  value since=0.32.0
 -p --platform       value repeat since=0.29.0
    --prefer-index   bool  since=0.15.0
    --progress       value
 -t --tag            value repeat
""")
IMAGETOOLS_INSPECT = _table("buildx imagetools inspect", "buildx", """
    --builder  value
    --format   value
    --raw      bool
""")

# docker/cli cli/command/container/opts.go (docker 28).
RUN = _table("run", "docker", """
    --add-host               value repeat
    --annotation             value repeat
 -a --attach                 value repeat
    --blkio-weight           value
    --blkio-weight-device    value repeat
    --cap-add                value repeat
    --cap-drop               value repeat
    --cgroup-parent          value
    --cgroupns               value
    --cidfile                value
    --cpu-period             value
    --cpu-quota              value
    --cpu-rt-period          value
    --cpu-rt-runtime         value
 -c --cpu-shares             value
    --cpus                   value
    --cpuset-cpus            value
    --cpuset-mems            value
 -d --detach                 bool
    --detach-keys            value
    --device                 value repeat
    --device-cgroup-rule     value repeat
    --device-read-bps        value repeat
    --device-read-iops       value repeat
    --device-write-bps       value repeat
    --device-write-iops      value repeat
    --disable-content-trust  bool
    --dns                    value repeat
    --dns-option             value repeat
    --dns-search             value repeat
    --domainname             value
    --entrypoint             value
 -e --env                    value repeat
    --env-file               value repeat
    --expose                 value repeat
    --gpus                   value csv
    --group-add              value repeat
    --health-cmd             value
    --health-interval        value
    --health-retries         value
    --health-start-interval  value
    --health-start-period    value
    --health-timeout         value
 -h --hostname               value
    --init                   bool
 -i --interactive            bool
    --ip                     value
    --ip6                    value
    --ipc                    value
    --isolation              value
    --kernel-memory          value
 -l --label                  value repeat
    --label-file             value repeat
    --link                   value repeat
    --link-local-ip          value repeat
    --log-driver             value
    --log-opt                value repeat
    --mac-address            value
 -m --memory                 value
    --memory-reservation     value
    --memory-swap            value
    --memory-swappiness      value
    --mount                  value repeat csv
    --name                   value
    --network                value repeat csv   # `name=host,alias=x` is the long syntax
    --network-alias          value repeat
    --no-healthcheck         bool
    --oom-kill-disable       bool
    --oom-score-adj          value
    --pid                    value
    --pids-limit             value
    --platform               value
    --privileged             bool
 -p --publish                value repeat
 -P --publish-all            bool
    --pull                   value
 -q --quiet                  bool
    --read-only              bool
    --restart                value
    --rm                     bool
    --runtime                value
    --security-opt           value repeat
    --shm-size               value
    --sig-proxy              bool
    --stop-signal            value
    --stop-timeout           value
    --storage-opt            value repeat
    --sysctl                 value repeat
    --tmpfs                  value repeat
 -t --tty                    bool
    --ulimit                 value repeat
    --use-api-socket         bool
 -u --user                   value
    --userns                 value
    --uts                    value
 -v --volume                 value repeat
    --volume-driver          value
    --volumes-from           value repeat
 -w --workdir                value
""", interspersed=False)

PUSH = _table("push", "docker", """
 -a --all-tags               bool
    --disable-content-trust  bool
    --platform               value hidden   # shown when the engine's API is 1.46+ (here 1.45)
 -q --quiet                  bool
""")
PULL = _table("pull", "docker", """
 -a --all-tags               bool
    --disable-content-trust  bool
    --platform               value
 -q --quiet                  bool
""")
TAG = _table("tag", "docker", "")
LOGIN = _table("login", "docker", """
 -p --password        value
    --password-stdin  bool
 -u --username        value
""")
LOGOUT = _table("logout", "docker", "")
VERSION = _table("version", "docker", """
 -f --format  value
""")
INFO = _table("info", "docker", """
 -f --format  value
""")
MANIFEST_CREATE = _table("manifest create", "docker", """
 -a --amend     bool
    --insecure  bool
""")
MANIFEST_ANNOTATE = _table("manifest annotate", "docker", """
    --arch         value
    --os           value
    --os-features  value repeat
    --os-version   value
    --variant      value
""")
MANIFEST_PUSH = _table("manifest push", "docker", """
    --insecure  bool
 -p --purge     bool
""")
MANIFEST_INSPECT = _table("manifest inspect", "docker", """
    --insecure  bool
 -v --verbose   bool
""")
COMPOSE = _table("compose", "compose", """
    --ansi               value
    --compatibility      bool
    --dry-run            bool
    --env-file           value repeat
 -f --file               value repeat
    --parallel           value
    --profile            value repeat
    --progress           value
    --project-directory  value
 -p --project-name       value
""", interspersed=False)
COMPOSE_BUILD = _table("compose build", "compose", """
    --build-arg          value repeat
    --builder            value
    --dry-run            bool
 -m --memory             value
    --no-cache           bool
    --pull               bool
    --push               bool
 -q --quiet              bool
    --ssh                value
    --with-dependencies  bool
""")
COMPOSE_PUSH = _table("compose push", "compose", """
    --dry-run               bool
    --ignore-push-failures  bool
    --include-deps          bool
 -q --quiet                 bool
""")

# fmt: on

#: Every table by its command path. Aliases: ``docker build`` / ``image build`` /
#: ``builder build`` / ``buildx b`` are buildx build (buildx is docker 28's builder).
COMMANDS: dict[str, Command] = {c.name: c for c in (
    DOCKER, BUILDX, BUILDX_BUILD, BUILDX_CREATE, BUILDX_USE, BUILDX_RM, BUILDX_INSPECT,
    BUILDX_LS, BUILDX_STOP, BUILDX_VERSION, BUILDX_DU, BUILDX_PRUNE, IMAGETOOLS_CREATE,
    IMAGETOOLS_INSPECT, RUN, PUSH, PULL, TAG, LOGIN, LOGOUT, VERSION, INFO, MANIFEST_CREATE,
    MANIFEST_ANNOTATE, MANIFEST_PUSH, MANIFEST_INSPECT, COMPOSE, COMPOSE_BUILD, COMPOSE_PUSH,
)}  # fmt: skip
ALIASES = {
    "build": "buildx build", "image build": "buildx build", "builder build": "buildx build",
    "buildx b": "buildx build", "buildx remove": "buildx rm", "container run": "run",
    "image push": "push", "image pull": "pull", "image tag": "tag",
}  # fmt: skip


def command(path: str) -> Command | None:
    """``"buildx build"``, ``"build"``, ``"container run"`` -> its table."""
    return COMMANDS.get(ALIASES.get(path, path))


# --- reading a command line as pflag does -------------------------------------------------


@dataclass
class Opt:
    flag: Flag
    value: str | None  # None: a bool or optional flag given without a value
    index: int  # the argument that named it
    value_index: int | None = None  # the argument holding its value, when separate

    @property
    def name(self) -> str:
        return self.flag.name

    def token(self) -> str:
        """The option in one canonical form, ``--name=value`` (docker reads it the same)."""
        return f"--{self.name}" if self.value is None else f"--{self.name}={self.value}"


@dataclass
class Parsed:
    opts: list[Opt] = field(default_factory=list)
    positional: list[int] = field(default_factory=list)  # indices into the argument list
    unknown: list[tuple[int, str]] = field(default_factory=list)  # (index, "--parallel")
    missing: list[tuple[int, str]] = field(default_factory=list)  # flag given no value

    def values(self, name: str) -> list[str]:
        return [o.value or "" for o in self.opts if o.name == name]

    def last(self, name: str) -> Opt | None:
        return next((o for o in reversed(self.opts) if o.name == name), None)


def parse(cmd: Command, args: Sequence[str]) -> Parsed:
    """Read ``args`` (the words after the command) with ``cmd``'s table, as pflag would.

    Never raises: unknown flags and flags missing their value are listed, and the caller
    decides (the analyser reports them, the gate refuses the command). An unknown
    ``--name=value`` or cluster letter consumes nothing more, as docker's error would stop.
    """
    out = Parsed()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.positional += range(i + 1, len(args))
            break
        if arg.startswith("--"):
            i = _long(cmd, args, i, out)
        elif arg.startswith("-") and arg != "-":
            i = _short(cmd, args, i, out)
        else:
            out.positional.append(i)
            i += 1
            if not cmd.interspersed:
                out.positional += range(i, len(args))
                break
    return out


def _long(cmd: Command, args: Sequence[str], i: int, out: Parsed) -> int:
    name, eq, value = args[i][2:].partition("=")
    f = cmd.by_long.get(name)
    if f is None:
        out.unknown.append((i, "--" + name))
        return i + 1
    if eq or not f.takes_value:
        out.opts.append(Opt(f, value if eq else None, i))
        return i + 1
    if i + 1 >= len(args):
        out.missing.append((i, "--" + name))
        return i + 1
    out.opts.append(Opt(f, args[i + 1], i, i + 1))
    return i + 2


def _short(cmd: Command, args: Sequence[str], i: int, out: Parsed) -> int:
    cluster = args[i][1:]
    for j, ch in enumerate(cluster):
        f = cmd.by_short.get(ch)
        if f is None:
            out.unknown.append((i, "-" + ch))
            return i + 1
        if not f.takes_value:
            out.opts.append(Opt(f, None, i))
            continue
        rest = cluster[j + 1 :]
        if rest:
            out.opts.append(Opt(f, rest.removeprefix("="), i))  # -tname, -t=name
            return i + 1
        if i + 1 >= len(args):
            out.missing.append((i, "-" + ch))
            return i + 1
        out.opts.append(Opt(f, args[i + 1], i, i + 1))
        return i + 2
    return i + 1


def parse_bool(text: str) -> bool | None:
    """Go's strconv.ParseBool, which pflag and buildx use for flag values."""
    t = text.strip()
    if t in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if t in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


# --- CSV values ---------------------------------------------------------------------------


class CSVError(ValueError):
    """docker would refuse this value (the text says why, as Go's encoding/csv does)."""


def read_csv(text: str) -> list[str]:
    """The first record of ``text`` read as Go's ``encoding/csv`` Reader.Read() does.

    Comma-separated; a field that starts with ``"`` is quoted (``""`` inside is one quote,
    commas and newlines inside are kept); a ``"`` inside an unquoted field, or anything but
    a comma or the end of the line after a closing quote, is an error; empty lines before
    the record are skipped, and everything after its first line is ignored (docker reads
    only the first record: ``"a\\nb"`` is ``["a"]``).
    """
    lines = _csv_lines(text)
    line = next(lines, None)
    while line is not None and line in ("", "\n"):
        line = next(lines, None)
    if line is None:
        raise CSVError("EOF")
    fields: list[str] = []
    while True:
        if not line.startswith('"'):
            end = line.find(",")
            raw = line if end < 0 else line[:end]
            raw = raw.removesuffix("\n")
            if '"' in raw:
                raise CSVError('bare " in non-quoted-field')
            fields.append(raw)
            if end < 0:
                return fields
            line = line[end + 1 :]
            continue
        line, done = _quoted(line[1:], lines, fields)
        if done:
            return fields


def _quoted(line: str, lines, fields: list[str]) -> tuple[str, bool]:
    """Read one quoted field (the opening quote gone); (the rest of the line, record ended)."""
    buf: list[str] = []
    while True:
        k = line.find('"')
        if k >= 0:
            buf.append(line[:k])
            line = line[k + 1 :]
            if line.startswith('"'):
                buf.append('"')
                line = line[1:]
            elif line.startswith(","):
                fields.append("".join(buf))
                return line[1:], False
            elif line in ("", "\n"):
                fields.append("".join(buf))
                return "", True
            else:
                raise CSVError('extraneous or missing " in quoted-field')
        elif line:
            buf.append(line)
            nxt = next(lines, None)
            if nxt is None:
                raise CSVError('extraneous or missing " in quoted-field')
            line = nxt
        else:
            raise CSVError('extraneous or missing " in quoted-field')


def _csv_lines(text: str):
    """Lines with their newline, ``\\r\\n`` read as ``\\n``, as encoding/csv's readLine."""
    for part in re.split(r"(?<=\n)", text):
        if not part:
            continue
        if part.endswith("\r\n"):
            part = part[:-2] + "\n"
        elif not part.endswith("\n") and part.endswith("\r"):
            part = part[:-1]  # "drop trailing \r before EOF"
        yield part


def csv_pairs(
    text: str, *, lower: bool = True, strip: bool = False
) -> list[tuple[str, str | None]]:
    """``read_csv`` fields split at their first ``=`` (``None``: a field with no ``=``)."""
    out: list[tuple[str, str | None]] = []
    for f in read_csv(text):
        key, eq, value = f.partition("=")
        key = key.strip() if strip else key
        out.append((key.lower() if lower else key, value if eq else None))
    return out


def csv_map(text: str, *, lower: bool = True, strip: bool = False) -> dict[str, str]:
    """``key=value`` fields as a dict; a repeated key: the last one wins (as in buildx).
    A field without ``=`` is an error, as it is for buildx."""
    out: dict[str, str] = {}
    for key, value in csv_pairs(text, lower=lower, strip=strip):
        if value is None:
            raise CSVError(f"invalid value {key}")
        out[key] = value
    return out


def parse_output(text: str) -> dict[str, str]:
    """``--output`` as buildx 0.13 ``ParseExports`` reads it: ``{"type": ..., attrs...}``.

    A value that is a single CSV field equal to the text itself and not starting with
    ``type=`` is a local destination, even when it contains ``=`` (``out=dir``); ``-`` is a
    tar stream on stdout (see :func:`output_pushes` for ``type=registry``). Keys are trimmed
    and lower-cased, values kept as written. Raises CSVError where buildx refuses.
    """
    fields = read_csv(text)
    if len(fields) == 1 and fields[0] == text and not text.startswith("type="):
        return {"type": "tar" if text == "-" else "local", "dest": text}
    out = csv_map(text, strip=True)
    if not out.get("type"):
        raise CSVError("type is required for output")
    return out


def output_pushes(o: dict[str, str]) -> bool:
    """Does this output push? ``type=registry`` is ``type=image`` with ``push=true`` unless
    the value says ``push=`` itself."""
    default = {"registry": "true", "image": "false"}.get(o.get("type", ""))
    return default is not None and parse_bool(o.get("push", default)) is True


def parse_cache(text: str) -> list[dict[str, str]]:
    """``--cache-from``/``--cache-to`` as buildx 0.13 ``ParseCacheEntry``: a list of entries.

    When no field has ``=``, every field is a registry ref (``a,b`` is two caches).
    Otherwise keys are lower-cased (not trimmed) and ``type`` is required.
    """
    fields = read_csv(text)
    if all("=" not in f for f in fields):
        return [{"type": "registry", "ref": f} for f in fields]
    out = csv_map(text)
    if not out.get("type"):
        raise CSVError(f"type required form> {text!r}")
    return [out]


def parse_secret(text: str) -> dict[str, str]:
    """``--secret`` as buildx 0.13 ``parseSecret``: keys type, id, src/source, env only."""
    out: dict[str, str] = {}
    for key, value in csv_pairs(text):
        if value is None:
            raise CSVError(f"invalid field {key!r} must be a key=value pair")
        if key == "type" and value not in ("file", "env"):
            raise CSVError(f"unsupported secret type {value!r}")
        if key not in ("type", "id", "src", "source", "env"):
            raise CSVError(f"unexpected key {key!r}")
        out["src" if key == "source" else key] = value
    if out.get("type") == "env" and not out.get("env"):
        out["env"] = out.pop("src", "")
    return out


_MOUNT_BOOLS = ("readonly", "ro", "volume-nocopy", "bind-nonrecursive", "bind-create-src")


def parse_mount(text: str) -> dict[str, str]:
    """``docker run --mount`` as docker's ``opts.MountOpt.Set``: type defaults to volume,
    keys and the type lower-cased, whitespace around a key or value refused."""
    out = {"type": "volume"}
    text = text.strip()
    if not text:
        raise CSVError("value is empty")
    for key, value in csv_pairs(text, lower=False):
        if key.strip() != key or (value is not None and value.strip() != value):
            raise CSVError(f"invalid option {key!r}: option should not have whitespace")
        key = key.lower()
        if value is None and key not in _MOUNT_BOOLS:
            raise CSVError(f"invalid field {key!r} must be a key=value pair")
        if key == "type":
            value = (value or "").lower()
        out[{"src": "source", "dst": "target", "destination": "target"}.get(key, key)] = (
            value if value is not None else "true"
        )
    return out


_NETWORK_LONG = re.compile(r"\w+=\w+(,\w+=\w+)*")


def parse_network(text: str) -> str:
    """``docker run --network``: the network's name, also from the long syntax
    ``name=host,alias=x`` (docker's ``opts.NetworkOpt.Set``, which lower-cases it)."""
    if not _NETWORK_LONG.search(text):
        return text
    name = text
    for f in read_csv(text):
        key, eq, value = f.lower().partition("=")
        if not eq or not key:
            raise CSVError(f"invalid field {f}")
        if key.strip() == "name":
            name = value.strip()
    return name


def write_csv(fields: Sequence[str]) -> str:
    """One record as Go's ``csv.Writer`` writes it: a field is quoted (quotes doubled) when
    it holds a comma, a quote, a line break or starts with a space; :func:`read_csv` reads
    it back unchanged."""
    out = []
    for f in fields:
        if f == r"\." or any(c in f for c in ',"\r\n') or (f[:1].isspace()):
            f = '"' + f.replace('"', '""') + '"'
        out.append(f)
    return ",".join(out)


def write_pairs(pairs: dict[str, str]) -> str:
    """``{"type": "local", "dest": "d"}`` -> ``type=local,dest=d`` (quoted where needed)."""
    return write_csv([f"{k}={v}" for k, v in pairs.items()])
