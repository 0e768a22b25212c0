"""The store on a real SQLite file and a real PostgreSQL database: schema from
migrations, claiming, leases, compare-and-set."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from postgres import fresh_database
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from headwater.daemon.store.db import make_engine, sqlite_url
from headwater.daemon.store.migrate import HEAD, alembic_config, current_version, upgrade
from headwater.daemon.store.store import Row, Store
from headwater.daemon.store.tables import metadata

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[Store]:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


def task_run(run_id: str, **values: object) -> Row:
    row: Row = {
        "id": run_id,
        "execution_id": "e1",
        "parent_id": None,
        "task_id": run_id,
        "branch": "tasks",
        "value": None,
        "values_path": None,
        "runnable": True,
        "state": "CREATED",
        "attempt": 0,
        "attempts": [],
        "created_at": 1.0,
        "not_before": 0.0,
        "seq": 1,
    }
    row.update(values)
    return row


def test_migrations_create_exactly_the_tables_of_the_models(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    assert set(inspect(store.engine).get_table_names()) >= {
        "flows", "flow_revisions", "executions", "task_runs", "logs", "trigger_states",
    }  # fmt: skip


def test_upgrade_twice_is_harmless(tmp_path: Path, db_url: str | None) -> None:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    upgrade(engine)
    upgrade(engine)
    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
        assert heads == (ScriptDirectory.from_config(alembic_config()).get_current_head(),)
        if db_url is None:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_the_head_the_daemon_checks_at_start_is_the_newest_migration() -> None:
    """A database at HEAD skips loading Alembic; a HEAD older than the newest migration
    would leave a database unmigrated."""
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


def test_a_database_behind_is_migrated_even_with_the_fast_check(
    tmp_path: Path, db_url: str | None
) -> None:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    config = alembic_config()
    with engine.begin() as connection:  # a store made by the previous version
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    assert current_version(engine) == "0003"
    upgrade(engine)
    assert current_version(engine) == HEAD
    assert "folded" in {c["name"] for c in inspect(engine).get_columns("task_runs")}
    engine.dispose()


def schema_of(engine: Any) -> dict[str, Any]:
    """Every table's columns (type, nullable, default), indexes, keys and constraints."""
    found: dict[str, Any] = {}
    inspector = inspect(engine)
    for table in inspector.get_table_names():
        columns = {
            c["name"]: (str(c["type"]), c["nullable"], str(c.get("default")))
            for c in inspector.get_columns(table)
        }
        indexes = {
            i["name"]: (tuple(i["column_names"]), bool(i["unique"]))
            for i in inspector.get_indexes(table)
        }
        uniques = {
            u["name"]: tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
        }
        key = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
        found[table] = (columns, indexes, uniques, key)
    return found


def test_a_new_database_gets_the_schema_the_migrations_make(
    tmp_path: Path, db_url: str | None
) -> None:
    """An empty database is created from the table models (fast, at a first start), an
    older one migrated step by step: both must end with the same schema."""
    for name in ("migrated", "created"):
        (tmp_path / name).mkdir()
    migrated = make_engine(db_url or sqlite_url(tmp_path / "migrated"))
    config = alembic_config()
    with migrated.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with fresh_database() if db_url else contextlib.nullcontext(None) as other_url:
        created = make_engine(other_url or sqlite_url(tmp_path / "created"))
        upgrade(created)
        assert current_version(created) == HEAD
        assert schema_of(created) == schema_of(migrated)
        created.dispose()
    migrated.dispose()


def test_claim_takes_due_runs_in_order_and_only_once(store: Store) -> None:
    with store.write() as tx:
        tx.insert_task_runs([
            task_run("later", not_before=50.0, created_at=1.0),
            task_run("first", created_at=2.0),
            task_run("second", created_at=3.0),
            task_run("flowable", runnable=False),
        ])  # fmt: skip
    claimed = [store.claim_task_run("w", now=10.0, lease_until=40.0) for _ in range(3)]
    assert [c["id"] if c else None for c in claimed] == ["first", "second", None]
    assert claimed[0] is not None
    assert claimed[0]["state"] == "RUNNING"
    assert claimed[0]["attempt"] == 1
    assert claimed[0]["lease_owner"] == "w"
    late = store.claim_task_run("w", now=60.0, lease_until=90.0)
    assert late is not None
    assert late["id"] == "later"


def test_concurrent_claims_never_share_a_task_run(store: Store) -> None:
    with store.write() as tx:
        tx.insert_task_runs([task_run(f"r{i}", created_at=float(i)) for i in range(200)])
    taken: list[str] = []
    lock = threading.Lock()

    def claim_all(owner: str) -> None:
        while (row := store.claim_task_run(owner, now=1.0, lease_until=100.0)) is not None:
            with lock:
                taken.append(row["id"])

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == sorted(f"r{i}" for i in range(200))


def test_a_late_worker_cannot_finish_a_newer_attempt(store: Store) -> None:
    with store.write() as tx:
        tx.insert_task_runs([task_run("r")])
    first = store.claim_task_run("old", now=1.0, lease_until=2.0)
    assert first is not None
    with store.write() as tx:  # the lease expired; the run goes back for another attempt
        tx.update_task_run("r", {"state": "RETRYING", "lease_owner": None})
    second = store.claim_task_run("new", now=3.0, lease_until=30.0)
    assert second is not None
    assert second["attempt"] == 2
    with store.write() as tx:
        assert not tx.finish_attempt("r", 1, "old", {"state": "SUCCESS"})
        assert not tx.finish_attempt("r", 2, "old", {"state": "SUCCESS"})
        assert tx.finish_attempt("r", 2, "new", {"state": "FAILED"})
        final = tx.task_run("r")
    assert final is not None
    assert final["state"] == "FAILED"


def test_leases_renew_for_their_owner_and_expire_otherwise(store: Store) -> None:
    with store.write() as tx:
        tx.insert_task_runs([task_run("a"), task_run("b", created_at=2.0)])
    assert store.claim_task_run("w1", now=1.0, lease_until=5.0) is not None
    assert store.claim_task_run("w2", now=1.0, lease_until=5.0) is not None
    assert store.renew_leases("w1", ["a", "b"], until=20.0) == {"b"}
    assert [r["id"] for r in store.expired_leases(now=10.0)] == ["b"]


def test_a_released_task_run_keeps_its_attempt_count(store: Store) -> None:
    with store.write() as tx:
        tx.insert_task_runs([task_run("r")])
    claimed = store.claim_task_run("w", now=1.0, lease_until=30.0)
    assert claimed is not None
    assert not store.release_task_run("r", 1, "someone-else")
    assert store.release_task_run("r", 1, "w")
    again = store.claim_task_run("w2", now=2.0, lease_until=30.0)
    assert again is not None
    assert again["attempt"] == 1  # the shutdown did not use an attempt


def test_a_failed_savepoint_undoes_only_its_own_writes(store: Store) -> None:
    with store.write() as tx:
        tx.insert_task_runs([task_run("kept")])
        try:
            with tx.savepoint():
                tx.insert_task_runs([task_run("undone")])
                tx.insert_task_runs([task_run("kept")])  # a key taken: PostgreSQL aborts
        except IntegrityError:
            pass
        else:
            pytest.fail("the duplicate key was accepted")
        tx.insert_task_runs([task_run("after")])  # the transaction goes on
    with store.read() as tx:
        assert [tx.task_run(i) is not None for i in ("kept", "undone", "after")] == [
            True,
            False,
            True,
        ]


def test_a_delivery_racing_itself_is_acted_on_once(store: Store) -> None:
    """Eight threads (as if eight replicas) record the same webhook delivery at once."""
    firsts: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def deliver() -> None:
        start.wait()
        with store.write() as tx:
            first = tx.record_delivery("delivery-1", now=1.0)
        with lock:
            firsts.append(first)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(firsts) == [False] * 7 + [True]
    with store.write() as tx:
        assert tx.record_delivery("delivery-2", now=2.0) is True


def test_delivery_ids_are_forgotten_after_a_few_days(store: Store) -> None:
    day = 24 * 3600.0
    with store.write() as tx:
        assert tx.record_delivery("old", now=0.0) is True
        assert tx.record_delivery("old", now=1 * day) is False  # a redelivery, a day later
    with store.write() as tx:
        assert tx.record_delivery("new", now=4 * day) is True  # makes room: "old" goes
        assert tx.record_delivery("old", now=4 * day) is True  # so it counts as new again
