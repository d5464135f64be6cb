"""GA5xx: a GitHub Actions workflow that builds and pushes a multi-platform image
(``grader.grading.checks.workflow``, Lab 08). Read statically: nothing runs on GitHub.

Ids are never renumbered. GA50x: reading the workflow (criterion ``ga-valid``); GA51x: QEMU and
Buildx set up before the build (``ga-setup``); GA52x: the build step and its platforms
(``ga-platforms``); GA53x: pushing (``ga-push``); GA54x: the build cache (``ga-cache``); GA55x:
attestations (``ga-provenance``).

Decisions: only ``docker/build-push-action`` steps count as the build (a ``run:`` step with
``docker buildx build`` is reported, not graded, since the Lab 08 task asks for the action);
``${{ matrix.X }}`` in ``platforms``/``runs-on`` is resolved from the job's matrix; any other
expression in ``push`` counts as "pushes sometimes", which is what
``${{ github.event_name != 'pull_request' }}`` means. GitHub's hosted runners are amd64 unless
their label says ``arm`` (``ubuntu-24.04-arm``).
"""

from __future__ import annotations

from grader.grading.rules.catalogue import Rule, register

_GOOD_BUILD = """\
- uses: docker/setup-qemu-action@v3
- uses: docker/setup-buildx-action@v3
- uses: docker/login-action@v3
  with:
    registry: ghcr.io
    username: ${{ github.actor }}
    password: ${{ secrets.GITHUB_TOKEN }}
- uses: docker/build-push-action@v6
  with:
    platforms: linux/amd64,linux/arm64
    push: ${{ github.event_name != 'pull_request' }}
    tags: ghcr.io/${{ github.repository }}:latest
    cache-from: type=gha
    cache-to: type=gha,mode=max
    provenance: false"""

# --- GA50x: reading the workflow ------------------------------------------------------------

NOT_YAML = register(
    Rule(
        id="GA501",
        name="workflow-not-yaml",
        criterion="ga-valid",
        severity="error",
        message="the workflow cannot be read: {why}",
        hint="A workflow is a YAML file of mappings: check the indentation (spaces, never tabs) "
        "around the line named, and that it is saved as UTF-8 text.",
        anti_pattern="jobs:\n  build:\n\truns-on: ubuntu-latest   # a tab",
        best_practice="jobs:\n  build:\n    runs-on: ubuntu-latest",
    )
)

SHAPE = register(
    Rule(
        id="GA502",
        name="workflow-incomplete",
        criterion="ga-valid",
        severity="error",
        message="the workflow has no {what}",
        hint="A workflow needs a trigger (`on: push`), `jobs:`, and in each job `runs-on:` and "
        "a list of `steps:`.",
        anti_pattern="name: build\nsteps:\n  - uses: docker/build-push-action@v6",
        best_practice="on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: docker/build-push-action@v6",
        doc="PyYAML reads a bare `on:` key as the boolean true (YAML 1.1); the checker accepts "
        "both spellings, as GitHub does.",
    )
)

UNPINNED = register(
    Rule(
        id="GA503",
        name="workflow-action-unpinned",
        criterion="ga-valid",
        severity="error",
        message="`uses: {uses}` names no version: GitHub refuses to run the workflow",
        hint="Add a version after `@`: a major tag such as `docker/build-push-action@v6`, or a "
        "full commit SHA for a pinned, reviewable dependency.",
        anti_pattern="- uses: docker/build-push-action",
        best_practice="- uses: docker/build-push-action@v6",
    )
)

MOVING_REF = register(
    Rule(
        id="GA504",
        name="workflow-action-on-branch",
        criterion="ga-valid",
        severity="warning",
        message="`uses: {uses}` follows a branch: every run may get different code",
        hint="Use a release tag (`@v6`) or a commit SHA instead of `@master`/`@main`.",
        anti_pattern="- uses: docker/setup-buildx-action@master",
        best_practice="- uses: docker/setup-buildx-action@v3",
    )
)

# --- GA51x: QEMU and Buildx ----------------------------------------------------------------

NO_QEMU = register(
    Rule(
        id="GA510",
        name="workflow-no-setup-qemu",
        criterion="ga-setup",
        severity="error",
        message="job `{job}` builds {platforms} on a {runner} runner without "
        "docker/setup-qemu-action: RUN steps for those platforms fail with exec format error",
        hint="Add `- uses: docker/setup-qemu-action@v3` before the build (it registers QEMU "
        "in binfmt_misc on the runner), or build each platform on a native runner.",
        anti_pattern="- uses: docker/setup-buildx-action@v3\n- uses: docker/build-push-action@v6\n"
        "  with:\n    platforms: linux/amd64,linux/arm64",
        best_practice=_GOOD_BUILD,
        doc="GitHub's standard hosted runners are amd64 (`ubuntu-latest`); arm64 ones have "
        "`arm` in their label (`ubuntu-24.04-arm`). A matrix that builds each platform on its "
        "own native runner needs no QEMU.",
    )
)

NO_BUILDX = register(
    Rule(
        id="GA511",
        name="workflow-no-setup-buildx",
        criterion="ga-setup",
        severity="error",
        message="job `{job}` runs docker/build-push-action without docker/setup-buildx-action",
        hint="Add `- uses: docker/setup-buildx-action@v3` before the build: it creates a "
        "docker-container builder, which builds several platforms and exports caches; the "
        "runner's default docker driver (classic image store) does neither.",
        anti_pattern="- uses: docker/setup-qemu-action@v3\n- uses: docker/build-push-action@v6",
        best_practice=_GOOD_BUILD,
    )
)

SETUP_AFTER_BUILD = register(
    Rule(
        id="GA512",
        name="workflow-setup-after-build",
        criterion="ga-setup",
        severity="error",
        message="in job `{job}`, {action} (step {setup_step}) comes after the build "
        "(step {build_step})",
        hint="Steps run in order: set up QEMU, then Buildx, then log in, then build.",
        anti_pattern="- uses: docker/build-push-action@v6\n- uses: docker/setup-qemu-action@v3",
        best_practice=_GOOD_BUILD,
        doc="Register emulators before the builder starts: BuildKit reads the platforms it "
        "can run when it boots.",
    )
)

# --- GA52x: the build and its platforms ----------------------------------------------------

NO_BUILD = register(
    Rule(
        id="GA520",
        name="workflow-no-build-push-action",
        criterion="ga-platforms",
        severity="error",
        message="no step uses docker/build-push-action{also}",
        hint="Build with `- uses: docker/build-push-action@v6` and its `platforms`, `push`, "
        "`tags`, `cache-from`/`cache-to` and `provenance` inputs.",
        anti_pattern="- run: docker build -t app .",
        best_practice=_GOOD_BUILD,
    )
)

PLATFORMS_MISSING = register(
    Rule(
        id="GA521",
        name="workflow-platforms-missing",
        criterion="ga-platforms",
        severity="error",
        message="build step {step} of job `{job}` builds {got}; missing {missing}",
        hint="Set `platforms: linux/amd64,linux/arm64` in the step's `with:` (a comma- or "
        "newline-separated list); without it the action builds for the runner only.",
        anti_pattern="- uses: docker/build-push-action@v6\n  with:\n    push: true",
        best_practice="- uses: docker/build-push-action@v6\n  with:\n"
        "    platforms: linux/amd64,linux/arm64\n    push: true",
    )
)

PLATFORM_TWICE = register(
    Rule(
        id="GA522",
        name="workflow-platform-twice",
        criterion="ga-platforms",
        severity="warning",
        message="build step {step} of job `{job}` lists {platform} twice ({spellings})",
        hint="List each platform once: `linux/arm64/v8` is `linux/arm64`, and buildx would put "
        "the same image in the index twice.",
        anti_pattern="platforms: linux/amd64,linux/arm64,linux/arm64/v8",
        best_practice="platforms: linux/amd64,linux/arm64",
    )
)

UNKNOWN_INPUT = register(
    Rule(
        id="GA523",
        name="workflow-unknown-input",
        criterion="ga-platforms",
        severity="error",
        message="build step {step} of job `{job}`: `{key}` is not an input of "
        "docker/build-push-action{suggestion}",
        hint="The action ignores unknown inputs (with only a warning in the log): use the "
        "input names of its README (`platforms`, `cache-from`, `build-args`, ...).",
        anti_pattern="with:\n  platform: linux/amd64,linux/arm64",
        best_practice="with:\n  platforms: linux/amd64,linux/arm64",
    )
)

PLATFORMS_UNRESOLVED = register(
    Rule(
        id="GA524",
        name="workflow-platforms-unresolved",
        criterion="ga-platforms",
        severity="error",
        message="build step {step} of job `{job}`: cannot tell the platforms from `{value}`",
        hint="Write the platforms out (`linux/amd64,linux/arm64`), or take them from the "
        "job's `strategy.matrix` (`${{ matrix.platform }}`).",
        anti_pattern="platforms: ${{ env.PLATFORMS }}",
        best_practice="platforms: linux/amd64,linux/arm64",
    )
)

# --- GA53x: pushing ------------------------------------------------------------------------

NOT_PUSHED = register(
    Rule(
        id="GA530",
        name="workflow-not-pushed",
        criterion="ga-push",
        severity="error",
        message="build step {step} of job `{job}` does not push: the image stays in the "
        "runner's build cache and is lost when the job ends",
        hint="Set `push: true`, or `push: ${{ github.event_name != 'pull_request' }}` to "
        "build pull requests without pushing them.",
        anti_pattern="- uses: docker/build-push-action@v6\n  with:\n"
        "    platforms: linux/amd64,linux/arm64",
        best_practice=_GOOD_BUILD,
    )
)

NO_LOGIN = register(
    Rule(
        id="GA531",
        name="workflow-push-without-login",
        criterion="ga-push",
        severity="error",
        message="build step {step} of job `{job}` pushes to {registry} with no "
        "docker/login-action for it before",
        hint="Log in first: `- uses: docker/login-action@v3` with `registry:` (omit it for "
        "Docker Hub), `username:` and `password:` from secrets (GHCR: `${{ github.actor }}`"
        " and `${{ secrets.GITHUB_TOKEN }}`).",
        anti_pattern="- uses: docker/build-push-action@v6\n  with:\n    push: true\n"
        "    tags: ghcr.io/me/app:latest",
        best_practice=_GOOD_BUILD,
    )
)

PUSH_ON_PR = register(
    Rule(
        id="GA532",
        name="workflow-push-on-pull-request",
        criterion="ga-push",
        severity="warning",
        message="the workflow runs on pull_request and build step {step} always pushes",
        hint="Pull requests from forks get no secrets, so the login fails; push only outside "
        "them: `push: ${{ github.event_name != 'pull_request' }}`.",
        anti_pattern="on: [push, pull_request]\n...\n    push: true",
        best_practice="on: [push, pull_request]\n...\n"
        "    push: ${{ github.event_name != 'pull_request' }}",
    )
)

GHCR_PERMISSION = register(
    Rule(
        id="GA533",
        name="workflow-ghcr-permission",
        criterion="ga-push",
        severity="error",
        message="job `{job}` pushes to ghcr.io with GITHUB_TOKEN but does not grant "
        "`packages: write`",
        hint="Add `permissions: {contents: read, packages: write}` to the job (or the "
        "workflow): new repositories give GITHUB_TOKEN read-only access by default.",
        anti_pattern="jobs:\n  build:\n    runs-on: ubuntu-latest\n    steps: ...",
        best_practice="jobs:\n  build:\n    runs-on: ubuntu-latest\n    permissions:\n"
        "      contents: read\n      packages: write\n    steps: ...",
    )
)

NO_TAGS = register(
    Rule(
        id="GA534",
        name="workflow-push-without-tags",
        criterion="ga-push",
        severity="error",
        message="build step {step} of job `{job}` pushes but names no `tags`",
        hint="Add `tags: REGISTRY/OWNER/IMAGE:TAG` (buildx fails with 'tag is needed when "
        "pushing to registry'); docker/metadata-action can compute them.",
        anti_pattern="with:\n  push: true",
        best_practice="with:\n  push: true\n  tags: ghcr.io/${{ github.repository }}:latest",
    )
)

# --- GA54x: the build cache ----------------------------------------------------------------

NO_CACHE = register(
    Rule(
        id="GA540",
        name="workflow-no-cache",
        criterion="ga-cache",
        severity="error",
        message="build step {step} of job `{job}` uses no build cache: every run starts cold "
        "(and emulated steps are slow)",
        hint="Add `cache-from: type=gha` and `cache-to: type=gha,mode=max` (GitHub's cache "
        "service), or `type=registry,ref=REGISTRY/IMAGE:buildcache` for both.",
        anti_pattern="with:\n  platforms: linux/amd64,linux/arm64\n  push: true",
        best_practice="with:\n  cache-from: type=gha\n  cache-to: type=gha,mode=max",
    )
)

CACHE_ONE_WAY = register(
    Rule(
        id="GA541",
        name="workflow-cache-one-way",
        criterion="ga-cache",
        severity="error",
        message="build step {step} of job `{job}` has `{present}` but no `{absent}`: {why}",
        hint="Use both: `cache-from` reads the cache, `cache-to` writes it.",
        anti_pattern="with:\n  cache-to: type=gha,mode=max",
        best_practice="with:\n  cache-from: type=gha\n  cache-to: type=gha,mode=max",
    )
)

CACHE_MIN_MODE = register(
    Rule(
        id="GA542",
        name="workflow-cache-min-mode",
        criterion="ga-cache",
        severity="warning",
        message="build step {step} of job `{job}` exports `{value}` without mode=max: only "
        "the final image's layers are cached, not the compile stage's",
        hint="Add `mode=max` (`cache-to: type=gha,mode=max`) so intermediate stages, such as "
        "a cross-compiling stage, are cached too.",
        anti_pattern="cache-to: type=gha",
        best_practice="cache-to: type=gha,mode=max",
    )
)

# --- GA55x: attestations -------------------------------------------------------------------

PROVENANCE_IMPLICIT = register(
    Rule(
        id="GA550",
        name="workflow-provenance-implicit",
        criterion="ga-provenance",
        severity="error",
        message="build step {step} of job `{job}` does not set `provenance`: the action adds "
        "a provenance attestation whose level depends on the repository's visibility",
        hint="Choose: `provenance: false` (an index with exactly your platforms, as the "
        "challenge asks), or `provenance: mode=max` to publish how the image was built.",
        anti_pattern="with:\n  platforms: linux/amd64,linux/arm64\n  push: true",
        best_practice="with:\n  platforms: linux/amd64,linux/arm64\n  push: true\n"
        "  provenance: false",
        doc="docker/build-push-action (v4 and later) adds provenance by default: mode=max in "
        "public repositories, mode=min in private ones (docs.docker.com, 'Add SBOM and "
        "provenance attestations with GitHub Actions').",
    )
)

SECRET_BUILD_ARG = register(
    Rule(
        id="GA551",
        name="workflow-secret-in-build-args",
        criterion="ga-provenance",
        severity="error",
        message="build step {step} of job `{job}` passes a secret as a build argument "
        "({arg}): build arguments are recorded in the image history and in max-level "
        "provenance",
        hint="Pass secrets with `secrets:` (`secrets: token=${{ secrets.TOKEN }}`) and read "
        "them in the Dockerfile with `RUN --mount=type=secret,id=token`.",
        anti_pattern="build-args: TOKEN=${{ secrets.TOKEN }}",
        best_practice="secrets: token=${{ secrets.TOKEN }}",
    )
)
