"""GR0xx: conditions of the grader itself (a check that could not run), for any criterion."""

from __future__ import annotations

from grader.grading.rules.catalogue import Rule, register

ANY_CRITERION = "*"

CHECK_UNAVAILABLE = register(Rule(
    id="GR001", name="check-unavailable", criterion=ANY_CRITERION, severity="error",
    message="the {check} checks are not available in this installation ({detail})",
    hint="Update the course (`git pull`, `pip install -e .`), or run `grader check --static` "
         "for the build.sh and Dockerfile checks only.",
    anti_pattern="grader check submission/   # where a check module cannot be imported "
                 "(a dependency missing from the installation)",
    best_practice="grader check --static submission/",
    doc="The grader never pretends: a criterion it could not evaluate is `error`, not `pass`.",
))  # fmt: skip

NO_IMAGE = register(Rule(
    id="GR002", name="image-unknown", criterion=ANY_CRITERION, severity="error",
    message="no image to check: {detail}",
    hint="Pass `--image REF`, or give the pushed tag a default in build.sh "
         '(`IMAGE="${IMAGE:-127.0.0.1:5000/07-challenge/app:latest}"`).',
    anti_pattern='docker buildx build --push -t "$IMAGE" .   # IMAGE never set',
    best_practice='IMAGE="${IMAGE:-127.0.0.1:5000/07-challenge/app:latest}"\n'
                  'docker buildx build --push -t "$IMAGE" .',
))  # fmt: skip

CHECK_CRASHED = register(Rule(
    id="GR003", name="check-crashed", criterion=ANY_CRITERION, severity="error",
    message="the {check} checks stopped with an unexpected error: {detail}",
    hint="This is a grader bug: report it with the submission that caused it.",
    anti_pattern="(an exception inside a check)",
    best_practice="(checks turn every failure into a finding)",
))  # fmt: skip

FINDINGS_DROPPED = register(Rule(
    id="GR004", name="findings-dropped", criterion=ANY_CRITERION, severity="info",
    message="{dropped} more findings of this criterion are not listed (a report keeps {limit})",
    hint="Fix the findings listed first: the rest are often the same mistake repeated.",
    anti_pattern="docker buildx build --a1 --a2 --a3 ... --a60 .   # sixty unknown flags",
    best_practice="docker buildx build --platform linux/amd64,linux/arm64 --push -t r/a .",
    doc="A report keeps at most 50 findings per criterion and 200 in all, each text cut at "
        "1000 characters, so that a hostile submission cannot grow a report, or a batch's "
        "results folder, without bound.",
))  # fmt: skip

COUNTS_AFTER = register(Rule(
    id="GR005", name="counts-after", criterion=ANY_CRITERION, severity="error",
    message="{criterion} counts once {unmet} passes",
    hint="Fix {unmet} first: this criterion builds on it.",
    anti_pattern="(a criterion passed while the one it builds on failed)",
    best_practice="(fix the criteria in the order the report lists them)",
    doc="In a lab's graded cells a criterion scores only when its prerequisites pass, so the "
        "total the notebook prints is the total nbgrader records.",
))  # fmt: skip
