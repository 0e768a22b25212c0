"""The scheduler on a real SQLite store, driven by an injected clock: each due time fires
once (restarts, two schedulers on one SQLite or PostgreSQL database), missed times after
downtime follow recoverMissedSchedules, daylight-saving days, deploys by git commits,
stopAfter, bad inputs, and backfill."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import EngineFactory
from gitrepos import WorkingClone, make_remote
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from waiting import wait_until

from headwater.daemon.engine.engine import Engine, EngineSettings
from headwater.daemon.git import Mirror
from headwater.daemon.store.store import EXECUTIONS, TRIGGER_STATES, Row, Tx
from headwater.daemon.sync import Syncer
from headwater.daemon.triggers.backfill import BackfillError, BackfillRunning, TriggerNotFound
from headwater.daemon.triggers.scheduler import MAX_RECOVERED, Scheduler

HOUR = 3600.0


def at(text: str) -> float:
    """An instant from RFC 3339 text."""
    return datetime.fromisoformat(text).timestamp()


def utc(instant: float) -> str:
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule_flow(
    flow_id: str, cron: str, extra: str = "", trigger_id: str = "tick", flow_extra: str = ""
) -> str:
    """A flow in namespace `sched` with one Schedule trigger; `extra` adds trigger
    properties, `flow_extra` flow properties (YAML lines)."""
    lines = [
        f"id: {flow_id}",
        "namespace: sched",
        *flow_extra.splitlines(),
        "tasks:",
        "  - id: say",
        "    type: core.log.Log",
        '    message: "fired for {{ trigger.date }}"',
        "triggers:",
        f"  - id: {trigger_id}",
        "    type: core.trigger.Schedule",
        f'    cron: "{cron}"',
        *(f"    {line}" for line in extra.splitlines()),
    ]
    return "\n".join(lines) + "\n"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class World:
    """An engine (no workers: the scheduler alone), a clock, and schedulers on its store."""

    def __init__(self, engine: Engine, start: float) -> None:
        self.engine = engine
        self.clock = Clock(start)
        self.scheduler = self.new_scheduler()

    def new_scheduler(self) -> Scheduler:
        """Another scheduler on the same store, as after a restart."""
        return Scheduler(self.engine.store, self.engine.executor, self.clock)

    def deploy(self, source: str) -> None:
        self.engine.deploy_source(source, "sched/flow.yaml")
        self.scheduler.deployed()

    def tick(self, when: float, scheduler: Scheduler | None = None) -> float | None:
        self.clock.now = when
        return (scheduler or self.scheduler).tick()

    def run_until(self, end: float, scheduler: Scheduler | None = None) -> None:
        """Tick at every wake time the scheduler asks for, up to `end` (its loop, without
        the sleeping)."""
        wake = self.tick(self.clock.now, scheduler)
        while wake is not None and wake <= end:
            wake = self.tick(max(wake, self.clock.now), scheduler)
        self.clock.now = end

    def executions(self, flow_id: str | None = None) -> list[Row]:
        query = select(EXECUTIONS).order_by(EXECUTIONS.c.created_at, EXECUTIONS.c.trigger_key)
        if flow_id is not None:
            query = query.where(EXECUTIONS.c.flow_id == flow_id)
        with self.engine.store.read() as tx:
            return [dict(r) for r in tx.connection.execute(query).mappings()]

    def dates(self, flow_id: str | None = None) -> list[str]:
        return sorted(e["trigger"]["date"] for e in self.executions(flow_id))

    def state(self, flow_id: str, trigger_id: str = "tick") -> Row | None:
        with self.engine.store.read() as tx:
            return tx.trigger_state("sched", flow_id, trigger_id)


@pytest.fixture
def world(make_engine: EngineFactory) -> World:
    return World(make_engine(workers=0), at("2026-01-05T09:59:30+00:00"))


# -- firing once -----------------------------------------------------------------------------


def test_each_time_fires_once_with_trigger_variables(world: World) -> None:
    world.deploy(schedule_flow("every5", "*/5 * * * *"))
    wake = world.tick(world.clock.now)
    assert wake == at("2026-01-05T10:00:00+00:00")
    assert world.executions() == []
    world.run_until(at("2026-01-05T10:12:00+00:00"))
    executions = world.executions()
    assert [e["trigger_key"] for e in executions] == [
        "schedule:sched/every5/tick@2026-01-05T10:00:00Z",
        "schedule:sched/every5/tick@2026-01-05T10:05:00Z",
        "schedule:sched/every5/tick@2026-01-05T10:10:00Z",
    ]
    assert executions[1]["trigger"] == {
        "type": "core.trigger.Schedule",
        "id": "tick",
        "date": "2026-01-05T10:05:00Z",
        "next": "2026-01-05T10:10:00Z",
        "previous": "2026-01-05T10:00:00Z",
    }
    world.tick(at("2026-01-05T10:12:30+00:00"))
    assert len(world.executions()) == 3
    state = world.state("every5")
    assert state is not None
    assert state["next_fire_at"] == at("2026-01-05T10:15:00+00:00")
    assert state["last_fired_at"] == at("2026-01-05T10:10:00+00:00")


def test_trigger_date_renders_in_tasks(make_engine: EngineFactory) -> None:
    engine = make_engine(workers=2)
    clock = Clock(at("2026-01-05T23:00:00+00:00"))
    scheduler = Scheduler(engine.store, engine.executor, clock)
    engine.deploy_source(
        schedule_flow(
            "render",
            "30 0 * * *",
            extra="timezone: Europe/Paris",
        ).replace(
            "fired for {{ trigger.date }}",
            "day {{ trigger.date | date('yyyy-MM-dd') }} after {{ trigger.previous }}",
        ),
        "sched/render.yaml",
    )
    scheduler.tick()
    clock.now = at("2026-01-06T00:30:00+01:00")
    scheduler.tick()
    [execution] = _rows(engine)
    assert engine.wait(execution["id"], timeout=15)["state"] == "SUCCESS"
    wanted = "day 2026-01-06 after 2026-01-05T00:30:00+01:00"
    wait_until(
        lambda: wanted in [row["message"] for row in engine.store.logs(execution["id"])],
        what=f"the log line {wanted!r}",
    )


def _rows(engine: Engine) -> list[Row]:
    with engine.store.read() as tx:
        return [dict(r) for r in tx.connection.execute(select(EXECUTIONS)).mappings()]


def test_restart_exactly_at_a_fire_time_fires_once(world: World) -> None:
    world.deploy(schedule_flow("hourly", "0 * * * *"))
    world.tick(world.clock.now)
    ten = at("2026-01-05T10:00:00+00:00")
    world.tick(ten)
    assert world.dates() == ["2026-01-05T10:00:00Z"]
    # A new process starts at that very moment, and even finds the trigger's state behind
    # (as if the old one died between writing the execution and its next fire time).
    with world.engine.store.write() as tx:
        tx.connection.execute(update(TRIGGER_STATES).values(next_fire_at=ten))
    restarted = world.new_scheduler()
    world.tick(ten, restarted)
    world.tick(ten + 0.5, restarted)
    assert world.dates() == ["2026-01-05T10:00:00Z"]
    world.tick(ten + HOUR, restarted)
    assert world.dates() == ["2026-01-05T10:00:00Z", "2026-01-05T11:00:00Z"]


def test_a_restart_reads_the_schedules_from_their_states(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.deploy(schedule_flow("hourly", "0 * * * *", extra="inputs: {}\ntimezone: Asia/Tokyo"))
    world.tick(world.clock.now)

    def no_parsing(*args: Any) -> None:
        raise AssertionError("a restart parsed a flow whose revision did not change")

    monkeypatch.setattr("headwater.daemon.triggers.scheduler.read_schedules", no_parsing)
    restarted = world.new_scheduler()
    world.tick(at("2026-01-05T10:00:00+00:00"), restarted)
    [execution] = world.executions()
    assert execution["trigger"]["date"] == "2026-01-05T19:00:00+09:00"


@pytest.mark.postgres
def test_two_schedulers_on_one_database_fire_each_time_once(
    tmp_path: Path, db_url: str | None
) -> None:
    url = db_url or f"sqlite:///{tmp_path / 'shared.db'}"
    engines = [
        Engine(EngineSettings(data_dir=tmp_path / f"replica{i}", db_url=url, workers=0))
        for i in range(2)
    ]
    try:
        for i in range(20):
            engines[0].deploy_source(schedule_flow(f"f{i}", "* * * * *"), f"sched/f{i}.yaml")
        clock = Clock(at("2026-01-05T09:59:59+00:00"))
        schedulers = [Scheduler(e.store, e.executor, clock) for e in engines]
        for scheduler in schedulers:
            scheduler.tick()
        for minute in range(10):
            clock.now = at("2026-01-05T10:00:00+00:00") + 60 * minute
            threads = [threading.Thread(target=s.tick) for s in schedulers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        with engines[1].store.read() as tx:
            keys = list(tx.connection.execute(select(EXECUTIONS.c.trigger_key)).scalars())
        assert len(keys) == 20 * 10
        assert len(set(keys)) == len(keys)
    finally:
        for engine in engines:
            engine.stop(grace=0)


def test_a_failed_write_is_tried_again(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.deploy(schedule_flow("hourly", "0 * * * *"))
    world.tick(world.clock.now)
    real = Tx.insert_executions

    def broken(self: Tx, rows: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(Tx, "insert_executions", broken)
    with pytest.raises(OperationalError):
        world.tick(at("2026-01-05T10:00:00+00:00"))
    monkeypatch.setattr(Tx, "insert_executions", real)
    world.tick(at("2026-01-05T10:00:01+00:00"))
    assert world.dates() == ["2026-01-05T10:00:00Z"]


# -- missed times after downtime -----------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "fired"),
    [
        ("ALL", ["10:00", "11:00", "12:00", "13:00", "14:00", "15:00"]),
        ("LAST", ["15:00"]),
        ("NONE", []),
    ],
)
def test_missed_times_after_downtime(world: World, mode: str, fired: list[str]) -> None:
    world.deploy(schedule_flow("hourly", "0 * * * *", extra=f"recoverMissedSchedules: {mode}"))
    world.tick(world.clock.now)  # deployed at 09:59:30, then the daemon stops
    back = at("2026-01-05T15:10:00+00:00")
    world.tick(back, world.new_scheduler())
    assert world.dates() == [f"2026-01-05T{hour}:00Z" for hour in fired]
    state = world.state("hourly")
    assert state is not None
    assert state["next_fire_at"] == at("2026-01-05T16:00:00+00:00")


def test_a_time_found_within_the_grace_fires_whatever_the_mode(world: World) -> None:
    world.deploy(schedule_flow("hourly", "0 * * * *", extra="recoverMissedSchedules: NONE"))
    world.tick(world.clock.now)
    world.tick(at("2026-01-05T10:00:20+00:00"), world.new_scheduler())
    assert world.dates() == ["2026-01-05T10:00:00Z"]


def test_all_recovers_at_most_the_latest_thousand_and_nothing_before_deploy(
    world: World,
) -> None:
    world.deploy(schedule_flow("minutely", "* * * * *"))
    world.tick(world.clock.now)
    back = at("2026-01-05T10:00:00+00:00") + 1500 * 60 + 30
    world.tick(back, world.new_scheduler())
    dates = world.dates()
    assert len(dates) == MAX_RECOVERED + 1  # the missed ones, and the one 30 s late
    assert dates[-1] == utc(back - 30)
    assert dates[0] == utc(back - 30 - MAX_RECOVERED * 60)


def test_never_fires_times_before_the_trigger_was_deployed(world: World) -> None:
    world.tick(world.clock.now)
    world.clock.now = at("2026-01-05T12:00:10+00:00")
    world.deploy(schedule_flow("late", "0 * * * *"))  # ALL, but nothing was missed
    world.tick(world.clock.now)
    world.tick(at("2026-01-05T13:00:00+00:00"))
    assert world.dates() == ["2026-01-05T13:00:00Z"]


# -- daylight saving ----------------------------------------------------------------------


def test_a_skipped_wall_time_fires_once_when_the_clock_jumps(world: World) -> None:
    world.clock.now = at("2026-03-27T12:00:00+00:00")
    world.deploy(schedule_flow("dst", "30 2 * * *", extra="timezone: Europe/Paris"))
    world.run_until(at("2026-03-31T00:00:00+00:00"))
    assert world.dates() == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist: the moment 02:00 became 03:00
        "2026-03-30T02:30:00+02:00",
    ]


def test_a_repeated_wall_time_fires_once(world: World) -> None:
    world.clock.now = at("2026-10-24T12:00:00+00:00")
    world.deploy(schedule_flow("dst", "30 2 * * *", extra="timezone: Europe/Paris"))
    world.run_until(at("2026-10-27T00:00:00+00:00"))
    assert world.dates() == [
        "2026-10-25T02:30:00+02:00",  # 02:30 comes twice that night: the first one
        "2026-10-26T02:30:00+01:00",
    ]


# -- deploys -----------------------------------------------------------------------------------


class Repo:
    """A real repository, a mirror and a syncer whose deploys notify the scheduler."""

    def __init__(self, tmp: Path, world: World) -> None:
        remote = make_remote(tmp / "remote.git")
        self.clone = WorkingClone.create(tmp / "work", remote)
        self.mirror = Mirror(tmp / "mirror.git", str(remote), "main")
        self.mirror.ensure()
        self.syncer = Syncer(world.engine.store, self.mirror)
        self.syncer.deployed.append(world.scheduler.deployed)

    def commit(self, files: dict[str, str], remove: tuple[str, ...] = ()) -> None:
        self.clone.write_many(files)
        for path in remove:
            self.clone.remove(path)
        self.clone.commit("change")
        self.clone.push()
        assert self.syncer.sync("poll").result == "Succeeded"


@pytest.fixture
def repo(tmp_path: Path, world: World) -> Iterator[Repo]:
    made = Repo(tmp_path, world)
    yield made
    made.mirror.close()


def test_a_commit_changes_disables_renames_and_deletes_a_schedule(world: World, repo: Repo) -> None:
    path = "flows/sched/job.yaml"
    other = (
        "id: other\nnamespace: sched\ntasks:\n  - id: a\n    type: core.log.Log\n    message: hi\n"
    )
    repo.commit({path: schedule_flow("job", "0 * * * *"), "flows/sched/other.yaml": other})
    world.tick(at("2026-01-05T10:20:00+00:00"))
    state = world.state("job")
    assert state is not None and state["next_fire_at"] == at("2026-01-05T11:00:00+00:00")

    repo.commit({path: schedule_flow("job", "*/15 * * * *")})
    world.tick(at("2026-01-05T10:21:00+00:00"))
    assert world.scheduler.next_fire("sched", "job", "tick") == at("2026-01-05T10:30:00+00:00")
    world.tick(at("2026-01-05T10:30:00+00:00"))
    assert world.dates() == ["2026-01-05T10:30:00Z"]

    repo.commit({path: schedule_flow("job", "*/15 * * * *", extra="disabled: true")})
    world.run_until(at("2026-01-05T11:40:00+00:00"))
    assert world.dates() == ["2026-01-05T10:30:00Z"]
    state = world.state("job")
    assert state is not None and state["disabled"] and state["next_fire_at"] is None

    repo.commit({path: schedule_flow("job", "*/15 * * * *", trigger_id="renamed")})
    world.tick(at("2026-01-05T11:41:00+00:00"))
    assert world.state("job") is None  # the old trigger's state is gone
    renamed = world.state("job", "renamed")
    assert renamed is not None
    assert renamed["enabled_at"] == at("2026-01-05T11:41:00+00:00")  # starts fresh
    world.tick(at("2026-01-05T11:45:00+00:00"))
    assert world.dates()[-1] == "2026-01-05T11:45:00Z"

    repo.commit({}, remove=(path,))
    world.run_until(at("2026-01-05T13:00:00+00:00"))
    assert world.state("job", "renamed") is None
    assert len(world.executions()) == 2


def test_a_change_elsewhere_in_the_flow_keeps_the_schedule(world: World) -> None:
    world.deploy(schedule_flow("keep", "0 * * * *"))
    world.tick(world.clock.now)
    before = world.state("keep")
    world.deploy(schedule_flow("keep", "0 * * * *").replace("fired for", "it fired for"))
    world.tick(at("2026-01-05T09:59:50+00:00"))
    after = world.state("keep")
    assert before is not None and after is not None
    assert after["revision"] == 2
    assert after["enabled_at"] == before["enabled_at"]
    world.tick(at("2026-01-05T10:00:00+00:00"))
    [execution] = world.executions()
    assert execution["flow_revision"] == 2


# -- trouble -----------------------------------------------------------------------------------


def test_refused_inputs_are_recorded_on_the_trigger_and_others_still_fire(
    world: World,
) -> None:
    needs = schedule_flow("needs", "0 * * * *", flow_extra="inputs:\n  - id: day\n    type: STRING")
    world.engine.deploy_source(needs, "sched/needs.yaml")
    world.deploy(schedule_flow("fine", "0 * * * *"))
    world.tick(world.clock.now)
    world.tick(at("2026-01-05T10:00:00+00:00"))
    assert [e["flow_id"] for e in world.executions()] == ["fine"]
    state = world.state("needs")
    assert state is not None
    assert "day" in state["state"]["error"]
    assert state["next_fire_at"] == at("2026-01-05T11:00:00+00:00")


def test_trigger_inputs_reach_the_execution(world: World) -> None:
    flow = schedule_flow(
        "given",
        "0 * * * *",
        extra="inputs:\n  day: monday",
        flow_extra="inputs:\n  - id: day\n    type: STRING",
    )
    world.deploy(flow)
    world.tick(world.clock.now)
    world.tick(at("2026-01-05T10:00:00+00:00"))
    [execution] = world.executions()
    assert execution["inputs"] == {"day": "monday"}


def test_stop_after_disables_the_schedule_until_it_changes(make_engine: EngineFactory) -> None:
    engine = make_engine(workers=2)
    clock = Clock(at("2026-01-05T09:59:30+00:00"))
    scheduler = Scheduler(engine.store, engine.executor, clock)
    engine.executor.ended.append(scheduler.ended)
    failing = schedule_flow("fails", "0 * * * *", extra="stopAfter: [FAILED]").replace(
        "type: core.log.Log\n    message:", "type: core.execution.Fail\n    errorMessage:"
    )
    engine.deploy_source(failing, "sched/fails.yaml")
    scheduler.tick()
    clock.now = at("2026-01-05T10:00:00+00:00")
    scheduler.tick()
    [execution] = _rows(engine)
    assert engine.wait(execution["id"], timeout=15)["state"] == "FAILED"

    def disabled() -> bool:
        with engine.store.read() as tx:
            return bool((tx.trigger_state("sched", "fails", "tick") or {}).get("disabled"))

    wait_until(disabled, what="stopAfter to disable the trigger")
    clock.now = at("2026-01-05T11:00:00+00:00")
    scheduler.tick()
    assert len(_rows(engine)) == 1
    engine.deploy_source(failing.replace("0 * * * *", "30 * * * *"), "sched/fails.yaml")
    scheduler.deployed()
    scheduler.tick()
    clock.now = at("2026-01-05T11:30:00+00:00")
    scheduler.tick()
    assert len(_rows(engine)) == 2


# -- backfill ------------------------------------------------------------------------------


def test_backfill_fires_each_past_time_once_at_a_bounded_rate(world: World) -> None:
    world.deploy(schedule_flow("daily", "0 6 * * *"))
    world.tick(at("2026-01-05T06:00:00+00:00"))  # deployed at 06:00: fires today
    assert world.dates() == ["2026-01-05T06:00:00Z"]
    answer = world.scheduler.backfill("sched", "daily", "tick", "2025-12-01", "2026-01-05T06:00")
    assert answer["times"] == 36
    assert (answer["first"], answer["last"]) == ("2025-12-01T06:00:00Z", "2026-01-05T06:00:00Z")
    world.tick(world.clock.now)
    assert len(world.executions()) == 1 + 10
    world.tick(world.clock.now + 0.5)
    assert len(world.executions()) == 1 + 10  # at most ten a second
    for step in range(1, 5):
        world.tick(at("2026-01-05T06:00:00+00:00") + step)
    executions = world.executions()
    assert len(executions) == 36  # today's time was not fired again
    backfilled = [e for e in executions if e["trigger"].get("backfill")]
    assert len(backfilled) == 35
    assert min(e["trigger"]["date"] for e in backfilled) == "2025-12-01T06:00:00Z"
    state = world.state("daily")
    assert state is not None and "backfill" not in state["state"]


def test_backfill_survives_a_restart(world: World) -> None:
    world.deploy(schedule_flow("daily", "0 6 * * *"))
    world.tick(world.clock.now)
    world.scheduler.backfill(
        "sched", "daily", "tick", "2025-11-01T00:00:00Z", "2025-12-31T23:59:59Z"
    )
    world.tick(world.clock.now)
    assert len(world.executions()) == 10
    restarted = world.new_scheduler()
    for step in range(1, 8):
        world.tick(world.clock.now + step, restarted)
    assert len(world.executions()) == 61


@pytest.mark.parametrize(
    ("trigger", "start", "end", "error", "message"),
    [
        ("nope", "2025-12-01", "2025-12-02", TriggerNotFound, "no Schedule trigger 'nope'"),
        ("tick", "2025-12-02", "2025-12-01", BackfillError, "is after to"),
        ("tick", "2025-12-01", "2027-01-01", BackfillError, "is in the future"),
        ("tick", "yesterday", "2025-12-01", BackfillError, "from: cannot read 'yesterday'"),
        ("tick", "2025-12-01T07:00Z", "2025-12-01T08:00Z", BackfillError, "no time of cron"),
        ("tick", "1990-01-01", "2026-01-01", BackfillError, "more than 10000 times"),
    ],
)
def test_backfill_refuses_what_it_cannot_do(
    world: World, trigger: str, start: str, end: str, error: type[Exception], message: str
) -> None:
    world.deploy(schedule_flow("daily", "0 6 * * *"))
    with pytest.raises(error, match=message):
        world.scheduler.backfill("sched", "daily", trigger, start, end)


def test_a_second_backfill_waits_for_the_first(world: World) -> None:
    world.deploy(schedule_flow("daily", "0 6 * * *"))
    world.scheduler.backfill("sched", "daily", "tick", "2025-01-01", "2025-12-31")
    with pytest.raises(BackfillRunning):
        world.scheduler.backfill("sched", "daily", "tick", "2025-01-01", "2025-01-02")
