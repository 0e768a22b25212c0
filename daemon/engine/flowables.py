"""How each flowable type advances: one small function per type, registered by name.

A handler gets the planner, the task's model and its task run (RUNNING), creates what
is due through the planner, and returns the flowable's outcome, or None while it goes on.
"""

from __future__ import annotations

import uuid
from typing import Any

from headwater.daemon.engine.context import is_true, labels_map, text_of
from headwater.daemon.engine.planner import (
    FOLD_BATCH,
    MAX_DEPTH,
    Outcome,
    Planner,
    Progress,
    Row,
    duration_of,
    ended_well,
    handles,
    list_of,
    loop_value,
    run_path,
)
from headwater.daemon.engine.states import State
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.flow.tasks.conditional import If, Switch
from headwater.daemon.flow.tasks.dag import Dag
from headwater.daemon.flow.tasks.loops import EachParallel, EachSequential, ForEach
from headwater.daemon.flow.tasks.pause import Pause
from headwater.daemon.flow.tasks.sequential import Parallel
from headwater.daemon.flow.tasks.sleep import Sleep
from headwater.daemon.flow.tasks.subflow import Subflow


@handles("core.flow.Sequential", "core.flow.WorkingDirectory")
def sequential(planner: Planner, task: Any, run: Row) -> Outcome:
    return planner.sequence(task.tasks, run, "tasks", run["value"], run_path(run))


@handles("core.flow.AllowFailure")
def allow_failure(planner: Planner, task: Any, run: Row) -> Outcome:
    outcome = planner.sequence(task.tasks, run, "tasks", run["value"], run_path(run))
    if outcome is not None and outcome.failed and not planner.killing:
        if task.errors:
            handled = planner.sequence(task.errors, run, "errors", run["value"], run_path(run))
            if handled is None:
                return None
        return State.WARNING
    return outcome


@handles("core.flow.Parallel")
def parallel(planner: Planner, task: Parallel, run: Row) -> Outcome:
    limit = int(planner.render(task.concurrent, run, task))
    return planner.parallel(task.tasks, run, "tasks", run["value"], run_path(run), limit)


@handles("core.flow.If")
def if_(planner: Planner, task: If, run: Row) -> Outcome:
    chosen = planner.render_once(
        run, "condition", lambda: is_true(planner.render(task.condition, run, task))
    )
    branch, tasks = ("then", task.then) if chosen else ("else", task.else_)
    return planner.sequence(tasks, run, branch, run["value"], run_path(run))


@handles("core.flow.Switch")
def switch(planner: Planner, task: Switch, run: Row) -> Outcome:
    value = planner.render_once(
        run, "value", lambda: text_of(planner.render(task.value, run, task))
    )
    cases = task.cases or {}
    if value in cases:
        return planner.sequence(cases[value], run, f"cases/{value}", run["value"], run_path(run))
    return planner.sequence(task.defaults, run, "defaults", run["value"], run_path(run))


def _loop(planner: Planner, task: Any, run: Row, values: Any, limit: int) -> Outcome:
    """Run `task.tasks` for each value, at most `limit` values at a time (0: no limit).

    Values start in order, so the ones started are always the first ones: the walk
    stops at the first value that may not start yet. Leading values that ended well are
    folded (`Planner.fold`), and later steps begin after them.
    """
    items: list[str] = planner.render_once(
        run,
        "values",
        lambda: [loop_value(v) for v in list_of(planner.render(values, run, task), "values")],
    )
    progress = Progress.of(run)
    if progress.unique is None:  # a value that repeats shares its task runs: never folded
        progress.unique = len(set(items)) == len(items)
        planner.set(run, progress=progress.to_row())
    outcomes: list[Outcome] = []
    leading: list[tuple[str, State]] = []  # ended well from the start: may be folded
    active = 0
    failed = False
    for item in items[progress.folded :]:
        started = any(planner.lookup(child, run, "tasks", item) is not None for child in task.tasks)
        if not started and (failed or (limit and active >= limit)):
            if not failed:
                outcomes.append(None)
            break
        outcome = planner.sequence(task.tasks, run, "tasks", item, [*run_path(run), item])
        if progress.unique and len(leading) == len(outcomes) and ended_well(outcome):
            leading.append((item, outcome))
        outcomes.append(outcome)
        active += outcome is None
        failed = failed or (outcome is not None and outcome.failed)
    if len(leading) >= FOLD_BATCH:
        ids = {child.id for child in task.tasks}
        for item, outcome in leading:
            progress.seq = max(progress.seq, planner.fold(run, "tasks", item, ids))
            progress.warned = progress.warned or outcome == State.WARNING
        progress.folded += len(leading)
        planner.set(run, progress=progress.to_row())
    if any(o is None for o in outcomes):
        return None
    if any(o is not None and o.failed for o in outcomes):
        return State.FAILED
    warned = progress.warned or State.WARNING in outcomes
    return State.WARNING if warned else State.SUCCESS


@handles("core.flow.ForEach")
def for_each(planner: Planner, task: ForEach, run: Row) -> Outcome:
    limit = int(planner.render(task.concurrencyLimit, run, task))
    return _loop(planner, task, run, task.values, limit)


@handles("core.flow.EachSequential")
def each_sequential(planner: Planner, task: EachSequential, run: Row) -> Outcome:
    return _loop(planner, task, run, task.value, 1)


@handles("core.flow.EachParallel")
def each_parallel(planner: Planner, task: EachParallel, run: Row) -> Outcome:
    limit = int(planner.render(task.concurrent, run, task))
    return _loop(planner, task, run, task.value, limit)


@handles("core.flow.Dag")
def dag(planner: Planner, task: Dag, run: Row) -> Outcome:
    limit = int(planner.render(task.concurrent, run, task))
    done: dict[str, State] = {}
    pending = {entry.task.id: entry for entry in task.tasks if not entry.task.disabled}
    for entry in task.tasks:
        existing = planner.lookup(entry.task, run, "tasks", run["value"])
        if existing is not None and State(existing["state"]).terminal:
            done[entry.task.id] = State(existing["state"])
    active = 0
    failed = any(s.failed for s in done.values())
    outcomes: list[Outcome] = []
    for task_id, entry in pending.items():
        deps = [d for d in entry.dependsOn or [] if d in pending]
        existing = planner.lookup(entry.task, run, "tasks", run["value"])
        if existing is None:
            if failed or any(d not in done for d in deps):
                if not failed:
                    outcomes.append(None)
                continue
            if any(done[d].failed for d in deps):
                continue
            if limit and active >= limit:
                outcomes.append(None)
                continue
        outcome = planner.step(entry.task, run, "tasks", run["value"], run_path(run))
        outcomes.append(outcome)
        active += outcome is None
        if outcome is not None:
            done[task_id] = outcome
            failed = failed or outcome.failed
    if any(o is None for o in outcomes):
        return None
    if any(s.failed for s in done.values()):
        return State.FAILED
    return State.WARNING if State.WARNING in done.values() else State.SUCCESS


@handles("core.flow.Sleep")
def sleep(planner: Planner, task: Sleep, run: Row) -> Outcome:
    if run.get("wake_at") is None:
        seconds = duration_of(planner.render(task.duration, run, task), "duration")
        planner.set(run, wake_at=planner.now + seconds)
    return State.SUCCESS if planner.now >= run["wake_at"] else None


@handles("core.flow.Pause")
def pause(planner: Planner, task: Pause, run: Row) -> Outcome:
    outputs = run.get("outputs") or {}
    if outputs.get("resumed"):
        return State.SUCCESS
    if run.get("wake_at") is None and run["state"] != State.PAUSED:
        planner.set_state(run, State.PAUSED)
        if task.delay is not None:
            seconds = duration_of(planner.render(task.delay, run, task), "delay")
            planner.set(run, wake_at=planner.now + seconds, outputs={"mode": "delay"})
        elif task.timeout is not None:
            seconds = duration_of(planner.render(task.timeout, run, task), "timeout")
            planner.set(run, wake_at=planner.now + seconds, outputs={"mode": "timeout"})
        return None
    wake = run.get("wake_at")
    if wake is not None and planner.now >= wake:
        if (run.get("outputs") or {}).get("mode") == "timeout":
            planner.set_state(run, State.FAILED, f"not resumed within {task.timeout}")
            return State.FAILED
        return State.SUCCESS
    return None


@handles("core.flow.Subflow")
def subflow(planner: Planner, task: Subflow, run: Row) -> Outcome:
    outputs = run.get("outputs") or {}
    child_id = outputs.get("executionId")
    if child_id is None:
        depth = int(planner.execution.get("depth") or 0) + 1
        if depth > MAX_DEPTH:
            raise HeadwaterError(f"subflows nest deeper than {MAX_DEPTH} levels")
        child_id = _start_child(planner, task, run, depth)
        if not is_true(planner.render(task.wait, run, task)):
            planner.set(run, outputs={"executionId": child_id})
            return State.SUCCESS
        planner.set(run, outputs={"executionId": child_id})
        return None
    if "state" not in outputs:
        return None  # the child execution reports back when it ends
    child_state = State(outputs["state"])
    if child_state.failed and not is_true(planner.render(task.transmitFailed, run, task)):
        return State.SUCCESS
    if child_state.failed:
        planner.set(run, error=f"subflow execution {child_id} ended {child_state}")
    return child_state if child_state != State.CANCELLED else State.FAILED


def _start_child(planner: Planner, task: Subflow, run: Row, depth: int) -> str:
    namespace = text_of(planner.render(task.namespace, run, task))
    flow_id = text_of(planner.render(task.flowId, run, task))
    inputs = planner.render(task.inputs or {}, run, task)
    raw_labels: Any = task.labels or {}
    if isinstance(raw_labels, list):  # [{key, value}] pairs, as models
        raw_labels = {pair.key: pair.value for pair in raw_labels}
    labels = planner.render(raw_labels, run, task)
    if is_true(planner.render(task.inheritLabels, run, task)):
        labels = {**labels_map(planner.execution.get("labels")), **labels}
    revision = planner.render(task.revision, run, task) if task.revision is not None else None
    child_id = uuid.uuid4().hex[:22]
    planner.plan_.new_executions.append(
        {
            "id": child_id,
            "namespace": namespace,
            "flow_id": flow_id,
            "revision": int(revision) if revision is not None else None,
            "inputs": inputs,
            "labels": [{"key": k, "value": text_of(v)} for k, v in labels.items()],
            "parent_execution_id": planner.execution["id"],
            "parent_task_run_id": run["id"],
            "depth": depth,
            "trigger": {
                "type": "core.flow.Subflow",
                "executionId": planner.execution["id"],
                "namespace": planner.flow.namespace,
                "flowId": planner.flow.id,
            },
        }
    )
    return child_id
