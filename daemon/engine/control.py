"""Execution control asked for by people: kill, restart, replay, resume.

Each verb checks the execution's state in the write transaction that changes it, and
says what is wrong when the state does not allow it (ExecutionStateConflict): killing
an ended execution, restarting a successful one, resuming one that is not paused.

- kill: running task runs end KILLED (their processes and process groups are
  stopped), nothing new starts, the execution ends KILLED.
- restart: a FAILED or KILLED execution runs again in place. Its failed and killed
  task runs get a new attempt, the flowables above them run again, what succeeded
  stays; the errors and finally branches run again from scratch. The execution moves
  FAILED -> RESTARTED -> RUNNING (or QUEUED, by its flow's concurrency limit).
- replay: a new execution of the same revision with the same inputs (or new ones),
  `originalId` set to the old one, label `system.replay`. Given a task run, the task
  runs that succeeded before it are copied with their outputs; it and what follows
  run again.
- resume: every paused task run of a PAUSED execution goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from headwater.daemon.engine.executor import ExecutionRequest, Executor
from headwater.daemon.engine.planner import new_id
from headwater.daemon.engine.states import IllegalTransition, State, check_transition
from headwater.daemon.errors import ExecutionNotFound, ExecutionStateConflict, HeadwaterError
from headwater.daemon.flow.tasks.subflow import Subflow
from headwater.daemon.store.store import Row, Tx

log = logging.getLogger(__name__)

RESTARTED_LABEL = "system.restarted"
"""Set to "true" on an execution that was restarted (Kestra's system label)."""
REPLAY_LABEL = "system.replay"
"""Set to "true" on an execution made by a replay (Kestra's system label)."""
RESTARTABLE = frozenset({State.FAILED, State.KILLED})
AGAIN = frozenset({State.FAILED, State.KILLED})
"""Task-run states a restart runs again."""
KEPT = frozenset({State.SUCCESS, State.WARNING, State.SKIPPED})
"""Task-run states a replay copies."""
RERUN_BRANCHES = ("errors", "finally")
"""Branches a restart drops and runs again: they answer how the execution ends."""
_LEASE_CLEARED: Row = {"lease_owner": None, "lease_expires": None, "pgid": None}


class TaskRunNotFound(HeadwaterError):
    """A replay named a task run that is not part of the execution."""


class ResumeRefused(HeadwaterError):
    """A resume came with inputs that no Pause of the flow takes."""


class Control:
    """Kill, restart, replay and resume on an executor; `cancel_running` stops the task
    runs of an execution that this process's workers run (a kill's shortcut)."""

    def __init__(self, executor: Executor, cancel_running: Callable[[str], None]) -> None:
        self.executor = executor
        self.cancel_running = cancel_running

    # -- verbs -------------------------------------------------------------------------
    def kill(self, execution_id: str) -> Row:
        """Ask a running, paused or queued execution to end KILLED; its row after."""

        def kill(tx: Tx, ended: list[Row]) -> None:
            execution = _existing(tx, execution_id)
            state = State(execution["state"])
            if state.terminal:
                raise ExecutionStateConflict(
                    execution_id,
                    state,
                    "it has ended, there is nothing to kill; restart or replay it to run it again",
                )
            tx.update_execution(execution_id, {"kill_requested": True})
            ended += self.executor.advance(tx, execution_id)

        self.executor.change(kill)
        self.executor.work.notify()
        self.cancel_running(execution_id)
        log.info("execution kill asked", extra={"execution": execution_id})
        return self._row(execution_id)

    def restart(self, execution_id: str) -> Row:
        """Run a FAILED or KILLED execution's failed task runs again, in place."""

        def restart(tx: Tx, ended: list[Row]) -> None:
            execution = _existing(tx, execution_id)
            state = State(execution["state"])
            if state not in RESTARTABLE:
                raise ExecutionStateConflict(
                    execution_id,
                    state,
                    "only a FAILED or KILLED execution can be restarted; "
                    "a replay starts a new execution of it from any task",
                )
            check_transition(state, State.RESTARTED, f"execution {execution_id}")
            runs = tx.task_runs(execution_id)
            try:
                updates, dropped = restart_changes(
                    runs, self.executor.clock(), self._subflows(execution)
                )
            except IllegalTransition as exc:
                raise ExecutionStateConflict(execution_id, state, str(exc)) from None
            tx.delete_task_runs(dropped)
            for run_id, values in updates.items():
                tx.update_task_run(run_id, values)
            tx.update_execution(execution_id, self._restarted(execution))
            ended += self.executor.advance(tx, execution_id)

        self.executor.change(restart)
        self._wake()
        log.info("execution restarted", extra={"execution": execution_id})
        return self._row(execution_id)

    def replay(
        self,
        execution_id: str,
        task_run_id: str | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> Row:
        """A new execution of the same revision; InputsRefused when new inputs are wrong."""

        def replay(tx: Tx, ended: list[Row]) -> Row:
            old = _existing(tx, execution_id)
            state = State(old["state"])
            if not state.terminal:
                raise ExecutionStateConflict(
                    execution_id,
                    state,
                    "only an ended execution can be replayed; kill it first, or wait for its end",
                )
            runs = tx.task_runs(execution_id)
            copied = (
                replay_runs(execution_id, runs, task_run_id, self.executor.clock())
                if task_run_id
                else []
            )
            labels = {i["key"]: i["value"] for i in old.get("labels") or []}
            request = ExecutionRequest(
                namespace=old["namespace"],
                flow_id=old["flow_id"],
                revision=old["flow_revision"],
                inputs=dict(old.get("inputs") or {}) if inputs is None else dict(inputs),
                inputs_resolved=inputs is None,
                labels={**labels, REPLAY_LABEL: "true"},
                trigger=old.get("trigger"),
                original_id=execution_id,
            )
            row, more = self.executor.start_with_runs(tx, request, copied)
            ended += more
            return row

        row = self.executor.change(replay)
        self._wake()
        log.info("execution replayed", extra={"execution": row["id"], "original": execution_id})
        return self._row(row["id"])

    def resume(self, execution_id: str, inputs: Mapping[str, Any] | None = None) -> Row:
        """Resume the paused task runs of a PAUSED execution."""
        if inputs:
            raise ResumeRefused(
                f"a Pause takes no inputs on resume, got {', '.join(sorted(inputs))}; "
                "resume without inputs"
            )
        with self.executor.store.read() as tx:
            state = State(_existing(tx, execution_id)["state"])
        if state != State.PAUSED or not self.executor.resume(execution_id):
            state = State(self._row(execution_id)["state"])
            raise ExecutionStateConflict(
                execution_id, state, "only a PAUSED execution can be resumed"
            )
        self.executor.work.notify()
        log.info("execution resumed", extra={"execution": execution_id})
        return self._row(execution_id)

    # -- helpers -----------------------------------------------------------------------
    def _row(self, execution_id: str) -> Row:
        with self.executor.store.read() as tx:
            return _existing(tx, execution_id)

    def _wake(self) -> None:
        self.executor.work.notify()
        self.executor.timers.notify()

    def _subflows(self, execution: Row) -> Callable[[str], bool]:
        """Whether a task id of the execution's revision is a Subflow task."""
        revision = (execution["namespace"], execution["flow_id"], execution["flow_revision"])

        def is_subflow(task_id: str) -> bool:
            try:
                return isinstance(self.executor.flows.task(*revision, task_id), Subflow)
            except HeadwaterError:
                return False

        return is_subflow

    def _restarted(self, execution: Row) -> Row:
        labels = {i["key"]: i["value"] for i in execution.get("labels") or []}
        labels[RESTARTED_LABEL] = "true"
        return {
            "state": State.RESTARTED.value,
            "histories": [
                *(execution.get("histories") or []),
                {"state": State.RESTARTED.value, "date": self.executor.clock()},
            ],
            "labels": [{"key": k, "value": v} for k, v in labels.items()],
            "end_date": None,
            "error": None,
            "outputs": None,
            "kill_requested": False,
            "wake_at": None,
            "dirty": False,
        }


def _existing(tx: Tx, execution_id: str) -> Row:
    row = tx.execution(execution_id)
    if row is None:
        raise ExecutionNotFound(execution_id)
    return row


def _ancestors(runs: Iterable[Row], by_id: Mapping[str, Row]) -> set[str]:
    found: set[str] = set()
    for run in runs:
        parent_id = run["parent_id"]
        while parent_id is not None and parent_id not in found:
            found.add(parent_id)
            parent_id = by_id[parent_id]["parent_id"]
    return found


def _descendants(roots: Iterable[str], runs: Sequence[Row]) -> set[str]:
    found = set(roots)
    for run in sorted(runs, key=lambda r: r["seq"]):  # a parent is created before its children
        if run["parent_id"] in found:
            found.add(run["id"])
    return found


def restart_changes(
    runs: Sequence[Row], now: float, is_subflow: Callable[[str], bool]
) -> tuple[dict[str, Row], set[str]]:
    """What a restart changes in an execution's task runs: (updates by id, ids dropped).

    Failed and killed task runs wait for a new attempt (runnable ones) or run again
    (flowables), and so do the flowables above them. The errors and finally branches
    at the top and under those flowables are dropped: they run again as the planner
    decides. A Subflow task that runs again starts a new child execution.
    """
    by_id = {r["id"]: r for r in runs}
    failed = [r for r in runs if State(r["state"]) in AGAIN]
    again = _ancestors(failed, by_id) | {r["id"] for r in failed}
    roots = [
        r["id"]
        for r in runs
        if r["branch"] in RERUN_BRANCHES and (r["parent_id"] is None or r["parent_id"] in again)
    ]
    dropped = _descendants(roots, runs)
    failed = [r for r in failed if r["id"] not in dropped]
    again = (_ancestors(failed, by_id) | {r["id"] for r in failed}) - dropped
    updates: dict[str, Row] = {}
    for run_id in again:
        run = by_id[run_id]
        what = f"task run {run['task_id']}"
        values: Row = {"end_date": None, "error": None, "wake_at": None, **_LEASE_CLEARED}
        if run["runnable"]:
            values |= {
                "state": check_transition(State(run["state"]), State.CREATED, what).value,
                "outputs": None,
                "metrics": None,
                "not_before": 0.0,
            }
        else:
            values |= {
                "state": check_transition(State(run["state"]), State.RUNNING, what).value,
                "start_date": now,  # a flowable's timeout counts from its new start
            }
            if is_subflow(run["task_id"]):
                values["outputs"] = None
        updates[run_id] = values
    return updates, dropped


def replay_runs(execution_id: str, runs: Sequence[Row], task_run_id: str, now: float) -> list[Row]:
    """The task runs a replay from `task_run_id` starts with (new ids, no execution id).

    Copied: the task runs of the main branches that ended SUCCESS, WARNING or SKIPPED
    and were created before the chosen one, with everything under them. The flowables
    above the chosen task run are copied RUNNING (their decisions, such as an If's
    condition or a ForEach's values, kept), so the chosen task and what follows it run
    again.
    """
    by_id = {r["id"]: r for r in runs}
    chosen = by_id.get(task_run_id)
    if chosen is None:
        raise TaskRunNotFound(
            f"task run {task_run_id} is not part of execution {execution_id}; "
            "its taskRunList names the ones a replay can start from"
        )
    above = _ancestors([chosen], by_id)
    new_ids: dict[str, str] = {}
    copied: list[Row] = []
    for run in sorted(runs, key=lambda r: r["seq"]):
        parent_id = run["parent_id"]
        if run["id"] in above:
            values: Row = {
                "state": State.RUNNING.value,
                "end_date": None,
                "error": None,
                "wake_at": None,
                "start_date": now,
            }
        elif parent_id is not None and parent_id in new_ids and parent_id not in above:
            values = {}  # under a task run that was copied whole
        elif (
            (parent_id is None or parent_id in above)
            and run["seq"] < chosen["seq"]
            and run["branch"] not in RERUN_BRANCHES
            and State(run["state"]) in KEPT
        ):
            values = {}
        else:
            continue
        new_ids[run["id"]] = new_id()
        copied.append(
            {
                **run,
                **values,
                **_LEASE_CLEARED,
                "id": new_ids[run["id"]],
                "parent_id": new_ids.get(parent_id) if parent_id else None,
                "folded": False,  # the new execution folds its loops again as it goes
                "progress": None,
            }
        )
    return copied
