"""``doctor``: what the engine has and lacks, each missing item with its exact remedy.

It exits 0 only when a two-platform build and push can succeed. It reads; it never installs.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field

from grader import proc
from grader.engine import baseimages, services
from grader.engine.config import PLATFORMS, Settings, settings


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


def _docker_json(argv: list[str], timeout: float = 20):
    done = proc.run(argv, timeout=timeout, check=False)
    if not done.ok:
        return None, done
    try:
        return json.loads(done.stdout), done
    except ValueError:
        return None, done


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
    cfg = cfg or settings()
    r = Report()
    system = platform.system()
    r.facts.update(
        system=system,
        machine=platform.machine(),
        state_dir=str(cfg.state),
        registry=cfg.registry_host,
    )
    desktop = system in ("Darwin", "Windows")

    # client
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
        return r

    # engine
    info, done = _docker_json(["docker", "info", "--format", "{{json .}}"], timeout=30)
    engine_ok = bool(info) and not info.get("ServerErrors")
    ours = services.owned_pid(cfg, "dockerd") is not None
    if engine_ok:
        version = info.get("ServerVersion", "?")
        who = (
            "started by the course"
            if ours
            else (
                "Docker Desktop"
                if "desktop" in (info.get("OperatingSystem") or "").lower()
                else "already running"
            )
        )
        r.add("engine", True, f"Docker Engine {version} ({who})")
        r.facts["engine_version"] = version
        major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
        r.add(
            "engine version >= 26",
            major >= 26,
            version,
            "upgrade Docker Engine (Debian bookworm: `grader engine up` takes it from trixie)",
            required=False,
        )
    else:
        why = (info or {}).get("ServerErrors") or done.stderr.strip().splitlines()[-1:] or ["?"]
        remedy = (
            "start Docker Desktop"
            if desktop
            else (
                f"{UP} (as root: installs and starts dockerd)"
                if os.geteuid() == 0
                else f"sudo {UP}"
            )
        )
        was_ours = cfg.pidfile("dockerd").exists()
        detail = "no engine answers: " + str(why[0])[:120]
        if was_ours:
            detail = "the course's dockerd has stopped (see " + str(cfg.logfile("dockerd")) + ")"
        r.add("engine", False, detail, remedy)

    # containerd image store
    if engine_ok:
        driver_status = dict(info.get("DriverStatus") or [])
        containerd_store = driver_status.get("driver-type") == "io.containerd.snapshotter.v1"
        r.facts["containerd_image_store"] = containerd_store
    else:
        containerd_store = False

    # buildx
    bx = proc.run(["docker", "buildx", "version"], timeout=20, check=False)
    r.add(
        "buildx",
        bx.ok,
        bx.stdout.strip() or "the buildx plugin is missing",
        "install buildx (Debian: docker-buildx; Docker Desktop includes it)",
    )

    # builder + platforms
    if engine_ok and bx.ok:
        current = current_builder()
        if current:
            plats = builder_platforms(current)
            driver = current.get("Driver", "?")
            r.facts["builder"] = {"name": current.get("Name"), "driver": driver, "platforms": plats}
            r.facts["drivers"] = sorted({b.get("Driver", "?") for b in builders()})
            multi = driver != "docker" or containerd_store
            r.add(
                "builder",
                multi,
                f"{current.get('Name')} (driver {driver}"
                + (", containerd image store" if driver == "docker" and containerd_store else "")
                + ")",
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
        else:
            r.add("builder", False, "no builder found", "docker buildx create --use")

    # binfmt
    if system == "Linux":
        entries = services.binfmt_entries()
        qemu = {k: v for k, v in entries.items() if k.startswith("qemu-")}
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
    else:
        r.add("binfmt_misc", True, f"provided by Docker Desktop's VM on {system}", required=False)

    # registry
    reg_ok = services.registry_answers(cfg.registry_host)
    r.add(
        "registry",
        reg_ok,
        f"{cfg.registry_host} " + ("answers /v2/" if reg_ok else "does not answer"),
        f"{UP} (starts Debian's docker-registry on {cfg.registry_host})",
    )

    # mirror + base images
    if engine_ok and reg_ok:
        mirror = baseimages.uses_course_mirror(cfg)
        r.facts["mirror"] = mirror
        if mirror:
            st = baseimages.status(cfg.registry_host)
            r.facts["base_images"] = st
            for tag, s in st.items():
                have = set(s["platforms"])
                ok = set(PLATFORMS) <= have
                detail = ", ".join(s["platforms"]) or "absent"
                if ok and not s["current"]:
                    detail += " (recipe changed: `up` rebuilds it)"
                r.add(f"base image {tag}", ok, detail, f"{UP} (builds it from Debian packages)")
        else:
            r.add(
                "base images",
                True,
                "pulled from Docker Hub (this engine does not use the course mirror)",
                required=False,
            )
    return r
