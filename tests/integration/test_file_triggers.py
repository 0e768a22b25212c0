"""File triggers on real files: polling batches and their MOVE or DELETE, realtime events
through watchdog, the allowed directories, and exactly once across a restart.

Polls are stepped with `tick(now)` and a clock the test sets; realtime triggers run the
service's own loop (real inotify events, a settle time of a fraction of a second).
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EngineFactory, Flows, stop_engine
from sqlalchemy import select
from waiting import wait_until

from headwater.daemon.engine.engine import Engine
from headwater.daemon.store.store import EXECUTIONS, TRIGGER_STATES
from headwater.daemon.triggers import files as file_triggers
from headwater.daemon.triggers.files import FileTriggers, deployment_check

SETTLE = 0.2  # seconds a realtime test's file must rest before it counts as complete
OLD = 1_000_000.0  # an mtime long before the test clock's "now"


class Crash(BaseException):
    """Stands for the process dying at a chosen point (not caught like an Exception)."""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "allowed" / "inbox"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    folder = tmp_path / "allowed"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def services() -> Iterator[list[FileTriggers]]:
    started: list[FileTriggers] = []
    yield started
    for service in started:
        service.stop()


def put(folder: Path, name: str, text: str = "data", mtime: float = OLD) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


def polling_flow(folder: Path, extra: str = "", flow_id: str = "poll") -> str:
    return f"""
        id: {flow_id}
        namespace: files
        tasks:
          - id: show
            type: core.log.Log
            message: "{{{{ trigger.files | length }}}} {{{{ trigger.files[0].name }}}}"
        triggers:
          - id: inbox
            type: fs.local.Trigger
            from: {folder}
            interval: PT10S
            {extra}
        """


def executions(engine: Engine) -> list[dict[str, Any]]:
    with engine.store.read() as tx:
        rows = tx.connection.execute(select(EXECUTIONS).order_by(EXECUTIONS.c.created_at))
        return [dict(r) for r in rows.mappings()]


def file_trigger_service(
    engine: Engine, allowed: Path, clock: Callable[[], float] = time.time
) -> FileTriggers:
    service = FileTriggers(engine, [allowed], clock=clock, settle_seconds=SETTLE)
    service.reload()
    return service


# -- polling ---------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_poll_starts_one_execution_with_the_batch_and_moves_the_files(
    engine: Engine, flows: Flows, inbox: Path, allowed: Path
) -> None:
    done = allowed / "done"
    put(inbox, "b.csv", "second", mtime=OLD + 2)
    put(inbox, "a.csv", "first", mtime=OLD + 1)
    flows.deploy(polling_flow(inbox, f"action: MOVE\n            moveDirectory: {done}"))
    service = file_trigger_service(engine, allowed, Clock(OLD + 100))

    execution = service.poll(service.watched()[0])

    assert execution is not None
    files = execution["trigger"]["files"]
    assert [f["name"] for f in files] == ["a.csv", "b.csv"]  # oldest first
    assert [f["path"] for f in files] == [str(done / "a.csv"), str(done / "b.csv")]
    assert files[0]["originalPath"] == str(inbox / "a.csv")
    assert files[0]["size"] == len("first")
    assert sorted(p.name for p in inbox.iterdir()) == []
    assert (done / "a.csv").read_text() == "first"
    finished = flows.finish(execution["id"])
    assert finished.state == "SUCCESS", finished.summary()
    assert finished.messages("show") == ["2 a.csv"]
    assert service.poll(service.watched()[0]) is None  # nothing new
    assert len(executions(engine)) == 1


def test_polls_take_at_most_max_files_and_wait_for_the_interval(
    engine: Engine, flows: Flows, inbox: Path, allowed: Path
) -> None:
    for i in range(5):
        put(inbox, f"f{i}.txt", mtime=OLD + i)
    flows.deploy(polling_flow(inbox, "maxFiles: 2"))
    clock = Clock(OLD + 100)
    service = file_trigger_service(engine, allowed, clock)

    assert service.tick(clock.now) == clock.now + 10  # the next poll, one interval on
    assert service.tick(clock.now + 5) == clock.now + 10  # not due: nothing happens
    service.tick(clock.now + 10)
    service.tick(clock.now + 20)

    batches = [[f["name"] for f in e["trigger"]["files"]] for e in executions(engine)]
    assert batches == [["f0.txt", "f1.txt"], ["f2.txt", "f3.txt"], ["f4.txt"]]


def test_without_an_action_a_file_is_picked_once_until_it_changes(
    engine: Engine, flows: Flows, inbox: Path, allowed: Path
) -> None:
    report = put(inbox, "report.txt", "v1")
    flows.deploy(polling_flow(inbox))
    clock = Clock(OLD + 100)
    service = file_trigger_service(engine, allowed, clock)
    watched = service.watched()[0]

    assert service.poll(watched) is not None
    assert service.poll(watched) is None  # same path, size, mtime: already handed over
    report.write_text("version 2")
    os.utime(report, (OLD + 50, OLD + 50))
    again = service.poll(watched)

    assert again is not None
    assert again["trigger"]["files"][0]["size"] == len("version 2")
    assert report.exists()
    assert len(executions(engine)) == 2


def test_delete_removes_the_file_and_keeps_a_copy_for_the_execution(
    engine: Engine, flows: Flows, inbox: Path, allowed: Path
) -> None:
    put(inbox, "order.json", '{"id": 7}')
    flows.deploy(polling_flow(inbox, "action: DELETE"))
    service = file_trigger_service(engine, allowed, Clock(OLD + 100))

    execution = service.poll(service.watched()[0])

    assert execution is not None
    assert not (inbox / "order.json").exists()
    uri = execution["trigger"]["files"][0]["uri"]
    assert uri.startswith("kestra:///files/poll/executions/")
    assert engine.storage.get(uri) == b'{"id": 7}'


def test_reg_exp_recursive_and_files_still_being_written(
    engine: Engine, flows: Flows, inbox: Path, allowed: Path
) -> None:
    put(inbox, "top.csv")
    put(inbox, "skip.txt")
    put(inbox, "sub/deep.csv")
    put(inbox, "fresh.csv", mtime=OLD + 99.9)  # modified a moment ago: maybe half-written
    (inbox / "link.csv").symlink_to(inbox / "top.csv")  # links are never followed
    flows.deploy(polling_flow(inbox, "regExp: '.*\\.csv'\n            recursive: true"))
    clock = Clock(OLD + 100)
    service = file_trigger_service(engine, allowed, clock)

    first = service.poll(service.watched()[0])
    clock.now += 1
    second = service.poll(service.watched()[0])

    assert first is not None and second is not None
    assert sorted(f["name"] for f in first["trigger"]["files"]) == ["deep.csv", "top.csv"]
    assert [f["name"] for f in second["trigger"]["files"]] == ["fresh.csv"]


# -- allowed directories ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("outside", "is outside the directories file triggers may read"),
        ("dotdot", "(resolved: "),
        ("symlink", "(resolved: "),
    ],
)
def test_a_directory_outside_the_allowed_ones_is_refused_with_where_and_why(
    engine: Engine, flows: Flows, tmp_path: Path, allowed: Path, where: str, expected: str
) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    put(outside, "passwords.txt")
    (allowed / "door").symlink_to(outside)
    folder = {
        "outside": str(outside),
        "dotdot": f"{allowed}/../secret",
        "symlink": str(allowed / "door"),
    }[where]
    flows.deploy(polling_flow(Path(folder), "action: DELETE"))
    service = file_trigger_service(engine, allowed, Clock(OLD + 100))

    assert service.watched() == []
    [message] = service.refused.values()
    assert message.startswith("files/poll.yaml:10:11: error: ")  # the line of `from:`
    assert expected in message and "HEADWATER_FILE_TRIGGER_DIRS" in message
    with engine.store.read() as tx:
        states = tx.connection.execute(select(TRIGGER_STATES)).mappings().all()
    assert [(s["trigger_id"], s["trigger_type"], s["state"]["error"]) for s in states] == [
        ("inbox", "io.kestra.plugin.fs.local.Trigger", message)
    ]
    service.tick(OLD + 1000)
    assert (outside / "passwords.txt").exists() and executions(engine) == []


def test_with_no_allowed_directory_every_file_trigger_is_refused(
    engine: Engine, flows: Flows, inbox: Path
) -> None:
    flows.deploy(polling_flow(inbox))
    service = FileTriggers(engine, [])
    service.reload()

    [message] = service.refused.values()
    assert "allows file triggers in no directory" in message


def test_a_fixed_trigger_runs_after_the_next_deploy_and_its_error_is_cleared(
    engine: Engine, flows: Flows, tmp_path: Path, inbox: Path, allowed: Path
) -> None:
    flows.deploy(polling_flow(tmp_path))
    service = file_trigger_service(engine, allowed, Clock(OLD + 100))
    assert service.refused

    flows.deploy(polling_flow(inbox))
    service.reload()

    assert service.refused == {} and len(service.watched()) == 1
    with engine.store.read() as tx:
        states = tx.connection.execute(select(TRIGGER_STATES)).mappings().all()
    assert [s["state"] for s in states] == [None]


# -- exactly once across restarts ---------------------------------------------------------


@pytest.mark.parametrize("dies", ["before the execution", "before the move"])
@pytest.mark.postgres
def test_a_restart_mid_pickup_starts_no_second_execution_and_finishes_the_move(
    make_engine: EngineFactory,
    inbox: Path,
    allowed: Path,
    monkeypatch: pytest.MonkeyPatch,
    dies: str,
) -> None:
    done = allowed / "done"
    put(inbox, "a.csv", mtime=OLD)
    put(inbox, "b.csv", mtime=OLD + 1)
    engine = make_engine()
    Flows(engine).deploy(polling_flow(inbox, f"action: MOVE\n            moveDirectory: {done}"))
    service = file_trigger_service(engine, allowed, Clock(OLD + 100))

    def crash(*args: Any) -> None:
        raise Crash(dies)

    if dies == "before the execution":
        monkeypatch.setattr(engine, "start_execution", crash)
    else:
        monkeypatch.setattr(file_triggers, "_apply_action", crash)
    with pytest.raises(Crash):
        service.poll(service.watched()[0])
    monkeypatch.undo()
    created = len(executions(engine))
    stop_engine(engine)

    engine = make_engine()  # the same data directory: a restarted daemon
    service = file_trigger_service(engine, allowed, Clock(OLD + 200))
    assert service.recover() == 1
    service.tick(OLD + 200)

    assert created == (0 if dies == "before the execution" else 1)
    [execution] = executions(engine)
    assert [f["name"] for f in execution["trigger"]["files"]] == ["a.csv", "b.csv"]
    assert sorted(p.name for p in done.iterdir()) == ["a.csv", "b.csv"]
    assert list(inbox.iterdir()) == []
    assert service.recover() == 0


def test_inputs_refused_leave_the_files_for_the_next_poll(
    engine: Engine, flows: Flows, inbox: Path, allowed: Path
) -> None:
    put(inbox, "a.csv")
    flows.deploy(
        polling_flow(inbox, "action: DELETE").replace(
            "tasks:", "inputs:\n          - id: needed\n            type: STRING\n        tasks:"
        )
    )
    service = file_trigger_service(engine, allowed, Clock(OLD + 100))

    assert service.poll(service.watched()[0]) is None

    assert (inbox / "a.csv").exists() and executions(engine) == []
    with engine.store.read() as tx:
        assert tx.pending_file_pickups() == []
    assert list((engine.settings.data_dir / "storage").rglob("a.csv")) == []


# -- realtime ---------------------------------------------------------------------------------


def realtime_flow(folder: Path, on: str, extra: str = "") -> str:
    return f"""
        id: live
        namespace: files
        tasks:
          - id: show
            type: core.log.Log
            message: "{{{{ trigger.event }}}} {{{{ trigger.file.localPath }}}}"
        triggers:
          - id: watch
            type: fs.local.RealtimeTrigger
            from: {folder}
            on: {on}
            regExp: '.*\\.csv'
            {extra}
        """


def started_service(
    engine: Engine, allowed: Path, services: list[FileTriggers], settle: float = SETTLE
) -> FileTriggers:
    service = FileTriggers(engine, [allowed], settle_seconds=settle)
    service.start()
    services.append(service)
    return service


def test_a_created_file_fires_once_when_its_writer_closes_it(
    engine: Engine, flows: Flows, inbox: Path, allowed: Path, services: list[FileTriggers]
) -> None:
    flows.deploy(realtime_flow(inbox, "CREATE"))
    started_service(engine, allowed, services)

    with (inbox / "data.csv").open("w") as out:
        out.write("half")
        out.flush()
        for _ in range(3):  # written to for longer than the settle time: not complete yet
            time.sleep(SETTLE / 2)
            out.write(" more")
            out.flush()
        assert executions(engine) == []
        out.write(" end")
    (inbox / "ignored.txt").write_text("not a csv")

    [execution] = wait_until(lambda: executions(engine), what="an execution")
    trigger = execution["trigger"]
    assert trigger["event"] == "CREATE"
    assert trigger["file"]["localPath"] == str(inbox / "data.csv")
    assert trigger["file"]["size"] == len("half more more more end")
    finished = flows.finish(execution["id"])
    assert finished.messages("show") == [f"CREATE {inbox / 'data.csv'}"]
    time.sleep(SETTLE * 3)
    assert len(executions(engine)) == 1


def test_update_and_delete_events(
    engine: Engine, flows: Flows, inbox: Path, allowed: Path, services: list[FileTriggers]
) -> None:
    existing = put(inbox, "prices.csv", "1")
    flows.deploy(realtime_flow(inbox, "UPDATE"))
    flows.deploy(realtime_flow(inbox, "DELETE").replace("id: live", "id: gone"))
    started_service(engine, allowed, services)

    existing.write_text("2")
    wait_until(lambda: executions(engine), what="the UPDATE execution")
    existing.unlink()

    rows = wait_until(lambda: len(executions(engine)) == 2 and executions(engine))
    assert [(r["flow_id"], r["trigger"]["event"]) for r in rows] == [
        ("live", "UPDATE"),
        ("gone", "DELETE"),
    ]


def test_a_file_renamed_into_the_directory_fires_without_waiting_to_settle(
    engine: Engine,
    flows: Flows,
    tmp_path: Path,
    inbox: Path,
    allowed: Path,
    services: list[FileTriggers],
) -> None:
    flows.deploy(realtime_flow(inbox, "CREATE_OR_UPDATE"))
    started_service(engine, allowed, services, settle=5.0)
    staging = put(tmp_path, "staging.csv", "complete", mtime=time.time())

    os.rename(staging, inbox / "ready.csv")

    [execution] = wait_until(lambda: executions(engine), timeout=2.0, what="an execution")
    assert execution["trigger"]["file"]["name"] == "ready.csv"
    assert execution["trigger"]["event"] == "CREATE"


def test_a_deploy_that_removes_a_trigger_stops_it_and_spares_one_on_the_same_directory(
    engine: Engine, flows: Flows, inbox: Path, allowed: Path, services: list[FileTriggers]
) -> None:
    flows.deploy(realtime_flow(inbox, "CREATE"))
    flows.deploy(realtime_flow(inbox, "CREATE").replace("id: live", "id: stays"))
    service = started_service(engine, allowed, services)
    flows.deploy(realtime_flow(inbox, "CREATE").split("        triggers:")[0])

    service.reload()
    (inbox / "late.csv").write_text("x")

    wait_until(lambda: executions(engine), what="the execution of 'stays'")
    time.sleep(SETTLE * 3)
    assert [w.flow_id for w in service.watched()] == ["stays"]
    assert [e["flow_id"] for e in executions(engine)] == ["stays"]


def test_validation_wants_absolute_directories() -> None:
    from headwater.daemon.flow.validate import validate_text

    text = polling_flow(Path("inbox"), "action: MOVE\n            moveDirectory: done")
    result = validate_text(textwrap.dedent(text).strip(), "flows/files/poll.yaml")

    assert [str(d) for d in result.diagnostics] == [
        "flows/files/poll.yaml:10:11: error: triggers[0].from: "
        "'from' must be an absolute directory path, got 'inbox'",
        "flows/files/poll.yaml:13:20: error: triggers[0].moveDirectory: "
        "'moveDirectory' must be an absolute directory path, got 'done'",
    ]


def test_the_deploy_check_names_each_directory_outside_and_each_expression(
    tmp_path: Path, allowed: Path
) -> None:
    check = deployment_check([allowed])
    raw = {
        "triggers": [
            {"id": "a", "type": "fs.local.Trigger", "from": str(allowed / "in")},
            {"id": "b", "type": "io.kestra.plugin.fs.local.RealtimeTrigger", "from": "/etc"},
            {"id": "c", "type": "fs.local.Trigger", "from": "/etc", "disabled": True},
            {"id": "d", "type": "fs.local.Trigger", "from": "{{ vars.dir }}"},
            {"id": "e", "type": "core.trigger.Schedule", "cron": "@daily", "from": "/etc"},
            {
                "id": "f",
                "type": "fs.local.Trigger",
                "from": str(allowed),
                "action": "MOVE",
                "moveDirectory": f"{allowed}/../out",
            },
        ]
    }

    problems = check(raw)

    assert [path for path, _ in problems] == [
        ("triggers", 1, "from"),
        ("triggers", 3, "from"),
        ("triggers", 5, "moveDirectory"),
    ]
    assert "'from' must be a literal path; it is not rendered" in problems[1][1]
    assert f"(resolved: {tmp_path / 'out'})" in problems[2][1]
