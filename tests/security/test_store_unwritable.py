"""A store that cannot be written: not ready, writes refused with the reason, running
tasks carry on.

Issue 11: with the store locked by another program for 45 s, or its disk full, starts
were accepted with 200 and then FAILED, running tasks ended as "lease expired", and
/readyz stayed 200. Now /readyz answers 503 with the reason, a start answers 503 with
it (and creates nothing), and a task that was running when it happened ends by its own
result once the store can be written again.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from gitrepos import WorkingClone, make_remote
from inprocessdaemon import Http, serving
from waiting import wait_until

from headwater.daemon.store import db

FLOW = """\
id: slow
namespace: tests
tasks:
  - id: work
    type: scripts.shell.Commands
    commands:
      - touch "{marker}"
      - sleep 2
      - echo done
"""
QUICK = "id: quick\nnamespace: tests\ntasks:\n  - id: hi\n    type: core.log.Log\n    message: hi\n"


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite gives up on a locked store after 0.5 s instead of 30 s (the test's patience)."""
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 500)
    monkeypatch.setattr(db, "SQLITE_PRAGMAS", (*db.SQLITE_PRAGMAS[:-1], "PRAGMA busy_timeout=500"))


def repository(root: Path, marker: Path) -> Path:
    remote = make_remote(root / "remote.git")
    clone = WorkingClone.create(root / "work", remote)
    clone.write_many(
        {"flows/tests/slow.yaml": FLOW.format(marker=marker), "flows/tests/quick.yaml": QUICK}
    )
    clone.commit("flows")
    clone.push()
    return remote


@contextlib.contextmanager
def locked(database: Path) -> Iterator[None]:
    """Another program holds the store's write lock for the block."""
    with closing(sqlite3.connect(database, isolation_level=None, timeout=30)) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")


def executions(http: Http) -> int:
    return int(http.call("GET", "/api/v1/executions/search").body["total"])


def test_a_store_locked_by_another_program(tmp_path: Path, short_busy_timeout: None) -> None:
    marker = tmp_path / "started"
    with serving(repository(tmp_path, marker), tmp_path) as daemon:
        http = Http(daemon)
        running = http.call("POST", "/api/v1/executions/tests/slow").body["id"]
        wait_until(marker.exists, what="the task to start")
        before = executions(http)
        with locked(tmp_path / "data" / "headwater.db"):
            ready = http.call("GET", "/readyz")
            assert ready.status == 503
            assert "the store is locked by another program" in ready.body["message"]
            start = http.call("POST", "/api/v1/executions/tests/quick")
            assert start.status == 503, start.body
            assert "the store is locked by another program" in start.body["message"]
            threading.Event().wait(3)  # longer than the task, and than its lease checks
        assert executions(http) == before  # the refused start created nothing
        assert http.call("GET", "/readyz").status == 200
        ended = http.finished(running, timeout=30)
        assert ended["state"]["current"] == "SUCCESS", ended
        assert "done" in http.messages(running)
        again = http.call("POST", "/api/v1/executions/tests/quick")
        assert again.status == 200


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB file system of its own (a tmpfs; root only, as in CI)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root, to mount a small file system")
        pytest.skip("mounting a small file system needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Fill the file system to the last byte; the file to delete to free it."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1024 * 1024, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


def test_a_full_disk(tmp_path: Path, small_disk: Path) -> None:
    marker = tmp_path / "started"
    with serving(repository(tmp_path, marker), small_disk) as daemon:
        http = Http(daemon)
        running = http.call("POST", "/api/v1/executions/tests/slow").body["id"]
        wait_until(marker.exists, what="the task to start")
        filler = fill(small_disk)
        ready = http.call("GET", "/readyz")
        assert ready.status == 503
        assert "the store's disk is full" in ready.body["message"]
        start = http.call("POST", "/api/v1/executions/tests/quick")
        assert start.status == 503, start.body
        assert "the store's disk is full" in start.body["message"]
        threading.Event().wait(3)  # the task ends meanwhile; its end cannot be written
        filler.unlink()
        wait_until(lambda: http.call("GET", "/readyz").status == 200, what="ready again")
        ended = http.finished(running, timeout=30)
        assert ended["state"]["current"] == "SUCCESS", ended
        assert "done" in http.messages(running)
        assert http.call("POST", "/api/v1/executions/tests/quick").status == 200
