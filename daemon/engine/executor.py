"""The executor: applies the planner's decisions, finishes attempts, keeps timers.

`advance(tx, id)` reads an execution and its task runs, asks the planner what comes
next and writes it, all in the caller's transaction. It runs where a change happens:
when an execution is created, when a worker finishes an attempt (in the same
transaction, so a finished task and its successor are one commit), and from `tick`,
which handles what time alone changes (sleeps, pauses, retries, lost leases).
"""

from __future__ import annotations

import functools
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy.exc import IntegrityError

from headwater.daemon.engine import concurrency
from headwater.daemon.engine import flowables as _flowables  # noqa: F401  (registers handlers)
from headwater.daemon.engine.context import Renderer, plain
from headwater.daemon.engine.flows import FlowCache, FlowNotFound
from headwater.daemon.engine.planner import Plan, Planner
from headwater.daemon.engine.retry import Policy, delay_before
from headwater.daemon.engine.states import State
from headwater.daemon.engine.taskapi import TaskResult
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.flow.base import Task
from headwater.daemon.flow.model import Flow
from headwater.daemon.store.store import Row, Store, Tx

log = logging.getLogger(__name__)
T = TypeVar("T")

Clock = Callable[[], float]
COSTLY_STEP_SECONDS = 0.01  # a step this long is left to the executor thread, which batches
PACE = 3.0  # ... and steps such an execution again after this many times its last step's time
STEP_COSTS_KEPT = 10_000  # executions whose step cost is remembered (a hint, not state)
MASKED_COLUMNS = ("outputs", "error", "labels")
"""Columns of task runs and executions that renders fill, masked before they are written.
(A task run's `value`, a loop's item, is kept: the loop's tasks read it back.)"""
RETRY_LABEL = "system_retryAttempt"
"""Which attempt of a flow-level retry an execution is (1 for the first)."""


class Wakeup:
    """In-process hint that work may be waiting; the store stays the truth."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    def notify(self, count: int | None = None) -> None:
        """Wake `count` waiters (all when None): one per new task run, not a herd."""
        with self._condition:
            self._generation += 1
            if count is None:
                self._condition.notify_all()
            else:
                self._condition.notify(count)

    def wait(self, timeout: float, seen: int) -> int:
        with self._condition:
            if self._generation == seen:
                self._condition.wait(timeout)
            return self._generation

    @property
    def generation(self) -> int:
        return self._generation


@dataclass
class ExecutionRequest:
    """Everything that starts an execution (inputs already typed and checked)."""

    namespace: str
    flow_id: str
    revision: int | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    trigger: dict[str, Any] | None = None
    trigger_key: str | None = None
    original_id: str | None = None
    parent_execution_id: str | None = None
    parent_task_run_id: str | None = None
    depth: int = 0
    execution_id: str | None = None
    start_at: float | None = None
    """Do not start before this time (a retry of a failed execution waits its interval)."""
    inputs_resolved: bool = False
    """The inputs are an execution's typed inputs already (a replay): not resolved again."""


InputResolver = Callable[[Flow, Mapping[str, Any], str, str | None], dict[str, Any]]
"""(flow, given inputs, execution id, commit of the flow's revision) -> typed inputs;
raises HeadwaterError when refused."""


class Executor:
    def __init__(
        self,
        store: Store,
        flows: FlowCache,
        renderer: Renderer,
        clock: Clock = time.time,
        resolve_inputs: InputResolver | None = None,
    ) -> None:
        self.store = store
        self.flows = flows
        self.renderer = renderer
        self.clock = clock
        self.resolve_inputs = resolve_inputs
        self.work = Wakeup()
        """Notified when task runs become claimable."""
        self.timers = Wakeup()
        """Notified when an execution's timers change."""
        self.rng = random.Random()
        self.ended: list[Callable[[Row], None]] = []
        """Called (outside the transaction) with each execution that ends."""
        self.ending: list[Callable[[Tx, Row], list[Row]]] = []
        """Called inside the transaction that ends an execution; each returns the executions
        that ended because of what it wrote. Flow triggers fire here, so a fire commits
        with the end that caused it (once, even if the process dies right after)."""
        self._local = threading.local()
        """Per thread: whether the worker finishing an attempt will claim next."""
        self._step_costs: dict[str, float] = {}
        """Executions whose last step took COSTLY_STEP_SECONDS or more (and how long)."""
        self._paced: dict[str, float] = {}
        """Costly executions the executor thread steps again no sooner than this (clock
        of time.monotonic): see `tick`."""
        self.paced_until: float | None = None
        """When the executor thread should look again at an execution it let wait."""
        self.holds: Callable[[Row], bool] = _held_by_nobody
        """Whether a live worker of this process runs a task run: its expired lease is
        not taken away (the engine points this at its worker pool)."""

    # -- creating ------------------------------------------------------------------------
    def create_execution(self, request: ExecutionRequest, runs: list[Row] | None = None) -> Row:
        """Create an execution and its first task runs in one transaction. Given `runs`,
        the execution is read back in that transaction, as committed, and `runs` gets
        its task runs (an API answer without another transaction)."""
        try:
            with self.store.write() as tx:
                row, ended = self.create_in(tx, request)
                if runs is not None:
                    row = tx.execution(row["id"]) or row
                    runs[:] = tx.task_runs(row["id"])
        except IntegrityError:
            # PostgreSQL: another replica inserted the same trigger key after our check.
            # Its execution is the one this cause made; the loser answers with it.
            winner = self._by_trigger_key(request.trigger_key)
            if winner is None:
                raise
            return winner
        self._after_commit(ended)
        return row

    def _by_trigger_key(self, key: str | None) -> Row | None:
        if key is None:
            return None
        with self.store.read() as tx:
            return tx.execution_by_trigger_key(key)

    def create_in(self, tx: Tx, request: ExecutionRequest) -> tuple[Row, list[Row]]:
        """Create an execution in the caller's transaction, or find the one its
        `trigger_key` already made; (its row, the executions that ended)."""
        existing = tx.execution_by_trigger_key(request.trigger_key) if request.trigger_key else None
        if existing is not None:
            return existing, []
        row = self._insert_execution(tx, request)
        return row, self._advance_rows(tx, row, [])  # just written: nothing to read back

    def _insert_execution(self, tx: Tx, request: ExecutionRequest) -> Row:
        revision_row = tx.revision(request.namespace, request.flow_id, request.revision)
        if revision_row is None or revision_row.get("deleted"):
            what = f"revision {request.revision} of " if request.revision else ""
            raise FlowNotFound(f"{what}flow {request.namespace}.{request.flow_id} is not deployed")
        revision = int(revision_row["revision"])
        flow = self.flows.get(request.namespace, request.flow_id, revision)
        execution_id = request.execution_id or uuid.uuid4().hex[:22]
        inputs = request.inputs
        if self.resolve_inputs is not None and not request.inputs_resolved:
            commit = revision_row.get("commit_sha")
            inputs = self.resolve_inputs(flow, request.inputs, execution_id, commit)
        labels = {**_flow_labels(flow), **request.labels}
        row = execution_row(
            request,
            revision,
            revision_row.get("commit_sha"),
            execution_id,
            inputs,
            labels,
            self.clock(),
        )
        tx.insert_execution(row)
        return row

    # -- advancing -----------------------------------------------------------------------
    def advance(self, tx: Tx, execution_id: str, unless_locked: bool = False) -> list[Row]:
        """Plan and apply the next step of an execution; the executions that ended.

        The execution's row is locked first: on PostgreSQL two children that end at once
        would otherwise each plan their parent without the other's end, and the later
        commit would clear the `dirty` mark the earlier one set (the parent stuck RUNNING).
        With `unless_locked`, an execution another transaction holds is left to it.
        """
        execution = tx.execution(execution_id, lock=True, unless_locked=unless_locked)
        if execution is None:
            return []
        if State(execution["state"]).terminal:
            self._step_costs.pop(execution_id, None)
            if execution["dirty"] or execution["wake_at"] is not None:
                tx.update_execution(execution_id, {"dirty": False, "wake_at": None})
            return []
        started = time.perf_counter()
        ended = self._advance_rows(tx, execution, tx.open_task_runs(execution_id))
        self._note_cost(execution_id, time.perf_counter() - started)
        return ended

    def _note_cost(self, execution_id: str, seconds: float) -> None:
        if seconds >= COSTLY_STEP_SECONDS:
            if len(self._step_costs) >= STEP_COSTS_KEPT:
                self._step_costs.clear()
                self._paced.clear()
            self._step_costs[execution_id] = seconds
            self._paced[execution_id] = time.monotonic() + seconds * PACE
        else:
            self._step_costs.pop(execution_id, None)
            self._paced.pop(execution_id, None)

    def _costly(self, execution_id: str) -> bool:
        """Whether the last step of this execution took long: an in-memory hint only."""
        return execution_id in self._step_costs

    def _advance_rows(self, tx: Tx, execution: Row, runs: list[Row]) -> list[Row]:
        flow = self.flows.get(
            execution["namespace"], execution["flow_id"], execution["flow_revision"]
        )
        plan = concurrency.admit(tx, flow, execution, self.clock())
        if plan is None:
            all_runs = functools.partial(tx.task_runs, execution["id"])
            plan = Planner(flow, execution, runs, self.clock(), self.renderer, all_runs).plan()
        ended = self._apply(tx, execution, plan)
        if plan.ended:  # its slot is free at once: the next queued ones start now
            for queued_id in concurrency.next_in_line(tx, flow, execution):
                # One that another transaction holds is being advanced there: it will ask
                # for a slot under the flow's lock once this commits (waiting for it here,
                # flow lock held, would deadlock with that transaction).
                ended += self.advance(tx, queued_id, unless_locked=True)
        return ended

    def start_with_runs(
        self, tx: Tx, request: ExecutionRequest, runs: list[Row]
    ) -> tuple[Row, list[Row]]:
        """Create an execution that starts with `runs` (a replay's copied task runs) and
        advance it, in the caller's transaction: the new row and the executions that ended."""
        row = self._insert_execution(tx, request)
        runs = [{**run, "execution_id": row["id"]} for run in runs]
        tx.insert_task_runs(runs)
        return row, self._advance_rows(tx, row, runs)

    def change(self, work: Callable[[Tx, list[Row]], T]) -> T:
        """Run `work` in a write transaction for changes decided outside the executor
        (kill, restart, replay), again from the start when PostgreSQL ends it to break a
        deadlock; the executions `work` adds to its list are reported as ended once the
        transaction commits."""
        ended: list[Row] = []

        def attempt(tx: Tx) -> T:
            ended.clear()
            return work(tx, ended)

        result = self.store.retrying(attempt)
        self._after_commit(ended)
        return result

    def _apply(self, tx: Tx, execution: Row, plan: Plan) -> list[Row]:
        new_runs = [
            self._masked({k: v for k, v in run.items() if k != "_new"}) for run in plan.new_runs
        ]
        tx.insert_task_runs(new_runs)
        for run_id, values in plan.updates.items():
            tx.update_task_run(run_id, self._masked(values))
        tx.fold_task_runs(plan.folded)
        update = self._masked(dict(plan.execution))
        if execution.get("dirty"):
            update["dirty"] = False
        if update.get("state", execution["state"]) != execution["state"]:
            update["histories"] = [
                *(execution.get("histories") or []),
                {"state": update["state"], "date": self.clock()},
            ]
        changed = {k: v for k, v in update.items() if execution.get(k) != v or k == "histories"}
        if changed:
            tx.update_execution(execution["id"], changed)
        execution.update(update)
        ended: list[Row] = [execution] if plan.ended else []
        if plan.ended:
            for hook in self.ending:
                ended += hook(tx, execution)
        for child in plan.new_executions:
            ended += self._start_child(tx, execution, child)
        for child_id in plan.kill_executions:
            tx.update_execution(child_id, {"kill_requested": True, "dirty": True})
        claimable = sum(1 for r in new_runs if r["runnable"] and r["state"] == State.CREATED)
        if claimable and getattr(self._local, "claiming", False):
            self._local.claiming = False  # the finishing worker takes one itself
            claimable -= 1
        if claimable:
            tx.committed.append(functools.partial(self.work.notify, claimable))
        if plan.ended and execution.get("parent_task_run_id"):
            ended += self._report_to_parent(tx, execution)
        if plan.ended == State.FAILED:
            self._retry_execution(tx, execution)
        if "wake_at" in changed or plan.kill_executions:
            tx.committed.append(self.timers.notify)
        return ended

    def _mask(self, value: Any) -> Any:
        return self.renderer.masker.mask_value(value)

    def _masked(self, values: Row) -> Row:
        """`values` with secrets masked in the columns a render or a task may fill: what
        the executor writes never holds a secret in clear."""
        mask = self._mask
        for column in MASKED_COLUMNS:
            if values.get(column) is not None:
                values[column] = mask(values[column])
        return values

    def _start_child(self, tx: Tx, parent: Row, child: Row) -> list[Row]:
        request = ExecutionRequest(
            namespace=child["namespace"],
            flow_id=child["flow_id"],
            revision=child["revision"],
            inputs=child["inputs"] or {},
            labels={item["key"]: item["value"] for item in child["labels"]},
            trigger=child["trigger"],
            parent_execution_id=parent["id"],
            parent_task_run_id=child["parent_task_run_id"],
            depth=child["depth"],
            execution_id=child["id"],
        )
        try:
            row = self._insert_execution(tx, request)
        except HeadwaterError as exc:
            tx.update_task_run(
                child["parent_task_run_id"],
                {
                    "state": State.FAILED.value,
                    "error": f"cannot start subflow: {exc}",
                    "end_date": self.clock(),
                    "outputs": None,
                },
            )
            tx.update_execution(parent["id"], {"dirty": True})
            tx.committed.append(self.timers.notify)
            return []
        return self._advance_rows(tx, row, [])

    def _retry_execution(self, tx: Tx, execution: Row) -> None:
        """Flow-level `retry` with `behavior: CREATE_NEW_EXECUTION`: a new execution."""
        flow = self.flows.get(
            execution["namespace"], execution["flow_id"], execution["flow_revision"]
        )
        policy = flow.retry
        if policy is None or policy.behavior != "CREATE_NEW_EXECUTION":
            return
        labels = {i["key"]: i["value"] for i in execution.get("labels") or []}
        attempt = int(labels.get(RETRY_LABEL, "1"))
        original_id = execution.get("original_id") or execution["id"]
        original = tx.execution(original_id) or execution
        now = self.clock()
        delay = delay_before(policy, attempt, original["created_at"], now, self.rng)
        if delay is None:
            return
        request = ExecutionRequest(
            namespace=execution["namespace"],
            flow_id=execution["flow_id"],
            revision=execution["flow_revision"],
            inputs=execution.get("inputs") or {},
            labels={**labels, RETRY_LABEL: str(attempt + 1)},
            trigger=execution.get("trigger"),
            original_id=original_id,
            start_at=now + delay,
        )
        self._insert_execution(tx, request)
        tx.committed.append(self.timers.notify)

    def _report_to_parent(self, tx: Tx, execution: Row) -> list[Row]:
        run_id = execution["parent_task_run_id"]
        run = tx.task_run(run_id)
        if run is None or State(run["state"]).terminal:
            return []
        outputs = {
            **(run.get("outputs") or {}),
            "executionId": execution["id"],
            "state": execution["state"],
            "outputs": execution.get("outputs") or {},
        }
        tx.update_task_run(run_id, {"outputs": outputs})
        return self.advance(tx, execution["parent_execution_id"])

    def _after_commit(self, ended: list[Row]) -> None:
        for execution in ended:
            for callback in self.ended:
                try:
                    callback(execution)
                except Exception:
                    log.exception(
                        "execution-ended callback failed", extra={"execution": execution["id"]}
                    )

    # -- finishing attempts ----------------------------------------------------------------
    def finish_attempt(
        self,
        run: Row,
        execution: Row,
        owner: str,
        result: TaskResult,
        logs: Sequence[Row] = (),
        claim: Callable[[Tx], None] | None = None,
    ) -> bool:
        """Record an attempt's result (retry, allowFailure) and its last `logs`, then
        advance. `claim`: the calling worker claims its next task run in the same
        transaction (one commit, not two), so one fewer is woken for the task runs this
        step makes claimable.

        False when the lease was lost: a late worker cannot overwrite a newer attempt.
        """
        now = self.clock()
        values = self._attempt_outcome(run, execution, result, now)

        def finish(tx: Tx) -> list[Row] | None:
            if not tx.finish_attempt(run["id"], run["attempt"], owner, values):
                return None  # not ours any more: nothing of it is written
            tx.insert_logs(logs)
            if values["state"] == State.RETRYING.value:
                # Workers wait for the earliest claimable time they know of: tell them
                # of this one, due after its retry delay.
                tx.committed.append(functools.partial(self.work.notify, 1))
            if result.labels:
                current = tx.execution(execution["id"], lock=True) or execution
                merged = {i["key"]: i["value"] for i in current.get("labels") or []}
                merged.update(cast(dict[str, str], self._mask(result.labels)))
                tx.update_execution(
                    execution["id"], {"labels": [{"key": k, "value": v} for k, v in merged.items()]}
                )
            if self._costly(execution["id"]):
                # Its steps take long (a wide fan-out, every task run still open): the
                # executor thread takes the finishes that gather meanwhile in one step.
                # The mark is in this transaction, so a crash loses nothing.
                tx.update_execution(execution["id"], {"dirty": True})
                tx.committed.append(self.timers.notify)
                ended: list[Row] = []
            else:
                self._local.claiming = claim is not None
                try:
                    ended = self.advance(tx, execution["id"])
                finally:
                    self._local.claiming = False
            if claim is not None:
                claim(tx)
            return ended

        ended = self.store.retrying(finish)
        if ended is None:
            log.warning("late result ignored: lease lost", extra={"task_run": run["id"]})
            return False
        self._after_commit(ended)
        return True

    def _attempt_outcome(self, run: Row, execution: Row, result: TaskResult, now: float) -> Row:
        state = result.state
        mask = self.renderer.masker.mask_value
        attempt = {
            "number": run["attempt"],
            "state": state.value,
            "startDate": (run.get("attempt_start") or run.get("start_date") or now),
            "endDate": now,
            "error": mask(result.error) if result.error else None,
        }
        attempts = [*(run.get("attempts") or []), attempt]
        values: Row = {
            "attempts": attempts,
            "outputs": mask(plain(result.outputs)) if result.outputs else None,
            "metrics": mask(plain(result.metrics)) or None,
            "error": mask(result.error) if result.error else None,
            "lease_owner": None,
            "lease_expires": None,
            "pgid": None,
        }
        if state == State.FAILED and not execution.get("kill_requested"):
            task, policy = self._retry_policy(execution, run)
            first_start = attempts[0]["startDate"]
            delay = delay_before(policy, run["attempt"], first_start, now, self.rng)
            if delay is not None:
                return {**values, "state": State.RETRYING.value, "not_before": now + delay}
            if _truthy(task.allowFailure):
                state = State.WARNING
        elif state == State.SUCCESS and len(attempts) > 1:
            _task, policy = self._retry_policy(execution, run)
            if policy is not None and _truthy(policy.warningOnRetry):
                state = State.WARNING
        return {**values, "state": state.value, "end_date": now}

    def _retry_policy(self, execution: Row, run: Row) -> tuple[Task, Policy | None]:
        """The task of a run and the retry that applies to it: its own, else the flow's."""
        revision = (execution["namespace"], execution["flow_id"], execution["flow_revision"])
        task = self.flows.task(*revision, run["task_id"])
        flow = self.flows.get(*revision)
        if task.retry is not None:
            return task, task.retry
        if flow.retry is not None and flow.retry.behavior != "CREATE_NEW_EXECUTION":
            return task, flow.retry
        return task, None

    # -- time ------------------------------------------------------------------------------
    def tick(self) -> None:
        """Act on what time changed: lost leases, then due and changed executions.

        A costly execution (a step of a wide fan-out reads every open task run) is
        stepped again no sooner than its last step took: the workers' ends gather
        meanwhile and the next step takes them all, where stepping at every end would
        spend the process's time re-reading the fan-out (quadratic in its width). It
        stays marked in the store, so the wait costs nothing if the process dies.
        """
        now = self.clock()
        for run in self.store.expired_leases(now):
            if not self.holds(run):
                self._lease_lost(run)
        self.paced_until = None
        for execution_id in self.store.executions_to_advance(now):
            not_before = self._paced.get(execution_id)
            if not_before is not None and time.monotonic() < not_before:
                self.paced_until = min(self.paced_until or not_before, not_before)
                continue
            ended = self.store.retrying(functools.partial(self._advance_in, execution_id))
            self._after_commit(ended)

    def _advance_in(self, execution_id: str, tx: Tx) -> list[Row]:
        return self.advance(tx, execution_id)

    def _lease_lost(self, run: Row) -> None:
        with self.store.read() as tx:
            execution = tx.execution(run["execution_id"])
        if execution is None or run["lease_owner"] is None:
            return
        if run.get("pgid") and run["lease_owner"].startswith(f"{HOST}:"):
            _end_leftover(run["pgid"])  # a process group number means nothing elsewhere
        error = "the worker running it stopped (its lease expired)"
        result = TaskResult(state=State.FAILED, error=error)
        if execution.get("kill_requested"):
            result = TaskResult(state=State.KILLED, error="killed")
        self.finish_attempt(run, execution, run["lease_owner"], result)

    # -- control ---------------------------------------------------------------------------
    def kill(self, execution_id: str) -> None:
        def kill(tx: Tx) -> list[Row]:
            tx.update_execution(execution_id, {"kill_requested": True})
            return self.advance(tx, execution_id)

        self._after_commit(self.store.retrying(kill))
        self.work.notify()

    def resume(self, execution_id: str) -> bool:
        """Resume every paused task run of an execution; False when none was paused."""

        def resume(tx: Tx, ended: list[Row]) -> bool:
            paused = [r for r in tx.task_runs(execution_id) if r["state"] == State.PAUSED]
            for run in paused:
                tx.update_task_run(
                    run["id"], {"outputs": {**(run.get("outputs") or {}), "resumed": True}}
                )
            if paused:
                ended += self.advance(tx, execution_id)
            return bool(paused)

        return self.change(resume)


def execution_row(
    request: ExecutionRequest,
    revision: int,
    commit_sha: str | None,
    execution_id: str,
    inputs: dict[str, Any],
    labels: Mapping[str, Any],
    now: float,
) -> Row:
    """The row of a new CREATED execution: one shape wherever executions are made (the
    scheduler writes thousands at a time with it, in one statement)."""
    return {
        "id": execution_id,
        "namespace": request.namespace,
        "flow_id": request.flow_id,
        "flow_revision": revision,
        "commit_sha": commit_sha,
        "state": State.CREATED.value,
        "created_at": now,
        "inputs": inputs,
        "labels": [{"key": k, "value": str(v)} for k, v in labels.items()],
        "trigger": request.trigger,
        "histories": [{"state": State.CREATED.value, "date": now}],
        "original_id": request.original_id,
        "parent_execution_id": request.parent_execution_id,
        "parent_task_run_id": request.parent_task_run_id,
        "trigger_key": request.trigger_key,
        "depth": request.depth,
        "dirty": False,
        "kill_requested": False,
        "wake_at": request.start_at,
        "start_date": None,
        "end_date": None,
        "outputs": None,
        "error": None,
    }


def _flow_labels(flow: Flow) -> dict[str, str]:
    labels = flow.labels
    if isinstance(labels, list):
        return {item.key: item.value for item in labels}
    return {k: str(v) for k, v in (labels or {}).items()}


def _truthy(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


HOST = socket.gethostname()


def owner_name(worker: str) -> str:
    """A lease owner: the machine, then `worker`. With replicas on several machines
    sharing PostgreSQL, a lost lease's process group is ended only where it ran."""
    return f"{HOST}:{worker}"


def _end_leftover(pgid: int) -> None:
    try:
        from headwater.runners.process import kill_process_group
    except ImportError:  # pragma: no cover - the process runner is part of the install
        return
    kill_process_group(pgid)


def _held_by_nobody(_run: Row) -> bool:
    return False
