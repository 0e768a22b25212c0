"""`kill -9` of `headwater up` between an upstream execution's end and its Flow trigger.

A Flow trigger fires "in the same database transaction that ends the upstream
execution, so a daemon that dies at any moment has either ended it and started the
downstream, or done neither" (docs/triggers.md, "Exactly once"). The daemon is started
through tests/killpoints.py, stopped right after the Flow triggers' hook (`on_end`) ran
for the ending upstream execution — the downstream execution is written, not committed —
and killed there with SIGKILL. Restarted on the same data directory, it ends the upstream
and starts the downstream exactly once: never zero, never two.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from daemonprocess import DaemonFactory, Repos, RunningDaemon, daemons, new_repos
from killpoints import Killpoint, reached, write_lock_held
from waiting import wait_until

ENDED = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED")

# Its one task is retried: the attempt the kill cut short counts (its lease is lost).
UPSTREAM = """\
id: upstream
namespace: team
tasks:
  - id: work
    type: core.log.Log
    message: upstream works
    retry: {type: constant, interval: PT0.1S, maxAttempts: 2}
"""

DOWNSTREAM = """\
id: downstream
namespace: team
tasks:
  - id: report
    type: core.log.Log
    message: "after {{ trigger.flowId }} {{ trigger.executionId }}"
triggers:
  - id: after_upstream
    type: core.trigger.Flow
    conditions:
      - type: core.condition.ExecutionFlow
        namespace: team
        flowId: upstream
"""


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return new_repos(tmp_path)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    with daemons(tmp_path) as start:
        yield start


def stored(database: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows as an operator reads them after the crash: sqlite3, read-only."""
    uri = f"file:{database}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=10)) as connection:
        return connection.execute(sql, args).fetchall()


def ended(daemon: RunningDaemon, execution_id: str) -> dict[str, Any] | None:
    row: dict[str, Any] = daemon.get(f"/api/v1/executions/{execution_id}")
    return row if row["state"]["current"] in ENDED else None


def downstreams(daemon: RunningDaemon) -> list[dict[str, Any]]:
    found = daemon.get("/api/v1/executions/search?namespace=team&flowId=downstream&size=100")
    return list(found["results"])


def test_a_kill_between_the_upstreams_end_and_its_flow_trigger_neither_loses_nor_doubles_it(
    repos: Repos, start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    repos.push({"flows/team/upstream.yaml": UPSTREAM, "flows/team/downstream.yaml": DOWNSTREAM})
    hook = Killpoint(
        "headwater.daemon.triggers.flowtrigger:FlowTriggers.on_end", tmp_path / "on_end.json"
    )
    daemon = start_daemon(f"file://{repos.remote}", killpoint=hook)
    database = daemon.data_dir / "headwater.db"
    started = daemon.post("/api/v1/executions/team/upstream")
    assert started.status == 200, started.body
    upstream = started.body["id"]

    assert daemon.proc is not None
    stop = reached(hook, daemon.proc)
    # Where the kill lands: the hook ran for the upstream's end, whose transaction is
    # still open and holds the write lock.
    assert [(row["id"], row["flow_id"]) for row in stop.rows] == [(upstream, "upstream")]
    assert stop.in_transaction is True
    assert write_lock_held(database)
    daemon.kill()
    daemon.cleanup()

    # Neither happened: the upstream has not ended, no downstream exists.
    [(state,)] = stored(database, "SELECT state FROM executions WHERE id = ?", upstream)
    assert state not in ENDED, f"the upstream's end committed before its flow trigger: {state}"
    assert stored(database, "SELECT id FROM executions WHERE flow_id = 'downstream'") == []

    restarted = start_daemon(daemon.repo, daemon.data_dir.name, run=False).start()
    done = wait_until(lambda: ended(restarted, upstream), what="the upstream to end")
    assert done["state"]["current"] == "SUCCESS", done
    # Its downstream was created in the transaction that ended it: it exists by now, once.
    found = downstreams(restarted)
    assert len(found) == 1, f"{len(found)} downstream executions: {found}"
    downstream = found[0]
    assert downstream["trigger"]["executionId"] == upstream
    finished = wait_until(lambda: ended(restarted, downstream["id"]), what="the downstream")
    assert finished["state"]["current"] == "SUCCESS", finished
    messages = [line["message"] for line in restarted.get(f"/api/v1/logs/{downstream['id']}")]
    assert messages == [f"after upstream {upstream}"]
    assert [row["id"] for row in downstreams(restarted)] == [downstream["id"]]
