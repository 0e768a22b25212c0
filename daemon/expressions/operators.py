"""Binary and unary operators on template values, with Pebble's (Java's) arithmetic.

Integers stay within 64 bits (an error past that, where Java would wrap), `/` between
two integers truncates toward zero and `%` takes the sign of the dividend, as in
Pebble. `+` adds numbers and joins two texts or two lists; `~` prints both sides and
joins them. Every operator that can grow a value checks the size budget first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ExpressionError
from .functions import inclusive_range
from .runtime import Runtime
from .values import checked_int, is_list, is_number, ordered, type_name

Operator = Callable[[Runtime, Any, Any], Any]


def _refuse(op: str, left: Any, right: Any) -> ExpressionError:
    return ExpressionError(f"cannot apply '{op}' to {type_name(left)} and {type_name(right)}")


def _numbers(op: str, left: Any, right: Any) -> None:
    if not (is_number(left) and is_number(right)):
        raise _refuse(op, left, right)


def _result(value: Any) -> Any:
    return checked_int(value) if type(value) is int else value


def add(rt: Runtime, left: Any, right: Any) -> Any:
    if is_number(left) and is_number(right):
        return _result(left + right)
    if isinstance(left, str) and isinstance(right, str):
        rt.check_size(len(left) + len(right))
        return left + right
    if is_list(left) and is_list(right):
        rt.check_size(len(left) + len(right))
        return [*left, *right]
    raise _refuse("+", left, right)


def subtract(rt: Runtime, left: Any, right: Any) -> Any:
    _numbers("-", left, right)
    return _result(left - right)


def multiply(rt: Runtime, left: Any, right: Any) -> Any:
    _numbers("*", left, right)
    return _result(left * right)


def divide(rt: Runtime, left: Any, right: Any) -> Any:
    _numbers("/", left, right)
    if right == 0:
        raise ExpressionError("division by zero")
    if isinstance(left, int) and isinstance(right, int):
        quotient = abs(left) // abs(right)
        return _result(quotient if (left < 0) == (right < 0) else -quotient)
    return left / right


def modulo(rt: Runtime, left: Any, right: Any) -> Any:
    _numbers("%", left, right)
    if right == 0:
        raise ExpressionError("division by zero")
    if isinstance(left, int) and isinstance(right, int):
        rest = abs(left) % abs(right)
        return rest if left >= 0 else -rest
    return math.fmod(left, right)


def concat(rt: Runtime, left: Any, right: Any) -> str:
    first, second = rt.text(left), rt.text(right)
    rt.check_size(len(first) + len(second))
    return first + second


def negate(value: Any) -> Any:
    if not is_number(value):
        raise ExpressionError(f"cannot apply '-' to {type_name(value)}")
    return _result(-value)


def positive(value: Any) -> Any:
    if not is_number(value):
        raise ExpressionError(f"cannot apply '+' to {type_name(value)}")
    return value


def contains(rt: Runtime, haystack: Any, needle: Any) -> bool:
    """`needle in haystack`: a substring, a list item, or a map key."""
    if isinstance(haystack, str):
        if not isinstance(needle, str):
            raise ExpressionError(f"cannot look for {type_name(needle)} in text")
        return needle in haystack
    if is_list(haystack):
        rt.charge(len(haystack))
        return any(rt.equal(needle, item) for item in haystack)
    if isinstance(haystack, Mapping):
        return isinstance(needle, str | int | float) and needle in haystack
    if haystack is None:
        return False
    raise ExpressionError(f"cannot look into {type_name(haystack)}")


def _compare(op: str, test: Callable[[Any, Any], bool]) -> Operator:
    def compare(rt: Runtime, left: Any, right: Any) -> bool:
        try:
            a, b = ordered(left, right)
        except ExpressionError:
            raise ExpressionError(
                f"cannot compare {type_name(left)} with {type_name(right)} using '{op}'"
            ) from None
        return test(a, b)

    return compare


BINARY: dict[str, Operator] = {
    "+": add,
    "-": subtract,
    "*": multiply,
    "/": divide,
    "%": modulo,
    "~": concat,
    "==": lambda rt, a, b: rt.equal(a, b),
    "!=": lambda rt, a, b: not rt.equal(a, b),
    "<": _compare("<", lambda a, b: bool(a < b)),
    ">": _compare(">", lambda a, b: bool(a > b)),
    "<=": _compare("<=", lambda a, b: bool(a <= b)),
    ">=": _compare(">=", lambda a, b: bool(a >= b)),
    "in": lambda rt, a, b: contains(rt, b, a),
    "contains": contains,
    "..": inclusive_range,
}
