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

#: The challenge's nbgrader assignment id (its folder in source/ and labs/, its notebook's
#: name, its table entry in grader.course.labs): one name everywhere (tests/unit test it).
ASSIGNMENT = "07-challenge"

#: Lab 08's GitHub Actions workflow (``grader.grading.checks.workflow``, rules GA5xx): graded in the
#: lab, never part of the challenge's report.
WORKFLOW_CRITERIA: tuple[Criterion, ...] = (
    Criterion("ga-valid", "the workflow is valid: a trigger, jobs, pinned actions", 1, "static"),
    Criterion("ga-setup", "QEMU and Buildx are set up before the build", 1, "static"),
    Criterion("ga-platforms", "build-push-action builds linux/amd64 and linux/arm64", 1, "static"),
    Criterion("ga-push", "the image is pushed with tags, after a registry login", 1, "static"),
    Criterion("ga-cache", "the build reads and writes a cache", 1, "static"),
    Criterion("ga-provenance", "attestations are chosen explicitly, with no secrets", 1, "static"),
)

WORKFLOW_BY_ID = {c.id: c for c in WORKFLOW_CRITERIA}
