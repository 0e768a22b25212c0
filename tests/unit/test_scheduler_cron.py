"""Cron times on a wall clock (nicknames, seconds, time zones, daylight saving), the
schedules read from a flow's source, and backfill ranges."""

from __future__ import annotations

from datetime import datetime

import pytest

from headwater.daemon.triggers.backfill import BackfillError, parse_moment
from headwater.daemon.triggers.schedule import Cron, read_schedules, utc_text


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def walls(cron: Cron, start: str, end: str) -> list[str]:
    return [cron.wall(t) for t in cron.times(at(start), at(end))]


def test_five_fields_in_utc() -> None:
    cron = Cron("*/20 9 * * 1-5")
    assert walls(cron, "2026-01-09T08:00:00+00:00", "2026-01-12T09:30:00+00:00") == [
        "2026-01-09T09:00:00Z",
        "2026-01-09T09:20:00Z",
        "2026-01-09T09:40:00Z",
        "2026-01-12T09:00:00Z",  # Friday, then Monday
        "2026-01-12T09:20:00Z",
    ]


def test_seconds_come_first_with_with_seconds() -> None:
    cron = Cron("30 0 12 * * *", with_seconds=True)
    assert cron.next_after(at("2026-01-01T00:00:00+00:00")) == at("2026-01-01T12:00:30+00:00")


@pytest.mark.parametrize(
    ("nickname", "after", "expected"),
    [
        ("@hourly", "2026-01-01T10:10:00+00:00", "2026-01-01T11:00:00Z"),
        ("@daily", "2026-01-01T10:10:00+00:00", "2026-01-02T00:00:00Z"),
        ("@weekly", "2026-01-01T10:10:00+00:00", "2026-01-04T00:00:00Z"),  # Sunday
        ("@monthly", "2026-01-01T10:10:00+00:00", "2026-02-01T00:00:00Z"),
        ("@yearly", "2026-01-01T10:10:00+00:00", "2027-01-01T00:00:00Z"),
    ],
)
def test_nicknames(nickname: str, after: str, expected: str) -> None:
    assert utc_text(Cron(nickname).next_after(at(after))) == expected


def test_a_time_zone_moves_the_times_and_trigger_date_carries_its_offset() -> None:
    cron = Cron("0 8 * * *", timezone="America/New_York")
    moment = cron.next_after(at("2026-01-05T00:00:00+00:00"))
    assert utc_text(moment) == "2026-01-05T13:00:00Z"
    assert cron.wall(moment) == "2026-01-05T08:00:00-05:00"


def test_first_from_includes_the_instant_itself() -> None:
    cron = Cron("0 * * * *")
    ten = at("2026-01-05T10:00:00+00:00")
    assert cron.first_from(ten) == ten
    assert cron.next_after(ten) == ten + 3600
    assert cron.previous_before(ten) == ten - 3600


def test_skipped_times_fire_when_the_clock_jumps() -> None:
    cron = Cron("*/30 * * * *", timezone="Europe/Paris")
    assert walls(cron, "2026-03-29T00:45:00+01:00", "2026-03-29T04:00:00+02:00") == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:00 and 02:30 do not exist: both are this one
        "2026-03-29T03:30:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]


def test_repeated_times_fire_at_their_first_occurrence() -> None:
    cron = Cron("*/30 * * * *", timezone="Europe/Paris")
    assert walls(cron, "2026-10-25T01:45:00+02:00", "2026-10-25T03:00:00+01:00") == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T03:00:00+01:00",  # 02:00 and 02:30 come again: not fired again
    ]
    second_pass = at("2026-10-25T02:10:00+01:00")
    assert cron.wall(cron.next_after(second_pass)) == "2026-10-25T03:00:00+01:00"
    assert cron.wall(cron.previous_before(second_pass) or 0) == "2026-10-25T02:30:00+02:00"


def test_latest_counts_back_from_the_end() -> None:
    cron = Cron("0 * * * *")
    latest = cron.latest(at("2026-01-05T00:00:00+00:00"), at("2026-01-05T10:30:00+00:00"), 3)
    assert [utc_text(t) for t in latest] == [
        "2026-01-05T08:00:00Z",
        "2026-01-05T09:00:00Z",
        "2026-01-05T10:00:00Z",
    ]


SOURCE = """
id: etl
namespace: team
labels: {{team: data}}
disabled: {flow_disabled}
pluginDefaults:
  - type: core.trigger.Schedule
    values: {{timezone: Europe/Paris}}
tasks:
  - id: a
    type: core.log.Log
    message: hi
triggers:
  - id: nightly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "@daily"
    labels: {{kind: nightly}}
    stopAfter: [FAILED]
  - id: hook
    type: core.trigger.Webhook
    key: abc
"""


def test_read_schedules_takes_defaults_labels_and_disabled() -> None:
    [spec] = read_schedules("team", "etl", 3, "abc123", SOURCE.format(flow_disabled="false"))
    assert (spec.trigger_id, spec.revision, spec.commit_sha) == ("nightly", 3, "abc123")
    assert spec.cron.timezone == "Europe/Paris"
    assert spec.labels == {"team": "data", "kind": "nightly"}
    assert spec.stop_after == {"FAILED"}
    assert not spec.disabled
    [off] = read_schedules("team", "etl", 4, None, SOURCE.format(flow_disabled="true"))
    assert off.disabled
    assert off.fingerprint != spec.fingerprint


def test_a_flow_without_schedules_is_not_parsed() -> None:
    assert read_schedules("team", "etl", 1, None, "id: etl\nnot: [valid") == []


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2026-01-31T06:00:00Z", "Europe/Paris", "2026-01-31T06:00:00Z"),
        ("2026-01-31T06:00:00", "Europe/Paris", "2026-01-31T05:00:00Z"),
        ("2026-01-31", "UTC", "2026-01-31T00:00:00Z"),
    ],
)
def test_backfill_times(text: str, zone: str, expected: str) -> None:
    assert utc_text(parse_moment(text, "from", zone)) == expected


def test_a_bad_backfill_time_names_its_field() -> None:
    with pytest.raises(BackfillError, match=r"^to: cannot read 'soon'"):
        parse_moment("soon", "to", "UTC")
