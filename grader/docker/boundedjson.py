"""JSON from untrusted sources (a registry, build output) with a nesting limit.

``json.loads`` recurses once per nesting level: ``[[[[...`` 200,000 deep raises
RecursionError (not ValueError) in the grader's own stack, and a document that does parse
deeply nested can still blow the stack of code that walks it. ``loads`` counts the nesting
first, in linear time, and refuses anything deeper than ``MAX_DEPTH`` with a ValueError that
says so; what it returns can be walked recursively without risk.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate

#: Real manifests, indexes, configs and buildx progress events nest fewer than 10 levels.
MAX_DEPTH = 64

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


class TooDeep(ValueError):
    """A JSON document nested deeper than the limit."""


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (strings are skipped)."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    if not brackets:
        return 0
    return max(accumulate(1 if c in "[{" else -1 for c in brackets))


def loads(data: str | bytes | bytearray, max_depth: int = MAX_DEPTH):
    """``json.loads`` that raises :class:`TooDeep` (a ValueError) past ``max_depth``."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    found = depth(text)
    if found > max_depth:
        raise TooDeep(f"JSON nested {found} levels deep (the limit is {max_depth})")
    return json.loads(text)
