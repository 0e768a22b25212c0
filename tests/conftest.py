"""Shared test setup: the tier marker of each test follows its folder, and tests marked
`postgres` run once on SQLite and once on a real PostgreSQL (the `db_url` fixture)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres import fresh_database

TIERS = ("unit", "integration", "e2e", "security")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("postgres"):
        metafunc.parametrize("db_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def db_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The database of the test's engines: None means SQLite in the data directory; under
    the `postgres` marker, also a fresh PostgreSQL database (see tests/postgres.py).
    HEADWATER_TEST_DATABASE=postgres puts every engine test on PostgreSQL."""
    default = os.environ.get("HEADWATER_TEST_DATABASE", "sqlite")
    if getattr(request, "param", default) == "sqlite":
        yield None
        return
    with fresh_database() as url:
        yield url
