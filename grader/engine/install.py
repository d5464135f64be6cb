"""Installing the engine from Debian's packages (Debian-like Linux, as root only).

Debian bookworm ships docker.io 20.10, no buildx and Compose v1 only, so on bookworm the
engine packages (docker.io, docker-cli, docker-buildx, containerd, and docker-compose: the
v2 CLI plugin) come from trixie with a low pin, and everything else stays on bookworm:
``/usr/bin/python3`` must not change.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from grader import proc
from grader.engine.steps import StepFailed, run_streamed, say, step

ENGINE_PACKAGES = ("docker.io", "docker-cli", "docker-buildx", "containerd", "docker-compose")
#: Compose >= 2.11 builds `build.platforms` (Lab 08); trixie's docker-compose 2.26 is the v2
#: plugin (it depends on libc6 only), bookworm's 1.29 is v1.
MIN_COMPOSE = (2, 11)
SUPPORT_PACKAGES = (
    "qemu-user-static",
    "binfmt-support",
    "docker-registry",
    "mmdebstrap",
    "arch-test",
    "ca-certificates",
    # Worker engines (grader/engine/rootless.py): a rootless dockerd per grading worker.
    "rootlesskit",
    "slirp4netns",
    "uidmap",
    "socat",  # the registry at its loopback address inside each worker engine
    "iptables",
    "e2fsprogs",
)
#: What the test suite needs beyond the engine (browser test, shell linting, the sandbox).
TEST_PACKAGES = ("chromium", "shellcheck", "bubblewrap")

TRIXIE_SOURCE = Path("/etc/apt/sources.list.d/multiplatform-course-trixie.sources")
TRIXIE_PIN = Path("/etc/apt/preferences.d/multiplatform-course-trixie")
MIN_DOCKER = (26, 0)


def os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return {}
    return {
        k: v.strip().strip('"')
        for k, _, v in (line.partition("=") for line in text.splitlines())
        if k
    }


def is_debian_like() -> bool:
    rel = os_release()
    return rel.get("ID") == "debian" or "debian" in rel.get("ID_LIKE", "").split()


def can_install() -> str | None:
    """None when this machine can install the engine; otherwise why not, with what to do."""
    system = platform.system()
    if system != "Linux":
        return (
            f"This is {system}: the course does not install an engine here. Install and start "
            "Docker Desktop (https://docs.docker.com/desktop/), which includes buildx and QEMU, "
            "then run this again."
        )
    if not is_debian_like():
        return (
            "This Linux is not Debian-like, so the course cannot install the engine itself. "
            "Install Docker Engine >= 26 with the buildx plugin, QEMU user emulators registered "
            "in binfmt_misc with the F flag, and a registry, then run this again."
        )
    if os.geteuid() != 0:
        return (
            "No Docker engine answers, and installing one needs root. Run the same command "
            "with sudo, or install Docker Engine >= 26 with buildx "
            "(https://docs.docker.com/engine/install/debian/) plus the packages "
            "qemu-user-static binfmt-support docker-registry, then run this again."
        )
    if not proc.which("apt-get"):
        return "apt-get is missing; install the Docker engine by hand."
    return None


def installed_version(package: str) -> str | None:
    done = proc.run(
        ["dpkg-query", "-W", "-f", "${Status}\t${Version}", package], timeout=30, check=False
    )
    if done.ok and done.stdout.startswith("install ok installed"):
        return done.stdout.split("\t", 1)[1]
    return None


def _version_tuple(version: str) -> tuple[int, int]:
    m = re.match(r"(?:\d+:)?(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2])) if m else (0, 0)


def missing_packages(extra: tuple[str, ...] = (), engine: bool = True) -> list[str]:
    """Packages to install; ``engine=False`` when an engine already runs (maybe Docker's own
    docker-ce packages, which Debian's docker.io must not replace)."""
    missing = [p for p in (*SUPPORT_PACKAGES, *extra) if installed_version(p) is None]
    docker = installed_version("docker.io")
    if engine and (docker is None or _version_tuple(docker) < MIN_DOCKER):
        return missing + list(ENGINE_PACKAGES)
    if engine and installed_version("docker-buildx") is None:
        missing.append("docker-buildx")
    # Compose is a client plugin: added beside Debian's own engine even while it runs (an
    # engine from Docker's docker-ce packages has its own plugin, which ours would clash with).
    if engine or docker is not None:
        compose = installed_version("docker-compose")
        # Elsewhere Compose v1 may be all there is: not asked for again on every `up`.
        if compose is None or (_needs_trixie() and _version_tuple(compose) < MIN_COMPOSE):
            missing.append("docker-compose")
    return missing


def _needs_trixie() -> bool:
    return os_release().get("VERSION_CODENAME") == "bookworm"


def _add_trixie_source() -> None:
    TRIXIE_SOURCE.write_text(
        "# Added by multiplatform-course: Docker Engine >= 26 and buildx come from trixie.\n"
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    TRIXIE_PIN.write_text(
        "# Added by multiplatform-course: never upgrade bookworm packages to trixie.\n"
        "Package: *\nPin: release n=trixie\nPin-Priority: 100\n"
    )


def install_packages(extra: tuple[str, ...] = (), engine: bool = True) -> list[str]:
    """Install what is missing; returns the packages installed. Idempotent."""
    missing = missing_packages(extra, engine)
    if not missing:
        return []
    why = can_install()
    if why:
        raise StepFailed(why)
    python_before = _system_python()
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    engine = [p for p in missing if p in ENGINE_PACKAGES]
    others = [p for p in missing if p not in ENGINE_PACKAGES]
    targets = list(others)
    if engine and _needs_trixie():
        if not TRIXIE_SOURCE.exists():
            _add_trixie_source()
        targets += [f"{p}/trixie" for p in engine]
    else:
        targets += engine
    with step("apt-get update"):
        run_streamed(["apt-get", "update", "-q"], timeout=600, env=env, show=("Err", "E:"))
    with step(f"apt-get install {' '.join(missing)}"):
        run_streamed(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *targets],
            timeout=1800,
            env=env,
            show=("Unpacking", "Setting up", "E:", "Err"),
        )
    python_after = _system_python()
    if python_before != python_after:
        say(f"WARNING: /usr/bin/python3 changed from {python_before} to {python_after}")
    return missing


def _system_python() -> str:
    if not Path("/usr/bin/python3").exists():
        return "absent"
    done = proc.run(["/usr/bin/python3", "--version"], timeout=30, check=False)
    return done.stdout.strip() or done.stderr.strip()
