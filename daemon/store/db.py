"""Database engines: SQLite (WAL, one writer at a time, `BEGIN IMMEDIATE`) or PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError

from headwater.daemon import jsontext

SQLITE_BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another writer
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000  # SQLite's default is 1,000 (4 MB)
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",  # readers never wait for the writer
    # With WAL, NORMAL loses no committed transaction when a process crashes; a power
    # loss may lose the last few. FULL would fsync every commit.
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    # The engine checkpoints the WAL in the background (`Store.checkpoint`), so that no
    # commit pays for copying it into the database (and its fsync): a tenth to a half of
    # a millisecond per commit on average, and tens of milliseconds at the commit that
    # triggered it. This bound (40 MB of WAL) only acts if the background one falls behind.
    f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}",
)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'headwater.db'}"


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL and explicit transaction control."""
    json_columns = {"json_serializer": jsontext.dumps, "json_deserializer": jsontext.loads}
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **json_columns)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=20,
        max_overflow=20,
        **json_columns,
    )
    _control_sqlite_transactions(engine)
    return engine


def _control_sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, say when transactions begin.

    pysqlite begins transactions lazily and always DEFERRED; a deferred transaction
    that later writes fails with SQLITE_BUSY at once, whatever the busy timeout. So the
    driver's own handling is turned off and each transaction begins explicitly: write
    transactions with `BEGIN IMMEDIATE`, which waits for the write lock up front.
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        immediate = connection.info.pop("immediate", False)
        # Straight to the driver: through `exec_driver_sql` a BEGIN costs as much Python
        # as a whole statement (a tenth of a short task's time in the store).
        statement = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        driver = connection.connection.driver_connection
        try:
            driver.execute(statement)  # type: ignore[union-attr]
        except sqlite3.Error as error:  # raised as SQLAlchemy's, as callers expect
            raise DBAPIError.instance(statement, (), error, sqlite3.Error) from error


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def write_transaction(engine: Engine, busy_timeout: float | None = None) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock first, waiting for
    it `busy_timeout` seconds when given (else SQLITE_BUSY_TIMEOUT_MS)."""
    with engine.connect() as connection:
        sqlite = is_sqlite(engine)
        if sqlite and busy_timeout is not None:
            _busy_timeout(connection, int(busy_timeout * 1000))
        try:
            if sqlite:
                connection.info["immediate"] = True
            with connection.begin():
                yield connection
        finally:
            if sqlite and busy_timeout is not None:
                _busy_timeout(connection, SQLITE_BUSY_TIMEOUT_MS)


def _busy_timeout(connection: Connection, milliseconds: int) -> None:
    # Through the driver: a statement through SQLAlchemy would begin a transaction.
    connection.connection.driver_connection.execute(  # type: ignore[union-attr]
        f"PRAGMA busy_timeout={milliseconds}"
    )


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection, connection.begin():
        yield connection
