"""Two engines on one database, as two replicas would be: on a shared SQLite file and on
PostgreSQL, where claims use `FOR UPDATE SKIP LOCKED` and a trigger key two replicas
insert at once ends in one execution (the loser reads the winner's)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import EngineFactory, Flows
from sqlalchemy import func, select

from headwater.daemon.engine.engine import Engine
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.store.store import EXECUTIONS

pytestmark = pytest.mark.postgres

VALUES = [f"v{i}" for i in range(10)]


def two_engines(make_engine: EngineFactory, tmp_path: Path, db_url: str | None) -> list[Engine]:
    """Two engines with their own data directories on one database."""
    shared = db_url or f"sqlite:///{tmp_path / 'shared.db'}"
    return [make_engine(data_dir=tmp_path / name, db_url=shared) for name in ("a", "b")]


def test_two_engines_run_each_task_run_exactly_once(
    make_engine: EngineFactory, tmp_path: Path, db_url: str | None
) -> None:
    engines = two_engines(make_engine, tmp_path, db_url)
    ran = tmp_path / "ran.txt"
    flow = Flows(engines[0]).deploy(
        f"""
        tasks:
          - id: loop
            type: core.flow.ForEach
            values: {VALUES}
            concurrencyLimit: 0
            tasks:
              - id: work
                type: scripts.shell.Commands
                commands: ["echo {{{{ execution.id }}}}-{{{{ taskrun.value }}}} >> {ran}"]
        """
    )
    ids = [
        str(engine.start_execution(ExecutionRequest(flow.namespace, flow.id))["id"])
        for engine in engines * 2
    ]
    finished = [Flows(engines[i % 2]).finish(execution_id) for i, execution_id in enumerate(ids)]
    assert [f.state for f in finished] == ["SUCCESS"] * 4, [f.summary() for f in finished]
    lines = ran.read_text().split()
    assert sorted(lines) == sorted(f"{i}-{v}" for i in ids for v in VALUES)  # each ran once
    attempts = [r["attempt"] for f in finished for r in f.runs_of("work")]
    assert attempts == [1] * 40


def test_one_trigger_key_makes_one_execution_however_many_replicas_race(
    make_engine: EngineFactory, tmp_path: Path, db_url: str | None
) -> None:
    engines = two_engines(make_engine, tmp_path, db_url)
    flow = Flows(engines[0]).deploy(
        "tasks:\n  - {id: hold, type: core.flow.Pause}\n"
    )  # paused: the executions stay put while the threads race
    start = threading.Barrier(8)
    made: list[str] = []
    lock = threading.Lock()

    def create(engine: Engine) -> None:
        request = ExecutionRequest(flow.namespace, flow.id, trigger_key="race:once")
        start.wait()
        row = engine.executor.create_execution(request)
        with lock:
            made.append(row["id"])

    threads = [threading.Thread(target=create, args=(e,)) for e in engines * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(made) == 8
    assert len(set(made)) == 1
    with engines[1].store.read() as tx:
        count = tx.connection.execute(
            select(func.count()).where(EXECUTIONS.c.trigger_key == "race:once")
        ).scalar_one()
    assert count == 1
