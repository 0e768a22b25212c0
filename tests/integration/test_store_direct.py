"""The store's hot statements run on SQLite's own cursor (`store/direct.py`): what they
write and read must be what SQLAlchemy writes and reads, row for row, and the errors
callers catch must stay SQLAlchemy's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from headwater.daemon.store.db import make_engine, sqlite_url
from headwater.daemon.store.direct import Direct, DirectInsert
from headwater.daemon.store.migrate import upgrade
from headwater.daemon.store.store import EXECUTIONS, LOGS, TASK_RUNS, Row, Store

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[Store]:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


def execution(execution_id: str, **values: object) -> Row:
    row: Row = {
        "id": execution_id,
        "namespace": "team",
        "flow_id": "hello",
        "flow_revision": 3,
        "commit_sha": "abc",
        "state": "RUNNING",
        "created_at": 1.5,
        "inputs": {"name": "Ada", "deep": {"list": [1, 2.5, None, "é"]}},
        "labels": [{"key": "team", "value": "data"}],
        "histories": [{"state": "CREATED", "date": 1.5}],
        "trigger": None,
    }
    row.update(values)
    return row


def through_sqlalchemy(store: Store, table: object, key: str) -> Row:
    with store.read() as tx:
        found = tx.connection.execute(select(table).where(table.c.id == key)).mappings().one()  # type: ignore[attr-defined]
        return dict(found)


def test_an_execution_reads_back_as_sqlalchemy_reads_it(store: Store) -> None:
    with store.write() as tx:
        tx.insert_execution(execution("e1"))
        tx.update_execution("e1", {"outputs": {"n": 1}, "dirty": True, "wake_at": None})
    with store.read() as tx:
        direct = tx.execution("e1")
    assert direct == through_sqlalchemy(store, EXECUTIONS, "e1")
    assert direct is not None
    assert direct["inputs"] == {"name": "Ada", "deep": {"list": [1, 2.5, None, "é"]}}
    assert direct["dirty"] is True and direct["kill_requested"] is False  # booleans, not 0/1
    assert direct["depth"] == 0  # the column's default, filled in for a row that left it out
    assert direct["trigger"] is None


def test_task_runs_written_and_claimed_directly_read_as_sqlalchemy_reads_them(
    store: Store,
) -> None:
    base: Row = {"execution_id": "e1", "task_id": "t", "state": "CREATED", "created_at": 1.0}
    with store.write() as tx:
        tx.insert_execution(execution("e1"))
        tx.insert_task_runs([{**base, "id": "r1", "seq": 1}, {**base, "id": "r2", "seq": 2}])
    claimed = store.claim_task_run("worker", now=5.0, lease_until=65.0)
    assert claimed is not None and claimed["id"] == "r1"
    assert claimed["_execution"] == through_sqlalchemy(store, EXECUTIONS, "e1")
    del claimed["_execution"]
    assert claimed == through_sqlalchemy(store, TASK_RUNS, "r1")
    assert claimed["state"] == "RUNNING" and claimed["attempt"] == 1
    assert claimed["runnable"] is True and claimed["branch"] == "tasks"  # defaults
    with store.write() as tx:
        values = {"state": "SUCCESS", "outputs": {"value": [1, {"a": None}]}, "end_date": 6.0}
        assert tx.finish_attempt("r1", 1, "worker", values)
        assert not tx.finish_attempt("r1", 1, "someone else", values)  # compare-and-set
    with store.read() as tx:
        runs = tx.task_runs("e1")
    assert [run["id"] for run in runs] == ["r1", "r2"]
    assert runs[0] == through_sqlalchemy(store, TASK_RUNS, "r1")
    assert runs[0]["outputs"] == {"value": [1, {"a": None}]}


def test_log_lines_get_their_ids_from_the_database(store: Store) -> None:
    line: Row = {"execution_id": "e1", "task_run_id": "r1", "timestamp": 1.0, "level": "INFO"}
    with store.write() as tx:
        tx.insert_logs([{**line, "message": "one"}, {**line, "message": "two", "attempt": 2}])
    with store.read() as tx:
        rows = tx.connection.execute(select(LOGS).order_by(LOGS.c.id)).mappings().all()
    assert [(r["message"], r["attempt"]) for r in rows] == [("one", 0), ("two", 2)]
    assert rows[0]["id"] < rows[1]["id"]


def test_a_duplicate_key_is_sqlalchemys_integrity_error(store: Store) -> None:
    """The executor catches IntegrityError to make trigger keys idempotent."""
    with store.write() as tx:
        tx.insert_execution(execution("e1", trigger_key="schedule:1"))
    with pytest.raises(IntegrityError), store.write() as tx:
        tx.insert_execution(execution("e2", trigger_key="schedule:1"))
    with store.read() as tx:
        assert tx.execution("e2") is None  # the failed transaction wrote nothing


def test_a_locked_database_is_sqlalchemys_operational_error(tmp_path: Path) -> None:
    """Callers tell a store that refuses writes by OperationalError (503, retries)."""
    engine = make_engine(sqlite_url(tmp_path))
    upgrade(engine)
    store = Store(engine)
    other = make_engine(sqlite_url(tmp_path))
    with other.connect() as holder:
        holder.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
        with pytest.raises(OperationalError, match="locked"), store.write(busy_timeout=0.05) as tx:
            tx.update_execution("e1", {"state": "FAILED"})
        holder.connection.driver_connection.execute("ROLLBACK")  # type: ignore[union-attr]
    other.dispose()
    engine.dispose()


def test_a_column_that_does_not_exist_is_refused_not_dropped(store: Store) -> None:
    run: Row = {"id": "r1", "execution_id": "e1", "task_id": "t", "created_at": 1.0}
    with pytest.raises(ValueError, match="task_runs has no column stat"), store.write() as tx:
        tx.insert_task_runs([{**run, "state": "CREATED"}, {**run, "id": "r2", "stat": "CREATED"}])
    with store.read() as tx:
        assert tx.task_runs("e1") == []


def test_an_in_list_left_to_the_caller_is_refused_on_sqlite(tmp_path: Path) -> None:
    """Only IN lists fixed in the statement are expanded; a caller's list goes through
    SQLAlchemy, which expands it per call."""
    engine = make_engine(sqlite_url(tmp_path))
    upgrade(engine)
    statement = Direct(select(EXECUTIONS).where(EXECUTIONS.c.id.in_([])))
    with engine.connect() as connection, pytest.raises(ValueError, match="IN lists"):
        statement.execute(connection)
    engine.dispose()


def test_an_insert_statement_fills_every_column_it_leaves_out() -> None:
    runs = DirectInsert(TASK_RUNS)
    assert runs.defaults["branch"] == "tasks" and runs.defaults["folded"] is False
    assert runs.defaults["lease_owner"] is None
    assert "id" not in DirectInsert(LOGS).columns  # the database numbers log lines
