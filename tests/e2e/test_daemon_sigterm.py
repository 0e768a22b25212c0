"""SIGTERM to `headwater up` while a task runs: the task run is handed back, not failed.

docs/running.md ("Retries, timeouts"): "A daemon stopped with SIGTERM hands unfinished
task runs back without using an attempt"; docs/operator.md: it "stops claiming work,
gives running task runs a grace period (30 s) and exits". The task here outlasts any
grace (it waits for a file the test makes after the stop) and has no retry: had the
stop used up its one attempt, the restarted daemon could only fail it. (The engine-level
test is tests/integration/test_engine_shutdown.py.)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from daemonprocess import STOP_TIMEOUT, DaemonFactory, Repos, daemons, new_repos
from waiting import wait_until

from headwater.daemon.engine.worker import SHUTDOWN_GRACE_SECONDS, SHUTDOWN_RELEASE_SECONDS

ENDED = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED")

WAITING = """\
id: waiting
namespace: team
tasks:
  - id: work
    type: scripts.shell.Commands
    env:
      STARTS: "{starts}"
      GO: "{go}"
    commands:
      - echo started >> "$STARTS"
      - while [ ! -e "$GO" ]; do sleep 0.1; done
  - id: after
    type: core.log.Log
    message: work ended
"""


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return new_repos(tmp_path)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    with daemons(tmp_path) as start:
        yield start


def stored_task_run(database: Path, execution_id: str, task_id: str) -> dict[str, Any]:
    """A task run's row as an operator reads it with sqlite3 (read-only)."""
    uri = f"file:{database}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=10)) as connection:
        connection.row_factory = sqlite3.Row
        [row] = connection.execute(
            "SELECT * FROM task_runs WHERE execution_id = ? AND task_id = ?",
            (execution_id, task_id),
        ).fetchall()
        return dict(row)


def test_sigterm_hands_a_running_task_run_back_and_a_restart_runs_it_to_success(
    repos: Repos, start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    starts, go = tmp_path / "starts", tmp_path / "go"
    repos.push({"flows/team/waiting.yaml": WAITING.format(starts=starts, go=go)})
    daemon = start_daemon(f"file://{repos.remote}")
    started = daemon.post("/api/v1/executions/team/waiting")
    assert started.status == 200, started.body
    execution_id = started.body["id"]

    def running() -> bool:
        runs = daemon.get(f"/api/v1/executions/{execution_id}")["taskRunList"]
        work = [r for r in runs if r["taskId"] == "work" and r["state"]["current"] == "RUNNING"]
        return bool(work) and starts.exists()

    wait_until(running, what="the script to run")
    # The grace period passes (the script does not end), then the task run is handed back.
    assert daemon.terminate(SHUTDOWN_GRACE_SECONDS + SHUTDOWN_RELEASE_SECONDS + STOP_TIMEOUT) == 0
    assert "signal 15: stopping" in daemon.output()

    work = stored_task_run(daemon.data_dir / "headwater.db", execution_id, "work")
    assert (work["state"], work["attempt"], work["lease_owner"]) == ("CREATED", 0, None), work
    assert not json.loads(work["attempts"] or "[]"), "the stop recorded an attempt"

    go.touch()
    restarted = start_daemon(daemon.repo, daemon.data_dir.name, run=False).start()

    def ended() -> dict[str, Any] | None:
        row: dict[str, Any] = restarted.get(f"/api/v1/executions/{execution_id}")
        return row if row["state"]["current"] in ENDED else None

    done = wait_until(ended, what="the execution to end after the restart")
    assert done["state"]["current"] == "SUCCESS", done
    [work_run] = [r for r in done["taskRunList"] if r["taskId"] == "work"]
    assert [a["state"] for a in work_run["attempts"]] == ["SUCCESS"]
    assert starts.read_text().splitlines() == ["started", "started"]  # it ran again, whole
    [after] = [r for r in done["taskRunList"] if r["taskId"] == "after"]
    logs = restarted.get(f"/api/v1/logs/{execution_id}")
    assert [line["message"] for line in logs if line["taskRunId"] == after["id"]] == ["work ended"]
