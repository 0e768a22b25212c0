"""Tests after `is` / `is not`: `defined`, `null`, `empty`, `even`, `odd`, `iterable`, `map`.

`defined` and `null` take undefined values as an answer (a missing key is not
defined, and is null); every other test fails on an undefined value, as Kestra's
strict variables do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import ExpressionError
from .values import Undefined, is_empty, is_list, is_number, type_name


def _defined(value: Any) -> bool:
    return not isinstance(value, Undefined)


def _null(value: Any) -> bool:
    return value is None or isinstance(value, Undefined)


def _integer(value: Any, test: str) -> int:
    if is_number(value) and float(value).is_integer():
        return int(value)
    raise ExpressionError(f"test '{test}' needs a whole number, got {type_name(value)}")


def _even(value: Any) -> bool:
    return _integer(value, "even") % 2 == 0


def _odd(value: Any) -> bool:
    return _integer(value, "odd") % 2 == 1


def _iterable(value: Any) -> bool:
    return is_list(value)


def _map(value: Any) -> bool:
    return isinstance(value, Mapping)


TESTS: dict[str, Callable[[Any], bool]] = {
    "defined": _defined,
    "null": _null,
    "none": _null,
    "empty": is_empty,
    "even": _even,
    "odd": _odd,
    "iterable": _iterable,
    "map": _map,
}
LENIENT = frozenset({"defined", "null", "none"})  # tests that accept undefined values
