"""Deciding what an execution does next: the flow graph walked against its task runs.

`Planner(...).plan()` is a pure function of the flow, the execution row, its task
runs, the time and a renderer: it returns the changes to make (task runs to create,
states to set, child executions to start) and touches nothing itself. The executor
applies the changes in the same transaction it read the rows in.

Each flowable type has a small function here that looks at its own task run and its
children and says what to create and what state the flowable is in.

Big loops are planned in time that follows what changes, not the loop's size: the
planner sees the task runs that are not *folded*. A loop (ForEach and its kin, or a
Parallel) whose leading items have ended well folds them, `FOLD_BATCH` at a time: their
task runs are marked folded and the loop's `progress` counts them (and whether one
warned), so later steps start after them and the executor does not read them again.
Expressions that read `outputs` still see every task run (`all_runs`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from pydantic import ValidationError

from headwater.daemon.engine.context import (
    Renderer,
    execution_variables,
    is_true,
    plain,
    referenced_names,
    run_variables,
    text_of,
)
from headwater.daemon.engine.inputs import InputsRefused, UploadedFile, resolve_inputs
from headwater.daemon.engine.states import ACTIVE, State, check_transition
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.base import Flowable, Task
from headwater.daemon.flow.inputs import INPUT_TYPES
from headwater.daemon.flow.model import Flow, FlowOutput
from headwater.daemon.flow.types import parse_duration

Row = dict[str, Any]
Outcome = State | None  # None: still going
MAX_DEPTH = 10  # subflow nesting (DESIGN: chains stop at depth 10)
FOLD_BATCH = 16  # leading items of a loop that ended well are folded this many at a time


def new_id() -> str:
    return uuid.uuid4().hex[:22]


@dataclass
class Plan:
    new_runs: list[Row] = field(default_factory=list)
    updates: dict[str, Row] = field(default_factory=dict)
    execution: Row = field(default_factory=dict)
    new_executions: list[Row] = field(default_factory=list)
    kill_executions: list[str] = field(default_factory=list)
    logs: list[tuple[str | None, str, str]] = field(default_factory=list)
    """(task run id, level, message) lines the executor writes."""
    folded: list[str] = field(default_factory=list)
    """Task runs (not new ones) to mark folded."""
    ended: State | None = None


@dataclass
class Progress:
    """How far a loop (or a Parallel) has folded its leading items."""

    folded: int = 0
    """Leading items folded: ended SUCCESS, WARNING or SKIPPED, task runs not read again."""
    warned: bool = False
    """Whether a folded item ended WARNING."""
    seq: int = 0
    """The highest creation number among the folded task runs."""
    unique: bool | None = None
    """Whether the loop's values are all different (items that repeat are not folded)."""

    @classmethod
    def of(cls, run: Row) -> Progress:
        return cls(**(run.get("progress") or {}))

    def to_row(self) -> Row:
        return {
            "folded": self.folded,
            "warned": self.warned,
            "seq": self.seq,
            "unique": self.unique,
        }


class Planner:
    def __init__(
        self,
        flow: Flow,
        execution: Row,
        runs: Sequence[Row],
        now: float,
        renderer: Renderer,
        all_runs: Callable[[], list[Row]] | None = None,
    ) -> None:
        """`runs` are the execution's task runs that are not folded, rows the planner may
        change as it decides (the caller reads them fresh); `all_runs` reads every one of
        them (for expressions that read `outputs`, once something is folded)."""
        self.flow = flow
        self.execution = dict(execution)  # the caller compares against the original
        self.runs: list[Row] = list(runs)
        self._load_all = all_runs
        self._all: list[Row] | None = None
        with_progress = [Progress.of(r) for r in self.runs if r.get("progress")]
        self.has_folded = any(p.folded for p in with_progress)
        self.now = now
        self.renderer = renderer
        self.plan_ = Plan()
        self.by_key: dict[tuple[str | None, str, str, str | None], Row] = {}
        self.by_id: dict[str, Row] = {}
        self.children: dict[str | None, list[Row]] = {}
        for run in self.runs:
            self._index(run)
        self.seq = max([r["seq"] for r in self.runs] + [p.seq for p in with_progress], default=0)
        self.killing = bool(execution.get("kill_requested"))
        self._bases: dict[bool, dict[str, Any]] = {}

    # -- bookkeeping -------------------------------------------------------------------
    def _index(self, run: Row) -> None:
        self.by_key[(run["parent_id"], run["branch"], run["task_id"], run["value"])] = run
        self.by_id[run["id"]] = run
        self.children.setdefault(run["parent_id"], []).append(run)

    def set(self, run: Row, **values: Any) -> None:
        run.update(values)
        if run.get("_new"):
            return
        self.plan_.updates.setdefault(run["id"], {}).update(values)

    def set_state(self, run: Row, state: State, error: str | None = None) -> None:
        if run["state"] == state:
            return
        check_transition(State(run["state"]), state, f"task run {run['task_id']}")
        values: dict[str, Any] = {"state": state.value}
        if state == State.RUNNING and run.get("start_date") is None:
            values["start_date"] = self.now
        if state.terminal:
            values["end_date"] = self.now
            values["wake_at"] = None
            if run.get("start_date") is None:
                values["start_date"] = self.now
        if error is not None:
            values["error"] = error
        self.set(run, **values)

    def base(self, outputs: bool = True) -> dict[str, Any]:
        """The execution's variables; with `outputs`, over every task run, folded or not."""
        full = outputs and self.has_folded
        if full not in self._bases:
            runs = self.all_runs() if full else self.runs
            self._bases[full] = execution_variables(
                self.flow, self.execution, runs, self.renderer.environ, self.renderer.sealer
            )
        return self._bases[full]

    def all_runs(self) -> list[Row]:
        """Every task run of the execution as this plan leaves it, folded ones included."""
        if self._all is None:
            merged = {r["id"]: r for r in (self._load_all() if self._load_all else [])}
            merged.update(self.by_id)  # what this plan changed wins over what was read
            self._all = sorted(merged.values(), key=lambda r: r["seq"])
        return self._all

    def variables(self, run: Row, task: Task) -> dict[str, Any]:
        parents = []
        parent_id = run["parent_id"]
        while parent_id is not None:
            parent = self.by_id[parent_id]
            parents.append(parent)
            parent_id = parent["parent_id"]
        outputs = "outputs" in referenced_names(task)
        return run_variables(self.base(outputs), run, task.type, parents)

    def render(self, value: Any, run: Row, task: Task) -> Any:
        return self.renderer.render(value, self.variables(run, task))

    def fold(self, parent: Row, branch: str, value: str | None, task_ids: Collection[str]) -> int:
        """Mark one ended item of a loop (its task runs, with all under them) folded; the
        highest creation number among them."""
        found = [
            child
            for child in self.children.get(parent["id"], [])
            if child["branch"] == branch
            and child["value"] == value
            and child["task_id"] in task_ids
        ]
        stack, highest = list(found), 0
        while stack:
            run = stack.pop()
            highest = max(highest, run["seq"], Progress.of(run).seq)
            stack += self.children.get(run["id"], [])
            if run.get("_new"):
                run["folded"] = True
            else:
                self.plan_.folded.append(run["id"])
        self.has_folded = True
        return highest

    # -- the execution -------------------------------------------------------------------
    def plan(self) -> Plan:
        state = State(self.execution["state"])
        if state.terminal:
            return self.plan_
        start_at = self.execution.get("wake_at")
        if state == State.CREATED and start_at is not None and start_at > self.now:
            return self.plan_  # a retry of a failed execution, waiting for its time
        if state in (State.CREATED, State.QUEUED, State.RESTARTED):
            # A restarted execution keeps the start of its first run.
            started = self.execution.get("start_date") or self.now
            self._execution(state=State.RUNNING.value, start_date=started)
        if self.killing:
            return self._kill()
        main = self.sequence(self.flow.tasks, None, "tasks", None, [])
        if main is None:
            return self._still_running()
        failed = main.failed
        if failed and self.flow.errors:
            handled = self.sequence(self.flow.errors, None, "errors", None, [])
            if handled is None:
                return self._still_running()
        final: Outcome = State.SUCCESS
        if self.flow.finally_:
            final = self.sequence(self.flow.finally_, None, "finally", None, [])
            if final is None:
                return self._still_running()
        if failed:
            return self._end(main)
        if final is not None and final.failed:
            return self._end(State.FAILED)
        warned = main == State.WARNING or final == State.WARNING
        return self._end(State.WARNING if warned else State.SUCCESS)

    def _execution(self, **values: Any) -> None:
        self.execution.update(values)
        self.plan_.execution.update(values)

    def _still_running(self) -> Plan:
        active = [r for r in self.runs if State(r["state"]) in ACTIVE]
        paused = (
            bool(active)
            and all(
                r["state"] == State.PAUSED or (not r["runnable"] and _has_active_children(self, r))
                for r in active
            )
            and any(r["state"] == State.PAUSED for r in active)
        )
        wanted = State.PAUSED if paused else State.RUNNING
        if self.execution["state"] != wanted:
            self._execution(state=wanted.value)
        wakes = [
            r["wake_at"] for r in self.runs if r.get("wake_at") and State(r["state"]) in ACTIVE
        ]
        self._execution(wake_at=min(wakes) if wakes else None)
        return self.plan_

    def _end(self, state: State, error: str | None = None) -> Plan:
        values: dict[str, Any] = {"state": state.value, "end_date": self.now, "wake_at": None}
        if state in (State.SUCCESS, State.WARNING) and self.flow.outputs:
            try:
                values["outputs"] = self._flow_outputs()
            except HeadwaterError as exc:
                state, error = State.FAILED, f"flow outputs: {exc}"
                values["state"] = state.value
        if error:
            values["error"] = error
        elif state.failed and not self.execution.get("error"):
            values["error"] = self._first_error()
        self._execution(**values)
        self.plan_.ended = state
        return self.plan_

    def _first_error(self) -> str | None:
        for run in self.runs:
            if run["state"] in (State.FAILED, State.KILLED) and run.get("error"):
                return f"{run['task_id']}: {run['error']}"
        return None

    def _flow_outputs(self) -> dict[str, Any]:
        variables = self.base()
        found = {}
        for output in self.flow.outputs or []:
            try:
                found[output.id] = typed_output(
                    output, plain(self.renderer.render(output.value, variables))
                )
            except HeadwaterError as exc:
                if output.required:
                    raise HeadwaterError(f"output '{output.id}': {exc}") from None
        return found

    def _kill(self) -> Plan:
        for run in self.runs:
            state = State(run["state"])
            if state.terminal:
                continue
            if run["runnable"] and state == State.RUNNING:
                self.set_state(run, State.KILLING)
            elif run["runnable"] and state == State.KILLING:
                continue
            else:
                child = (run.get("outputs") or {}).get("executionId")
                if child and not run["runnable"]:
                    self.plan_.kill_executions.append(child)
                self.set_state(run, State.KILLED, "killed")
        if any(State(r["state"]) in ACTIVE for r in self.runs):
            self._execution(state=State.KILLING.value)
            return self.plan_
        return self._end(State.KILLED)

    # -- lists of tasks ------------------------------------------------------------------
    def sequence(
        self,
        tasks: Sequence[Task] | None,
        parent: Row | None,
        branch: str,
        value: str | None,
        path: list[str],
    ) -> Outcome:
        """Run `tasks` one after another; the outcome once they all ended (or one failed)."""
        warned = False
        for task in tasks or []:
            if task.disabled:
                continue
            outcome = self.step(task, parent, branch, value, path)
            if outcome is None:
                return None
            if outcome.failed:
                return outcome
            warned = warned or outcome == State.WARNING
        return State.WARNING if warned else State.SUCCESS

    def parallel(
        self,
        tasks: Sequence[Task] | None,
        parent: Row | None,
        branch: str,
        value: str | None,
        path: list[str],
        limit: int,
    ) -> Outcome:
        """Run `tasks` at once, at most `limit` at a time (0: no limit)."""
        enabled = [t for t in tasks or [] if not t.disabled]
        progress = Progress.of(parent) if parent is not None else None
        start = progress.folded if progress else 0
        outcomes: list[Outcome] = []
        leading: list[tuple[Task, State]] = []  # ended well from the start: may be folded
        running = 0
        failed = False
        for task in enabled[start:]:
            run = self.lookup(task, parent, branch, value)
            if run is None and failed:
                break  # after a failure nothing new starts (tasks start in order)
            if run is None and limit and running >= limit:
                outcomes.append(None)
                break
            outcome = self.step(task, parent, branch, value, path)
            if progress is not None and len(leading) == len(outcomes) and ended_well(outcome):
                leading.append((task, outcome))
            outcomes.append(outcome)
            running += outcome is None
            failed = failed or (outcome is not None and outcome.failed)
        if parent is not None and progress is not None and len(leading) >= FOLD_BATCH:
            for task, outcome in leading:
                progress.seq = max(progress.seq, self.fold(parent, branch, value, {task.id}))
                progress.warned = progress.warned or outcome == State.WARNING
            progress.folded += len(leading)
            self.set(parent, progress=progress.to_row())
        if progress is not None and progress.warned:
            outcomes.append(State.WARNING)
        return _combine(outcomes)

    def lookup(self, task: Task, parent: Row | None, branch: str, value: str | None) -> Row | None:
        return self.by_key.get((parent["id"] if parent else None, branch, task.id, value))

    def step(
        self, task: Task, parent: Row | None, branch: str, value: str | None, path: list[str]
    ) -> Outcome:
        """Advance one task: create its run if needed, resolve a flowable; its outcome."""
        run = self.lookup(task, parent, branch, value)
        if run is None:
            if self.killing:
                return State.KILLED
            run = self.create(task, parent, branch, value, path)
        state = State(run["state"])
        if not state.terminal and not run["runnable"]:
            state = self.resolve(task, run)
        return state if state.terminal else None

    def create(
        self, task: Task, parent: Row | None, branch: str, value: str | None, path: list[str]
    ) -> Row:
        entry = reg.REGISTRY.resolve(task.type, "task")
        flowable = entry is not None and entry.flowable
        self.seq += 1
        run: Row = {
            "id": new_id(),
            "execution_id": self.execution["id"],
            "parent_id": parent["id"] if parent else None,
            "task_id": task.id,
            "branch": branch,
            "value": value,
            "values_path": list(path) or None,
            "runnable": not flowable and entry is not None and entry.short != "core.flow.Sleep",
            "state": State.CREATED.value,
            "attempt": 0,
            "attempts": [],
            "outputs": None,
            "metrics": None,
            "created_at": self.now,
            "start_date": None,
            "end_date": None,
            "not_before": 0.0,
            "wake_at": None,
            "lease_owner": None,
            "lease_expires": None,
            "pgid": None,
            "error": None,
            "seq": self.seq,
            "folded": False,
            "progress": None,
            "_new": True,
        }
        self.runs.append(run)
        self._index(run)
        self.plan_.new_runs.append(run)
        if task.runIf is not None:
            try:
                go = is_true(self.render(task.runIf, run, task))
            except HeadwaterError as exc:
                self.set_state(run, State.FAILED, f"runIf: {exc}")
                return run
            if not go:
                self.set_state(run, State.SKIPPED)
        return run

    # -- flowables -------------------------------------------------------------------------
    def resolve(self, task: Task, run: Row) -> State:
        """The state of a flowable (or timer) task run after advancing its children."""
        entry = reg.REGISTRY.resolve(task.type, "task")
        handler = HANDLERS.get(entry.short) if entry else None
        if handler is None:
            self.set_state(run, State.FAILED, f"no executor support for {task.type}")
            return State.FAILED
        if run["state"] == State.CREATED:
            self.set_state(run, State.RUNNING)
        try:
            timed_out = self._timed_out(task, run, entry.short if entry else "")
            if timed_out is not None:
                return timed_out
            outcome = handler(self, task, run)
        except HeadwaterError as exc:
            self.set_state(run, State.FAILED, str(exc))
            return State.FAILED
        if outcome is None:
            return State(run["state"])
        if isinstance(task, Flowable) and outcome.failed and task.errors and not self.killing:
            handled = self.sequence(task.errors, run, "errors", run["value"], run_path(run))
            if handled is None:
                return State(run["state"])
        self.set_state(run, outcome)
        return outcome

    def _timed_out(self, task: Task, run: Row, short: str) -> State | None:
        """A flowable past its `timeout`: its children are stopped, then it fails.

        None while there is time left; RUNNING while running children are being
        killed (the flowable ends only when they have); FAILED after.
        """
        if (
            task.timeout is None
            or not isinstance(task, Flowable)
            or short == "core.flow.Pause"  # its timeout means "not resumed in time"
            or run.get("start_date") is None
        ):
            return None
        limit = duration_of(self.render(task.timeout, run, task), "timeout")
        deadline = run["start_date"] + limit
        if self.now < deadline:
            if run.get("wake_at") is None or run["wake_at"] > deadline:
                self.set(run, wake_at=deadline)
            return None
        stopping = False
        for child in self._descendants(run):
            if State(child["state"]).terminal:
                continue
            if child["runnable"] and child["state"] in (State.RUNNING, State.KILLING):
                self.set_state(child, State.KILLING)
                stopping = True
            else:
                self.set_state(child, State.KILLED, "its parent timed out")
        if stopping:
            self.set(run, error=f"timed out after {task.timeout}")
            return State.RUNNING
        self.set_state(run, State.FAILED, f"timed out after {task.timeout}")
        return State.FAILED

    def _descendants(self, run: Row) -> list[Row]:
        found, stack = [], list(self.children.get(run["id"], []))
        while stack:
            child = stack.pop()
            found.append(child)
            stack += self.children.get(child["id"], [])
        return found

    def render_once(self, run: Row, key: str, compute: Callable[[], Any]) -> Any:
        """A value a flowable decides once (a condition, loop values) kept in its outputs."""
        outputs = run.get("outputs") or {}
        if key not in outputs:
            outputs = {**outputs, key: compute()}
            self.set(run, outputs=outputs)
        return outputs[key]


def typed_output(output: FlowOutput, value: Any) -> Any:
    """A flow output's value checked against its type, as an input of that type is."""
    try:
        declared = INPUT_TYPES[output.type].model_validate(
            {"id": "value", "type": output.type, "required": False}
        )
    except ValidationError:
        return value  # a type that needs more than its name (SELECT's values) is not checked
    try:
        return resolve_inputs([declared], {"value": value}, store_file=_no_upload)["value"]
    except InputsRefused as refused:
        raise HeadwaterError(f"not a valid {output.type}: {refused.problems[0].reason}") from None


def _no_upload(_input_id: str, _upload: UploadedFile) -> str:
    raise HeadwaterError("a flow output cannot be an uploaded file")


def run_path(run: Row) -> list[str]:
    return list(run.get("values_path") or [])


def ended_well(outcome: Outcome) -> TypeGuard[State]:
    """SUCCESS, WARNING or SKIPPED: an item whose task runs may be folded."""
    return outcome is not None and not outcome.failed


def _has_active_children(planner: Planner, run: Row) -> bool:
    return any(State(c["state"]) in ACTIVE for c in planner.children.get(run["id"], []))


def _combine(outcomes: Sequence[Outcome]) -> Outcome:
    if any(o is None for o in outcomes):
        return None
    if any(o is not None and o.failed for o in outcomes):
        return State.FAILED
    if any(o == State.WARNING for o in outcomes):
        return State.WARNING
    return State.SUCCESS


def loop_value(item: Any) -> str:
    """A loop value as `taskrun.value` shows it: text, or JSON for structures."""
    if isinstance(item, str):
        return item
    return (
        json.dumps(item, separators=(",", ":")) if isinstance(item, list | dict) else text_of(item)
    )


def list_of(value: Any, what: str) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            raise HeadwaterError(f"{what} is not a list or a JSON array: {value[:60]!r}") from None
    if not isinstance(value, list):
        raise HeadwaterError(f"{what} must be a list, got {type(value).__name__}")
    return value


def duration_of(value: Any, what: str) -> float:
    seconds = parse_duration(value) if isinstance(value, str) else None
    if seconds is None:
        raise HeadwaterError(f"{what} is not an ISO-8601 duration: {value!r}")
    return seconds


Handler = Callable[[Planner, Any, Row], Outcome]
HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
        return fn

    return register
