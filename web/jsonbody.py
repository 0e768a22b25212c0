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
    if nests_deeper(value, max_depth):
        raise TooDeep(max_depth)
    return value


def nests_deeper(value: Any, limit: int) -> bool:
    """Whether `value` holds more than `limit` arrays and objects one inside the other.

    A walk with a stack of its own, not recursion, so any depth can be measured."""
    containers = (dict, list)
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, containers) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, containers))
    return False
