"""`headwater backfill NAMESPACE FLOW TRIGGER --from … --to …` against a real daemon,
and the daemon's scheduler following pushes.

The daemon deploys a real repository with a daily schedule; the command runs as a user
runs it (server and token from the environment). The executions it causes run to their
end with `trigger.date` set to the time each stands for, and a second backfill of the
same range starts nothing new. A schedule every second shows the scheduler runs in
the daemon and that a push disabling it takes effect at once.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from test_daemon import Repos, RunningDaemon, daemons, headwater, new_repos
from waiting import wait_until

DAILY = """\
id: daily
namespace: sched
tasks:
  - id: say
    type: core.log.Log
    message: "report for {{ trigger.date | date('yyyy-MM-dd') }}"
triggers:
  - id: nightly
    type: core.trigger.Schedule
    cron: "0 6 * * *"
"""
SETTLE_SECONDS = 1.5  # longer than a backfill step: a second backfill had its chance


EVERY_SECOND = """\
id: ticker
namespace: sched
tasks:
  - id: say
    type: core.log.Log
    message: "tick {{ trigger.date }}"
triggers:
  - id: second
    type: core.trigger.Schedule
    cron: "* * * * * *"
    withSeconds: true
"""


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    made = new_repos(tmp_path)
    made.push({"flows/sched/daily.yaml": DAILY}, "a daily report")
    return made


@pytest.fixture
def daemon(tmp_path: Path, repos: Repos) -> Iterator[RunningDaemon]:
    with daemons(tmp_path) as start:
        yield start(f"file://{repos.remote}")


def executions(daemon: RunningDaemon) -> list[dict[str, Any]]:
    """The executions a backfill started (not the schedule itself, at 06:00 UTC)."""
    found = daemon.get("/api/v1/executions/search?namespace=sched&flowId=daily&size=100")
    return [e for e in found["results"] if (e.get("trigger") or {}).get("backfill")]


def test_backfill_runs_each_past_time_once(daemon: RunningDaemon) -> None:
    env = {"HEADWATER_SERVER": daemon.url}
    args = ("backfill", "sched", "daily", "nightly", "--from", "2026-01-01")
    done = headwater(*args, "--to", "2026-01-03T23:00:00Z", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "backfill of sched.daily trigger nightly: 3 time(s) from 2026-01-01T06:00:00Z "
        "to 2026-01-03T06:00:00Z, 10.0 a second"
    )
    ended = wait_until(
        lambda: (
            (found := executions(daemon))
            and len(found) == 3
            and all(e["state"]["current"] == "SUCCESS" for e in found)
            and found
        ),
        what="three backfilled executions to succeed",
    )
    assert sorted(e["trigger"]["date"] for e in ended) == [
        "2026-01-01T06:00:00Z",
        "2026-01-02T06:00:00Z",
        "2026-01-03T06:00:00Z",
    ]
    first = next(e for e in ended if e["trigger"]["date"].startswith("2026-01-01"))
    wait_until(
        lambda: (
            "report for 2026-01-01"
            in [line["message"] for line in daemon.get(f"/api/v1/logs/{first['id']}")]
        ),
        what="the task to log the time it stands for",
    )

    again = headwater(*args, "--to", "2026-01-02T23:00:00Z", env=env)
    assert again.returncode == 0, again.stderr
    time.sleep(SETTLE_SECONDS)
    assert len(executions(daemon)) == 3  # those times fired already: nothing new


def test_backfill_errors_say_what_is_wrong(daemon: RunningDaemon) -> None:
    env = {"HEADWATER_SERVER": daemon.url}
    unknown = headwater(
        "backfill",
        "sched",
        "daily",
        "hourly",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-02",
        env=env,
    )
    assert unknown.returncode == 1
    assert "HTTP 404: flow sched.daily has no Schedule trigger 'hourly' deployed" in unknown.stderr
    future = headwater(
        "backfill",
        "sched",
        "daily",
        "nightly",
        "--from",
        "2026-01-01",
        "--to",
        "2999-01-01",
        env=env,
    )
    assert future.returncode == 1
    assert "HTTP 400: to (2999-01-01T00:00:00Z) is in the future" in future.stderr
    unreadable = headwater(
        "backfill",
        "sched",
        "daily",
        "nightly",
        "--from",
        "last week",
        "--to",
        "2026-01-02",
        env=env,
    )
    assert unreadable.returncode == 1
    assert "HTTP 400: from: cannot read 'last week'" in unreadable.stderr
    assert executions(daemon) == []


def ticks(daemon: RunningDaemon) -> list[str]:
    found = daemon.get("/api/v1/executions/search?namespace=sched&flowId=ticker&size=100")
    return sorted(e["trigger"]["date"] for e in found["results"])


def test_the_daemon_fires_schedules_and_a_push_disables_one_at_once(
    daemon: RunningDaemon, repos: Repos
) -> None:
    deployed = repos.push({"flows/sched/ticker.yaml": EVERY_SECOND}, "tick every second")
    assert daemon.webhook(after=deployed).status == 202
    fired = wait_until(lambda: len(found := ticks(daemon)) >= 3 and found, what="three ticks")
    seconds = [datetime.fromisoformat(date).timestamp() for date in fired]
    assert all(b - a == 1 for a, b in itertools.pairwise(seconds))  # none missed

    off = EVERY_SECOND + "    disabled: true\n"
    stopped = repos.push({"flows/sched/ticker.yaml": off}, "stop ticking")
    assert daemon.webhook(after=stopped).status == 202
    daemon.wait_deployed(stopped)
    time.sleep(0.5)  # a tick that was being written when the deploy committed
    count = len(ticks(daemon))
    time.sleep(SETTLE_SECONDS)
    assert len(ticks(daemon)) == count
