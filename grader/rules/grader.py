"""GR0xx: conditions of the grader itself (a check that could not run), for any criterion."""

from __future__ import annotations

from grader.rules.catalogue import Rule, register

ANY_CRITERION = "*"

CHECK_UNAVAILABLE = register(Rule(
    id="GR001", name="check-unavailable", criterion=ANY_CRITERION, severity="error",
    message="the {check} checks are not available in this installation ({detail})",
    hint="Update the course (`git pull`, `pip install -e .`), or run `grader check --static` "
         "for the build.sh and Dockerfile checks only.",
    anti_pattern="grader check submission/   # on an install without grader.checks.{check}",
    best_practice="grader check --static submission/",
    doc="The grader never pretends: a criterion it could not evaluate is `error`, not `pass`.",
))  # fmt: skip

NO_IMAGE = register(Rule(
    id="GR002", name="image-unknown", criterion=ANY_CRITERION, severity="error",
    message="no image to check: {detail}",
    hint="Pass `--image REF`, or give the pushed tag a default in build.sh "
         '(`IMAGE="${IMAGE:-127.0.0.1:5000/challenge/app:latest}"`).',
    anti_pattern='docker buildx build --push -t "$IMAGE" .   # IMAGE never set',
    best_practice='IMAGE="${IMAGE:-127.0.0.1:5000/challenge/app:latest}"\n'
                  'docker buildx build --push -t "$IMAGE" .',
))  # fmt: skip

CHECK_CRASHED = register(Rule(
    id="GR003", name="check-crashed", criterion=ANY_CRITERION, severity="error",
    message="the {check} checks stopped with an unexpected error: {detail}",
    hint="This is a grader bug: report it with the submission that caused it.",
    anti_pattern="(an exception inside a check)",
    best_practice="(checks turn every failure into a finding)",
))  # fmt: skip
