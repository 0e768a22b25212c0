"""Bringing a database to the current schema with Alembic.

Alembic (with what it imports) takes a quarter of a second to load, on every start of
the daemon and of every `headwater run`; a database already at the current schema does
not need it. So the version the database records is read first with one query, and
Alembic is loaded only when it differs from `HEAD` (a test keeps `HEAD` equal to the
newest migration's revision). An empty database gets the current schema at once from
the table models, stamped `HEAD` (running the chain of migrations took seconds on a
first start); a test checks that both ways make the same schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from headwater.daemon.store.db import read_transaction, write_transaction

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = "0005"
"""The revision of the newest migration in migrations/versions."""
VERSION_TABLE = "alembic_version"


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def create_current(engine: Engine) -> bool:
    """On a database with no tables at all, create the current schema and stamp it
    `HEAD`; False (nothing done) when it holds tables already."""
    from headwater.daemon.store.tables import metadata

    with write_transaction(engine) as connection:
        if inspect(connection).get_table_names():
            return False
        metadata.create_all(connection)
        connection.execute(
            text(
                f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
                f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
            )
        )
        connection.execute(text(f"INSERT INTO {VERSION_TABLE} VALUES (:v)"), {"v": HEAD})
    return True


def current_version(engine: Engine) -> str | None:
    """The revision the database records, or None when it has no schema yet."""
    with read_transaction(engine) as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade(engine: Engine) -> None:
    """Apply every migration the database has not had yet (in one transaction)."""
    version = current_version(engine)
    if version == HEAD:
        return
    if version is None and create_current(engine):
        return
    from alembic import command

    config = alembic_config()
    with write_transaction(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
