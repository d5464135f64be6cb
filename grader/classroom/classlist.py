"""The class list: who teaches and who learns, one login per line.

    # lines starting with # are comments
    instructor: grace
    ada
    alan

Logins become system users, home folders and registry namespaces, so they are read as hostile
input: lowercase letters and digits, starting with a letter, ``_`` or ``-`` only between two of
those (a registry path component), at most 30 characters, never a system account's name,
never twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from grader.engine.scope import COURSE_NAMES

#: A registry path component too: separators only between letters or digits.
LOGIN = re.compile(r"(?=.{1,30}\Z)[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*")
#: Names that must never become a learner: accounts Debian and this course use themselves.
RESERVED = frozenset(
    {"root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
     "proxy", "www-data", "backup", "list", "irc", "nobody", "admin", "jupyterhub",
     "instructor-cache", "docker", "registry"}
)  # fmt: skip


class ClassListError(ValueError):
    """The class list cannot be used; the message names the line."""


@dataclass(frozen=True)
class ClassList:
    instructor: str
    learners: tuple[str, ...]

    @property
    def everyone(self) -> tuple[str, ...]:
        return (self.instructor, *self.learners)


def _login(text: str, where: str) -> str:
    if not LOGIN.fullmatch(text):
        raise ClassListError(
            f"{where}: {text!r} is not a login this course accepts (at most 30 of a-z 0-9, "
            "starting with a letter; _ or - only between letters or digits)"
        )
    # scope.COURSE_NAMES: the labs' repositories (lab04), library, cache, autograde, ...: a
    # learner by such a name would claim them from every other learner.
    if text in RESERVED or COURSE_NAMES.fullmatch(text):
        raise ClassListError(f"{where}: {text!r} is a system or course account's name")
    return text


def parse(text: str, source: str = "class list") -> ClassList:
    instructor: str | None = None
    learners: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        key, colon, value = line.partition(":")
        if colon and key.strip() == "instructor":
            if instructor is not None:
                raise ClassListError(f"{where}: a second instructor line (one instructor)")
            name = instructor = _login(value.strip(), where)
        else:
            name = _login(line, where)
            learners.append(name)
        if name in seen:
            raise ClassListError(f"{where}: {name!r} is listed twice")
        seen.add(name)
    if instructor is None:
        raise ClassListError(f"{source}: no `instructor: LOGIN` line")
    if not learners:
        raise ClassListError(f"{source}: no learners")
    return ClassList(instructor, tuple(learners))


def load(path: Path) -> ClassList:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ClassListError(f"{path}: cannot read it ({e})") from e
    return parse(text, str(path))
