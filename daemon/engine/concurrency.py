"""Flow concurrency limits: may an execution start now, and who starts when a slot frees.

A flow's `concurrency: {limit, behavior}` bounds its top-level executions that are
RUNNING, PAUSED or KILLING. An execution over the limit waits QUEUED (QUEUE), ends
CANCELLED (CANCEL) or ends FAILED (FAIL). Queued executions start in creation order:
one may start only when the running ones and the queued ones older than it leave a
slot. Executions a Subflow task starts are neither counted nor held back, as a parent
waiting for a queued child of its own flow would wait for itself.

Every decision is made in the write transaction that moves the execution, after
taking the flow's row lock (PostgreSQL; SQLite's write transactions run one at a
time), so several executors on one database never let more through than the limit.
"""

from __future__ import annotations

import logging
import sys

from headwater.daemon.engine.planner import Plan
from headwater.daemon.engine.states import State
from headwater.daemon.flow.model import Concurrency, Flow
from headwater.daemon.store.store import Row, Tx

log = logging.getLogger(__name__)

OCCUPYING = (State.RUNNING.value, State.PAUSED.value, State.KILLING.value)
"""Execution states that hold a slot (DESIGN: "States")."""
WAITING = frozenset({State.CREATED, State.QUEUED, State.RESTARTED})
"""Execution states that need a slot before they run."""
MAX_STARTED_AT_ONCE = 100  # queued executions looked at when an unlimited revision ends


def limit_of(flow: Flow, execution: Row) -> tuple[int, str] | None:
    """(limit, behavior) that applies to `execution`: its revision's, for top-level ones."""
    if execution.get("parent_execution_id") is not None or flow.concurrency is None:
        return None
    return _number(flow.concurrency), flow.concurrency.behavior


def _number(concurrency: Concurrency) -> int:
    """The limit as a number (the model lets any property hold an expression; a limit
    that is not a plain number cannot be rendered without an execution: no limit)."""
    try:
        return int(concurrency.limit)
    except ValueError:
        log.warning("concurrency limit %r is not a number; not applied", concurrency.limit)
        return sys.maxsize


def admit(tx: Tx, flow: Flow, execution: Row, now: float) -> Plan | None:
    """None when the execution may go on; otherwise the plan that queues or ends it."""
    found = limit_of(flow, execution)
    state = State(execution["state"])
    if found is None or state not in WAITING or execution.get("kill_requested"):
        return None
    if state == State.CREATED and (execution.get("wake_at") or 0.0) > now:
        return None  # a flow-level retry waiting for its time asks when it is due
    namespace, flow_id = execution["namespace"], execution["flow_id"]
    tx.lock_flow(namespace, flow_id)
    running = tx.count_top_level(namespace, flow_id, OCCUPYING)
    ahead = tx.count_top_level(namespace, flow_id, (State.QUEUED.value,), before=execution)
    limit, behavior = found
    if running + ahead < limit:
        return None
    if behavior == "QUEUE":
        return Plan(execution={"state": State.QUEUED.value} if state != State.QUEUED else {})
    ended = State.CANCELLED if behavior == "CANCEL" else State.FAILED
    values: Row = {"state": ended.value, "end_date": now, "wake_at": None}
    if ended == State.FAILED:
        values["error"] = (
            f"the concurrency limit of flow {namespace}.{flow_id} is reached: "
            f"{running} of {limit} executions are running"
        )
    return Plan(execution=values, ended=ended)


def next_in_line(tx: Tx, flow: Flow, execution: Row) -> list[str]:
    """Queued executions of the flow that may take the slots free now, oldest first.

    Called when `execution` ended; each one named still passes `admit` before it runs
    (its own revision's limit applies: a revision that dropped the limit still lets
    the executions queued under an older one start).
    """
    if execution.get("parent_execution_id") is not None:
        return []
    namespace, flow_id = execution["namespace"], execution["flow_id"]
    tx.lock_flow(namespace, flow_id)
    found = limit_of(flow, execution)
    free = MAX_STARTED_AT_ONCE
    if found is not None:
        free = min(free, found[0] - tx.count_top_level(namespace, flow_id, OCCUPYING))
    return tx.oldest_queued(namespace, flow_id, free) if free > 0 else []
