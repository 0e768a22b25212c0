"""Java date patterns, time zones, date inputs and dateAdd units."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from headwater.daemon.expressions import (
    ExpressionError,
    ExpressionSyntaxError,
    RenderContext,
    parse,
    render,
)

pytestmark = pytest.mark.unit

MOMENT = datetime(2024, 3, 9, 14, 5, 7, 123456, tzinfo=UTC)  # a Saturday


def fmt(pattern: str, moment: Any = MOMENT, zone: str | None = None) -> str:
    args = repr(pattern) + (f", timeZone={zone!r}" if zone else "")
    return render(f"{{{{ d | date({args}) }}}}", RenderContext(variables={"d": moment}))


def fails(source: str, **variables: Any) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        render(source, RenderContext(variables=variables))
    return caught.value


# -- pattern letters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("yyyy-MM-dd", "2024-03-09"),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2024-03-09T14:05:07.123Z"),
        ("dd/MM/yyyy HH:mm", "09/03/2024 14:05"),
        ("M/d/yy", "3/9/24"),
        ("yy", "24"),
        ("y", "2024"),
        ("uuuu", "2024"),
        ("MMM", "Mar"),
        ("MMMM", "March"),
        ("MMMMM", "M"),
        ("LLL", "Mar"),
        ("d", "9"),
        ("dd", "09"),
        ("D", "69"),
        ("DDD", "069"),
        ("E", "Sat"),
        ("EEE", "Sat"),
        ("EEEE", "Saturday"),
        ("EEEEE", "S"),
        ("e", "7"),
        ("c", "7"),
        ("Q", "1"),
        ("QQ", "01"),
        ("QQQ", "Q1"),
        ("QQQQ", "1st quarter"),
        ("G", "AD"),
        ("GGGG", "Anno Domini"),
        ("H", "14"),
        ("HH", "14"),
        ("h", "2"),
        ("hh", "02"),
        ("K", "2"),
        ("k", "14"),
        ("a", "PM"),
        ("mm", "05"),
        ("m", "5"),
        ("ss", "07"),
        ("s", "7"),
        ("S", "1"),
        ("SSS", "123"),
        ("SSSSSS", "123456"),
        ("SSSSSSSSS", "123456000"),
        ("n", "123456000"),
        ("A", "50707123"),
        ("w", "10"),
        ("ww", "10"),
        ("YYYY", "2024"),
        ("Z", "+0000"),
        ("ZZZZ", "GMT"),
        ("ZZZZZ", "Z"),
        ("X", "Z"),
        ("XX", "Z"),
        ("XXX", "Z"),
        ("x", "+00"),
        ("xx", "+0000"),
        ("xxx", "+00:00"),
        ("O", "GMT"),
        ("z", "UTC"),
        ("VV", "Z"),
    ],
)
def test_pattern_letters(pattern: str, expected: str) -> None:
    assert fmt(pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("yyyy-MM-dd'T'HH:mm:ss", "2024-03-09T14:05:07"),
        ("'Quarter' Q", "Quarter 1"),
        ("h 'o''clock' a", "2 o'clock PM"),
        ("''", "'"),
        ("'yyyy' yyyy", "yyyy 2024"),
        ("yyyy[-MM]", "2024-03"),
        ("HH:mm, dd.MM.", "14:05, 09.03."),
    ],
)
def test_quoted_literals_and_optional_sections(pattern: str, expected: str) -> None:
    assert fmt(pattern) == expected


def test_midnight_and_noon_hour_letters() -> None:
    midnight = datetime(2024, 1, 1, 0, 30, tzinfo=UTC)
    noon = datetime(2024, 1, 1, 12, 30, tzinfo=UTC)
    assert fmt("H h K k a", midnight) == "0 12 0 24 AM"
    assert fmt("H h K k a", noon) == "12 12 0 12 PM"


def test_week_fields_follow_us_rules_at_the_year_end() -> None:
    sunday = datetime(2024, 12, 29, tzinfo=UTC)  # its week holds 2025-01-01
    assert fmt("YYYY-ww", sunday) == "2025-01"
    assert fmt("yyyy", sunday) == "2024"
    assert fmt("YYYY-ww", datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01"


# -- time zones --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "pattern", "expected"),
    [
        ("Europe/Paris", "yyyy-MM-dd HH:mm", "2024-03-09 15:05"),
        ("Europe/Paris", "XXX", "+01:00"),
        ("Europe/Paris", "Z", "+0100"),
        ("Europe/Paris", "X", "+01"),
        ("Europe/Paris", "xx", "+0100"),
        ("Europe/Paris", "z", "CET"),
        ("Europe/Paris", "VV", "Europe/Paris"),
        ("Europe/Paris", "O", "GMT+1"),
        ("Europe/Paris", "OOOO", "GMT+01:00"),
        ("Europe/Paris", "ZZZZ", "GMT+01:00"),
        ("Asia/Kolkata", "HH:mm X XX XXX", "19:35 +0530 +0530 +05:30"),
        ("America/New_York", "yyyy-MM-dd'T'HH:mmXXX z", "2024-03-09T09:05-05:00 EST"),
        ("UTC", "HH:mm XXX", "14:05 Z"),
        ("+02:00", "HH:mm XXX", "16:05 +02:00"),
        ("-03:30", "HH:mm Z", "10:35 -0330"),
    ],
)
def test_time_zones(zone: str, pattern: str, expected: str) -> None:
    assert fmt(pattern, zone=zone) == expected


def test_summer_time_changes_the_offset_and_name() -> None:
    july = datetime(2024, 7, 4, 12, tzinfo=UTC)
    assert fmt("HH:mm XXX z", july, "America/New_York") == "08:00 -04:00 EDT"
    assert fmt("HH:mm XXX z", july, "Europe/Paris") == "14:00 +02:00 CEST"


def test_a_zoned_value_keeps_its_zone_without_time_zone_argument() -> None:
    paris = datetime(2024, 3, 9, 15, 5, tzinfo=ZoneInfo("Europe/Paris"))
    assert fmt("HH:mm VV", paris) == "15:05 Europe/Paris"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime"])
def test_unknown_time_zone_is_an_error(zone: str) -> None:
    error = fails("{{ d | date('yyyy', timeZone=z) }}", d=MOMENT, z=zone)
    assert error.message == f"filter 'date': unknown time zone {zone!r}"


def test_a_literal_unknown_time_zone_is_a_syntax_error() -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse("{{ d | date('yyyy', timeZone='Mars/Olympus') }}")
    assert caught.value.message == "filter 'date': unknown time zone 'Mars/Olympus'"
    assert caught.value.column == 8


# -- pattern errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("yyyy-MM-dd #", "date pattern 'yyyy-MM-dd #': reserved character '#'"),
        ("yyyy B", "date pattern 'yyyy B': unknown pattern letter 'B'"),
        ("'unclosed", 'date pattern "\'unclosed": unclosed quote'),
        ("HHH", "date pattern 'HHH': too many pattern letters 'HHH'"),
        ("SSSSSSSSSS", "date pattern 'SSSSSSSSSS': too many pattern letters 'SSSSSSSSSS'"),
        ("EEEEEE", "date pattern 'EEEEEE': too many pattern letters 'EEEEEE'"),
    ],
)
def test_pattern_errors(pattern: str, message: str) -> None:
    error = fails("{{ d | date(p) }}", d=MOMENT, p=pattern)
    assert error.message == f"filter 'date': {message}"
    with pytest.raises(ExpressionSyntaxError) as caught:  # a literal pattern: at parse time
        parse(f"{{{{ d | date({pattern!r}) }}}}")
    assert caught.value.message == f"filter 'date': {message}"


# -- named formats and inputs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("iso", "2024-03-09T14:05:07.123456Z"),
        ("iso8601", "2024-03-09T14:05:07.123456Z"),
        ("iso_date", "2024-03-09"),
        ("iso_local_date_time", "2024-03-09T14:05:07"),
        ("iso_instant", "2024-03-09T14:05:07.123456Z"),
        ("sql", "2024-03-09 14:05:07"),
    ],
)
def test_named_formats(pattern: str, expected: str) -> None:
    assert fmt(pattern) == expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2024-03-09T14:05:07Z", "2024-03-09 14:05:07 Z"),
        ("2024-03-09T14:05:07.5+01:00", "2024-03-09 14:05:07 +01:00"),
        ("2024-03-09T15:05:07+01:00[Europe/Paris]", "2024-03-09 15:05:07 +01:00"),
        ("2024-03-09", "2024-03-09 00:00:00 Z"),
        ("2024-03-09T14:05:07", "2024-03-09 14:05:07 Z"),
        (1709993107, "2024-03-09 14:05:07 Z"),
        (1709993107.5, "2024-03-09 14:05:07 Z"),
        (date(2024, 3, 9), "2024-03-09 00:00:00 Z"),
        (datetime(2024, 3, 9, 14, 5, 7), "2024-03-09 14:05:07 Z"),
    ],
)
def test_date_inputs(moment: Any, expected: str) -> None:
    assert fmt("yyyy-MM-dd HH:mm:ss XXX", moment) == expected


@pytest.mark.parametrize(
    ("moment", "message"),
    [
        ("yesterday", "filter 'date': cannot read 'yesterday' as an ISO-8601 date"),
        ([1], "filter 'date': expected a date, got a list"),
        (True, "filter 'date': expected a date, got a boolean"),
        (10**20, f"filter 'date': {10**20} is out of range for an epoch time"),
    ],
)
def test_bad_date_inputs(moment: Any, message: str) -> None:
    assert fails("{{ d | date('yyyy') }}", d=moment).message == message


# -- dateAdd -------------------------------------------------------------------------

BASE = datetime(2024, 1, 31, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("amount", "unit", "expected"),
    [
        (3000, "NANOS", "2024-01-31T10:00:00.000003Z"),
        (5, "MICROS", "2024-01-31T10:00:00.000005Z"),
        (250, "MILLIS", "2024-01-31T10:00:00.250000Z"),
        (30, "SECONDS", "2024-01-31T10:00:30Z"),
        (-90, "MINUTES", "2024-01-31T08:30:00Z"),
        (24, "HOURS", "2024-02-01T10:00:00Z"),
        (1, "HALF_DAYS", "2024-01-31T22:00:00Z"),
        (1, "DAYS", "2024-02-01T10:00:00Z"),
        (-31, "DAYS", "2023-12-31T10:00:00Z"),
        (2, "WEEKS", "2024-02-14T10:00:00Z"),
        (1, "MONTHS", "2024-02-29T10:00:00Z"),
        (13, "MONTHS", "2025-02-28T10:00:00Z"),
        (-2, "MONTHS", "2023-11-30T10:00:00Z"),
        (1, "YEARS", "2025-01-31T10:00:00Z"),
        (1, "days", "2024-02-01T10:00:00Z"),
    ],
)
def test_date_add_units(amount: int, unit: str, expected: str) -> None:
    source = f"{{{{ d | dateAdd({amount}, {unit!r}) }}}}"
    assert render(source, RenderContext(variables={"d": BASE})) == expected


def test_date_add_on_a_leap_day() -> None:
    leap = datetime(2024, 2, 29, tzinfo=UTC)
    source = "{{ d | dateAdd(1, 'YEARS') }}"
    assert render(source, RenderContext(variables={"d": leap})) == "2025-02-28T00:00:00Z"


def test_date_add_days_keep_local_time_across_dst_but_hours_do_not() -> None:
    before = datetime(2024, 3, 30, 12, tzinfo=ZoneInfo("Europe/Paris"))
    ctx = RenderContext(variables={"d": before})
    assert render("{{ d | dateAdd(1, 'DAYS') }}", ctx) == "2024-03-31T12:00:00+02:00"
    assert render("{{ d | dateAdd(24, 'HOURS') }}", ctx) == "2024-03-31T13:00:00+02:00"


def test_date_add_of_an_iso_string_with_a_format_and_zone() -> None:
    source = (
        "{{ '2024-01-31T23:30:00Z' | dateAdd(1, 'HOURS',"
        " format='yyyy-MM-dd HH:mm', timeZone='Asia/Tokyo') }}"
    )
    assert render(source, RenderContext(variables={})) == "2024-02-01 09:30"


UNKNOWN_UNIT = (
    "filter 'dateAdd': unknown date unit 'FORTNIGHTS'; use one of NANOS, MICROS,"
    " MILLIS, SECONDS, MINUTES, HOURS, HALF_DAYS, DAYS, WEEKS, MONTHS, YEARS,"
    " DECADES, CENTURIES"
)


def test_a_literal_unknown_unit_is_a_syntax_error() -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse("{{ d | dateAdd(1, 'FORTNIGHTS') }}")
    assert caught.value.message == UNKNOWN_UNIT


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ d | dateAdd(1, u) }}", UNKNOWN_UNIT),
        (
            "{{ d | dateAdd(1.5, 'DAYS') }}",
            "filter 'dateAdd': dateAdd needs a whole number, got a number",
        ),
        (
            "{{ d | dateAdd('1', 'DAYS') }}",
            "filter 'dateAdd': dateAdd needs a whole number, got text",
        ),
        (
            "{{ d | dateAdd(100000, 'YEARS') }}",
            "filter 'dateAdd': dateAdd: the result is out of the supported date range",
        ),
    ],
)
def test_date_add_errors(source: str, message: str) -> None:
    assert fails(source, d=BASE, u="FORTNIGHTS").message == message


def test_timestamp_of_inputs() -> None:
    ctx = RenderContext(variables={"d": "1970-01-01T00:01:00+00:00"})
    assert render("{{ d | timestamp }}", ctx) == "60"
    assert render("{{ '1969-12-31T23:59:59.5Z' | timestamp }}", ctx) == "-1"
