"""SQLite's write-ahead log is copied into the database by the engine in the background,
not by whichever commit happens to fill it (which then took tens of milliseconds)."""

from __future__ import annotations

from pathlib import Path

from enginefixtures import EngineFactory
from waiting import wait_until

from headwater.daemon.store.db import SQLITE_WAL_AUTOCHECKPOINT_PAGES, make_engine, sqlite_url
from headwater.daemon.store.migrate import upgrade
from headwater.daemon.store.store import CHECKPOINT_EVERY_COMMITS, Store


def test_store_connections_leave_the_checkpoint_to_the_engine(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    upgrade(engine)
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        pages = driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0]  # type: ignore[union-attr]
    assert pages == SQLITE_WAL_AUTOCHECKPOINT_PAGES > 1000  # SQLite's own default is 1,000
    engine.dispose()


def test_after_a_checkpoint_the_log_is_written_from_its_start_again(tmp_path: Path) -> None:
    """A WAL copied whole is reused from its first page at the next commit: it stops
    growing. Without the checkpoint the next commit makes it longer."""
    engine = make_engine(sqlite_url(tmp_path))
    upgrade(engine)
    store = Store(engine)
    wal = tmp_path / "headwater.db-wal"

    def commits(count: int) -> None:
        line = {"execution_id": "e1", "task_run_id": "r1", "timestamp": 1.0, "level": "INFO"}
        for n in range(count):
            with store.write() as tx:
                tx.insert_logs([{**line, "message": f"line {n} " + "x" * 2000}])

    commits(50)
    grown = wal.stat().st_size
    commits(1)
    assert wal.stat().st_size > grown  # nothing copied it yet: it only grows
    grown = wal.stat().st_size
    store.checkpoint()
    commits(1)
    assert 0 < wal.stat().st_size <= grown  # written from its start again
    engine.dispose()


def test_a_running_engine_checkpoints_after_many_commits(make_engine: EngineFactory) -> None:
    engine = make_engine()
    if not engine.store.sqlite:
        return  # PostgreSQL has no WAL file to copy: nothing to check there
    calls: list[int] = []
    real = engine.store.checkpoint

    def counted() -> None:
        real()
        calls.append(engine.store.commits)

    engine.store.checkpoint = counted  # type: ignore[method-assign]
    before = len(calls)
    for n in range(CHECKPOINT_EVERY_COMMITS + 1):  # enough to wake the checkpointer
        with engine.store.write() as tx:
            tx.update_execution(f"e{n}", {"state": "RUNNING"})
    wait_until(lambda: len(calls) > before, what="the engine to checkpoint the WAL")
    assert calls[-1] >= CHECKPOINT_EVERY_COMMITS
