"""A flood of log lines does not fail healthy tasks, fill the store, or grow the daemon.

Issue 11: a task printing 1 GB took the daemon to 3.8 GB of memory and its store to
2.3 GB; lease renewals then hit "database is locked" and the task, which succeeded,
ended FAILED ("lease expired"). Each attempt of a task run now stores a bounded log
(then one "log truncated" line, and the rest counted), lines wait for the store instead
of piling up in memory, and a lease renewal never waits behind log writes.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import EngineFactory, Flows
from daemonprocess import RunningDaemon, daemons, new_repos
from waiting import wait_until

from headwater.daemon.engine.logs import LogLimits
from headwater.daemon.store import db

TERMINAL = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED")

PRINT_LINES = """
tasks:
  - id: noisy
    type: scripts.shell.Commands
    commands:
      - seq 1 {lines}
      - echo done >&2
  - id: after
    type: core.log.Log
    message: "after {{{{ outputs.noisy.exitCode }}}}"
"""


def test_an_attempt_stores_at_most_its_line_budget_and_counts_the_rest(
    make_engine: EngineFactory,
) -> None:
    flows = Flows(make_engine(log_limits=LogLimits(max_lines=1_000)))
    finished = flows.run(PRINT_LINES.format(lines=50_000))

    assert finished.state == "SUCCESS", finished.summary()
    lines = finished.messages("noisy")
    assert len(lines) == 1_000 + 2  # the budget, the notice, the count at the end
    assert lines[:3] == ["1", "2", "3"]
    assert lines[999] == "1000"
    assert lines[1000].startswith("log truncated: this attempt reached the limit of 1000 lines")
    # 49,000 more numbers and the line on stderr were counted, not stored
    assert lines[1001].startswith("log truncated: 49001 more lines")
    assert finished.messages("after") == ["after 0"]


def test_an_attempt_stores_at_most_its_byte_budget(make_engine: EngineFactory) -> None:
    flows = Flows(make_engine(log_limits=LogLimits(max_bytes=64 * 1024)))
    # 20 MB in lines of 1,000 characters
    finished = flows.run(
        """
        tasks:
          - id: noisy
            type: scripts.shell.Commands
            commands:
              - head -c 20000000 /dev/zero | tr '\\0' x | fold -w 1000
        """
    )
    assert finished.state == "SUCCESS", finished.summary()
    lines = finished.messages("noisy")
    stored = [line for line in lines if not line.startswith("log truncated")]
    assert sum(len(line) for line in stored) <= 64 * 1024
    assert len(stored) == 65  # 65,000 bytes: a 66th line would pass 65,536
    assert lines[-1].startswith("log truncated: 19935 more lines (19.0 MiB)")


def test_a_store_locked_longer_than_the_lease_does_not_fail_a_running_task(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another program holds the store's write lock for longer than a lease lasts (and
    longer than SQLite waits): the task ends by its own result, not "lease expired"."""
    # SQLite gives up after 0.3 s instead of 30 s, so the test need not wait that long
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 300)
    monkeypatch.setattr(db, "SQLITE_PRAGMAS", (*db.SQLITE_PRAGMAS[:-1], "PRAGMA busy_timeout=300"))
    engine = make_engine(lease_seconds=1.0, heartbeat_seconds=0.1)
    flows = Flows(engine)
    marker = tmp_path / "started"
    execution_id = flows.start(
        f"""
        tasks:
          - id: slow
            type: scripts.shell.Commands
            commands:
              - touch {marker}
              - for i in 1 2 3 4 5 6 7 8 9 10; do echo "tick $i"; sleep 0.3; done
        """
    )
    wait_until(marker.exists, what="the task to start")
    released = _hold_write_lock(tmp_path / "data" / "headwater.db", seconds=4.0)
    finished = flows.finish(execution_id, timeout=30)
    released.wait()

    assert finished.state == "SUCCESS", finished.summary()
    run = finished.run("slow")
    assert len(run["attempts"]) == 1
    assert [f"tick {i}" for i in range(1, 11)] == finished.messages("slow")


def _hold_write_lock(database: Path, seconds: float) -> threading.Event:
    """Take the database's write lock from another connection for `seconds`."""
    taken, released = threading.Event(), threading.Event()

    def hold() -> None:
        with closing(sqlite3.connect(database, isolation_level=None, timeout=30)) as other:
            other.execute("BEGIN IMMEDIATE")
            taken.set()
            threading.Event().wait(seconds)
            other.execute("ROLLBACK")
        released.set()

    threading.Thread(target=hold, daemon=True).start()
    taken.wait(30)
    return released


FLOOD_MB = 200
FLOOD_FLOW = f"""\
id: flood
namespace: attacks
tasks:
  - id: noisy
    type: scripts.shell.Commands
    commands:
      - head -c {FLOOD_MB * 1_000_000} /dev/zero | tr '\\0' x | fold -w 1000
"""
MAX_DAEMON_MIB = 300  # the daemon's peak memory while a task prints FLOOD_MB (idle: ~125)


def test_a_task_printing_hundreds_of_megabytes_leaves_the_daemon_and_store_small(
    tmp_path: Path,
) -> None:
    repos = new_repos(tmp_path)
    repos.push({"flows/attacks/flood.yaml": FLOOD_FLOW})
    with daemons(tmp_path) as start:
        daemon = start(f"file://{repos.remote}", env={"HEADWATER_LOG_MAX_BYTES": str(1024 * 1024)})
        started = daemon.post("/api/v1/executions/attacks/flood")
        assert started.status == 200, started.body
        ended = wait_until(
            lambda: _ended(daemon, started.body["id"]), timeout=120, what="the flood to end"
        )
        peak_mib = _peak_memory_mib(daemon.proc.pid)  # type: ignore[union-attr]

    assert ended["state"]["current"] == "SUCCESS", ended
    assert peak_mib < MAX_DAEMON_MIB, f"the daemon grew to {peak_mib:.0f} MiB"
    store = daemon.data_dir / "headwater.db"
    store_mib = sum(p.stat().st_size for p in store.parent.glob("headwater.db*")) / 2**20
    assert store_mib < 20, f"the store grew to {store_mib:.0f} MiB"


def _ended(daemon: RunningDaemon, execution_id: str) -> dict[str, Any] | None:
    execution = daemon.get(f"/api/v1/executions/{execution_id}")
    return execution if execution["state"]["current"] in TERMINAL else None


def _peak_memory_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")
