"""Crashes: a `headwater run` killed with SIGKILL in the middle of a script task, then
started again on the same data directory, finishes the execution by its retry policy,
with nothing stuck or run twice at once; and a worker that loses its lease stops its
child process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import Flows
from waiting import wait_until

from headwater.runners.process import process_group_alive

LEASE_SECONDS = "1"  # HEADWATER_LEASE_SECONDS for both runs: the restart takes over soon

CRASH_FLOW = """\
id: crashy
namespace: tests.crash
tasks:
  - id: work
    type: scripts.shell.Commands
    retry: {{type: constant, interval: PT0.5S, maxAttempts: 3}}
    env:
      EVENTS: "{events}"
    commands:
      - echo "start $$ $(date +%s.%N)" >> "$EVENTS"
      - trap 'echo "stop $$ $(date +%s.%N)" >> "$EVENTS"; exit 143' TERM
      - trap '' PIPE  # orphaned, its output pipe is gone: the shell's "Terminated" must not kill it
      # The first attempt waits to be ended by the restarted engine, however long that
      # restart takes on a busy machine; a later attempt ends by itself.
      - if [ "$(grep -c start "$EVENTS")" -gt 1 ]; then sleep 0.2; else sleep 120; fi
      - echo "end $$ $(date +%s.%N)" >> "$EVENTS"
  - id: after
    type: core.log.Log
    message: "work ended with {{{{ outputs.work.exitCode }}}}"
"""


def query(db: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    """Read the store as an outsider would: read-only, a connection per query."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(sql, args).fetchall()


def started_script(db: Path) -> sqlite3.Row | None:
    """The task run `work` once its process group is recorded (None before)."""
    try:
        found = query(db, "SELECT * FROM task_runs WHERE task_id='work' AND pgid IS NOT NULL")
    except sqlite3.OperationalError:  # no database yet, or no tables yet
        return None
    return found[0] if found else None


def headwater_run(flow: Path, data_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "HEADWATER_LEASE_SECONDS": LEASE_SECONDS}
    command = [sys.executable, "-m", "headwater.daemon.cli", "run", str(flow)]
    return subprocess.Popen(
        [*command, "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def events(path: Path) -> list[tuple[str, int, float]]:
    """(what, pid, time) lines the script wrote: start, stop (on TERM) and end."""
    found = []
    for line in path.read_text().splitlines():
        what, pid, moment = line.split()
        found.append((what, int(pid), float(moment)))
    return found


def test_a_killed_run_carries_on_after_a_restart_by_its_retry_policy(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    data_dir = tmp_path / "data"
    flow = tmp_path / "crashy.yaml"
    log = tmp_path / "events.log"
    flow.write_text(CRASH_FLOW.format(events=log))
    db = data_dir / "headwater.db"

    first = headwater_run(flow, data_dir)
    processes.append(first)
    running = wait_until(lambda: started_script(db), timeout=20, what="the script to start")
    assert running["state"] == "RUNNING" and running["attempt"] == 1
    pgid = running["pgid"]
    wait_until(lambda: log.exists() and events(log), what="the script's first line")
    first.send_signal(signal.SIGKILL)  # the script lives on, orphaned, in its own group
    first.wait(timeout=10)
    assert process_group_alive(pgid)

    second = headwater_run(flow, data_dir)
    processes.append(second)
    output, _ = second.communicate(timeout=30)
    assert second.returncode == 0, output
    assert "carrying on with unfinished execution" in output
    assert "ended SUCCESS" in output

    executions = query(db, "SELECT * FROM executions")
    assert len(executions) == 1, "a second execution was created"
    assert executions[0]["state"] == "SUCCESS"
    runs = query(db, "SELECT * FROM task_runs")
    assert sorted(r["task_id"] for r in runs) == ["after", "work"]
    assert not [r for r in runs if r["state"] not in ("SUCCESS",)]
    work = next(r for r in runs if r["task_id"] == "work")
    attempts = json.loads(work["attempts"])
    assert [a["state"] for a in attempts] == ["FAILED", "SUCCESS"]
    assert "lease expired" in attempts[0]["error"]
    assert work["attempt"] == 2
    assert not process_group_alive(pgid), "the leftover script was not ended"

    seen = events(log)
    starts = [e for e in seen if e[0] == "start"]
    assert len(starts) == 2, seen
    assert [e[0] for e in seen] == ["start", "stop", "start", "end"], seen
    assert seen[1][1] == seen[0][1]  # the first attempt's script stopped …
    assert seen[2][2] >= seen[1][2]  # … before the second one started


def test_a_worker_that_loses_its_lease_stops_its_child(flows: Flows) -> None:
    execution_id = flows.start(
        """
        tasks:
          - id: slow
            type: scripts.shell.Commands
            commands: ["sleep 30"]
        """
    )
    run = wait_until(
        lambda: [
            r for r in flows.engine.task_runs(execution_id) if r["state"] == "RUNNING" and r["pgid"]
        ],
        what="the script to start",
    )[0]
    with flows.engine.store.write() as tx:  # another worker took the task run over
        tx.update_task_run(run["id"], {"lease_owner": "thief", "lease_expires": time.time() + 1})
    # On SQLite this process is the only writer and announces its writes; the thief is
    # the test, so it announces this one (else the executor looks again only at its
    # next idle poll, 15 s away: as long as this test waits).
    flows.engine.executor.timers.notify()
    # stopped, not left to its `sleep 30` (wait_until gives up long before that)
    wait_until(lambda: not process_group_alive(run["pgid"]), what="the child to stop")
    current = flows.task_run(execution_id, "slow")
    assert current is not None
    assert current["lease_owner"] == "thief"  # the late worker did not overwrite its result
    assert current["state"] == "RUNNING" and current["attempts"] == []
    done = flows.finish(execution_id)  # the thief never finishes: its lease expires
    assert done.state == "FAILED"
    assert done.run("slow")["error"] == "the worker running it stopped (its lease expired)"
