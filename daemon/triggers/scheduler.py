"""The scheduler: fires each Schedule trigger at each of its times, once.

Once by construction: an execution a schedule starts has the trigger key
`schedule:{namespace}/{flow}/{trigger}@{time in UTC}`, unique in the store, and the
executions of a batch are inserted only for keys no execution has yet, in the write
transaction that also moves the triggers' `next_fire_at` on. A restart at a fire time,
or a second scheduler on the same database, finds the key taken and adds nothing.

In memory the scheduler keeps a heap of (next due time, trigger), built in one pass
from the store at start-up, linear in the number of triggers: each trigger's state
keeps what firing it needs (`ScheduleSpec.to_state`), so only flows deployed since
the state was written are read from their source. It sleeps until the earliest due
time or until `deployed()` says a deploy committed, then reads again only the flows
whose revision changed. `tick(now)` is the whole of one step, so tests drive it with
their own clock.

Executions are written in batches of `FIRE_BATCH` with one insert each, marked for the
executor, which plans their first task runs on its next tick: 10,000 schedules due at
one minute cost a handful of transactions, not 10,000.
"""

from __future__ import annotations

import functools
import heapq
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from headwater.daemon.engine.executor import ExecutionRequest, Executor, execution_row
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.store.store import Row, Store, Tx
from headwater.daemon.triggers.backfill import (
    BACKFILL_PER_STEP,
    BACKFILL_STEP_SECONDS,
    Backfill,
    BackfillRunning,
    TriggerNotFound,
    parse_moment,
    plan_backfill,
    summary,
)
from headwater.daemon.triggers.schedule import (
    TRIGGER_TYPE,
    TYPE_FRAGMENT,
    ScheduleSpec,
    read_schedules,
    spec_from_state,
    utc_text,
)

log = logging.getLogger(__name__)

MISSED_GRACE_SECONDS = 60.0
"""A time found later than this is missed (the scheduler was down): recoverMissedSchedules
decides whether it fires. A time found sooner fires whatever the mode."""
MAX_RECOVERED = 1_000  # missed times ALL fires at most (the latest ones)
FIRE_BATCH = 1_000  # executions written in one transaction
MAX_SLEEP_SECONDS = 30.0  # the longest wait: a wall-clock jump is noticed within this
ERROR_PAUSE_SECONDS = 1.0  # after a failed tick (the store is down), before the next
FULL_READ = 200  # more changed flows than this: read every Schedule source in one query
INSERT_ATTEMPTS = 3  # a batch that lost a key race to another replica is tried again

Key = tuple[str, str, str]
FlowKey = tuple[str, str]


@dataclass(frozen=True)
class Fire:
    """One time of one schedule to start an execution for."""

    spec: ScheduleSpec
    date: float
    backfill: bool = False

    @functools.cached_property
    def trigger_key(self) -> str:
        return f"schedule:{self.spec.name}@{utc_text(self.date)}"


@dataclass
class Batch:
    """What one write transaction does: executions, next fire times, backfill cursors."""

    fires: list[Fire] = field(default_factory=list)
    advances: dict[tuple[float, float | None], list[Key]] = field(default_factory=dict)
    """Triggers by (next fire time, time last fired): one update each."""
    backfills: dict[Key, Backfill] = field(default_factory=dict)


FiredCallback = Callable[[list[Fire], float], None]
"""(fires written, the time their transaction committed): for metrics and benchmarks."""


class Scheduler:
    def __init__(
        self, store: Store, executor: Executor, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.executor = executor
        self.clock = clock
        self.fired: list[FiredCallback] = []
        self._specs: dict[Key, ScheduleSpec] = {}
        self._read: dict[FlowKey, int] = {}
        """The revision of each deployed flow the specs were read from."""
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._backfills: dict[Key, Backfill] = {}
        self._errors: set[Key] = set()
        """Triggers whose state holds an error (cleared by their next good fire)."""
        self._lock = threading.RLock()
        self._wake = threading.Condition()
        self._changed = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- steering ------------------------------------------------------------------------
    def deployed(self, *_: object) -> None:
        """A deploy committed (a `Syncer.deployed` callback): read the flows again now."""
        with self._wake:
            self._changed = True
            self._wake.notify_all()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wake = self.tick()
            except Exception:  # the store is down: try again, never die
                log.exception("scheduler tick failed; trying again")
                self._stop.wait(ERROR_PAUSE_SECONDS)
                continue
            timeout = MAX_SLEEP_SECONDS
            if wake is not None:
                timeout = min(max(0.0, wake - self.clock()), MAX_SLEEP_SECONDS)
            with self._wake:
                if not self._changed and not self._stop.is_set():
                    self._wake.wait(timeout)

    # -- one step ------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> float | None:
        """Read changed flows, fire what is due at `now`; when something is next due."""
        with self._lock:
            now = self.clock() if now is None else now
            with self._wake:
                changed, self._changed = self._changed, False
            try:
                if changed:
                    self._load(now)
                self._write(self._due_now(now))
                self._step_backfills(now)
            except Exception:
                # What was popped but not written is still due in the store: read it all
                # again from there (from the kept states: a fraction of a second).
                self._read = {}
                self.deployed()
                raise
            return self._next_wake()

    def next_fire(self, namespace: str, flow_id: str, trigger_id: str) -> float | None:
        """When a trigger fires next as this scheduler sees it (None: disabled or unknown)."""
        with self._lock:
            return self._due.get((namespace, flow_id, trigger_id))

    # -- reading the deployed schedules -------------------------------------------------
    def _load(self, now: float) -> None:
        with self.store.read() as tx:
            revisions = tx.deployed_containing(TYPE_FRAGMENT)
            changed = [key for key, rev in revisions.items() if self._read.get(key) != rev]
            gone = {key for key in self._read if key not in revisions}
            if self._read and not changed and not gone:
                return
            states = tx.all_trigger_states()
        fresh = self._read_changed(changed, revisions, states)
        touched = set(changed) | gone
        specs = {k: s for k, s in self._specs.items() if k[:2] not in touched}
        specs.update(fresh)
        try:
            due, backfills = self._save(specs, fresh, states, now)
        except IntegrityError:  # another replica wrote the same new trigger: read again
            log.info("trigger states changed meanwhile; reading them again")
            self.deployed()
            return
        self._specs = specs
        self._read = {k: v for k, v in self._read.items() if k not in gone}
        self._read.update({key: revisions[key] for key in changed})
        self._due = due
        self._heap = [(when, key) for key, when in due.items()]
        heapq.heapify(self._heap)
        for key, job in backfills.items():
            self._backfills.setdefault(key, job)
        for key in [k for k in self._backfills if k not in specs]:
            del self._backfills[key]
        log.info("scheduler: %d schedule(s), %d enabled", len(specs), len(due))

    def _read_changed(
        self, changed: list[FlowKey], revisions: Mapping[FlowKey, int], states: list[Row]
    ) -> dict[Key, ScheduleSpec]:
        """Specs of the changed flows: kept in their trigger states when those are of the
        deployed revision (a restart), else read from the flow's source."""
        wanted = set(changed)
        specs: dict[Key, ScheduleSpec] = {}
        kept: set[FlowKey] = set()
        unreadable: set[FlowKey] = set()
        for row in states:
            flow = (row["namespace"], row["flow_id"])
            if row["trigger_type"] != TRIGGER_TYPE or flow not in wanted:
                continue
            if row["revision"] != revisions[flow]:
                continue
            state = row.get("state") or {}
            key = (*flow, row["trigger_id"])
            spec = spec_from_state(
                key, row["revision"], state.get("fingerprint"), state.get("spec")
            )
            if spec is None:
                unreadable.add(flow)
            else:
                specs[key] = spec
                kept.add(flow)
        parse = [flow for flow in changed if flow not in kept or flow in unreadable]
        specs = {k: s for k, s in specs.items() if k[:2] not in unreadable}
        if not parse:
            return specs
        with self.store.read() as tx:
            rows = tx.deployed_sources(TYPE_FRAGMENT, None if len(parse) > FULL_READ else parse)
        wanted = set(parse)
        for row in rows:
            flow = (row["namespace"], row["flow_id"])
            if flow not in wanted or row["revision"] != revisions[flow]:
                continue  # a deploy since: the next load reads it
            try:
                found = read_schedules(*flow, row["revision"], row["commit_sha"], row["source"])
            except Exception:  # a deployed revision was validated: this is a bug, not input
                log.exception("cannot read the schedules of %s.%s", *flow)
                continue
            specs.update({spec.key: spec for spec in found})
        return specs

    def _save(
        self,
        specs: Mapping[Key, ScheduleSpec],
        fresh: Mapping[Key, ScheduleSpec],
        states: list[Row],
        now: float,
    ) -> tuple[dict[Key, float], dict[Key, Backfill]]:
        """Bring the trigger states (as read in `states`) in line with `specs` (new and
        changed ones from `fresh`) in one transaction; the due times and backfills they
        hold. A state another replica changed since it was read is safe to overwrite:
        at worst a time fires again, and its trigger key makes that a no-op."""
        due: dict[Key, float] = {}
        backfills: dict[Key, Backfill] = {}
        with self.store.write() as tx:
            rows = {(r["namespace"], r["flow_id"], r["trigger_id"]): r for r in states}
            stale = [
                k for k, r in rows.items() if r["trigger_type"] == TRIGGER_TYPE and k not in specs
            ]
            tx.delete_trigger_states(stale)
            inserts: list[Row] = []
            for key, spec in specs.items():
                row = rows.get(key)
                if key in fresh:
                    row = self._reconcile(tx, spec, row, now, inserts)
                if row is None:
                    continue
                if row["next_fire_at"] is not None and not row["disabled"]:
                    due[key] = row["next_fire_at"]
                job = Backfill.from_state((row.get("state") or {}).get("backfill"))
                if job is not None:
                    backfills[key] = job
                if (row.get("state") or {}).get("error"):
                    self._errors.add(key)
            tx.insert_trigger_states(inserts)
        return due, backfills

    def _reconcile(
        self, tx: Tx, spec: ScheduleSpec, row: Row | None, now: float, inserts: list[Row]
    ) -> Row:
        """The state row of a new or re-read trigger: kept when its definition is the
        same, started afresh (from `now`) when it is new or changed."""
        state = dict((row or {}).get("state") or {})
        same = (
            row is not None
            and row["trigger_type"] == TRIGGER_TYPE
            and state.get("fingerprint") == spec.fingerprint
        )
        kept = spec.to_state()
        if same:
            assert row is not None
            if row["revision"] != spec.revision or state.get("spec") != kept:
                refreshed: Row = {"revision": spec.revision, "state": {**state, "spec": kept}}
                tx.update_trigger_state(*spec.key, refreshed)
                return {**row, **refreshed}
            return row
        for gone in ("error", "stoppedBy"):
            state.pop(gone, None)
        values: Row = {
            "revision": spec.revision,
            "enabled_at": now,
            "next_fire_at": None if spec.disabled else spec.cron.first_from(now),
            "disabled": spec.disabled,
            "trigger_type": TRIGGER_TYPE,
            "state": {**state, "fingerprint": spec.fingerprint, "spec": kept},
        }
        self._errors.discard(spec.key)
        if row is None:
            new: Row = {
                "namespace": spec.namespace,
                "flow_id": spec.flow_id,
                "trigger_id": spec.trigger_id,
                "last_fired_at": None,
                **values,
            }
            inserts.append(new)
            return new
        tx.update_trigger_state(*spec.key, values)
        return {**row, **values}

    # -- firing --------------------------------------------------------------------------
    def _due_now(self, now: float) -> list[Batch]:
        """Pop every trigger due at `now`: the times each fires, grouped in batches."""
        batches = [Batch()]
        while self._heap and self._heap[0][0] <= now:
            due, key = heapq.heappop(self._heap)
            if self._due.get(key) != due:
                continue  # changed or disabled since it was pushed
            spec = self._specs[key]
            times = self._times(spec, due, now)
            following = spec.cron.next_after(now)
            self._due[key] = following
            heapq.heappush(self._heap, (following, key))
            batch = batches[-1]
            if len(batch.fires) >= FIRE_BATCH:
                batch = Batch()
                batches.append(batch)
            batch.fires += [Fire(spec, t) for t in times]
            moved = (following, times[-1] if times else None)
            batch.advances.setdefault(moved, []).append(key)
        return [b for b in batches if b.advances]

    def _times(self, spec: ScheduleSpec, due: float, now: float) -> list[float]:
        """The times to fire of a trigger due since `due`: all those found in time, and of
        the missed ones (more than the grace late) what recoverMissedSchedules says."""
        edge = now - MISSED_GRACE_SECONDS
        if due > edge:
            return list(spec.cron.times(due, now))
        current = [t for t in spec.cron.times(edge, now) if t > edge]
        limit = {"ALL": MAX_RECOVERED, "LAST": 1}.get(spec.recover, 0)
        missed = spec.cron.latest(due, edge, limit) if limit else []
        log.info(
            "%s: missed times since %s; %d of them fire (recoverMissedSchedules %s)",
            spec.name,
            utc_text(due),
            len(missed),
            spec.recover,
            extra={"flow": f"{spec.namespace}.{spec.flow_id}", "trigger": spec.trigger_id},
        )
        return missed + current

    def _write(self, batches: Iterable[Batch]) -> None:
        for batch in batches:
            for attempt in range(1, INSERT_ATTEMPTS + 1):
                try:
                    self._commit(batch)
                    break
                except IntegrityError:  # PostgreSQL: a replica took a key after our check
                    if attempt == INSERT_ATTEMPTS:
                        raise

    def _commit(self, batch: Batch) -> None:
        rows, errors = self._rows(batch.fires)
        keys = [row["trigger_key"] for row in rows]
        with self.store.write() as tx:
            taken = tx.taken_trigger_keys(keys)
            new = [row for row in rows if row["trigger_key"] not in taken]
            tx.insert_executions(new)
            for (following, last), triggers in batch.advances.items():
                tx.advance_triggers(triggers, following, last)
            for key, job in batch.backfills.items():
                self._save_backfill(tx, key, None if job.done else job)
            self._note_errors(tx, batch.fires, errors)
        committed = self.clock()
        if new:
            self.executor.timers.notify()
        written = {row["trigger_key"] for row in new}
        fires = [fire for fire in batch.fires if fire.trigger_key in written]
        for callback in self.fired:
            callback(fires, committed)

    def _rows(self, fires: list[Fire]) -> tuple[list[Row], dict[Key, str]]:
        """Execution rows of `fires` (each key once); why some could not be made."""
        rows: dict[str, Row] = {}
        errors: dict[Key, str] = {}
        for fire in fires:
            try:
                rows.setdefault(fire.trigger_key, self._row(fire))
            except HeadwaterError as exc:
                errors[fire.spec.key] = f"{utc_text(fire.date)}: {exc}"
                log.warning(
                    "%s did not start an execution for %s: %s",
                    fire.spec.name,
                    utc_text(fire.date),
                    exc,
                    extra={"flow": f"{fire.spec.namespace}.{fire.spec.flow_id}"},
                )
        return list(rows.values()), errors

    def _row(self, fire: Fire) -> Row:
        spec, cron = fire.spec, fire.spec.cron
        previous = cron.previous_before(fire.date)
        trigger: Row = {
            "type": TRIGGER_TYPE,
            "id": spec.trigger_id,
            "date": cron.wall(fire.date),
            "next": cron.wall(cron.next_after(fire.date)),
            "previous": cron.wall(previous) if previous is not None else None,
        }
        if fire.backfill:
            trigger["backfill"] = True
        request = ExecutionRequest(
            spec.namespace,
            spec.flow_id,
            revision=spec.revision,
            inputs=dict(spec.inputs or {}),
            labels=spec.labels,
            trigger=trigger,
            trigger_key=fire.trigger_key,
        )
        execution_id = os.urandom(11).hex()  # the executor's shape, a third of the cost
        inputs = self._inputs(spec, request, execution_id)
        row = execution_row(
            request, spec.revision, spec.commit_sha, execution_id, inputs, spec.labels, self.clock()
        )
        # The executor plans its first task runs. A wake time of now keeps its loop
        # going until a whole batch is planned (it takes marked rows 100 per poll).
        row["dirty"] = True
        row["wake_at"] = row["created_at"]
        return row

    def _inputs(
        self, spec: ScheduleSpec, request: ExecutionRequest, execution_id: str
    ) -> dict[str, Any]:
        resolve = self.executor.resolve_inputs
        if resolve is None or not (spec.flow_has_inputs or spec.inputs):
            return dict(request.inputs)
        flow = self.executor.flows.get(spec.namespace, spec.flow_id, spec.revision)
        return resolve(flow, request.inputs, execution_id, spec.commit_sha)

    def _note_errors(self, tx: Tx, fires: list[Fire], errors: Mapping[Key, str]) -> None:
        """Keep why a trigger could not start its execution; clear it after a good fire."""
        for key, error in errors.items():
            tx.note_trigger_error(*key, error)
            self._errors.add(key)
        for key in {fire.spec.key for fire in fires} & self._errors - set(errors):
            tx.note_trigger_error(*key, None)
            self._errors.discard(key)

    def _next_wake(self) -> float | None:
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        wakes = [job.next_step_at for job in self._backfills.values()]
        if self._heap:
            wakes.append(self._heap[0][0])
        return min(wakes) if wakes else None

    # -- stopAfter -------------------------------------------------------------------------
    def ended(self, execution: Row) -> None:
        """An execution ended (an `Executor.ended` callback): a schedule whose `stopAfter`
        names its state is disabled until a new revision changes it."""
        trigger = execution.get("trigger") or {}
        if trigger.get("type") != TRIGGER_TYPE:
            return
        key = (execution["namespace"], execution["flow_id"], str(trigger.get("id")))
        with self._lock:
            spec = self._specs.get(key)
            if spec is None or execution["state"] not in spec.stop_after:
                return
            with self.store.write() as tx:
                row = tx.trigger_state(*key)
                state = {**((row or {}).get("state") or {})}
                state["stoppedBy"] = {"execution": execution["id"], "state": execution["state"]}
                tx.update_trigger_state(
                    *key, {"disabled": True, "next_fire_at": None, "state": state}
                )
            self._due.pop(key, None)
        log.info(
            "%s is disabled: execution %s ended %s (stopAfter)",
            spec.name,
            execution["id"],
            execution["state"],
        )

    # -- backfill --------------------------------------------------------------------------
    def backfill(self, namespace: str, flow_id: str, trigger_id: str, start: str, end: str) -> Row:
        """Queue a backfill of a schedule over [start, end] (RFC 3339; without an offset
        on the schedule's wall clock); a summary of it.

        Raises TriggerNotFound, BackfillRunning, or BackfillError (a bad range).
        """
        key = (namespace, flow_id, trigger_id)
        with self._lock:
            now = self.clock()
            if self._changed:
                self.tick(now)
            spec = self._specs.get(key)
            if spec is None:
                raise TriggerNotFound(
                    f"flow {namespace}.{flow_id} has no Schedule trigger {trigger_id!r} deployed"
                )
            running = self._backfills.get(key)
            if running is not None:
                raise BackfillRunning(
                    f"a backfill of {spec.name} is running (up to {utc_text(running.end)}); "
                    "wait for it to finish"
                )
            zone = spec.cron.timezone
            first, last = parse_moment(start, "from", zone), parse_moment(end, "to", zone)
            job = plan_backfill(spec, first, last, now)
            answer = summary(spec, job)  # before the scheduler's thread moves its cursor
            with self.store.write() as tx:
                self._save_backfill(tx, key, job)
            self._backfills[key] = job
        with self._wake:
            self._wake.notify_all()
        log.info("%s: backfill of %d time(s) queued", spec.name, job.total)
        return answer

    def _step_backfills(self, now: float) -> None:
        for key, job in list(self._backfills.items()):
            if job.next_step_at > now:
                continue
            spec = self._specs[key]
            batch = Batch([Fire(spec, t, backfill=True) for t in job.take(spec, BACKFILL_PER_STEP)])
            batch.backfills[key] = job
            self._write([batch])
            job.next_step_at = now + BACKFILL_STEP_SECONDS
            if job.done:
                del self._backfills[key]
                log.info("%s: backfill done (%d time(s))", spec.name, job.total)

    def _save_backfill(self, tx: Tx, key: Key, job: Backfill | None) -> None:
        row = tx.trigger_state(*key)
        state = {k: v for k, v in ((row or {}).get("state") or {}).items() if k != "backfill"}
        if job is not None:
            state["backfill"] = job.to_state()
        tx.update_trigger_state(*key, {"state": state})
