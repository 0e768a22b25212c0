"""One daemon per PostgreSQL database: a second `headwater up` on the same database
refuses to start and says why, and the database is free again once the first stops."""

from __future__ import annotations

from pathlib import Path

import pytest
from postgres import fresh_database

from headwater.daemon.daemon import Daemon, DatabaseInUse
from headwater.daemon.settings import Settings


def daemon_on(url: str, data_dir: Path) -> Daemon:
    return Daemon(Settings(db=url, data_dir=data_dir, port=0, poll_interval=0, workers=1))


def test_a_second_daemon_on_one_database_refuses_to_start(tmp_path: Path) -> None:
    with fresh_database() as url:
        first = daemon_on(url, tmp_path / "a")
        try:
            with pytest.raises(DatabaseInUse) as refused:
                daemon_on(url, tmp_path / "b")
            message = str(refused.value)
            assert "in use by another Headwater daemon" in message
            assert url.rsplit("/", 1)[1] in message  # names the database
        finally:
            first.stop(grace=1)
        after = daemon_on(url, tmp_path / "c")  # the claim ended with the first daemon
        after.stop(grace=1)
