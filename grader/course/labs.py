"""The one table of labs: each lab's title, what its engine cells need, how long it takes, and
what still runs for real without an engine. Lab authors own their own entries."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabInfo:
    title: str
    needs: tuple[str, ...]  # any of "engine", "qemu", "registry"
    minutes: int
    #: What runs for real without an engine (everything else explains and skips).
    runs_for_real: tuple[str, ...]


LABS: dict[str, LabInfo] = {
    "00-welcome": LabInfo(
        "Welcome: what is installed and what each lab needs", (), 15,
        ("the doctor's report of what this machine has and lacks",),
    ),
    "01-exec-format-error": LabInfo(
        "exec format error: whose CPU is this binary for?", ("engine", "qemu"), 30,
        (
            "writing the tiny amd64/arm64 programs and reading their ELF headers",
            "running them: the native one runs, the foreign one only where QEMU is registered",
            "platform strings and their normalisation",
        ),
    ),
    "02-qemu-binfmt": LabInfo(
        "QEMU and binfmt_misc: running foreign binaries", ("engine", "qemu"), 30,
        ("reading binfmt_misc registrations and their flags, where this kernel shows them",),
    ),
    "03-builders": LabInfo(
        "Builders and drivers", ("engine",), 30,
        ("reading the builder commands and why `buildx create` is not idempotent",),
    ),
    "04-build-push": LabInfo(
        "Build and push for several platforms", ("engine", "qemu", "registry"), 40,
        ("static grading of your build.sh (read, not run)",),
    ),
    "05-cross-compile": LabInfo(
        "Cross-compiling stages", ("engine", "qemu", "registry"), 50,
        ("static checks of your Dockerfile: platform ARGs, FROM --platform",),
    ),
    "06-manifests": LabInfo(
        "Manifests and indexes", ("engine", "registry"), 30,
        (
            "manifest inspection of public images (e.g. python:3.11-slim on Docker Hub) through "
            "the registry API with an anonymous token, when this server reaches the internet",
        ),
    ),
    "07-challenge": LabInfo(
        "The challenge: fix a single-platform build", ("engine", "qemu", "registry"), 45,
        ("static grading of your Dockerfile and build.sh; criteria that need a build say so",),
    ),
    "08-beyond": LabInfo(
        "Beyond: cache, Compose and CI", ("engine", "registry"), 40,
        ("static grading of your GitHub Actions workflow and Compose file",),
    ),
    "09-troubleshooting": LabInfo(
        "Troubleshooting: exec format errors, the cache, plain-HTTP registries",
        ("engine", "qemu", "registry"), 30,
        ("static checks of the commands you typed; the error table as text",),
    ),
}  # fmt: skip
