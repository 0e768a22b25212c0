"""The values templates compute with, and how they print, compare and test true.

Templates only ever hold JSON-like data: dict, list, str, int, float, bool, None, plus
datetime and date. Nothing in this package reads a Python attribute of a value by a
name a template chose; that is what keeps Python's internals out of reach
(docs/decisions/0001-expression-language.md). A missing name or key is an `Undefined`
value that remembers why it is missing, so the error can say so.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from .errors import ExpressionError, UndefinedError

INT_MAX = 2**63 - 1  # integers stay within Java's long, as in Pebble; beyond is an error
MISSING: Any = object()  # "no such key" in dict.get, never a template value
FALSY_TEXT = frozenset({"", "false", "0", "-0"})  # Kestra's If task reads these as false


class Tainted(str):
    """Text that is, or was computed from, a secret (`secret('NAME')`).

    Filters, functions and operators given tainted input give tainted results, which the
    caller's `RenderContext.derived` learns of, so a secret upper-cased, reversed, split
    and joined again is masked like the secret itself (issue 11).
    """

    __slots__ = ()


TAINT_DEPTH = 3  # levels of lists and maps looked into for tainted text
TAINT_SCAN_ITEMS = 256  # items of one list or map looked at (big data is not a secret's)


def carries_taint(value: Any, depth: int = TAINT_DEPTH) -> bool:
    """Whether `value` is tainted text or holds some (a few levels deep, first items)."""
    if isinstance(value, Tainted):
        return True
    if not depth or not isinstance(value, list | tuple | dict):
        return False
    items = value.values() if isinstance(value, dict) else value
    return any(carries_taint(item, depth - 1) for item in itertools.islice(items, TAINT_SCAN_ITEMS))


def taint(value: Any, found: list[str], depth: int = TAINT_DEPTH) -> Any:
    """`value` with its text tainted (a few levels deep); the texts are added to `found`."""
    if isinstance(value, str):
        found.append(value)
        return value if isinstance(value, Tainted) else Tainted(value)
    if depth and isinstance(value, list):
        return [taint(item, found, depth - 1) for item in value]
    if depth and isinstance(value, dict):
        return {key: taint(item, found, depth - 1) for key, item in value.items()}
    return value


class Undefined:
    """A name or key that is not there; using it is an error, except where allowed."""

    __slots__ = ("path", "reason")

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason

    def message(self) -> str:
        return f"`{self.path}` is undefined: {self.reason}"

    def error(self) -> UndefinedError:
        return UndefinedError(self.message())

    def __repr__(self) -> str:
        return f"Undefined({self.path!r})"


def type_name(value: Any) -> str:
    """A user's word for the kind of `value`, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, datetime):
        return "a date-time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, Undefined):
        return "undefined"
    return "an unsupported value"


def is_number(value: Any) -> bool:
    """int or float, but not bool (which Python counts as an int)."""
    kind = type(value)
    if kind is int or kind is float:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def checked_int(value: int) -> int:
    """`value`, or an error when it leaves Java's long range (which keeps ints small)."""
    if -INT_MAX - 1 <= value <= INT_MAX:
        return value
    raise ExpressionError("integer overflow: the result does not fit in 64 bits")


def format_datetime(value: datetime) -> str:
    """ISO-8601, with `Z` for UTC (as Kestra prints instants)."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def to_text(value: Any, limit: int) -> str:
    """How a value prints inside text: like Kestra (lists and maps as compact JSON)."""
    kind = type(value)
    if kind is str:
        return str(value)
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return format_float(value)
    return _to_text_slow(value, limit)


def _to_text_slow(value: Any, limit: int) -> str:
    if isinstance(value, Undefined):
        raise value.error()
    if isinstance(value, str):
        return "".join((value,))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return format_float(float(value))
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple):
        return dump_json(value, limit)
    raise ExpressionError(f"cannot print {type_name(value)}")


def truthy(value: Any) -> bool:
    """Pebble's truth, plus Kestra's If-task strings: "", "false", "0", "-0" are false."""
    if value is None or value is False:
        return False
    if value is True:
        return True
    kind = type(value)
    if kind is str:
        return value.strip().lower() not in FALSY_TEXT
    if kind is int or kind is float:
        return bool(value != 0)
    if isinstance(value, Undefined):
        raise value.error()
    if isinstance(value, Mapping | list | tuple | str):
        return len(value) > 0
    if is_number(value):
        return bool(value != 0)
    return True


def is_empty(value: Any) -> bool:
    """Pebble's `empty`: null, blank text, an empty list or map."""
    if value is None:
        return True
    if isinstance(value, Undefined):
        raise value.error()
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Mapping | list | tuple):
        return len(value) == 0
    return False


def equal(left: Any, right: Any, charge: Callable[[int], None]) -> bool:
    """Pebble's `==`: numbers by value, no coercion between kinds, deep for collections.

    `charge` pays one evaluation step per element compared, so comparing shared,
    deeply repeated structures stays within the step budget.
    """
    if is_number(left) and is_number(right):
        return bool(left == right)
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    if is_list(left) and is_list(right):
        charge(len(left))
        return len(left) == len(right) and all(
            equal(a, b, charge) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        charge(len(left))
        if len(left) != len(right):
            return False
        return all(k in right and equal(v, right[k], charge) for k, v in left.items())
    if isinstance(left, datetime) and isinstance(right, datetime):
        return as_aware(left) == as_aware(right)
    if isinstance(left, date) and isinstance(right, date):
        return type(left) is type(right) and left == right
    return left is None and right is None


def as_aware(value: datetime) -> datetime:
    """A naive date-time is read as UTC, everywhere in templates."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def ordered(left: Any, right: Any) -> tuple[Any, Any]:
    """The pair made comparable with `<`, or an error naming the two kinds."""
    if is_number(left) and is_number(right):
        return left, right
    if isinstance(left, str) and isinstance(right, str):
        return left, right
    if isinstance(left, datetime) and isinstance(right, datetime):
        return as_aware(left), as_aware(right)
    if isinstance(left, date) and isinstance(right, date) and type(left) is type(right):
        return left, right
    raise ExpressionError(f"cannot compare {type_name(left)} with {type_name(right)}")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot write {type_name(value)} as JSON")


def measure(value: Any, limit: int) -> int:
    """About how many characters `value` takes as JSON; stops (with an error) past `limit`.

    Walks without recursion, so shared or cyclic structures cost their full size and
    trip the limit instead of the interpreter's stack or memory.
    """
    size = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, Mapping):
            size += 2 + 2 * len(item)
            for key, child in item.items():
                size += len(key) + 2 if isinstance(key, str) else 8
                stack.append(child)
        elif isinstance(item, list | tuple):
            size += 2 + len(item)
            stack.extend(item)
        else:
            size += 8
        if size > limit:
            raise ExpressionError(f"value is too large to print (over {limit} characters)")
    return size


def dump_json(value: Any, limit: int) -> str:
    """Compact JSON, as Kestra (Jackson) writes it; bounded by `limit` characters."""
    measure(value, limit)
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ExpressionError(str(exc)) from None
    except RecursionError:
        raise ExpressionError("value is nested too deeply to print") from None
    if len(text) > limit:
        raise ExpressionError(f"value is too large to print (over {limit} characters)")
    return text
