"""``doctor``: what the engine has and lacks, each missing item with its exact remedy.

It exits 0 only when a two-platform build and push can succeed. It reads; it never installs.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field

from grader import proc
from grader.docker import engine_api
from grader.docker.registry import registry_answers
from grader.engine import baseimages, services
from grader.engine.config import ARM_V7, PLATFORMS, Settings, settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    remedy: str = ""
    required: bool = True


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """A two-platform build and push can succeed."""
        return all(c.ok for c in self.checks if c.required)

    def add(self, *args, **kwargs) -> Check:
        c = Check(*args, **kwargs)
        self.checks.append(c)
        return c

    def to_json(self) -> str:
        return json.dumps(
            {"ready": self.ready, "checks": [asdict(c) for c in self.checks], "facts": self.facts},
            indent=2,
        )

    def table(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = []
        for c in self.checks:
            mark = "ok " if c.ok else ("MISSING" if c.required else "warn")
            lines.append(f"{mark:<7} {c.name:<{width}}  {c.detail}")
            if not c.ok and c.remedy:
                lines.append(f"{'':<7} {'':<{width}}  fix: {c.remedy}")
        verdict = (
            "READY: a linux/amd64 + linux/arm64 build and push can succeed."
            if self.ready
            else "NOT READY: fix the MISSING items above (or run `grader engine up`)."
        )
        return "\n".join([*lines, "", verdict])


UP = "grader engine up"


def builders() -> list[dict]:
    """``docker buildx ls`` as a list of builders (buildx >= 0.13 prints JSON lines)."""
    done = proc.run(["docker", "buildx", "ls", "--format", "json"], timeout=30, check=False)
    out = []
    for line in done.stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def current_builder() -> dict | None:
    """The builder ``docker buildx build`` uses now (``buildx inspect`` without a name)."""
    done = proc.run(["docker", "buildx", "inspect"], timeout=60, check=False)
    name = next(
        (
            line.split(":", 1)[1].strip()
            for line in done.stdout.splitlines()
            if line.startswith("Name:")
        ),
        None,
    )
    bs = builders()
    return next((b for b in bs if b.get("Name") == name or b.get("Current")), bs[0] if bs else None)


def builder_platforms(builder: dict) -> list[str]:
    plats: list[str] = []
    for node in builder.get("Nodes") or []:
        for p in node.get("Platforms") or []:
            if p not in plats:
                plats.append(p)
    return plats


def diagnose(cfg: Settings | None = None) -> Report:
    """Every probe in turn; a probe that cannot run without an earlier one (no client, no
    engine) is skipped or reports why."""
    cfg = cfg or settings()
    r = Report()
    r.facts.update(
        system=platform.system(),
        machine=platform.machine(),
        state_dir=str(cfg.state),
        registry=cfg.registry_host,
    )
    if not _probe_client(r):
        return r
    info = _probe_engine(r, cfg)
    containerd_store = _containerd_store(r, info)
    buildx_ok = _probe_buildx(r)
    if info is not None and buildx_ok:
        _probe_builder(r, containerd_store)
    _probe_binfmt(r)
    registry_ok = _probe_registry(r, cfg)
    _probe_scope_port(r, cfg)
    if info is not None and registry_ok:
        _probe_base_images(r, cfg)
    return r


def _probe_client(r: Report) -> bool:
    """The docker CLI; False when there is none (nothing else can be asked)."""
    client = proc.run(
        ["docker", "version", "--format", "{{.Client.Version}}"], timeout=20, check=False
    )
    r.add(
        "docker client",
        client.ok,
        client.stdout.strip() or "not found",
        "install the docker CLI (Debian: docker-cli; or Docker Desktop)",
    )
    if not client.ok and client.returncode == 127:
        r.add("engine", False, "no docker client", UP)
        return False
    return True


def _probe_engine(r: Report, cfg: Settings) -> dict | None:
    """The engine (GET /info) and its version; its info when it answers."""
    info, why_not = engine_api.info(timeout=30)
    if not info or info.get("ServerErrors"):
        _engine_missing(r, cfg, info, why_not)
        return None
    version = info.get("ServerVersion", "?")
    r.add("engine", True, f"Docker Engine {version} ({_whose_engine(cfg, info)})")
    r.facts["engine_version"] = version
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    r.add(
        "engine version >= 26",
        major >= 26,
        version,
        "upgrade Docker Engine (Debian bookworm: `grader engine up` takes it from trixie)",
        required=False,
    )
    return info


def _whose_engine(cfg: Settings, info: dict) -> str:
    if services.owned_pid(cfg, "dockerd") is not None:
        return "started by the course"
    if "desktop" in (info.get("OperatingSystem") or "").lower():
        return "Docker Desktop"
    return "already running"


def _engine_missing(r: Report, cfg: Settings, info: dict | None, why_not: str) -> None:
    why = (info or {}).get("ServerErrors") or why_not.strip().splitlines()[-1:] or ["?"]
    if platform.system() in ("Darwin", "Windows"):
        remedy = "start Docker Desktop"
    elif os.geteuid() == 0:
        remedy = f"{UP} (as root: installs and starts dockerd)"
    else:
        remedy = f"sudo {UP}"
    detail = "no engine answers: " + str(why[0])[:120]
    if cfg.pidfile("dockerd").exists():
        detail = "the course's dockerd has stopped (see " + str(cfg.logfile("dockerd")) + ")"
    r.add("engine", False, detail, remedy)


def _containerd_store(r: Report, info: dict | None) -> bool:
    """Whether the engine keeps images in containerd (multi-platform images load locally)."""
    if info is None:
        return False
    driver_status = dict(info.get("DriverStatus") or [])
    store = driver_status.get("driver-type") == "io.containerd.snapshotter.v1"
    r.facts["containerd_image_store"] = store
    return store


def _probe_buildx(r: Report) -> bool:
    bx = proc.run(["docker", "buildx", "version"], timeout=20, check=False)
    r.add(
        "buildx",
        bx.ok,
        bx.stdout.strip() or "the buildx plugin is missing",
        "install buildx (Debian: docker-buildx; Docker Desktop includes it)",
    )
    return bx.ok


def _probe_builder(r: Report, containerd_store: bool) -> None:
    """The builder `docker buildx build` uses, and whether it builds both platforms."""
    current = current_builder()
    if not current:
        r.add("builder", False, "no builder found", "docker buildx create --use")
        return
    plats = builder_platforms(current)
    driver = current.get("Driver", "?")
    r.facts["builder"] = {"name": current.get("Name"), "driver": driver, "platforms": plats}
    r.facts["drivers"] = sorted({b.get("Driver", "?") for b in builders()})
    store = ", containerd image store" if driver == "docker" and containerd_store else ""
    r.add(
        "builder",
        driver != "docker" or containerd_store,
        f"{current.get('Name')} (driver {driver}{store})",
        "turn on the containerd image store in /etc/docker/daemon.json "
        '({"features":{"containerd-snapshotter":true}}) and restart dockerd, or '
        "`docker buildx create --name multi --driver docker-container --use`",
    )
    missing = [p for p in PLATFORMS if p not in plats]
    r.add(
        "builder platforms",
        not missing,
        ", ".join(plats[:8]) + (" ..." if len(plats) > 8 else ""),
        f"register emulators for {', '.join(missing)}: {UP} (Debian's "
        "qemu-user-static), or `docker run --privileged --rm tonistiigi/binfmt "
        "--install all`; then `docker buildx inspect --bootstrap`",
    )
    _probe_arm_v7(r, plats)


def _probe_arm_v7(r: Report, plats: list[str]) -> None:
    """linux/arm/v7 (lab 05): Docker 26.1.5's builder does not list it even when qemu-arm is
    registered and such builds run, so a registered qemu-arm with F counts too."""
    arm = services.binfmt_entries().get("qemu-arm", {})
    ok = ARM_V7 in plats or "F" in arm.get("flags", "") or platform.machine() != "x86_64"
    detail = (
        "listed by the builder"
        if ARM_V7 in plats
        else "qemu-arm flags " + (arm.get("flags") or "- (not registered)")
    )
    r.add("linux/arm/v7", ok, detail, f"{UP} (registers qemu-arm)", required=False)


def _probe_binfmt(r: Report) -> None:
    """QEMU registered in binfmt_misc with the F flag (Linux; Docker Desktop's VM has it)."""
    system = platform.system()
    if system != "Linux":
        r.add("binfmt_misc", True, f"provided by Docker Desktop's VM on {system}", required=False)
        return
    qemu = {k: v for k, v in services.binfmt_entries().items() if k.startswith("qemu-")}
    r.facts["binfmt"] = qemu
    foreign = "qemu-x86_64" if platform.machine() == "aarch64" else "qemu-aarch64"
    entry = qemu.get(foreign)
    if not services.binfmt_mounted():
        r.add(
            "binfmt_misc",
            False,
            "/proc/sys/fs/binfmt_misc is not mounted",
            "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc (or " + UP + ")",
        )
    elif entry is None:
        r.add(
            "binfmt_misc",
            False,
            f"{foreign} not registered",
            f"{UP} (Debian: apt-get install qemu-user-static binfmt-support; "
            "update-binfmts --enable)",
        )
    else:
        flags = entry.get("flags", "")
        r.add(
            "binfmt_misc",
            "F" in flags and entry.get("enabled") == "enabled",
            f"{len(qemu)} qemu handlers; {foreign} flags {flags or '-'} "
            f"({entry.get('interpreter', '?')})",
            "re-register with the F flag (Debian's qemu-user-static does it; "
            "tonistiigi/binfmt --install all)",
        )


def _probe_registry(r: Report, cfg: Settings) -> bool:
    ok = registry_answers(cfg.registry_host)
    r.add(
        "registry",
        ok,
        f"{cfg.registry_host} " + ("answers /v2/" if ok else "does not answer"),
        f"{UP} (starts Debian's docker-registry on {cfg.registry_host})",
    )
    return ok


def _probe_scope_port(r: Report, cfg: Settings) -> None:
    """The registry scope proxy's port must be one only root may bind (Linux only)."""
    from grader.engine import scope

    if platform.system() != "Linux":
        return
    now = scope.status(cfg)
    listen = now["listen"] or scope.default_listen()
    held = now.get("held") or []  # a former port, kept for engines started before the move
    bad = [a for a in scope.squattable(listen) if a not in held]
    lowest = scope.unprivileged_port_start()
    r.add(
        "scope proxy port",
        not bad,
        f"{', '.join(listen)} ({'running' if now['running'] else 'not running'}; "
        f"ports below {lowest} only root may bind)"
        + (f": {', '.join(bad)} any local user could bind while the proxy is down" if bad else "")
        + (f"; {now['note']}" if held and now.get("note") else ""),
        "sysctl -w net.ipv4.ip_unprivileged_port_start=1024"
        if lowest <= scope.DEFAULT_PORT
        else "grader engine scope stop && grader engine scope start "
        f"(it listens on 127.0.0.1:{scope.DEFAULT_PORT})",
        required=False,
    )


def _probe_base_images(r: Report, cfg: Settings) -> None:
    """The course's base images in its mirror, for both platforms (when the engine uses it)."""
    mirror = baseimages.uses_course_mirror(cfg)
    r.facts["mirror"] = mirror
    if not mirror:
        r.add(
            "base images",
            True,
            "pulled from Docker Hub (this engine does not use the course mirror)",
            required=False,
        )
        return
    st = baseimages.status(cfg.registry_host)
    r.facts["base_images"] = st
    for tag, s in st.items():
        ok = set(s["wanted"]) <= set(s["platforms"])
        detail = ", ".join(s["platforms"]) or "absent"
        if ok and not s["current"]:
            detail += " (recipe changed: `up` rebuilds it)"
        r.add(f"base image {tag}", ok, detail, f"{UP} (builds it from Debian packages)")
