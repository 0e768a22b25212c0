"""Java `DateTimeFormatter` patterns (`yyyy-MM-dd'T'HH:mm`), as Kestra flows write them.

A pattern compiles once (cached) into a list of small functions, one per field or
literal; formatting calls them in turn. Texts are English (Locale.US), week fields
follow US rules (weeks start on Sunday, week 1 holds January 1st), as a Kestra server
with the default locale prints them.

Supported letters: G u y Y D M L d Q q w E e c a h K k H m s S n A N V z O X x Z,
'quoted literals', '' for a quote, and [ ] (optional sections, always printed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from .errors import ExpressionError

Field = Callable[[datetime], str]

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_ORDINALS = ("1st", "2nd", "3rd", "4th")
_RESERVED = "#{}"


def format_java(value: datetime, pattern: str) -> str:
    """`value` printed with the Java pattern `pattern`."""
    return "".join(part(value) for part in compile_pattern(pattern))


@lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> tuple[Field, ...]:
    """The pattern as a sequence of field printers; raises ExpressionError if invalid."""
    parts: list[Field] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "'":
            text, i = _quoted(pattern, i)
            parts.append(_literal(text))
            continue
        if char.isascii() and char.isalpha():
            count = 1
            while i + count < n and pattern[i + count] == char:
                count += 1
            parts.append(_field(char, count, pattern))
            i += count
            continue
        if char in _RESERVED:
            raise ExpressionError(f"date pattern {pattern!r}: reserved character {char!r}")
        if char not in "[]":
            parts.append(_literal(char))
        i += 1
    return tuple(parts)


def _quoted(pattern: str, i: int) -> tuple[str, int]:
    """The literal text of a quoted section starting at `i`, and the index after it."""
    if pattern.startswith("''", i):
        return "'", i + 2
    out: list[str] = []
    i += 1
    while i < len(pattern):
        if pattern[i] == "'":
            if pattern.startswith("''", i):
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        out.append(pattern[i])
        i += 1
    raise ExpressionError(f"date pattern {pattern!r}: unclosed quote")


def _literal(text: str) -> Field:
    return lambda _: text


def _number(get: Callable[[datetime], int], width: int) -> Field:
    return lambda dt: f"{get(dt):0{width}d}"


def _field(letter: str, count: int, pattern: str) -> Field:
    maker = _FIELDS.get(letter)
    if maker is None:
        raise ExpressionError(f"date pattern {pattern!r}: unknown pattern letter {letter!r}")
    field = maker(count)
    if field is None:
        raise ExpressionError(
            f"date pattern {pattern!r}: too many pattern letters {letter * count!r}"
        )
    return field


# -- dates -------------------------------------------------------------------------


def _era(count: int) -> Field | None:
    text = {1: "AD", 2: "AD", 3: "AD", 4: "Anno Domini", 5: "A"}.get(count)
    return None if text is None else _literal(text)


def _year(count: int) -> Field | None:
    if count == 2:
        return lambda dt: f"{dt.year % 100:02d}"
    return _number(lambda dt: dt.year, count)


def _week_year_of(dt: datetime) -> int:
    week_start = dt.date() - timedelta(days=(dt.weekday() + 1) % 7)
    return dt.year + 1 if (week_start + timedelta(days=6)).year > dt.year else dt.year


def _week_of(dt: datetime) -> int:
    week_start = dt.date() - timedelta(days=(dt.weekday() + 1) % 7)
    if (week_start + timedelta(days=6)).year > dt.year:
        return 1
    jan1 = dt.date().replace(month=1, day=1)
    first_start = jan1 - timedelta(days=(jan1.weekday() + 1) % 7)
    return (week_start - first_start).days // 7 + 1


def _week_year(count: int) -> Field | None:
    if count == 2:
        return lambda dt: f"{_week_year_of(dt) % 100:02d}"
    return _number(_week_year_of, count)


def _week(count: int) -> Field | None:
    return _number(_week_of, count) if count <= 2 else None


def _day_of_year(count: int) -> Field | None:
    return _number(lambda dt: dt.timetuple().tm_yday, count) if count <= 3 else None


def _month(count: int) -> Field | None:
    if count <= 2:
        return _number(lambda dt: dt.month, count)
    return _text(count, lambda dt: MONTHS[dt.month - 1])


def _text(count: int, full: Callable[[datetime], str]) -> Field | None:
    if count == 3:
        return lambda dt: full(dt)[:3]
    if count == 4:
        return full
    if count == 5:
        return lambda dt: full(dt)[0]
    return None


def _day(count: int) -> Field | None:
    return _number(lambda dt: dt.day, count) if count <= 2 else None


def _quarter(count: int) -> Field | None:
    def quarter(dt: datetime) -> int:
        return (dt.month - 1) // 3 + 1

    if count <= 2:
        return _number(quarter, count)
    if count == 3:
        return lambda dt: f"Q{quarter(dt)}"
    if count == 4:
        return lambda dt: f"{_ORDINALS[quarter(dt) - 1]} quarter"
    if count == 5:
        return lambda dt: str(quarter(dt))
    return None


def _weekday_name(count: int) -> Field | None:
    if count <= 3:
        return lambda dt: DAYS[dt.weekday()][:3]
    return _text(count, lambda dt: DAYS[dt.weekday()])


def _weekday_number(count: int) -> Field | None:
    if count <= 2:
        return _number(lambda dt: (dt.weekday() + 1) % 7 + 1, count)
    return _weekday_name(count)


# -- times -------------------------------------------------------------------------


def _am_pm(count: int) -> Field | None:
    return (lambda dt: "AM" if dt.hour < 12 else "PM") if count == 1 else None


def _two(get: Callable[[datetime], int]) -> Callable[[int], Field | None]:
    return lambda count: _number(get, count) if count <= 2 else None


def _fraction(count: int) -> Field | None:
    if count > 9:
        return None
    return lambda dt: f"{dt.microsecond * 1000:09d}"[:count]


def _nanos(count: int) -> Field:
    return _number(lambda dt: dt.microsecond * 1000, count)


def _of_day(scale: int) -> Callable[[int], Field]:
    def get(dt: datetime) -> int:
        micros = ((dt.hour * 60 + dt.minute) * 60 + dt.second) * 1_000_000 + dt.microsecond
        return micros * 1000 // scale

    return lambda count: _number(get, count)


# -- zones -------------------------------------------------------------------------


def _offset_seconds(dt: datetime) -> int:
    offset = dt.utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


def offset_text(seconds: int, colon: bool, with_minutes: bool, zero: str | None) -> str:
    """An offset like `+01:00`, `+0100`, `+01`; `zero` replaces a zero offset (`Z`)."""
    if seconds == 0 and zero is not None:
        return zero
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    sep = ":" if colon else ""
    text = f"{sign}{hours:02d}"
    if with_minutes or minutes or secs:
        text += f"{sep}{minutes:02d}"
    if secs:
        text += f"{sep}{secs:02d}"
    return text


def _iso_offset(zero: str | None) -> Callable[[int], Field | None]:
    """`X` (zero offset printed `Z`) and `x` (zero offset printed `+00…`)."""

    def make(count: int) -> Field | None:
        if count > 5:
            return None
        colon = count in (3, 5)
        return lambda dt: offset_text(_offset_seconds(dt), colon, count != 1, zero)

    return make


def _offset_z(count: int) -> Field | None:
    if count <= 3:
        return lambda dt: offset_text(_offset_seconds(dt), False, True, None)
    if count == 4:
        return _gmt(True)
    if count == 5:
        return lambda dt: offset_text(_offset_seconds(dt), True, True, "Z")
    return None


def _gmt(long: bool) -> Field:
    def gmt(dt: datetime) -> str:
        seconds = _offset_seconds(dt)
        if seconds == 0:
            return "GMT"
        if long:
            return "GMT" + offset_text(seconds, True, True, None)
        sign = "-" if seconds < 0 else "+"
        hours, rest = divmod(abs(seconds), 3600)
        return f"GMT{sign}{hours}" + (f":{rest // 60:02d}" if rest else "")

    return gmt


def _localized_offset(count: int) -> Field | None:
    return _gmt(count == 4) if count in (1, 4) else None


def zone_id(dt: datetime) -> str:
    """The zone's id (`Europe/Paris`), or `Z` / an offset for fixed zones."""
    if isinstance(dt.tzinfo, ZoneInfo):
        return dt.tzinfo.key
    return offset_text(_offset_seconds(dt), True, True, "Z")


def _zone_id(count: int) -> Field | None:
    return zone_id if count == 2 else None


def _zone_name(count: int) -> Field | None:
    if count > 4:
        return None
    return lambda dt: dt.tzname() or zone_id(dt)


_FIELDS: dict[str, Callable[[int], Field | None]] = {
    "G": _era,
    "u": _year,
    "y": _year,
    "Y": _week_year,
    "w": _week,
    "D": _day_of_year,
    "M": _month,
    "L": _month,
    "d": _day,
    "Q": _quarter,
    "q": _quarter,
    "E": _weekday_name,
    "e": _weekday_number,
    "c": _weekday_number,
    "a": _am_pm,
    "h": _two(lambda dt: (dt.hour % 12) or 12),
    "K": _two(lambda dt: dt.hour % 12),
    "k": _two(lambda dt: dt.hour or 24),
    "H": _two(lambda dt: dt.hour),
    "m": _two(lambda dt: dt.minute),
    "s": _two(lambda dt: dt.second),
    "S": _fraction,
    "n": _nanos,
    "A": _of_day(1_000_000),
    "N": _of_day(1),
    "V": _zone_id,
    "z": _zone_name,
    "O": _localized_offset,
    "X": _iso_offset("Z"),
    "x": _iso_offset(None),
    "Z": _offset_z,
}
