"""Base images for the course's Dockerfiles, built here from Debian packages.

No container registry is reachable on the machines the course is developed and tested on,
so ``FROM python:3.11-slim`` would fail. The course registry doubles as dockerd's mirror for
Docker Hub names, and this module fills it with honest local stand-ins, each for
linux/amd64 and linux/arm64 (busybox and debian also for linux/arm/v7), labelled as such.
Each image carries the hash of its recipe and is rebuilt only when the recipe changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from grader import proc
from grader.docker.registry import RegistryClient, RegistryError
from grader.engine.config import ARM_V7, PLATFORMS, Settings
from grader.engine.steps import run_streamed, say, step

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: Slim like the official image: no docs, man pages or locales.
MMDEBSTRAP_ARGS = (
    "--variant=minbase",
    "--include=ca-certificates",
    '--aptopt=APT::Install-Recommends "false"',
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/lintian/*",
)
LABEL_RECIPE = "org.multiplatform-course.recipe"
#: Docker platform -> Debian architecture (mmdebstrap --arch); Docker's arm/v7 is armhf.
DEBIAN_ARCH = {"linux/amd64": "amd64", "linux/arm64": "arm64", ARM_V7: "armhf"}
#: busybox and debian-slim are enough for lab 05's arm/v7 section: its Go is cross-compiled
#: in a $BUILDPLATFORM golang stage, so golang (and python, registry) stay amd64 + arm64.
WITH_ARM_V7 = (*PLATFORMS, ARM_V7)
DESCRIPTION = (
    "Local stand-in built from Debian {suite} packages by multiplatform-course, "
    "not the official Docker Hub image"
)


@dataclass(frozen=True)
class Recipe:
    name: str
    tags: tuple[str, ...]
    rootfs: bool = False
    platforms: tuple[str, ...] = PLATFORMS

    def files(self) -> dict[str, bytes]:
        folder = resources.files("grader.engine") / "recipes" / self.name
        return {f.name: f.read_bytes() for f in sorted(folder.iterdir(), key=lambda f: f.name)}

    def digest(self) -> str:
        """Hash of everything that shapes the image: recipe files, and for rootfs images the
        mmdebstrap arguments; and its platforms. Images that build FROM another recipe include
        its hash."""
        h = hashlib.sha256()
        for name, data in self.files().items():
            h.update(name.encode() + b"\0" + data + b"\0")
        h.update(repr(self.platforms).encode())
        if self.rootfs:
            h.update(repr((DEBIAN_SUITE, MMDEBSTRAP_ARGS)).encode())
        if self.name != "debian":
            h.update(RECIPES[0].digest().encode())
        return h.hexdigest()[:16]


#: Built in order: later recipes are FROM debian:bookworm-slim.
RECIPES: tuple[Recipe, ...] = (
    Recipe(
        "debian",
        ("debian:bookworm-slim", "debian:bookworm", "debian:12-slim", "debian:12"),
        rootfs=True,
        platforms=WITH_ARM_V7,
    ),
    Recipe("busybox", ("busybox:latest", "busybox:stable"), platforms=WITH_ARM_V7),
    Recipe("python", ("python:3.11-slim", "python:3.11-slim-bookworm", "python:3.11")),
    Recipe("golang", ("golang:1.19", "golang:1.19-bookworm")),
    # Lab 09 starts a registry of its own, as guides do with `docker run registry:2`.
    Recipe("registry", ("registry:2", "registry:2.8")),
)


def repo_for(host: str, tag: str) -> str:
    """``python:3.11-slim`` -> ``127.0.0.1:5000/library/python:3.11-slim`` (mirror layout)."""
    name = tag if "/" in tag.split(":")[0] else f"library/{tag}"
    return f"{host}/{name}"


def current_recipe(
    client: RegistryClient, host: str, tag: str, platforms: tuple[str, ...] = PLATFORMS
) -> str | None:
    """The recipe hash of ``tag`` in the registry, if it holds every one of ``platforms``."""
    try:
        index = client.fetch_manifest(repo_for(host, tag))
        if not index.is_index:
            return None
        present = {str(d.normalized_platform) for d in index.manifests if not d.is_attestation}
        if not set(platforms) <= present:
            return None
        first = next(d for d in index.manifests if not d.is_attestation)
        config = client.fetch_config(client.fetch_child(index, first))
        labels = (config.json.get("config") or {}).get("Labels") or {}
        return labels.get(LABEL_RECIPE)
    except (RegistryError, StopIteration):
        return None


def status(host: str, client: RegistryClient | None = None) -> dict[str, dict]:
    """Per image tag: which platforms are present and whether the recipe is current."""
    client = client or RegistryClient(timeout=5)
    out: dict[str, dict] = {}
    for recipe in RECIPES:
        for tag in recipe.tags[:1]:
            platforms: list[str] = []
            try:
                index = client.fetch_manifest(repo_for(host, tag))
                platforms = (
                    sorted(
                        str(d.normalized_platform) for d in index.manifests if not d.is_attestation
                    )
                    if index.is_index
                    else []
                )
            except RegistryError:
                pass
            out[tag] = {
                "platforms": platforms,
                "wanted": list(recipe.platforms),
                "current": current_recipe(client, host, tag, recipe.platforms) == recipe.digest(),
            }
    return out


def _rootfs(cache: Path, arch: str) -> Path:
    """A Debian minbase rootfs tarball for Debian architecture ``arch``, cached by its
    arguments."""
    key = hashlib.sha256(repr((DEBIAN_SUITE, MMDEBSTRAP_ARGS, arch)).encode()).hexdigest()[:16]
    tar = cache / f"rootfs-{arch}-{key}.tar"
    if tar.exists():
        return tar
    for old in cache.glob(f"rootfs-{arch}-*.tar"):
        old.unlink()
    cache.mkdir(parents=True, exist_ok=True)
    partial = tar.with_suffix(".partial.tar")
    with step(
        f"mmdebstrap {DEBIAN_SUITE} for {arch}" + (" (under QEMU)" if arch != _host_arch() else "")
    ):
        run_streamed(
            [
                "mmdebstrap",
                f"--arch={arch}",
                *MMDEBSTRAP_ARGS,
                DEBIAN_SUITE,
                str(partial),
                DEBIAN_MIRROR,
            ],
            timeout=1800,
            show=("I:", "E:", "W:"),
        )
    partial.replace(tar)
    return tar


def _host_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf"}.get(machine, machine)


def rootfs_name(platform: str) -> str:
    """The rootfs file the debian recipe ADDs for ``platform``: ``rootfs-armv7.tar`` for
    linux/arm/v7 (its Dockerfile reads ``${TARGETARCH}${TARGETVARIANT}``)."""
    return "rootfs-" + "".join(platform.split("/")[1:]) + ".tar"


def _keep_build_line(line: str) -> bool:
    # Plain progress: show steps starting and finishing, not every log line.
    return line.startswith("#") and (
        " [" in line[:12] or " DONE " in line or "ERROR" in line or "CACHED" in line
    )


def _add_rootfs(cache: Path, recipe: Recipe, ctx: Path) -> None:
    """Put each platform's rootfs tarball into the build context (a hard link if it can)."""
    for platform in recipe.platforms:
        src = _rootfs(cache, DEBIAN_ARCH[platform])
        dst = ctx / rootfs_name(platform)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy(src, dst)


def build(settings: Settings, recipe: Recipe, client: RegistryClient) -> bool:
    """Build and push ``recipe`` unless the registry already has it; True when built."""
    host = settings.registry_host
    digest = recipe.digest()
    if current_recipe(client, host, recipe.tags[0], recipe.platforms) == digest:
        return False
    with tempfile.TemporaryDirectory(prefix=f"course-{recipe.name}-") as tmp:
        ctx = Path(tmp)
        for name, data in recipe.files().items():
            (ctx / name).write_bytes(data)
        if recipe.rootfs:
            _add_rootfs(settings.state / "base-images", recipe, ctx)
        argv = [
            "docker",
            "buildx",
            "build",
            "--builder",
            "default",
            "--platform",
            ",".join(recipe.platforms),
            "--provenance=false",
            "--sbom=false",
            "--progress=plain",
            "--label",
            f"{LABEL_RECIPE}={digest}",
            "--label",
            "org.opencontainers.image.description=" + DESCRIPTION.format(suite=DEBIAN_SUITE),
            "--label",
            "org.opencontainers.image.vendor=multiplatform-course (local stand-in)",
        ]
        for tag in recipe.tags:
            argv += ["-t", repo_for(host, tag)]
        argv += ["--push", str(ctx)]
        with step(f"build {recipe.tags[0]} for {','.join(recipe.platforms)}"):
            run_streamed(argv, timeout=3600, keep=_keep_build_line)
    return True


def ensure_all(settings: Settings) -> list[str]:
    """Make sure every recipe is in the registry and current; returns the tags built."""
    client = RegistryClient(timeout=10)
    built = []
    for recipe in RECIPES:
        if build(settings, recipe, client):
            built.append(recipe.tags[0])
        else:
            say(f"   {recipe.tags[0]}: up to date (recipe {recipe.digest()})")
    return built


def uses_course_mirror(settings: Settings) -> bool:
    """Whether the engine resolves Docker Hub names through the course registry."""
    done = proc.run(
        ["docker", "info", "--format", "{{json .RegistryConfig.Mirrors}}"],
        timeout=20,
        check=False,
    )
    return settings.registry_host in done.stdout or (
        f"localhost:{settings.registry_port}" in done.stdout
    )
