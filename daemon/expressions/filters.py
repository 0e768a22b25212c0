"""Filters: `value | name(args…)`.

Each filter is a plain function `fn(runtime, value, *args, **kwargs)`; its signature
is what the parser checks calls against (signatures.py), and `FILTERS` maps the names a
template may use to them. A filter raises ExpressionError with a plain reason; the
evaluator adds "filter 'name':" in front. Filters that can grow a text or a list check
the size first, so no filter can be used to build something larger than the budget.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote_plus

from . import dates
from .errors import ExpressionError
from .runtime import Runtime
from .values import (
    Undefined,
    checked_int,
    dump_json,
    format_datetime,
    is_empty,
    is_list,
    is_number,
    type_name,
)

_SLUG_DROP = re.compile(r"[^\w\s-]")
_SLUG_DASH = re.compile(r"[-\s_]+")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ExpressionError(f"expects text, got {type_name(value)}")


def _scalar_text(rt: Runtime, value: Any) -> str:
    """Text, or a number or boolean printed as text; anything else is an error."""
    if isinstance(value, str):
        return value
    if is_number(value) or isinstance(value, bool):
        return rt.text(value)
    raise ExpressionError(f"expects text, got {type_name(value)}")


def _list(value: Any) -> list[Any] | tuple[Any, ...]:
    if is_list(value):
        return value  # type: ignore[no-any-return]
    raise ExpressionError(f"expects a list, got {type_name(value)}")


def _int(value: Any, what: str) -> int:
    if is_number(value) and float(value).is_integer():
        return int(value)
    raise ExpressionError(f"{what} must be a whole number, got {type_name(value)}")


# -- text --------------------------------------------------------------------------


def upper(rt: Runtime, value: Any) -> Any:
    return None if value is None else _scalar_text(rt, value).upper()


def lower(rt: Runtime, value: Any) -> Any:
    return None if value is None else _scalar_text(rt, value).lower()


def trim(rt: Runtime, value: Any) -> Any:
    return None if value is None else _scalar_text(rt, value).strip()


def capitalize(rt: Runtime, value: Any) -> Any:
    if value is None:
        return None
    text = _scalar_text(rt, value)
    return text[:1].upper() + text[1:]


def title(rt: Runtime, value: Any) -> Any:
    if value is None:
        return None
    words = re.split(r"(\s+)", _scalar_text(rt, value))
    return "".join(word[:1].upper() + word[1:] for word in words)


def abbreviate(rt: Runtime, value: Any, length: Any) -> Any:
    if value is None:
        return None
    text, width = _scalar_text(rt, value), _int(length, "length")
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def slugify(rt: Runtime, value: Any) -> str:
    text = unicodedata.normalize("NFKD", _scalar_text(rt, value))
    text = text.encode("ascii", "ignore").decode("ascii").lower()
    return _SLUG_DASH.sub("-", _SLUG_DROP.sub("", text)).strip("-")


def replace(rt: Runtime, value: Any, search: Any, replacement: Any = None) -> Any:
    """`replace({'a': 'b', …})` (Pebble) or `replace('a', 'b')`; literal, never a regex."""
    if value is None:
        return None
    text = _scalar_text(rt, value)
    if isinstance(search, Mapping):
        if replacement is not None:
            raise ExpressionError("takes either a map or two texts, not both")
        pairs = [(_scalar_text(rt, k), _scalar_text(rt, v)) for k, v in search.items()]
    elif replacement is None:
        raise ExpressionError("needs a map, or the text to find and its replacement")
    else:
        pairs = [(_scalar_text(rt, search), _scalar_text(rt, replacement))]
    for old, new in pairs:
        rt.check_size(len(text) + text.count(old) * max(0, len(new) - len(old)))
        text = text.replace(old, new)
    return text


def split(rt: Runtime, value: Any, delimiter: Any, limit: Any = None) -> list[str]:
    """Java's `String.split` on a literal delimiter: trailing empty parts are dropped."""
    text, sep = _scalar_text(rt, value), _text(delimiter)
    if not sep:
        raise ExpressionError("the delimiter must not be empty")
    if limit is not None and _int(limit, "limit") > 0:
        return text.split(sep, _int(limit, "limit") - 1)
    if sep not in text:
        return [text]
    parts = text.split(sep)
    rt.charge(len(parts))
    while parts and not parts[-1]:
        parts.pop()
    return parts


def starts_with(rt: Runtime, value: Any, prefix: Any) -> bool:
    return _scalar_text(rt, value).startswith(_scalar_text(rt, prefix))


def ends_with(rt: Runtime, value: Any, suffix: Any) -> bool:
    return _scalar_text(rt, value).endswith(_scalar_text(rt, suffix))


def _substring(before: bool, last: bool) -> Callable[[Runtime, Any, Any], str]:
    """Kestra's substringBefore/After[Last] (Apache Commons semantics)."""

    def cut(rt: Runtime, value: Any, separator: Any) -> str:
        text, sep = _scalar_text(rt, value), _scalar_text(rt, separator)
        index = text.rfind(sep) if last else text.find(sep)
        if index < 0:
            return text if before else ""
        return text[:index] if before else text[index + len(sep) :]

    return cut


def urlencode(rt: Runtime, value: Any) -> str:
    encoded = quote_plus(_scalar_text(rt, value), safe="*")
    rt.check_size(len(encoded))
    return encoded


def string(rt: Runtime, value: Any) -> str:
    return rt.text(value)


# -- encodings and hashes ----------------------------------------------------------


def to_json(rt: Runtime, value: Any) -> str:
    return dump_json(value, rt.context.limits.max_output_chars)


def _hash(name: str) -> Callable[[Runtime, Any], str]:
    def digest(rt: Runtime, value: Any) -> str:
        return hashlib.new(name, _scalar_text(rt, value).encode()).hexdigest()

    return digest


def b64encode(rt: Runtime, value: Any) -> str:
    data = _scalar_text(rt, value).encode()
    rt.check_size((len(data) + 2) // 3 * 4)
    return base64.b64encode(data).decode("ascii")


def b64decode(rt: Runtime, value: Any) -> str:
    try:
        return base64.b64decode(_text(value).strip(), validate=True).decode()
    except (binascii.Error, ValueError):
        raise ExpressionError("not valid base64 text (or not UTF-8 once decoded)") from None


# -- collections -------------------------------------------------------------------


def default(rt: Runtime, value: Any, default: Any) -> Any:
    """Pebble's `default`: `default` when the value is undefined, null or empty."""
    if isinstance(value, Undefined) or is_empty(value):
        return default
    return value


def length(rt: Runtime, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str | Mapping | list | tuple):
        return len(value)
    raise ExpressionError(f"has no length for {type_name(value)}")


def join(rt: Runtime, value: Any, separator: Any = "") -> str:
    items, sep = _list(value), _scalar_text(rt, separator)
    rt.charge(len(items))
    parts: list[str] = []
    size = 0
    for item in items:
        part = rt.text(item)
        size += len(part) + len(sep)
        rt.check_size(size)
        parts.append(part)
    return sep.join(parts)


def first(rt: Runtime, value: Any) -> Any:
    if isinstance(value, str):
        return value[:1]
    items = _list(value)
    return items[0] if items else None


def last(rt: Runtime, value: Any) -> Any:
    if isinstance(value, str):
        return value[-1:]
    items = _list(value)
    return items[-1] if items else None


def keys(rt: Runtime, value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        rt.charge(len(value))
        return list(value.keys())
    raise ExpressionError(f"expects a map, got {type_name(value)}")


def values(rt: Runtime, value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        rt.charge(len(value))
        return list(value.values())
    raise ExpressionError(f"expects a map, got {type_name(value)}")


def _sortable(rt: Runtime, items: list[Any] | tuple[Any, ...]) -> list[Any]:
    rt.charge(len(items))
    if all(isinstance(i, str) for i in items) or all(is_number(i) for i in items):
        return list(items)
    raise ExpressionError("can only sort a list of texts or a list of numbers")


def sort(rt: Runtime, value: Any) -> list[Any]:
    return sorted(_sortable(rt, _list(value)))


def rsort(rt: Runtime, value: Any) -> list[Any]:
    return sorted(_sortable(rt, _list(value)), reverse=True)


def reverse(rt: Runtime, value: Any) -> Any:
    if isinstance(value, str):
        return value[::-1]
    items = _list(value)
    rt.charge(len(items))
    return list(reversed(items))


def unique(rt: Runtime, value: Any) -> list[Any]:
    kept: list[Any] = []
    for item in _list(value):
        rt.charge(len(kept))
        if not any(rt.equal(item, seen) for seen in kept):
            kept.append(item)
    return kept


def slice_(rt: Runtime, value: Any, fromIndex: Any = 0, toIndex: Any = None) -> Any:
    """Pebble's `slice(fromIndex, toIndex)` of a list or a text."""
    begin = _int(fromIndex, "fromIndex")
    stop = None if toIndex is None else _int(toIndex, "toIndex")
    if isinstance(value, str):
        return value[begin:stop]
    items = _list(value)[begin:stop]
    rt.charge(len(items))
    return list(items)


def chunk(rt: Runtime, value: Any, size: Any) -> list[list[Any]]:
    items, step = _list(value), _int(size, "size")
    if step < 1:
        raise ExpressionError("size must be at least 1")
    rt.charge(len(items))
    return [list(items[i : i + step]) for i in range(0, len(items), step)]


def merge(rt: Runtime, value: Any, other: Any) -> Any:
    if isinstance(value, Mapping) and isinstance(other, Mapping):
        rt.charge(len(value) + len(other))
        return {**value, **other}
    left, right = _list(value), _list(other)
    rt.check_size(len(left) + len(right))
    rt.charge(len(left) + len(right))
    return [*left, *right]


# -- numbers -----------------------------------------------------------------------

_NUMBER_TYPES = {"INT": int, "INTEGER": int, "LONG": int, "FLOAT": float, "DOUBLE": float}


def number(rt: Runtime, value: Any, type: Any = None) -> int | float:
    """Text to a number: an int when it reads as one, else a float; or the given type."""
    kind = _NUMBER_TYPES.get(str(type).upper()) if type is not None else None
    if type is not None and kind is None:
        raise ExpressionError(f"unknown number type {type!r}; use INT, LONG, FLOAT or DOUBLE")
    if is_number(value):
        return kind(value) if kind else value  # type: ignore[no-any-return]
    text = _text(value).strip()
    try:
        if kind is float:
            return float(text)
        if kind is int or re.fullmatch(r"[+-]?[0-9]+", text):
            return checked_int(int(text))
        return float(text)
    except ValueError:
        raise ExpressionError(f"cannot read {text[:40]!r} as a number") from None


def abs_(rt: Runtime, value: Any) -> int | float:
    if is_number(value):
        return abs(value)  # type: ignore[no-any-return]
    raise ExpressionError(f"expects a number, got {type_name(value)}")


def round_(rt: Runtime, value: Any, precision: Any = 0) -> int | float:
    """Half away from zero, as Java's HALF_UP; an int when `precision` is 0."""
    if not is_number(value):
        raise ExpressionError(f"expects a number, got {type_name(value)}")
    places = _int(precision, "precision")
    rounded = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return int(rounded) if places <= 0 else float(rounded)


# -- dates -------------------------------------------------------------------------


def date(rt: Runtime, value: Any, format: Any = None, *, timeZone: Any = None) -> str:
    return dates.format_date(value, format, timeZone)


def date_add(
    rt: Runtime,
    value: Any,
    amount: Any,
    unit: Any,
    *,
    format: Any = None,
    timeZone: Any = None,
) -> str:
    moment = dates.add(value, amount, unit)
    if format is None and timeZone is None:
        return format_datetime(moment)
    return dates.format_date(moment, format, timeZone)


def _timestamp(scale: int) -> Callable[[Runtime, Any], int]:
    def timestamp(rt: Runtime, value: Any) -> int:
        return dates.epoch(value, scale)

    return timestamp


FILTERS: dict[str, Callable[..., Any]] = {
    "abbreviate": abbreviate,
    "abs": abs_,
    "b64decode": b64decode,
    "b64encode": b64encode,
    "base64decode": b64decode,
    "base64encode": b64encode,
    "capitalize": capitalize,
    "chunk": chunk,
    "date": date,
    "dateAdd": date_add,
    "default": default,
    "distinct": unique,
    "endsWith": ends_with,
    "first": first,
    "join": join,
    "json": to_json,
    "keys": keys,
    "last": last,
    "length": length,
    "lower": lower,
    "md5": _hash("md5"),
    "merge": merge,
    "number": number,
    "replace": replace,
    "reverse": reverse,
    "round": round_,
    "rsort": rsort,
    "sha1": _hash("sha1"),
    "sha256": _hash("sha256"),
    "sha512": _hash("sha512"),
    "slice": slice_,
    "slugify": slugify,
    "sort": sort,
    "split": split,
    "startsWith": starts_with,
    "string": string,
    "substringAfter": _substring(before=False, last=False),
    "substringAfterLast": _substring(before=False, last=True),
    "substringBefore": _substring(before=True, last=False),
    "substringBeforeLast": _substring(before=True, last=True),
    "timestamp": _timestamp(1),
    "timestampMicro": _timestamp(1_000_000),
    "timestampMilli": _timestamp(1_000),
    "timestampNano": _timestamp(1_000_000_000),
    "title": title,
    "toJson": to_json,
    "trim": trim,
    "unique": unique,
    "upper": upper,
    "urlencode": urlencode,
    "values": values,
}
LENIENT = frozenset({"default"})  # filters that receive undefined values instead of failing

# Checks of literal arguments at parse time (a bad pattern is a validation error).
LITERAL_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "date": dates.check_arguments,
    "dateAdd": dates.check_arguments,
}
