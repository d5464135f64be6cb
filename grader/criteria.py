"""The challenge's grading criteria: stable ids, titles, points, and what each needs to run.

``needs`` is "static" (build.sh and Dockerfile only), "registry" (the pushed image) or
"engine" (a Docker engine to build and run). Static-only runs report the others as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Criterion:
    id: str
    title: str
    points: float
    needs: Literal["static", "registry", "engine"]


CRITERIA: tuple[Criterion, ...] = (
    Criterion("buildx", "build.sh builds with `docker buildx build`", 1, "static"),
    Criterion("platforms", "the build targets linux/amd64 and linux/arm64", 1, "static"),
    Criterion("push", "the multi-platform result is pushed to a registry", 1, "static"),
    Criterion("provenance", "attestations are disabled (--provenance=false)", 1, "static"),
    Criterion(
        "builder", "a multi-platform builder is created or selected idempotently", 1, "static"
    ),
    Criterion(
        "cross-compile", "every stage in the image is built for $TARGETPLATFORM", 2, "static"
    ),
    Criterion("build", "the Dockerfile builds for both platforms", 1, "engine"),
    Criterion("manifest", "the pushed index lists linux/amd64 and linux/arm64", 1, "registry"),
    Criterion(
        "image-arch", "each platform's config and binary match its index entry", 1, "registry"
    ),
    Criterion("runs", "the image starts and exits 0 on each platform", 1, "engine"),
    Criterion("idempotent", "build.sh succeeds when run twice", 1, "engine"),
)

BY_ID = {c.id: c for c in CRITERIA}
