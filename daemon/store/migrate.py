"""Bringing a database to the current schema with Alembic.

Alembic (with what it imports) takes a quarter of a second to load, on every start of
the daemon and of every `headwater run`; a database already at the current schema does
not need it. So the version the database records is read first with one query, and
Alembic is loaded only when it differs from `HEAD` (a test keeps `HEAD` equal to the
newest migration's revision).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from headwater.daemon.store.db import read_transaction, write_transaction

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = "0004"
"""The revision of the newest migration in migrations/versions."""
VERSION_TABLE = "alembic_version"


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def current_version(engine: Engine) -> str | None:
    """The revision the database records, or None when it has no schema yet."""
    with read_transaction(engine) as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade(engine: Engine) -> None:
    """Apply every migration the database has not had yet (in one transaction)."""
    if current_version(engine) == HEAD:
        return
    from alembic import command

    config = alembic_config()
    with write_transaction(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
