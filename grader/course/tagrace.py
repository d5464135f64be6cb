"""dockerd's second push and the course registry's tag race, as the ``%%docker`` shim meets them.

With the ``docker`` driver on the containerd image store, buildx 0.13 pushes twice: BuildKit
pushes the image index, then buildx asks dockerd to push it again ("pushing NAME with docker"),
and dockerd 26 sends every manifest to the tag at once, the index last. The course registry
(distribution 2.8) rewrites a tag's link file in place, so a read beside one of those writes
can fail. Two outcomes, both handled by the shim (:mod:`grader.course.magics`) before it exits,
so before the learner's script runs its next command:

- buildx exits 1 with ``ERROR: unexpected status from HEAD request to
  http://REGISTRY/v2/.../manifests/TAG: 500 Internal Server Error`` (:func:`race_error`): the
  build runs again, once (a push is idempotent);
- the second push stops halfway and leaves the tag on one platform's manifest of the index just
  pushed (:func:`repair_pushed_tags`): the tag is pointed back at the index.

Both read only what buildx itself wrote, never what a learner controls: rawjson's lines are
indented JSON (a ``RUN`` line and its output are inside strings), and buildx's own error is the
plain text line that starts with ``ERROR: ``; a failing ``RUN``'s starts ``ERROR: failed to
solve``. Both act only on the course registry (``host:port``, what the magic sets as
``$REGISTRY``): another registry's 500 is that registry's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: rawjson's vertex for buildx's second push: ``"name": "pushing A,B with docker",``.
_WITH_DOCKER = re.compile(r'^\s+"name": "pushing (\S+) with docker",?$')


def race_error(line: str, registry: str) -> bool:
    """``line`` is buildx's own final error for a manifest request to the course registry
    ``registry`` (``host:port``) that was answered 500."""
    if not registry:
        return False
    pattern = (
        r"ERROR: unexpected status from (?:HEAD|GET|PUT) request to https?://"
        + re.escape(registry)
        + r"/v2/\S+/manifests/\S+: 500\b"
    )
    return re.match(pattern, line) is not None


def pushed_with_docker(line: str) -> list[str]:
    """The names buildx's second push ("pushing NAME with docker") sends, from one rawjson
    line; [] for any other line."""
    m = _WITH_DOCKER.match(line)
    return [n for n in m[1].split(",") if n] if m else []


def repair_pushed_tags(
    tags: Iterable[str], digest: str, registry: str, *, docker: str = "docker"
) -> list[str]:
    """Point each of ``tags`` on the course registry ``registry`` back at the image index
    ``digest`` a build just pushed, when it names one of that index's own manifests (what a
    second push that stopped halfway leaves); returns what to say. Only that exact state is
    repaired: a tag that names anything else is the learner's. ``docker``: the real client."""
    from grader.docker.registry import Reference, RegistryClient, RegistryError

    said, client = [], RegistryClient(timeout=10)
    for tag in dict.fromkeys(tags):
        try:
            ref = Reference.parse(tag)
            if ref.host != registry or ref.digest:
                continue
            now = client.fetch_manifest(ref).digest
            if now == digest:
                continue
            index = client.fetch_manifest(ref.with_digest(digest))
        except (RegistryError, ValueError):
            continue
        if now in {d.digest for d in index.manifests}:
            said.append(_retag(tag, ref.with_digest(digest), now, digest, docker))
    return said


def _retag(tag: str, source: object, was: str, digest: str, docker: str) -> str:
    from grader import proc

    argv = [docker, "buildx", "imagetools", "create", "-t", tag, str(source)]
    done = proc.run(argv, timeout=120, check=False)
    outcome = "pointed it back at the index" if done.ok else "could not repair it: push again"
    return (
        f"[course] {tag} named {was[:19]} (one platform's manifest) after the push, not the "
        f'image index {digest[:19]}: dockerd\'s second push ("pushing ... with docker") '
        f"raced in the course registry, which rewrites a tag in place; the course {outcome}."
    )
