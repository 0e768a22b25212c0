"""Functions: `name(args…)`.

Each function is a plain Python function `fn(runtime, *args, **kwargs)`; `FUNCTIONS`
maps the names a template may call to them (add one there and it exists). Functions
are not values: a template can only call them by name, never read, pass or store one.
The seams they use (`secret`, `read`, `now`) come from the caller's RenderContext.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..errors import HeadwaterError
from .errors import ExpressionError
from .runtime import Runtime
from .values import Tainted, as_aware, is_list, is_number, ordered, type_name


def _name(value: Any, what: str) -> str:
    if isinstance(value, str) and value:
        return value
    raise ExpressionError(f"{what} must be non-empty text, got {type_name(value)}")


def now(rt: Runtime) -> datetime:
    """The caller's clock, timezone-aware (a naive clock is read as UTC)."""
    value = rt.context.now()
    if not isinstance(value, datetime):
        raise ExpressionError("the clock did not return a date-time")
    return as_aware(value)


def secret(rt: Runtime, name: Any) -> str:
    """A secret by name from the caller's store. Errors name the secret, never a value."""
    key = _name(name, "the secret's name")
    lookup = rt.context.secret
    if lookup is None:
        raise ExpressionError(f"secret '{key}' cannot be read here: no secret store is set up")
    try:
        value = lookup(key)
    except LookupError:
        value = None
    except HeadwaterError as exc:
        raise ExpressionError(f"secret '{key}' cannot be read: {exc}") from None
    except Exception as exc:
        reason = type(exc).__name__
        raise ExpressionError(f"secret '{key}' cannot be read ({reason})") from None
    if value is None:
        raise ExpressionError(f"secret '{key}' is not defined")
    if not isinstance(value, str):
        raise ExpressionError(f"secret '{key}' is not text")
    return Tainted(value)


def read(rt: Runtime, path: Any) -> str:
    """The text of a namespace file, through the caller's `read` seam."""
    where = _name(path, "the file path")
    reader = rt.context.read
    if reader is None:
        raise ExpressionError(f"cannot read '{where}': reading files is not available here")
    try:
        text = reader(where)
    except (LookupError, FileNotFoundError):
        raise ExpressionError(f"file '{where}' not found") from None
    except HeadwaterError as exc:
        raise ExpressionError(f"cannot read '{where}': {exc}") from None
    except Exception as exc:
        raise ExpressionError(f"cannot read '{where}' ({type(exc).__name__})") from None
    if not isinstance(text, str):
        raise ExpressionError(f"file '{where}' is not text")
    rt.check_size(len(text))
    return text


def render(rt: Runtime, template: Any) -> Any:
    """Renders text that itself holds expressions, with the same variables."""
    if not isinstance(template, str):
        return template
    return rt.render_source(template)


def from_json(rt: Runtime, text: Any) -> Any:
    if not isinstance(text, str):
        raise ExpressionError(f"expects JSON text, got {type_name(text)}")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ExpressionError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ExpressionError("JSON nested too deeply") from None


def uuid(rt: Runtime) -> str:
    return str(uuidlib.uuid4())


def range_(rt: Runtime, start: Any, end: Any, step: Any = 1) -> list[int]:
    """Pebble's `range`: from `start` to `end` inclusive."""
    return inclusive_range(rt, start, end, step)


def inclusive_range(rt: Runtime, start: Any, end: Any, step: Any = 1) -> list[int]:
    for value in (start, end, step):
        if not (is_number(value) and float(value).is_integer()):
            raise ExpressionError(f"range bounds must be whole numbers, got {type_name(value)}")
    first, last, by = int(start), int(end), int(step)
    if by == 0:
        raise ExpressionError("range step must not be 0")
    count = max(0, (last - first) // by + 1)
    rt.check_size(count)
    return list(range(first, last + (1 if by > 0 else -1), by))


def _extreme(greatest: bool) -> Callable[..., Any]:
    """Pebble's `max(a, b, …)` / `min(a, b, …)`; one list argument works too."""

    def extreme(rt: Runtime, *values: Any) -> Any:
        items = values[0] if len(values) == 1 and is_list(values[0]) else values
        if not items:
            raise ExpressionError("needs at least one value")
        best = items[0]
        for item in items[1:]:
            left, right = ordered(item, best)
            if (left > right) if greatest else (left < right):
                best = item
        return best

    return extreme


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "fromJson": from_json,
    "json": from_json,
    "max": _extreme(greatest=True),
    "min": _extreme(greatest=False),
    "now": now,
    "range": range_,
    "read": read,
    "render": render,
    "secret": secret,
    "uuid": uuid,
}
