"""What the gate lets a sandboxed build.sh do with docker: a pure decision on an argv.

``Policy.decide(argv, cwd)`` returns a :class:`Decision`: the docker argv to run (options
re-emitted in one canonical ``--name=value`` form, so docker parses exactly what was
checked), or a refusal with an RN41x finding naming the command. Options are parsed with
each subcommand's own table (docker 28 / buildx 0.13); an option not in the table is
refused, never passed through.

What it enforces:
- subcommands: ``buildx build/create/use/inspect/ls/rm/stop/version/imagetools``,
  ``build`` (= buildx build), ``manifest inspect``, ``run``, ``push``, ``login`` (grading
  registry only), ``logout``, ``version``, ``info``;
- ``run``: no privileges, capabilities, devices, host mounts, named volumes, host
  namespaces or published ports; the grader's label and limits, and no network, are
  added;
- builds: no entitlements (``--allow``), host network, ssh agent or cgroup parent; local
  paths only inside the submission; every build runs on the grading builder;
- tags: kept when inside ``REGISTRY/<namespace>/``, refused when in another repository of
  the grading registry (``confine``, batch grading), otherwise rewritten into the namespace
  (``myuser/app`` -> ``REGISTRY/<namespace>/app``), the same way for every later command;
- builder and container names get a per-submission prefix so learners cannot collide.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grader.registry import Reference, RegistryError
from grader.report import Finding
from grader.rules import run as rules
from grader.sandbox.limits import Limits


def printable(text: str) -> str:
    """Learner-chosen text (arguments, file names) safe to show in a terminal or a report."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


class Refused(Exception):
    def __init__(self, finding: Finding):
        self.finding = finding
        super().__init__(finding.message)


# --- option tables -----------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    values: frozenset[str]
    bools: frozenset[str] = frozenset()
    short: tuple[tuple[str, str], ...] = ()
    interspersed: bool = True

    def long(self, ch: str) -> str | None:
        return dict(self.short).get(ch)


def _spec(values: str, bools: str = "", short: str = "", interspersed: bool = True) -> Spec:
    pairs = tuple(tuple(p.split("=")) for p in short.split())
    return Spec(frozenset(values.split()), frozenset(bools.split()), pairs, interspersed)


GLOBAL = _spec(
    "log-level host context config tlscacert tlscert tlskey",
    "debug version tls tlsverify help",
    "l=log-level H=host c=context D=debug v=version",
    interspersed=False,
)
BUILD = _spec(
    "add-host allow annotation attest build-arg build-context builder cache-from cache-to "
    "cgroup-parent file iidfile label metadata-file network no-cache-filter output platform "
    "progress provenance sbom secret shm-size ssh tag target ulimit",
    "load no-cache pull push quiet help",
    "f=file o=output t=tag q=quiet",
)
BUILDX_GLOBAL = _spec("builder", "help", interspersed=False)
CREATE = _spec(
    "buildkitd-config buildkitd-flags driver driver-opt name node platform config",
    "append bootstrap leave use help",
)
USE = _spec("builder", "default global help")
INSPECT = _spec("builder", "bootstrap help")
LS = _spec("format", "help")
RM = _spec("builder", "all-inactive force keep-daemon keep-state help", "f=force")
STOP = _spec("builder", "help")
VERSION = _spec("format", "help", "f=format")
IMAGETOOLS_INSPECT = _spec("format builder", "raw help")
IMAGETOOLS_CREATE = _spec(
    "annotation file progress tag builder", "append dry-run help", "f=file t=tag"
)
MANIFEST_INSPECT = _spec("", "insecure verbose help", "v=verbose")
LOGIN = _spec("username password", "password-stdin help", "u=username p=password")
LOGOUT = _spec("", "help")
PUSH = _spec("platform", "all-tags disable-content-trust quiet help", "a=all-tags q=quiet")
RUN = _spec(
    # Allowed, or refused below with a specific rule: every option docker 28 knows.
    "add-host annotation attach blkio-weight blkio-weight-device cap-add cap-drop "
    "cgroup-parent cgroupns cidfile cpu-period cpu-quota cpu-rt-period cpu-rt-runtime "
    "cpu-shares cpus cpuset-cpus cpuset-mems detach-keys device device-cgroup-rule "
    "device-read-bps device-read-iops device-write-bps device-write-iops dns dns-option "
    "dns-search domainname entrypoint env env-file expose gpus group-add health-cmd "
    "health-interval health-retries health-start-interval health-start-period "
    "health-timeout hostname ip ip6 ipc isolation kernel-memory label label-file link "
    "link-local-ip log-driver log-opt mac-address memory memory-reservation memory-swap "
    "memory-swappiness mount name network network-alias oom-score-adj pid pids-limit "
    "platform publish pull restart runtime security-opt shm-size stop-signal stop-timeout "
    "storage-opt sysctl tmpfs ulimit user userns uts volume volume-driver volumes-from "
    "workdir",
    "detach disable-content-trust help init interactive no-healthcheck oom-kill-disable "
    "privileged publish-all quiet read-only rm sig-proxy tty use-api-socket",
    "a=attach c=cpu-shares d=detach e=env h=hostname i=interactive l=label m=memory "
    "p=publish P=publish-all q=quiet t=tty u=user v=volume w=workdir",
    interspersed=False,
)

RUN_PRIVILEGED = {
    "privileged", "cap-add", "security-opt", "device", "device-cgroup-rule", "gpus",
    "group-add", "runtime", "sysctl", "oom-kill-disable", "oom-score-adj",
}  # fmt: skip
RUN_MOUNTS = {"volumes-from", "use-api-socket", "volume-driver"}
RUN_PORTS = {"publish", "publish-all"}
RUN_NAMESPACES = {"pid", "ipc", "uts", "userns", "cgroupns"}
RUN_OTHER_REFUSED = {
    "link", "network-alias", "ip", "ip6", "mac-address", "link-local-ip", "log-driver",
    "log-opt", "storage-opt", "isolation", "kernel-memory", "blkio-weight",
    "blkio-weight-device", "device-read-bps", "device-read-iops", "device-write-bps",
    "device-write-iops", "cpu-rt-period", "cpu-rt-runtime", "cpuset-cpus", "cpuset-mems",
    "cgroup-parent",
}  # fmt: skip
#: Options the grader sets on every container itself (a learner's value is replaced):
#: limits, no network (the image is run, not served), and no TTY (there is no terminal:
#: `docker run -it` would fail only because of where it is graded).
RUN_LIMITED = {
    "memory", "memory-swap", "pids-limit", "cpus", "memory-reservation", "network", "tty",
}  # fmt: skip


@dataclass
class Opt:
    name: str
    value: str | None

    def token(self) -> str:
        return f"--{self.name}" if self.value is None else f"--{self.name}={self.value}"


# --- decisions ---------------------------------------------------------------------------


@dataclass
class Decision:
    argv: list[str] | None  # docker argv (without "docker") to run; None when refused
    findings: list[Finding] = field(default_factory=list)
    pushes: list[str] = field(default_factory=list)  # refs a successful run pushes
    wants_stdin: bool = False
    cwd: str = "/"

    @property
    def refused(self) -> Finding | None:
        for f in self.findings:
            if f.severity == "error":
                return f
        return None


def _csv(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        out[key.strip().lower()] = val.strip() if sep else ""
    return out


@dataclass
class Policy:
    """The rules for one submission. ``decide`` also remembers what the script did before
    (tags it built, the builder it selected), as docker itself would."""

    namespace: str  # the submission's repository path in the grading registry
    registry: str  # "127.0.0.1:5000"
    label: str  # the run's id: container label value, name prefix
    host_root: Path | None = None  # the submission copy on the host (symlink checks)
    root: str = "/submission"  # the same directory as the script and the client see it
    builder: str = "default"  # every build runs on this (the engine's shared builder)
    limits: Limits = field(default_factory=Limits)
    # True (batch grading): pushes only inside REGISTRY/<namespace>/. False (a learner
    # checking their own work): the grading registry's other repositories are allowed too.
    confine: bool = True
    tag_map: dict[str, str] = field(default_factory=dict)
    asked_builders: list[str] = field(default_factory=list)
    current_builder: str | None = None
    _noted: set[str] = field(default_factory=set)

    # -- names --

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.namespace}"

    @property
    def name_prefix(self) -> str:
        return f"g{self.label[:10]}-"

    def registry_hosts(self) -> set[str]:
        hosts = {self.registry}
        host, _, port = self.registry.rpartition(":")
        if port.isdigit() and host in ("127.0.0.1", "localhost", "[::1]"):
            hosts |= {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
        return hosts

    def builder_name(self, name: str) -> str:
        if name == "default" or name.startswith(self.name_prefix):
            return name
        return self.name_prefix + name

    def own(self, text: str, command: str) -> tuple[str, Finding | None]:
        """Where a pushed or loaded tag goes: kept, rewritten into the namespace, or refused."""
        try:
            ref = Reference.parse(text)
        except RegistryError:
            raise Refused(
                rules.COMMAND_REFUSED.finding(
                    command=command, why=f"{text!r} is not a valid image reference"
                )
            ) from None
        repo = ref.repository
        if ref.host in self.registry_hosts():
            if not self.confine or repo == self.namespace or repo.startswith(self.namespace + "/"):
                return text, None
            if "/" in repo:
                raise Refused(
                    rules.PUSH_OUTSIDE.finding(
                        command=command, target=f"{ref.host}/{repo}", own=self.repository
                    )
                )
        new = f"{self.repository}/{repo.rsplit('/', 1)[-1]}"
        if ref.tag:
            new += f":{ref.tag}"
        if ref.digest:
            new += f"@{ref.digest}"
        return new, rules.TAG_REWRITTEN.finding(original=text, rewritten=new)

    def _key(self, text: str) -> str:
        try:
            return str(Reference.parse(text))
        except RegistryError:
            return text

    def mapped(self, text: str) -> str:
        """An image the script refers to: the rewritten name if the script made it."""
        return self.tag_map.get(self._key(text), text)

    # -- paths --

    def inside(self, path: str, cwd: str, option: str, command: str) -> str:
        """``path`` (as the script wrote it) if it is inside the submission, else refuse."""
        full = posixpath.normpath(posixpath.join(cwd, path))
        ok = full == self.root or full.startswith(self.root + "/")
        if ok and self.host_root is not None:
            host = self.host_root / posixpath.relpath(full, self.root)
            real = os.path.realpath(host)
            base = os.path.realpath(self.host_root)
            ok = real == base or real.startswith(base + os.sep)
        if not ok:
            raise Refused(rules.HOST_PATH.finding(command=command, option=option, path=path))
        return path

    # -- the decision --

    def decide(self, argv: Sequence[str], cwd: str = "/submission") -> Decision:
        argv = [str(a) for a in argv]
        command = printable("docker " + shlex.join(argv))
        if len(command) > 300:
            command = command[:297] + "..."
        cwd = posixpath.normpath(cwd) if cwd.startswith("/") else self.root
        if not (cwd == self.root or cwd.startswith(self.root + "/")):
            cwd_for_client = self.root
        else:
            cwd_for_client = cwd
        decision = Decision(argv=None, cwd=cwd_for_client)
        try:
            decision.argv = self._decide(argv, cwd, command, decision)
        except Refused as r:
            decision.argv = None
            decision.findings.append(r.finding)
        return decision

    def _refuse(self, command: str, why: str) -> Refused:
        return Refused(rules.COMMAND_REFUSED.finding(command=command, why=why))

    def _parse(self, args: list[str], spec: Spec, command: str) -> tuple[list[Opt], list[str]]:
        opts: list[Opt] = []
        positional: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            i += 1
            if arg == "--":
                positional += args[i:]
                break
            if arg.startswith("--"):
                name, eq, value = arg[2:].partition("=")
                if name in spec.values:
                    if not eq:
                        if i >= len(args):
                            raise self._refuse(command, f"--{name} needs a value")
                        value = args[i]
                        i += 1
                    opts.append(Opt(name, value))
                elif name in spec.bools:
                    opts.append(Opt(name, value if eq else None))
                else:
                    raise self._refuse(command, f"the option --{name} is not allowed here")
            elif arg.startswith("-") and arg != "-":
                cluster = arg[1:]
                for j, ch in enumerate(cluster):
                    name = spec.long(ch)
                    if name is None:
                        raise self._refuse(command, f"the option -{ch} is not allowed here")
                    if name in spec.values:
                        value = cluster[j + 1 :].removeprefix("=")
                        if not value:
                            if i >= len(args):
                                raise self._refuse(command, f"-{ch} needs a value")
                            value = args[i]
                            i += 1
                        opts.append(Opt(name, value))
                        break
                    opts.append(Opt(name, None))
            else:
                positional.append(arg)
                if not spec.interspersed:
                    positional += args[i:]
                    break
        return opts, positional

    def _decide(self, argv: list[str], cwd: str, command: str, d: Decision) -> list[str]:
        gopts, rest = self._parse(argv, GLOBAL, command)
        for o in gopts:
            if o.name in ("host", "context", "config") or o.name.startswith("tls"):
                raise self._refuse(
                    command,
                    f"--{o.name} chooses another engine or configuration; the grader "
                    "chooses the engine",
                )
        keep_global = [o.token() for o in gopts if o.name in ("debug", "log-level")]
        if not rest:
            asked_version = any(o.name == "version" for o in gopts)
            return [*keep_global, "--version" if asked_version else "--help"]
        sub, args = rest[0], rest[1:]
        if sub in ("image", "container", "builder") and args:
            pair = f"{sub} {args[0]}"
            aliases = {
                "image build": "build", "builder build": "build", "image push": "push",
                "container run": "run",
            }  # fmt: skip
            if pair not in aliases:
                raise self._refuse(command, f"`docker {pair}` is not needed for the challenge")
            sub, args = aliases[pair], args[1:]
        if sub in ("version", "info"):
            opts, pos = self._parse(args, VERSION, command)
            if pos:
                raise self._refuse(command, f"`docker {sub}` takes no arguments")
            return [*keep_global, sub, *(o.token() for o in opts)]
        if sub == "build":
            return [*keep_global, *self._build(args, cwd, command, d, None)]
        if sub == "buildx":
            return [*keep_global, *self._buildx(args, cwd, command, d)]
        if sub == "run":
            return [*keep_global, *self._run(args, cwd, command, d)]
        if sub == "push":
            return [*keep_global, *self._push(args, command, d)]
        if sub == "manifest":
            if not args or args[0] != "inspect":
                raise self._refuse(
                    command,
                    "only `docker manifest inspect` is allowed (build the index with "
                    "`docker buildx build --platform ... --push`)",
                )
            opts, pos = self._parse(args[1:], MANIFEST_INSPECT, command)
            return [
                *keep_global, "manifest", "inspect", *(o.token() for o in opts),
                *(self.mapped(p) for p in pos),
            ]  # fmt: skip
        if sub == "login":
            opts, pos = self._parse(args, LOGIN, command)
            server = pos[0] if pos else "docker.io"
            if len(pos) > 1 or server not in self.registry_hosts():
                raise Refused(
                    rules.LOGIN_ELSEWHERE.finding(command=command, registry=self.registry)
                )
            d.wants_stdin = any(o.name == "password-stdin" for o in opts)
            return [*keep_global, "login", *(o.token() for o in opts), server]
        if sub == "logout":
            opts, pos = self._parse(args, LOGOUT, command)
            return [*keep_global, "logout", *pos[:1]]
        raise self._refuse(command, f"`docker {sub}` is not needed for the challenge")

    # -- buildx --

    def _buildx(self, args: list[str], cwd: str, command: str, d: Decision) -> list[str]:
        gopts, rest = self._parse(args, BUILDX_GLOBAL, command)
        builder = next((o.value for o in reversed(gopts) if o.name == "builder"), None)
        if not rest:
            return ["buildx", "version"]
        sub, args = rest[0], rest[1:]
        if sub in ("build", "b"):
            return self._build(args, cwd, command, d, builder)
        if sub == "create":
            return self._create(args, cwd, command)
        if sub in ("use", "inspect", "rm", "stop"):
            spec = {"use": USE, "inspect": INSPECT, "rm": RM, "stop": STOP}[sub]
            opts, pos = self._parse(args, spec, command)
            names = [self.builder_name(n) for n in pos]
            if builder and not names and sub != "use":
                names = [self.builder_name(builder)]
            out = [o.token() for o in opts if o.name not in ("bootstrap", "builder")]
            if sub == "use" and pos:
                self.current_builder = pos[0]
            return ["buildx", sub, *out, *names]
        if sub == "ls":
            opts, pos = self._parse(args, LS, command)
            return ["buildx", "ls", *(o.token() for o in opts)]
        if sub == "version":
            return ["buildx", "version"]
        if sub == "imagetools":
            return self._imagetools(args, command, d)
        if sub in ("prune", "du"):
            raise self._refuse(command, "the build cache is shared by every submission")
        raise self._refuse(command, f"`docker buildx {sub}` is not needed for the challenge")

    def _create(self, args: list[str], cwd: str, command: str) -> list[str]:
        opts, pos = self._parse(args, CREATE, command)
        if pos:
            raise self._refuse(command, "builders on other endpoints or contexts are not allowed")
        out = []
        for o in opts:
            v = o.value or ""
            if o.name == "driver" and v not in ("docker-container", "docker"):
                raise self._refuse(command, f"the {v} driver reaches outside the grading engine")
            if o.name == "driver-opt":
                kv = _csv(v)
                if kv.get("network") == "host":
                    raise Refused(
                        rules.BUILD_ENTITLEMENT.finding(command=command, option=f"--driver-opt {v}")
                    )
                if "image" in kv:
                    raise self._refuse(command, "a custom BuildKit image runs privileged")
            if o.name == "buildkitd-flags" and "insecure" in v:
                raise Refused(
                    rules.BUILD_ENTITLEMENT.finding(
                        command=command, option=f"--buildkitd-flags {v}"
                    )
                )
            if o.name in ("buildkitd-config", "config"):
                self.inside(v, cwd, f"--{o.name}", command)
            if o.name == "bootstrap":
                continue  # builds run on the grading builder; nothing to start
            if o.name == "name":
                self.asked_builders.append(v)
                out.append(Opt("name", self.builder_name(v)).token())
                if any(x.name == "use" for x in opts):
                    self.current_builder = v
                continue
            out.append(o.token())
        return ["buildx", "create", *out]

    def _imagetools(self, args: list[str], command: str, d: Decision) -> list[str]:
        if not args or args[0] not in ("inspect", "create"):
            raise self._refuse(command, "only `imagetools inspect` and `imagetools create`")
        if args[0] == "inspect":
            opts, pos = self._parse(args[1:], IMAGETOOLS_INSPECT, command)
            out = [o.token() for o in opts if o.name != "builder"]
            return ["buildx", "imagetools", "inspect", *out, *(self.mapped(p) for p in pos)]
        opts, pos = self._parse(args[1:], IMAGETOOLS_CREATE, command)
        out = []
        dry = any(o.name == "dry-run" for o in opts)
        for o in opts:
            if o.name == "builder":
                continue
            if o.name == "tag":
                new, note = self.own(o.value or "", command)
                self._note(d, note)
                self.tag_map[self._key(o.value or "")] = new
                if not dry:
                    d.pushes.append(new)
                out.append(Opt("tag", new).token())
            elif o.name == "file":
                out.append(o.token())  # read by the client, inside its jail
            else:
                out.append(o.token())
        return ["buildx", "imagetools", "create", *out, *(self.mapped(p) for p in pos)]

    def _note(self, d: Decision, note: Finding | None) -> None:
        if note is not None and note.message not in self._noted:
            self._noted.add(note.message)
            d.findings.append(note)

    def _build(
        self, args: list[str], cwd: str, command: str, d: Decision, builder: str | None
    ) -> list[str]:
        opts, pos = self._parse(args, BUILD, command)
        if len(pos) != 1:
            raise self._refuse(command, "a build needs exactly one context (e.g. `.`)")
        context = pos[0]
        if context == "-" or "://" in context or context.startswith(("git@", "github.com/")):
            raise self._refuse(command, "the build context must be a directory of the submission")
        self.inside(context, cwd, "build context", command)
        out: list[str] = []
        tags: list[str] = []
        push = False
        for o in opts:
            v = o.value or ""
            name = o.name
            if name == "allow":
                raise Refused(
                    rules.BUILD_ENTITLEMENT.finding(command=command, option=f"--allow {v}")
                )
            if name in ("ssh", "cgroup-parent"):
                raise Refused(rules.BUILD_ENTITLEMENT.finding(command=command, option=f"--{name}"))
            if name == "network" and v not in ("default", "none", "bridge"):
                raise Refused(
                    rules.BUILD_ENTITLEMENT.finding(command=command, option=f"--network {v}")
                )
            if name == "builder":
                builder = v
                continue
            if name == "file":
                if v == "-":
                    raise self._refuse(command, "a Dockerfile on stdin is not supported")
                self.inside(v, cwd, "--file", command)
            elif name in ("iidfile", "metadata-file"):
                self.inside(v, cwd, f"--{name}", command)
            elif name == "build-context":
                _, _, src = v.partition("=")
                if src.startswith(("docker-image://", "target:")):
                    pass
                elif "://" in src:
                    raise self._refuse(command, "build contexts must be local or docker-image://")
                else:
                    self.inside(src, cwd, "--build-context", command)
            elif name == "secret":
                kv = _csv(v)
                src = kv.get("src") or kv.get("source")
                if src is None and "env" not in kv and "/" in kv.get("id", ""):
                    src = kv["id"]
                if src is not None:
                    self.inside(src, cwd, "--secret", command)
            elif name in ("cache-from", "cache-to"):
                o = self._cache(o, cwd, command, d)
            elif name == "output":
                o, pushed = self._output(o, cwd, command, d)
                push = push or pushed
            elif name == "push":
                push = v.lower() not in ("false", "0")
            elif name == "tag":
                new, note = self.own(v, command)
                self._note(d, note)
                self.tag_map[self._key(v)] = new
                tags.append(new)
                o = Opt("tag", new)
            out.append(o.token())
        asked = builder or self.current_builder
        if asked and asked != self.builder:
            self._note(d, rules.BUILDER_SUBSTITUTED.finding(builder=self.builder, asked=asked))
        if push:
            d.pushes.extend(tags)
        return ["buildx", "build", f"--builder={self.builder}", *out, context]

    def _cache(self, o: Opt, cwd: str, command: str, d: Decision) -> Opt:
        v = o.value or ""
        if "=" not in v:
            if o.name == "cache-to":
                new, note = self.own(v, command)
                self._note(d, note)
                return Opt(o.name, new)
            return o
        kv = _csv(v)
        kind = kv.get("type", "registry")
        if kind in ("inline",):
            return o
        if kind == "local":
            path = kv.get("dest") if o.name == "cache-to" else kv.get("src")
            if path:
                self.inside(path, cwd, f"--{o.name}", command)
            return o
        if kind == "registry":
            if o.name == "cache-to" and "ref" in kv:
                new, note = self.own(kv["ref"], command)
                self._note(d, note)
                return Opt(o.name, v.replace(kv["ref"], new))
            return o
        raise self._refuse(command, f"cache type {kind} reaches outside the grading engine")

    def _output(self, o: Opt, cwd: str, command: str, d: Decision) -> tuple[Opt, bool]:
        v = o.value or ""
        if v == "-":
            return o, False
        if "=" not in v:  # a bare path means type=local,dest=PATH
            self.inside(v, cwd, "--output", command)
            return o, False
        kv = _csv(v)
        kind = kv.get("type", "local")
        pushes = kind == "registry" or kv.get("push", "").lower() == "true"
        if kind in ("local", "tar", "oci", "docker") and kv.get("dest") not in (None, "-"):
            self.inside(kv["dest"], cwd, "--output", command)
        elif kind not in ("local", "tar", "oci", "docker", "image", "registry", "cacheonly"):
            raise self._refuse(command, f"output type {kind} is not supported")
        names = kv.get("name", "")
        if names:
            new_names = []
            for name in names.strip('"').split(","):
                new, note = self.own(name, command)
                self._note(d, note)
                self.tag_map[self._key(name)] = new
                new_names.append(new)
                if pushes:
                    d.pushes.append(new)
            parts = [p for p in v.split(",") if not p.strip().lower().startswith("name=")]
            quoted = ",".join(new_names)
            v = ",".join([*parts, f'"name={quoted}"' if len(new_names) > 1 else f"name={quoted}"])
        return Opt(o.name, v), pushes

    # -- run / push --

    def _run(self, args: list[str], cwd: str, command: str, d: Decision) -> list[str]:
        opts, pos = self._parse(args, RUN, command)
        if not pos:
            raise self._refuse(command, "`docker run` needs an image")
        image, cmd = self.mapped(pos[0]), pos[1:]
        out: list[str] = []
        for o in opts:
            v = o.value or ""
            name = o.name
            if name in RUN_PRIVILEGED:
                opt = f"--{name}" + (f" {v}" if o.value is not None else "")
                raise Refused(rules.PRIVILEGED.finding(command=command, option=opt))
            if name in RUN_MOUNTS:
                raise Refused(rules.HOST_MOUNT.finding(command=command, option=f"--{name}"))
            if name in RUN_PORTS:
                raise Refused(rules.HOST_NAMESPACE.finding(command=command, option=f"--{name}"))
            if name in RUN_NAMESPACES and (v == "host" or v.startswith("container:")):
                raise Refused(rules.HOST_NAMESPACE.finding(command=command, option=f"--{name} {v}"))
            if name in RUN_OTHER_REFUSED:
                raise self._refuse(command, f"--{name} is not needed for the challenge")
            if name == "network":
                if v == "host" or v.startswith("container:"):
                    raise Refused(
                        rules.HOST_NAMESPACE.finding(command=command, option=f"--network {v}")
                    )
                if v not in ("none", "bridge", "default"):
                    raise self._refuse(command, "only the default network or none")
            if name == "volume" and ":" in v:
                raise Refused(rules.HOST_MOUNT.finding(command=command, option=f"-v {v}"))
            if name == "mount" and _csv(v).get("type", "volume") != "tmpfs":
                raise Refused(rules.HOST_MOUNT.finding(command=command, option=f"--mount {v}"))
            if name == "restart" and v not in ("no", ""):
                raise self._refuse(command, "containers must not outlive the grading")
            if name in ("cidfile", "env-file", "label-file"):
                self.inside(v, cwd, f"--{name}", command)
            if name == "name":
                o = Opt("name", self.builder_name(v))
            if name in RUN_LIMITED:
                continue
            out.append(o.token())
        lim = self.limits
        out += [
            f"--label=grader.sandbox={self.label}",
            f"--memory={lim.container_memory}",
            f"--memory-swap={lim.container_memory}",
            f"--pids-limit={lim.container_pids}",
            f"--cpus={lim.cpus:g}",
            "--network=none",
        ]
        return ["run", *out, image, *cmd]

    def _push(self, args: list[str], command: str, d: Decision) -> list[str]:
        opts, pos = self._parse(args, PUSH, command)
        if len(pos) != 1:
            raise self._refuse(command, "`docker push` takes one image")
        target = self.mapped(pos[0])
        new, note = self.own(target, command)
        self._note(d, note)
        d.pushes.append(new)
        return ["push", *(o.token() for o in opts), new]
