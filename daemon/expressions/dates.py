"""Date values in templates: reading them, time zones, formatting, arithmetic.

A date filter accepts a datetime, a date, an ISO-8601 string (also Java's
`…+01:00[Europe/Paris]` form) or an epoch number in seconds. Naive values are UTC.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ExpressionError
from .javadate import compile_pattern, format_java
from .values import as_aware, format_datetime, is_number, type_name

_OFFSET = re.compile(r"(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?")
_BRACKET_ZONE = re.compile(r"^(.*)\[([^\]]+)\]$")
_TIME_UNITS = {  # microseconds per unit (nanoseconds round to the nearest microsecond)
    "NANOS": 0.001,
    "MICROS": 1,
    "MILLIS": 1_000,
    "SECONDS": 1_000_000,
    "MINUTES": 60_000_000,
    "HOURS": 3_600_000_000,
    "HALF_DAYS": 43_200_000_000,
}
_DAY_UNITS = {"DAYS": 1, "WEEKS": 7}
_MONTH_UNITS = {"MONTHS": 1, "YEARS": 12, "DECADES": 120, "CENTURIES": 1200}
UNITS = (*_TIME_UNITS, *_DAY_UNITS, *_MONTH_UNITS)


@lru_cache(maxsize=256)
def zone(name: str) -> tzinfo:
    """A time zone by IANA name (`Europe/Paris`), `UTC`/`Z`, or offset (`+02:00`)."""
    if name in ("UTC", "Z", "GMT", "Etc/UTC"):
        return UTC
    found = _OFFSET.fullmatch(name)
    if found:
        sign, hours, minutes = found.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExpressionError(f"unknown time zone {name!r}") from None


def to_datetime(value: Any) -> datetime:
    """`value` as a timezone-aware datetime, or an error saying what it was."""
    if isinstance(value, datetime):
        return as_aware(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if is_number(value):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, ValueError, OSError):
            raise ExpressionError(f"{value} is out of range for an epoch time") from None
    if isinstance(value, str):
        return _parse_iso(value)
    raise ExpressionError(f"expected a date, got {type_name(value)}")


def _parse_iso(text: str) -> datetime:
    bracket = _BRACKET_ZONE.match(text.strip())
    try:
        if bracket:
            parsed = datetime.fromisoformat(bracket.group(1))
            return as_aware(parsed).astimezone(zone(bracket.group(2)))
        return as_aware(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ExpressionError(f"cannot read {text[:60]!r} as an ISO-8601 date") from None


def in_zone(value: datetime, name: Any) -> datetime:
    if name is None:
        return value
    if not isinstance(name, str):
        raise ExpressionError(f"timeZone must be text, got {type_name(name)}")
    return value.astimezone(zone(name))


_NAMED_FORMATS = {
    "iso_date": "yyyy-MM-dd",
    "iso_local_date": "yyyy-MM-dd",
    "iso_local_time": "HH:mm:ss",
    "iso_local_date_time": "yyyy-MM-dd'T'HH:mm:ss",
    "sql": "yyyy-MM-dd HH:mm:ss",
}
_ISO_NAMES = frozenset({"iso", "iso8601", "iso_date_time", "iso_offset_date_time"})


def check_arguments(literals: dict[str, Any]) -> None:
    """Parse-time check of the literal `format`, `timeZone` and `unit` of a date filter."""
    pattern = literals.get("format")
    if isinstance(pattern, str):
        lowered = pattern.lower()
        if lowered not in _ISO_NAMES and lowered != "iso_instant":
            compile_pattern(_NAMED_FORMATS.get(lowered, pattern))
    time_zone = literals.get("timeZone")
    if isinstance(time_zone, str):
        zone(time_zone)
    unit = literals.get("unit")
    if isinstance(unit, str) and unit.upper() not in UNITS:
        raise ExpressionError(f"unknown date unit {unit!r}; use one of {', '.join(UNITS)}")


def format_date(value: Any, pattern: Any, time_zone: Any) -> str:
    """The `date` filter: `value` in `time_zone`, printed with a Java pattern or name."""
    moment = in_zone(to_datetime(value), time_zone)
    if pattern is None or (isinstance(pattern, str) and pattern.lower() in _ISO_NAMES):
        return format_datetime(moment)
    if not isinstance(pattern, str):
        raise ExpressionError(f"the date format must be text, got {type_name(pattern)}")
    if pattern.lower() == "iso_instant":
        return format_datetime(moment.astimezone(UTC))
    return format_java(moment, _NAMED_FORMATS.get(pattern.lower(), pattern))


def add(value: Any, amount: Any, unit: Any) -> datetime:
    """`value` plus `amount` `unit`s, as Java's `ZonedDateTime.plus` does it.

    Time units move along the instant timeline; days, weeks, months and years move the
    local date and keep the local time (so a day across a DST change is 23 or 25 hours).
    """
    moment = to_datetime(value)
    if not is_number(amount) or not float(amount).is_integer():
        raise ExpressionError(f"dateAdd needs a whole number, got {type_name(amount)}")
    name = str(unit).upper() if isinstance(unit, str) else ""
    count = int(amount)
    try:
        if name in _TIME_UNITS:
            shifted = moment.astimezone(UTC) + timedelta(microseconds=count * _TIME_UNITS[name])
            return shifted.astimezone(moment.tzinfo)
        if name in _DAY_UNITS:
            return _local(moment + timedelta(days=count * _DAY_UNITS[name]))
        if name in _MONTH_UNITS:
            return _local(_add_months(moment, count * _MONTH_UNITS[name]))
    except OverflowError:
        raise ExpressionError("dateAdd: the result is out of the supported date range") from None
    raise ExpressionError(f"unknown date unit {unit!r}; use one of {', '.join(UNITS)}")


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise OverflowError
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _local(moment: datetime) -> datetime:
    """Fixes the offset after local-time arithmetic (DST may have changed in between)."""
    return moment.astimezone(UTC).astimezone(moment.tzinfo)


def epoch(value: Any, scale: int) -> int:
    """`value` as whole units since 1970-01-01T00:00Z; `scale` units per second."""
    moment = to_datetime(value)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros * scale // 1_000_000
