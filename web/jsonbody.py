"""JSON from a request body, with a bound on how deeply it nests.

Python's parser recurses once per level: 100,000 opening brackets end in RecursionError,
which no view expects (an answer 500), and a body just under the interpreter's limit
would make every later walk over the value (rendering, storing, masking secrets) recurse
as deep. Every body the API parses goes through `loads`, which refuses both with
`TooDeep`, a ValueError, so callers that already answer 400 to bad JSON do so here too.

Pure functions, no Flask: the git webhook's payload reader uses it as well.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
"""Arrays and objects a body may nest; GitHub's push payload nests 5 deep."""


class TooDeep(ValueError):
    """The JSON nests deeper than allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the JSON nests deeper than {limit} levels of arrays and objects")
        self.limit = limit


def loads(data: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The value of a JSON text; ValueError when it is not JSON, TooDeep when it nests deeper
    than `max_depth` arrays and objects."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise TooDeep(max_depth) from None
    if _openings(data) > max_depth and nests_deeper(value, max_depth):
        raise TooDeep(max_depth)
    return value


def _openings(data: str | bytes) -> int:
    """How many `[` and `{` the text holds: never fewer than the depth (strings may hold
    some too), and counted at C speed, so most bodies need no walk at all."""
    if isinstance(data, bytes):
        return data.count(b"[") + data.count(b"{")
    return data.count("[") + data.count("{")


def nests_deeper(value: Any, limit: int) -> bool:
    """Whether `value`, as json.loads makes it (plain dicts and lists), holds more than
    `limit` arrays and objects one inside the other.

    A walk one level at a time, not recursion, so any depth can be measured; on a large
    body full of arrays and objects it costs less than the parse (bench/http_limits.py)."""
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below = []
        for item in level:
            for child in item.values() if type(item) is dict else item:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
    return False
