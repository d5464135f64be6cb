"""What the static checks read, once: build.sh analysed (never run), the build the criteria
judge, and the Dockerfile that build uses, parsed. The build.sh checks (``buildscript``) and
the Dockerfile checks (``dockerfile``) both read a :class:`StaticAnalysis`."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from grader.grading.submission import FileText, read_member
from grader.parse import buildscript as buildsh
from grader.parse import dockerfile
from grader.parse.buildscript import BuildScript, BuildxBuild, platform_key

BUILD_SH = "build.sh"


@dataclass
class StaticAnalysis:
    """What the static checks read; the engine and registry checks may use it too."""

    root: Path
    platforms: tuple[str, ...]
    build_sh: FileText
    script: BuildScript | None = None
    primary: BuildxBuild | None = None  # the build the criteria are about
    dockerfile: str = "Dockerfile"  # the Dockerfile build.sh builds, relative to the submission
    context: str = "."  # the build context, relative to the submission
    dockerfile_note: str = ""  # why that Dockerfile was chosen, when it was a guess
    dockerfile_file: FileText | None = None
    dockerfile_parsed: object | None = None  # grader.parse.dockerfile.Dockerfile
    target: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)

    @property
    def pushed_image(self) -> str | None:
        """The tag build.sh pushes, when it resolves statically (the default ``--image``)."""
        if self.script is None:
            return None
        v = buildsh.pushed_image(self.script, self.platforms)
        return v.text if v is not None and v.known else None


def analyse(root: Path, platforms: tuple[str, ...]) -> StaticAnalysis:
    a = StaticAnalysis(root=root, platforms=tuple(platforms),
                       build_sh=read_member(root, BUILD_SH, buildsh.MAX_SCRIPT_BYTES))  # fmt: skip
    if a.build_sh.text is not None:
        other = _foreign_interpreter(a.build_sh.text)
        if other:
            a.build_sh = FileText(BUILD_SH, problem=other)
    if a.build_sh.text is not None:
        a.script = buildsh.analyse(a.build_sh.text)
        a.primary = primary_build(a.script, a.platforms)
    _choose_dockerfile(a)
    a.dockerfile_file = read_member(root, a.dockerfile, dockerfile.MAX_DOCKERFILE_BYTES)
    if a.dockerfile_file.text is not None:
        a.dockerfile_parsed = dockerfile.parse(a.dockerfile_file.text, a.build_args)
    return a


_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"}


def _foreign_interpreter(text: str) -> str | None:
    """Why build.sh is not a shell script, when its #! line names another interpreter."""
    first = text.split("\n", 1)[0].strip()
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if words and posixpath.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    if not words or posixpath.basename(words[0]) in _SHELLS:
        return None
    return f"its first line `{first}` runs {posixpath.basename(words[0])}, not a shell"


def primary_build(script: BuildScript, required: tuple[str, ...]) -> BuildxBuild | None:
    """The build the criteria judge: the one closest to a multi-platform push."""
    if not script.builds:
        return None

    def rank(b: BuildxBuild):
        keys = {platform_key(p) for p in b.platforms}
        return (buildsh.covers(b.platforms, required), b.exports_to_registry, len(keys),
                not b.where.conditional)  # fmt: skip

    return max(script.builds, key=rank)


def _choose_dockerfile(a: StaticAnalysis) -> None:
    """The Dockerfile the primary build uses: ``-f`` (relative to the working directory),
    else ``CONTEXT/Dockerfile``; ``Dockerfile`` when build.sh does not say."""
    b = a.primary
    if b is None:
        return
    cwd = b.cwd
    context = "."
    if b.context is not None:
        if not b.context.known or "://" in b.context.text or b.context.text in ("-",):
            a.dockerfile_note = f" (the build context {b.context.text} cannot be followed)"
        else:
            context = b.context.text
    a.context = posixpath.normpath(posixpath.join(cwd, context))
    if b.file is not None:
        if b.file.known and b.file.text != "-":
            a.dockerfile = posixpath.normpath(posixpath.join(cwd, b.file.text))
        else:
            a.dockerfile_note = f" (-f {b.file.text} cannot be resolved; read Dockerfile)"
    else:
        a.dockerfile = posixpath.normpath(posixpath.join(a.context, "Dockerfile"))
    if b.target is not None and b.target.known:
        a.target = b.target.text
    a.build_args = {k: v.text for k, v in b.build_args.items() if v.known}
