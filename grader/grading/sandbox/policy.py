"""What the gate lets a sandboxed build.sh do with docker: a pure decision on an argv.

``Policy.decide(argv, cwd)`` returns a :class:`Decision`: the docker argv to run (options
re-emitted in one canonical ``--name=value`` form, so docker parses exactly what was
checked), or a refusal with an RN41x finding naming the command. Options are read with the
one option table (``grader.docker.options``), and CSV values (``--output``, ``--cache-to``,
``--secret``, ``--mount``...) as Go's encoding/csv reads them, then re-emitted in that form;
an option docker does not have, or the grading engine's release lacks, is refused.

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

import dataclasses
import os
import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grader.docker import options as O
from grader.docker.options import Opt
from grader.docker.registry import Reference, RegistryError
from grader.grading.criteria import ASSIGNMENT
from grader.grading.report import Finding
from grader.grading.rules import run as rules
from grader.grading.sandbox.limits import Limits


def printable(text: str) -> str:
    """Learner-chosen text (arguments, file names) safe to show in a terminal or a report."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


class Refused(Exception):
    def __init__(self, finding: Finding):
        self.finding = finding
        super().__init__(finding.message)


# --- options ------------------------------------------------------------------------------
# Which flags exist, take a value or are CSV comes from the one table (grader.docker.options);
# what the grader allows is decided here.

#: Hidden flags the gate still accepts: an alias, and one the engine's API version hides.
HIDDEN_OK = {("buildx create", "config"), ("push", "platform")}
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
    # Other names of the grading registry the script may write: a worker engine reaches the
    # course registry (127.0.0.1:5000 to the learner) at another address; such names are
    # rewritten to ``registry`` (the same repositories, so the checks find them).
    aliases: tuple[str, ...] = ()
    # True (a learner's own full check, never confined): tags in the grading registry outside
    # the namespace are rewritten into it, so the check never overwrites the learner's tag.
    scratch: bool = False
    # The assignment's own repository prefix, which every learner's build.sh pushes to.
    assignment: str = ASSIGNMENT
    # The instructor's seeded build cache (a --cache-from value): every build imports it.
    cache_from: str | None = None
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
        for name in (self.registry, *self.aliases):
            host, _, port = name.rpartition(":")
            hosts.add(name)
            if port.isdigit() and host in ("127.0.0.1", "localhost", "[::1]"):
                hosts |= {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
        return hosts

    def _here(self, ref: Reference) -> str:
        """``ref`` named on ``registry`` (an alias's host replaced)."""
        text = f"{self.registry}/{ref.repository}"
        if ref.tag:
            text += f":{ref.tag}"
        if ref.digest:
            text += f"@{ref.digest}"
        return text

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
            if repo == self.namespace or repo.startswith(self.namespace + "/"):
                return (text if ref.host == self.registry else self._here(ref)), None
            if not self.confine and not self.scratch:
                return (text if ref.host == self.registry else self._here(ref)), None
            if self.confine and "/" in repo and not self._assignment_name(repo):
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

    def _assignment_name(self, repo: str) -> bool:
        """The name the lab teaches (``07-challenge/hello``): rewritten into the namespace in
        batch grading too; any other learner's or shared repository is refused."""
        return repo.split("/", 1)[0] == self.assignment

    def _key(self, text: str) -> str:
        try:
            return str(Reference.parse(text))
        except RegistryError:
            return text

    def mapped(self, text: str) -> str:
        """An image the script refers to: the rewritten name if the script made it."""
        found = self.tag_map.get(self._key(text))
        if found is not None or not self.aliases:
            return found or text
        try:
            ref = Reference.parse(text)
        except RegistryError:
            return text
        if ref.host != self.registry and ref.host in self.registry_hosts():
            return self._here(ref)
        return text

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

    def _parse(self, args: list[str], cmd: O.Command, command: str) -> tuple[list[Opt], list[str]]:
        """Options and positional arguments exactly as docker reads them (the one table);
        an option docker, or the grading engine's docker, would not take is refused."""
        p = O.parse(cmd, args)
        for _, name in p.unknown:
            raise self._refuse(command, f"the option {name} is not allowed here")
        for _, name in p.missing:
            raise self._refuse(command, f"{name} needs a value")
        for o in p.opts:
            f = o.flag
            if not cmd.installed(f):
                tool = ".".join(map(str, O.INSTALLED[cmd.tool]))
                raise self._refuse(
                    command,
                    f"--{f.name} needs {cmd.tool} {f.version_text()} or later; the grading "
                    f"engine has {cmd.tool} {tool}",
                )
            if f.hidden and (cmd.name, f.name) not in HIDDEN_OK:
                raise self._refuse(command, f"the option --{f.name} is not allowed here")
        return p.opts, [args[i] for i in p.positional]

    def _csv(self, reader, value: str, option: str, command: str):
        """A CSV option value read by docker's own rules; refused where docker refuses it."""
        try:
            return reader(value)
        except O.CSVError as e:
            raise self._refuse(command, f"docker cannot read {option} {value!r}: {e}") from None

    def _decide(self, argv: list[str], cwd: str, command: str, d: Decision) -> list[str]:
        gopts, rest = self._parse(argv, O.DOCKER, command)
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
            opts, pos = self._parse(args, O.VERSION if sub == "version" else O.INFO, command)
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
            opts, pos = self._parse(args[1:], O.MANIFEST_INSPECT, command)
            return [
                *keep_global, "manifest", "inspect", *(o.token() for o in opts),
                *(self.mapped(p) for p in pos),
            ]  # fmt: skip
        if sub == "login":
            opts, pos = self._parse(args, O.LOGIN, command)
            server = pos[0] if pos else "docker.io"
            if len(pos) > 1 or server not in self.registry_hosts():
                raise Refused(
                    rules.LOGIN_ELSEWHERE.finding(command=command, registry=self.registry)
                )
            d.wants_stdin = any(o.name == "password-stdin" for o in opts)
            return [*keep_global, "login", *(o.token() for o in opts), server]
        if sub == "logout":
            opts, pos = self._parse(args, O.LOGOUT, command)
            return [*keep_global, "logout", *pos[:1]]
        raise self._refuse(command, f"`docker {sub}` is not needed for the challenge")

    # -- buildx --

    def _buildx(self, args: list[str], cwd: str, command: str, d: Decision) -> list[str]:
        gopts, rest = self._parse(args, O.BUILDX, command)
        builder = next((o.value for o in reversed(gopts) if o.name == "builder"), None)
        if not rest:
            return ["buildx", "version"]
        sub, args = rest[0], rest[1:]
        if sub in ("build", "b"):
            return self._build(args, cwd, command, d, builder)
        if sub == "create":
            return self._create(args, cwd, command)
        if sub in ("use", "inspect", "rm", "stop"):
            opts, pos = self._parse(args, O.COMMANDS[f"buildx {sub}"], command)
            names = [self.builder_name(n) for n in pos]
            if builder and not names and sub != "use":
                names = [self.builder_name(builder)]
            out = [o.token() for o in opts if o.name not in ("bootstrap", "builder")]
            if sub == "use" and pos:
                self.current_builder = pos[0]
            return ["buildx", sub, *out, *names]
        if sub == "ls":
            opts, pos = self._parse(args, O.BUILDX_LS, command)
            return ["buildx", "ls", *(o.token() for o in opts)]
        if sub == "version":
            return ["buildx", "version"]
        if sub == "imagetools":
            return self._imagetools(args, command, d)
        if sub in ("prune", "du"):
            raise self._refuse(command, "the build cache is shared by every submission")
        raise self._refuse(command, f"`docker buildx {sub}` is not needed for the challenge")

    def _create(self, args: list[str], cwd: str, command: str) -> list[str]:
        opts, pos = self._parse(args, O.BUILDX_CREATE, command)
        if pos:
            raise self._refuse(command, "builders on other endpoints or contexts are not allowed")
        out = []
        for o in opts:
            v = o.value or ""
            if o.name == "driver" and v not in ("docker-container", "docker"):
                raise self._refuse(command, f"the {v} driver reaches outside the grading engine")
            if o.name == "driver-opt":
                # buildx keeps keys as written; lower-casing here only refuses more
                kv = self._csv(O.csv_map, v, "--driver-opt", command)
                if kv.get("network", "").strip().lower() == "host":
                    raise Refused(
                        rules.BUILD_ENTITLEMENT.finding(command=command, option=f"--driver-opt {v}")
                    )
                if "image" in kv:
                    raise self._refuse(command, "a custom BuildKit image runs privileged")
                o = _with(o, O.write_csv(O.read_csv(v)))
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
                out.append(_with(o, self.builder_name(v)).token())
                if any(x.name == "use" for x in opts):
                    self.current_builder = v
                continue
            out.append(o.token())
        return ["buildx", "create", *out]

    def _imagetools(self, args: list[str], command: str, d: Decision) -> list[str]:
        if not args or args[0] not in ("inspect", "create"):
            raise self._refuse(command, "only `imagetools inspect` and `imagetools create`")
        if args[0] == "inspect":
            opts, pos = self._parse(args[1:], O.IMAGETOOLS_INSPECT, command)
            out = [o.token() for o in opts if o.name != "builder"]
            return ["buildx", "imagetools", "inspect", *out, *(self.mapped(p) for p in pos)]
        opts, pos = self._parse(args[1:], O.IMAGETOOLS_CREATE, command)
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
                out.append(_with(o, new).token())
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
        opts, pos = self._parse(args, O.BUILDX_BUILD, command)
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
                kv = self._csv(O.parse_secret, v, "--secret", command)
                # no src and no env: BuildKit reads the file named by the id
                src = kv.get("src") or (kv.get("id") if not kv.get("env") else None)
                if src:
                    self.inside(src, cwd, "--secret", command)
                o = _with(o, O.write_pairs(kv))
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
                o = _with(o, new)
            out.append(o.token())
        asked = builder or self.current_builder
        if asked and asked != self.builder:
            self._note(d, rules.BUILDER_SUBSTITUTED.finding(builder=self.builder, asked=asked))
        if push:
            d.pushes.extend(tags)
        return ["buildx", "build", f"--builder={self.builder}", *out, *self._imports(), context]

    def _imports(self) -> list[str]:
        """The instructor's seeded cache, imported by every build (``grader cache seed``)."""
        return [f"--cache-from={self.cache_from}"] if self.cache_from else []

    def _cache(self, o: Opt, cwd: str, command: str, d: Decision) -> Opt:
        """A cache import/export, read as buildx reads it and re-emitted in that form."""
        entries = self._csv(O.parse_cache, o.value or "", f"--{o.name}", command)
        if all(e.keys() == {"type", "ref"} and e["type"] == "registry" for e in entries):
            refs = [e["ref"] for e in entries]  # the bare `ref[,ref]` form
            if o.name == "cache-to":
                refs = [self._owned(r, command, d) for r in refs]
            return _with(o, O.write_csv(refs))
        kv = entries[0]
        kind = kv["type"]
        if kind == "local":
            path = kv.get("dest") if o.name == "cache-to" else kv.get("src")
            if path:
                self.inside(path, cwd, f"--{o.name}", command)
        elif kind == "registry":
            if o.name == "cache-to" and "ref" in kv:
                kv = {**kv, "ref": self._owned(kv["ref"], command, d)}
        elif kind != "inline":
            raise self._refuse(command, f"cache type {kind} reaches outside the grading engine")
        return _with(o, O.write_pairs(kv))

    def _owned(self, ref: str, command: str, d: Decision) -> str:
        new, note = self.own(ref, command)
        self._note(d, note)
        return new

    def _output(self, o: Opt, cwd: str, command: str, d: Decision) -> tuple[Opt, bool]:
        """An export, read as buildx's ParseExports reads it and re-emitted in that form."""
        v = o.value or ""
        kv = self._csv(O.parse_output, v, "--output", command)
        kind = kv["type"]
        if kind not in ("local", "tar", "oci", "docker", "image", "registry", "cacheonly"):
            raise self._refuse(command, f"output type {kind} is not supported")
        if kv.get("dest", "-") != "-":  # buildx writes any type's dest= on the client
            self.inside(kv["dest"], cwd, "--output", command)
        if v == kv.get("dest"):
            return o, False  # the bare-path form (a local directory, or - for stdout)
        pushes = O.output_pushes(kv)
        names = [n for n in kv.get("name", "").split(",") if n]
        if names:
            new_names = []
            for name in names:
                new = self._owned(name, command, d)
                self.tag_map[self._key(name)] = new
                new_names.append(new)
                if pushes:
                    d.pushes.append(new)
            kv = {**kv, "name": ",".join(new_names)}
        return _with(o, O.write_pairs(kv)), pushes

    # -- run / push --

    def _run(self, args: list[str], cwd: str, command: str, d: Decision) -> list[str]:
        opts, pos = self._parse(args, O.RUN, command)
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
                v = self._csv(O.parse_network, v, "--network", command)
                if v == "host" or v.startswith("container:"):
                    raise Refused(
                        rules.HOST_NAMESPACE.finding(command=command, option=f"--network {v}")
                    )
                if v not in ("none", "bridge", "default"):
                    raise self._refuse(command, "only the default network or none")
            if name == "volume" and ":" in v:
                raise Refused(rules.HOST_MOUNT.finding(command=command, option=f"-v {v}"))
            if name == "mount":
                mount = self._csv(O.parse_mount, v, "--mount", command)
                if mount["type"] != "tmpfs":
                    raise Refused(rules.HOST_MOUNT.finding(command=command, option=f"--mount {v}"))
            if name == "restart" and v not in ("no", ""):
                raise self._refuse(command, "containers must not outlive the grading")
            if name in ("cidfile", "env-file", "label-file"):
                self.inside(v, cwd, f"--{name}", command)
            if name == "name":
                o = _with(o, self.builder_name(v))
            if name in RUN_LIMITED:
                continue
            out.append(o.token())
        lim = self.limits
        out += [
            f"--label=grader.grading.sandbox={self.label}",
            f"--memory={lim.container_memory}",
            f"--memory-swap={lim.container_memory}",
            f"--pids-limit={lim.container_pids}",
            f"--cpus={lim.cpus:g}",
            "--network=none",
        ]
        return ["run", *out, image, *cmd]

    def _push(self, args: list[str], command: str, d: Decision) -> list[str]:
        opts, pos = self._parse(args, O.PUSH, command)
        if len(pos) != 1:
            raise self._refuse(command, "`docker push` takes one image")
        target = self.mapped(pos[0])
        new, note = self.own(target, command)
        self._note(d, note)
        d.pushes.append(new)
        return ["push", *(o.token() for o in opts), new]


def _with(o: Opt, value: str) -> Opt:
    """The same option with another value (a rewritten name, a re-emitted CSV value)."""
    return dataclasses.replace(o, value=value)
