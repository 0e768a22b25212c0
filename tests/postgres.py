"""A real PostgreSQL for the tests: a fresh, empty database per test on the server that
scripts/services.d/postgres starts (URL in HEADWATER_TEST_POSTGRES).

Tests opt in with the `postgres` marker; the `db_url` fixture then runs them once on
SQLite and once on PostgreSQL. Without a server the PostgreSQL case skips and says why,
except under CI=true, where it fails: in CI no test skips for want of a service.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import psycopg
import pytest
from sqlalchemy.engine import make_url

DEFAULT_URL = "postgresql+psycopg://headwater@127.0.0.1:54329/headwater_test"
CONNECT_TIMEOUT = 3  # seconds; a server that answers does so at once


def server_url() -> str:
    return os.environ.get("HEADWATER_TEST_POSTGRES", DEFAULT_URL)


def _libpq(url: str) -> str:
    """The libpq form of a SQLAlchemy URL (without the `+psycopg` driver name)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@cache
def unavailable() -> str | None:
    """Why no test database can be made here, or None when the server answers."""
    try:
        with psycopg.connect(_libpq(server_url()), connect_timeout=CONNECT_TIMEOUT):
            return None
    except psycopg.Error as error:
        return (
            f"no PostgreSQL answers at {make_url(server_url()).render_as_string()} ({error}); "
            "start one with scripts/services.d/postgres or set HEADWATER_TEST_POSTGRES"
        )


def require_server() -> None:
    """Skip the test without a server; under CI=true, fail it instead."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped afterwards with whatever still holds
    a connection to it."""
    require_server()
    name = f"hw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(server_url()), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield make_url(server_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(server_url()), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
