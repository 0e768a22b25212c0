"""The store seam: every component reads and writes through these verbs.

Hot paths (claiming and finishing task runs, reading an execution's task runs) use
SQLAlchemy Core statements on the SQLModel tables: a handful of statements per task
run, each cheap, and the same SQL on SQLite and PostgreSQL. Claiming is one verb,
`claim_task_run`, an `UPDATE … RETURNING` that becomes `FOR UPDATE SKIP LOCKED` on
PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import Select

from headwater.daemon.store.db import is_sqlite, read_transaction, write_transaction
from headwater.daemon.store.direct import Direct, DirectInsert
from headwater.daemon.store.tables import (
    ExecutionRow,
    FilePickupRow,
    FlowReferenceRow,
    FlowRevisionRow,
    FlowRow,
    LogRow,
    SyncRow,
    SyncStateRow,
    TaskRunRow,
    TriggerStateRow,
    WebhookDeliveryRow,
)
from headwater.daemon.store.writes import WriteGate, WriteHealth

Row = dict[str, Any]
T = TypeVar("T")
log = logging.getLogger(__name__)

EXECUTIONS = ExecutionRow.__table__  # type: ignore[attr-defined]
TASK_RUNS = TaskRunRow.__table__  # type: ignore[attr-defined]
LOGS = LogRow.__table__  # type: ignore[attr-defined]
FLOWS = FlowRow.__table__  # type: ignore[attr-defined]
REVISIONS = FlowRevisionRow.__table__  # type: ignore[attr-defined]
SYNCS = SyncRow.__table__  # type: ignore[attr-defined]
SYNC_STATE = SyncStateRow.__table__  # type: ignore[attr-defined]
REFERENCES = FlowReferenceRow.__table__  # type: ignore[attr-defined]
DELIVERIES = WebhookDeliveryRow.__table__  # type: ignore[attr-defined]
PICKUPS = FilePickupRow.__table__  # type: ignore[attr-defined]
TRIGGER_STATES = TriggerStateRow.__table__  # type: ignore[attr-defined]

CLAIMABLE = ("CREATED", "RETRYING")
PROBE_TIMEOUT_SECONDS = 2.0  # a readiness probe waits this long for the write lock
DEADLOCK_ATTEMPTS = 5  # a transaction PostgreSQL ended to break a deadlock runs again
RETRIED_SQLSTATES = ("40P01", "40001")  # deadlock_detected, serialization_failure
JSON_COLUMNS = frozenset(c.name for c in EXECUTIONS.c if isinstance(c.type, JSON))
CHECKPOINT_EVERY_COMMITS = 256  # the WAL grows by a few MB in as many commits
IN_CHUNK = 500  # values in one `IN (…)` list, well under every database's limit
# Git hosts redeliver within hours; a delivery id older than this is forgotten.
DELIVERY_MEMORY_SECONDS = 3 * 24 * 3600.0

# Hot statements are built once: building a statement costs more than running it.
# The hottest run straight on SQLite's cursor (`direct.py`).
_EXECUTION_BY_ID_PLAIN = select(EXECUTIONS).where(EXECUTIONS.c.id == bindparam("id"))
_EXECUTION_BY_ID = Direct(_EXECUTION_BY_ID_PLAIN)
_EXECUTION_BY_ID_LOCKED = Direct(_EXECUTION_BY_ID_PLAIN.with_for_update())  # not on SQLite
_EXECUTION_BY_ID_UNLESS_LOCKED = Direct(_EXECUTION_BY_ID_PLAIN.with_for_update(skip_locked=True))
_RUNS_OF_EXECUTION = Direct(
    select(TASK_RUNS).where(TASK_RUNS.c.execution_id == bindparam("id")).order_by(TASK_RUNS.c.seq)
)
_OPEN_RUNS_OF_EXECUTION = Direct(
    select(TASK_RUNS)
    .where(TASK_RUNS.c.execution_id == bindparam("id"), TASK_RUNS.c.folded.is_(False))
    .order_by(TASK_RUNS.c.seq)
)
_LAST_SEQ = Direct(
    select(func.max(TASK_RUNS.c.seq)).where(TASK_RUNS.c.execution_id == bindparam("id"))
)
_INSERT_EXECUTION = DirectInsert(EXECUTIONS)
_INSERT_RUNS = DirectInsert(TASK_RUNS)
_INSERT_LOGS = DirectInsert(LOGS)
_SYNC_STATE = Direct(select(SYNC_STATE).where(SYNC_STATE.c.id == 1))
_REVISION = Direct(
    select(REVISIONS).where(
        REVISIONS.c.namespace == bindparam("namespace"),
        REVISIONS.c.flow_id == bindparam("flow_id"),
        REVISIONS.c.revision == bindparam("revision"),
    )
)
_LATEST_REVISION = Direct(
    select(REVISIONS)
    .where(
        REVISIONS.c.namespace == bindparam("namespace"), REVISIONS.c.flow_id == bindparam("flow_id")
    )
    .order_by(REVISIONS.c.revision.desc())
    .limit(1)
)
_OLDEST_QUEUED = Direct(
    select(EXECUTIONS.c.id)
    .where(
        EXECUTIONS.c.namespace == bindparam("namespace"),
        EXECUTIONS.c.flow_id == bindparam("flow_id"),
        EXECUTIONS.c.state == "QUEUED",
        EXECUTIONS.c.parent_execution_id.is_(None),
    )
    .order_by(EXECUTIONS.c.created_at, EXECUTIONS.c.id)
    .limit(bindparam("limit"))
)
_UPDATES: dict[tuple[str, frozenset[str]], Any] = {}
"""UPDATE statements by table and the columns they set, built once: SQLAlchemy keeps the
compiled form of a statement object, so the same object costs little the next time."""


def _update(table: Any, columns: frozenset[str]) -> Any:
    key = (table.name, columns)
    statement = _UPDATES.get(key)
    if statement is None:
        statement = Direct(
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values({name: bindparam(name) for name in columns})
        )
        _UPDATES[key] = statement
    return statement


_FINISHES: dict[frozenset[str], Direct] = {}
_FINISH_ATTEMPT = update(TASK_RUNS).where(
    TASK_RUNS.c.id == bindparam("_id"),
    TASK_RUNS.c.attempt == bindparam("_attempt"),
    TASK_RUNS.c.lease_owner == bindparam("_owner"),
    TASK_RUNS.c.state.in_(("RUNNING", "KILLING")),
)


def _claim(skip_locked: bool) -> Any:
    candidate = (
        select(TASK_RUNS.c.id)
        .where(
            TASK_RUNS.c.runnable.is_(True),
            TASK_RUNS.c.state.in_(CLAIMABLE),
            TASK_RUNS.c.not_before <= bindparam("now"),
        )
        .order_by(TASK_RUNS.c.not_before, TASK_RUNS.c.created_at)
        .limit(1)
    )
    if skip_locked:  # PostgreSQL: workers never wait for each other's candidate
        candidate = candidate.with_for_update(skip_locked=True)
    return (
        update(TASK_RUNS)
        .where(TASK_RUNS.c.id == candidate.scalar_subquery())
        .values(
            state="RUNNING",
            attempt=TASK_RUNS.c.attempt + 1,
            lease_owner=bindparam("owner"),
            lease_expires=bindparam("until"),
            start_date=func.coalesce(TASK_RUNS.c.start_date, bindparam("now")),
        )
        .returning(*TASK_RUNS.c)
    )


_CLAIM_SQLITE = Direct(_claim(skip_locked=False))
_CLAIM_LOCKING = Direct(_claim(skip_locked=True))


class Tx:
    """The verbs available inside one transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.committed: list[Callable[[], None]] = []
        """Called once a write transaction commits (not when it rolls back): wake-ups
        for other threads, which on PostgreSQL would not yet see uncommitted rows."""

    # -- executions ------------------------------------------------------------------
    def claim_task_run(
        self, owner: str, now: float, lease_until: float, known: Container[str] = ()
    ) -> Row | None:
        """`Store.claim_task_run` inside this transaction (a worker that finishes a task
        run claims its next one in the same commit)."""
        sqlite = self.connection.dialect.name == "sqlite"
        statement = _CLAIM_SQLITE if sqlite else _CLAIM_LOCKING
        parameters = {"owner": owner, "now": now, "until": lease_until}
        run = statement.execute(self.connection, parameters).first()
        if run is None:
            return None
        if run["execution_id"] not in known:
            run["_execution"] = self.execution(run["execution_id"])
        return run

    def execution(
        self, execution_id: str, lock: bool = False, unless_locked: bool = False
    ) -> Row | None:
        """An execution's row; with `lock`, held until the transaction ends, so that on
        PostgreSQL whoever decides an execution's next step next sees this one's writes
        (on SQLite the write transaction is alone already). With `unless_locked`, None
        when another transaction holds it (PostgreSQL) instead of waiting."""
        statement = _EXECUTION_BY_ID
        if lock or unless_locked:
            statement = _EXECUTION_BY_ID_UNLESS_LOCKED if unless_locked else _EXECUTION_BY_ID_LOCKED
        return statement.execute(self.connection, {"id": execution_id}).first()

    def unfinished_executions(self, namespace: str, flow_id: str) -> list[Row]:
        """Top-level executions of a flow that have not ended, oldest first."""
        terminal = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "SKIPPED")
        rows = self.connection.execute(
            select(EXECUTIONS)
            .where(
                EXECUTIONS.c.namespace == namespace,
                EXECUTIONS.c.flow_id == flow_id,
                EXECUTIONS.c.state.not_in(terminal),
                EXECUTIONS.c.parent_execution_id.is_(None),
            )
            .order_by(EXECUTIONS.c.created_at)
        ).mappings()
        return [dict(r) for r in rows]

    def insert_execution(self, row: Row) -> None:
        _INSERT_EXECUTION.execute(self.connection, [row])

    def update_execution(self, execution_id: str, values: Row) -> None:
        statement = _update(EXECUTIONS, frozenset(values))
        statement.execute(self.connection, {**values, "_id": execution_id})

    def execution_by_trigger_key(self, key: str) -> Row | None:
        row = (
            self.connection.execute(select(EXECUTIONS).where(EXECUTIONS.c.trigger_key == key))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    # -- concurrency -----------------------------------------------------------------
    def lock_flow(self, namespace: str, flow_id: str) -> None:
        """Hold the flow's row until the transaction ends, so concurrency slots are
        decided one at a time (PostgreSQL; SQLite's write transaction is already alone)."""
        if self.connection.dialect.name != "sqlite":
            self.connection.execute(
                select(FLOWS.c.flow_id)
                .where(FLOWS.c.namespace == namespace, FLOWS.c.flow_id == flow_id)
                .with_for_update()
            )

    def count_top_level(
        self, namespace: str, flow_id: str, states: Sequence[str], before: Row | None = None
    ) -> int:
        """Top-level executions of a flow in `states` (created before `before`, if given)."""
        query = select(func.count()).where(
            EXECUTIONS.c.namespace == namespace,
            EXECUTIONS.c.flow_id == flow_id,
            EXECUTIONS.c.state.in_(list(states)),
            EXECUTIONS.c.parent_execution_id.is_(None),
        )
        if before is not None:
            query = query.where(
                or_(
                    EXECUTIONS.c.created_at < before["created_at"],
                    and_(
                        EXECUTIONS.c.created_at == before["created_at"],
                        EXECUTIONS.c.id < before["id"],
                    ),
                )
            )
        return int(self.connection.execute(query).scalar_one())

    def oldest_queued(self, namespace: str, flow_id: str, limit: int) -> list[str]:
        """Ids of a flow's QUEUED top-level executions, oldest first."""
        parameters = {"namespace": namespace, "flow_id": flow_id, "limit": limit}
        return _OLDEST_QUEUED.execute(self.connection, parameters).scalars()

    # -- task runs -----------------------------------------------------------------
    def task_runs(self, execution_id: str) -> list[Row]:
        return self._rows(_RUNS_OF_EXECUTION, {"id": execution_id})

    def open_task_runs(self, execution_id: str) -> list[Row]:
        """The task runs the executor plans with: all but those folded into a loop's
        progress (ended for good and counted there)."""
        return self._rows(_OPEN_RUNS_OF_EXECUTION, {"id": execution_id})

    def _rows(self, statement: Direct, parameters: Row) -> list[Row]:
        return statement.execute(self.connection, parameters).all()

    def last_seq(self, execution_id: str) -> int:
        """The creation number of an execution's newest task run (0 when it has none)."""
        found = _LAST_SEQ.execute(self.connection, {"id": execution_id}).scalars()
        return int(found[0] or 0) if found else 0

    def task_run(self, task_run_id: str) -> Row | None:
        row = (
            self.connection.execute(select(TASK_RUNS).where(TASK_RUNS.c.id == task_run_id))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    def insert_task_runs(self, rows: Sequence[Row]) -> None:
        if rows:
            _INSERT_RUNS.execute(self.connection, rows)

    def update_task_run(self, task_run_id: str, values: Row) -> None:
        statement = _update(TASK_RUNS, frozenset(values))
        statement.execute(self.connection, {**values, "_id": task_run_id})

    def fold_task_runs(self, task_run_ids: Sequence[str]) -> None:
        """Mark ended task runs folded into their loop's progress (see planner.py)."""
        if task_run_ids:
            self.connection.execute(
                update(TASK_RUNS).where(TASK_RUNS.c.id.in_(task_run_ids)).values(folded=True)
            )

    def delete_task_runs(self, task_run_ids: Iterable[str]) -> None:
        """Forget task runs (a restart drops the errors and finally branches it re-runs)."""
        ids = list(task_run_ids)
        if ids:
            self.connection.execute(TASK_RUNS.delete().where(TASK_RUNS.c.id.in_(ids)))

    def finish_attempt(self, task_run_id: str, attempt: int, owner: str, values: Row) -> bool:
        """Compare-and-set: only the owner of the current attempt may finish it."""
        columns = frozenset(values)
        statement = _FINISHES.get(columns)
        if statement is None:
            statement = Direct(_FINISH_ATTEMPT.values({k: bindparam(f"v_{k}") for k in values}))
            _FINISHES[columns] = statement
        result = statement.execute(
            self.connection,
            {
                "_id": task_run_id,
                "_attempt": attempt,
                "_owner": owner,
                **{f"v_{k}": v for k, v in values.items()},
            },
        )
        return bool(result.rowcount)

    # -- logs ------------------------------------------------------------------------
    def insert_logs(self, rows: Sequence[Row]) -> None:
        if rows:
            _INSERT_LOGS.execute(self.connection, rows)

    # -- flows ---------------------------------------------------------------------
    def revision(self, namespace: str, flow_id: str, revision: int | None = None) -> Row | None:
        """A revision of a flow, or its deployed (latest) one when `revision` is None."""
        parameters = {"namespace": namespace, "flow_id": flow_id, "revision": revision}
        statement = _LATEST_REVISION if revision is None else _REVISION
        return statement.execute(self.connection, parameters).first()

    def insert_revision(self, row: Row) -> None:
        """A new revision of a flow, which becomes its deployed one."""
        self.connection.execute(insert(REVISIONS), [{k: v for k, v in row.items() if k != "path"}])
        flow = {
            "namespace": row["namespace"],
            "flow_id": row["flow_id"],
            "revision": row["revision"],
            "deleted": row.get("deleted", False),
            "updated_at": row["created_at"],
            "path": row.get("path"),
            "blob": row.get("blob"),
        }
        changed = self.connection.execute(
            update(FLOWS)
            .where(FLOWS.c.namespace == row["namespace"], FLOWS.c.flow_id == row["flow_id"])
            .values(**flow)
        )
        if not changed.rowcount:
            self.connection.execute(insert(FLOWS), [flow])

    def flow_keys(self) -> set[tuple[str, str]]:
        """(namespace, flow id) of every flow that has a revision, deleted ones too."""
        rows = self.connection.execute(select(FLOWS.c.namespace, FLOWS.c.flow_id))
        return {(namespace, flow_id) for namespace, flow_id in rows}

    def insert_new_flows(self, revisions: Sequence[Row], references: Sequence[Row]) -> None:
        """Revision 1 of flows without history, and the flows they name: one statement a
        table however many (a deploy of 10,000 new flows holds the write lock for a
        fraction of a second instead of seconds)."""
        if revisions:
            self.connection.execute(
                insert(REVISIONS), [{k: v for k, v in r.items() if k != "path"} for r in revisions]
            )
            self.connection.execute(
                insert(FLOWS),
                [
                    {
                        "namespace": r["namespace"],
                        "flow_id": r["flow_id"],
                        "revision": r["revision"],
                        "deleted": False,
                        "updated_at": r["created_at"],
                        "path": r.get("path"),
                        "blob": r.get("blob"),
                    }
                    for r in revisions
                ],
            )
        if references:
            self.connection.execute(insert(REFERENCES), list(references))

    def flow(self, namespace: str, flow_id: str) -> Row | None:
        row = (
            self.connection.execute(
                select(FLOWS).where(FLOWS.c.namespace == namespace, FLOWS.c.flow_id == flow_id)
            )
            .mappings()
            .first()
        )
        return dict(row) if row else None

    def set_flow_path(self, namespace: str, flow_id: str, path: str) -> None:
        self.connection.execute(
            update(FLOWS)
            .where(FLOWS.c.namespace == namespace, FLOWS.c.flow_id == flow_id)
            .values(path=path)
        )

    def deployed_flows(self) -> list[Row]:
        rows = self.connection.execute(
            select(FLOWS)
            .where(FLOWS.c.deleted.is_(False))
            .order_by(FLOWS.c.namespace, FLOWS.c.flow_id)
        ).mappings()
        return [dict(r) for r in rows]

    def revision_blobs(self, namespace: str, flow_id: str) -> list[Row]:
        """(revision, blob, deleted) of every revision of a flow, newest first."""
        rows = self.connection.execute(
            select(REVISIONS.c.revision, REVISIONS.c.blob, REVISIONS.c.deleted)
            .where(REVISIONS.c.namespace == namespace, REVISIONS.c.flow_id == flow_id)
            .order_by(REVISIONS.c.revision.desc())
        ).mappings()
        return [dict(r) for r in rows]

    def referencing(self, targets: Iterable[tuple[str, str]]) -> list[Row]:
        """Deployed flows that name any of `targets` (subflows, flow triggers)."""
        found: list[Row] = []
        for namespace, flow_id in targets:
            rows = self.connection.execute(
                select(REFERENCES).where(
                    REFERENCES.c.ref_namespace == namespace, REFERENCES.c.ref_flow_id == flow_id
                )
            ).mappings()
            found += [dict(r) for r in rows]
        return found

    def replace_references(
        self, namespace: str, flow_id: str, refs: Iterable[tuple[str, str, str]]
    ) -> None:
        self.connection.execute(
            REFERENCES.delete().where(
                REFERENCES.c.namespace == namespace, REFERENCES.c.flow_id == flow_id
            )
        )
        rows = [
            {
                "namespace": namespace,
                "flow_id": flow_id,
                "ref_namespace": ns,
                "ref_flow_id": fid,
                "kind": kind,
            }
            for ns, fid, kind in sorted(set(refs))
        ]
        if rows:
            self.connection.execute(insert(REFERENCES), rows)

    # -- sync --------------------------------------------------------------------------
    def existing_sync_state(self) -> Row | None:
        return _SYNC_STATE.execute(self.connection).first()

    def sync_state(self) -> Row:
        row = (
            self.connection.execute(select(SYNC_STATE).where(SYNC_STATE.c.id == 1))
            .mappings()
            .first()
        )
        if row is None:
            self.connection.execute(
                insert(SYNC_STATE), [{"id": 1, "suspended": False, "fetch_failures": 0}]
            )
            row = self.connection.execute(select(SYNC_STATE)).mappings().first()
        return dict(row) if row else {}

    def update_sync_state(self, values: Row) -> None:
        self.sync_state()
        self.connection.execute(update(SYNC_STATE).where(SYNC_STATE.c.id == 1).values(**values))

    def insert_sync(self, row: Row) -> int:
        result = self.connection.execute(insert(SYNCS).returning(SYNCS.c.id), row)
        return int(result.scalar_one())

    def update_sync(self, sync_id: int, values: Row) -> None:
        self.connection.execute(update(SYNCS).where(SYNCS.c.id == sync_id).values(**values))

    def syncs(self, limit: int = 50, offset: int = 0) -> list[Row]:
        rows = self.connection.execute(
            select(SYNCS).order_by(SYNCS.c.id.desc()).limit(limit).offset(offset)
        ).mappings()
        return [dict(r) for r in rows]

    def record_delivery(self, delivery_id: str, now: float) -> bool:
        """Remember a webhook delivery; False when it was seen before (a redelivery).

        One insert that ignores a known id, so two replicas receiving the same delivery
        at once agree on which of them saw it first."""
        # Each dialect's own INSERT … ON CONFLICT, imported here: the PostgreSQL dialect
        # takes a twentieth of a second to import, which a SQLite daemon need not pay.
        if self.connection.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql as dialect
        else:
            from sqlalchemy.dialects import sqlite as dialect  # type: ignore[no-redef]
        statement = (
            dialect.insert(DELIVERIES)
            .values(delivery_id=delivery_id, received_at=now)
            .on_conflict_do_nothing(index_elements=["delivery_id"])
            .returning(DELIVERIES.c.delivery_id)
        )
        first = self.connection.execute(statement).first() is not None
        if first:  # forget old ids, so the table holds a few days of deliveries, not all
            self.connection.execute(
                DELIVERIES.delete().where(DELIVERIES.c.received_at < now - DELIVERY_MEMORY_SECONDS)
            )
        return first

    # -- file triggers ---------------------------------------------------------------
    def known_file_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these file identities a file trigger has picked up already."""
        found: set[str] = set()
        for start in range(0, len(keys), 500):  # bounded IN lists
            chunk = list(keys[start : start + 500])
            found |= set(
                self.connection.execute(
                    select(PICKUPS.c.file_key).where(PICKUPS.c.file_key.in_(chunk))
                ).scalars()
            )
        return found

    def insert_file_pickups(self, rows: Sequence[Row]) -> None:
        if rows:
            self.connection.execute(insert(PICKUPS), list(rows))

    def pending_file_pickups(self) -> list[Row]:
        """Picked-up files whose execution or action may not have happened, by batch."""
        rows = self.connection.execute(
            select(PICKUPS)
            .where(PICKUPS.c.done.is_(False))
            .order_by(PICKUPS.c.picked_at, PICKUPS.c.batch, PICKUPS.c.position)
        ).mappings()
        return [dict(r) for r in rows]

    def finish_file_pickups(self, batch: str) -> None:
        self.connection.execute(update(PICKUPS).where(PICKUPS.c.batch == batch).values(done=True))

    def forget_file_pickups(self, batch: str) -> None:
        """Drop a batch whose execution could not be created: its files are picked again."""
        self.connection.execute(PICKUPS.delete().where(PICKUPS.c.batch == batch))

    def note_trigger_error(
        self,
        namespace: str,
        flow_id: str,
        trigger_id: str,
        error: str | None,
        trigger_type: str | None = None,
    ) -> None:
        """Keep (or clear, with None) why a trigger cannot run, in its trigger state;
        `trigger_type` names the owner of a row made here."""
        names = {"namespace": namespace, "flow_id": flow_id, "trigger_id": trigger_id}
        where = [TRIGGER_STATES.c[k] == v for k, v in names.items()]
        row = self.connection.execute(select(TRIGGER_STATES.c.state).where(*where)).first()
        if row is None:
            if error is not None:
                values = {
                    "disabled": False,
                    "trigger_type": trigger_type,
                    "state": {"error": error},
                }
                self.connection.execute(insert(TRIGGER_STATES), [{**names, **values}])
            return
        state = {k: v for k, v in (row.state or {}).items() if k != "error"}
        if error is not None:
            state["error"] = error
        self.connection.execute(update(TRIGGER_STATES).where(*where).values(state=state or None))

    # -- webhook and flow triggers ---------------------------------------------------
    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of the transaction that is undone alone when it raises (a flow trigger
        that cannot fire must not undo the end of the execution that fired it)."""
        with self.connection.begin_nested():
            yield

    # -- scheduler -------------------------------------------------------------------
    def deployed_containing(self, fragment: str) -> dict[tuple[str, str], int]:
        """The deployed revision of every flow whose source holds `fragment`."""
        rows = self.connection.execute(
            _deployed_holding(fragment, FLOWS.c.namespace, FLOWS.c.flow_id, FLOWS.c.revision)
        )
        return {(namespace, flow_id): revision for namespace, flow_id, revision in rows}

    def deployed_sources(
        self, fragment: str, flows: Sequence[tuple[str, str]] | None = None
    ) -> list[Row]:
        """(namespace, flow_id, revision, path, commit_sha, source) of deployed flows whose
        source holds `fragment` (a cheap filter before parsing, e.g. for one family of
        trigger types): every such flow, or only those of `flows`."""
        query = _deployed_holding(
            fragment,
            FLOWS.c.namespace,
            FLOWS.c.flow_id,
            FLOWS.c.revision,
            FLOWS.c.path,
            REVISIONS.c.commit_sha,
            REVISIONS.c.source,
        )
        if flows is None:
            return [dict(r) for r in self.connection.execute(query).mappings()]
        found: list[Row] = []
        key = tuple_(FLOWS.c.namespace, FLOWS.c.flow_id)
        for start in range(0, len(flows), IN_CHUNK):
            chunk = list(flows[start : start + IN_CHUNK])
            found += [
                dict(r) for r in self.connection.execute(query.where(key.in_(chunk))).mappings()
            ]
        return found

    def trigger_state(self, namespace: str, flow_id: str, trigger_id: str) -> Row | None:
        row = (
            self.connection.execute(
                select(TRIGGER_STATES).where(
                    TRIGGER_STATES.c.namespace == namespace,
                    TRIGGER_STATES.c.flow_id == flow_id,
                    TRIGGER_STATES.c.trigger_id == trigger_id,
                )
            )
            .mappings()
            .first()
        )
        return dict(row) if row else None

    def all_trigger_states(self) -> list[Row]:
        return [dict(r) for r in self.connection.execute(select(TRIGGER_STATES)).mappings()]

    def insert_trigger_states(self, rows: Sequence[Row]) -> None:
        if rows:
            self.connection.execute(insert(TRIGGER_STATES), list(rows))

    def update_trigger_state(
        self, namespace: str, flow_id: str, trigger_id: str, values: Row
    ) -> None:
        self.connection.execute(
            update(TRIGGER_STATES)
            .where(
                TRIGGER_STATES.c.namespace == namespace,
                TRIGGER_STATES.c.flow_id == flow_id,
                TRIGGER_STATES.c.trigger_id == trigger_id,
            )
            .values(**values)
        )

    def delete_trigger_states(self, keys: Iterable[tuple[str, str, str]]) -> None:
        wanted = sorted(set(keys))
        key = tuple_(
            TRIGGER_STATES.c.namespace, TRIGGER_STATES.c.flow_id, TRIGGER_STATES.c.trigger_id
        )
        for start in range(0, len(wanted), IN_CHUNK):
            self.connection.execute(
                TRIGGER_STATES.delete().where(key.in_(wanted[start : start + IN_CHUNK]))
            )

    def advance_triggers(
        self, keys: Sequence[tuple[str, str, str]], next_fire_at: float, last_fired_at: float | None
    ) -> None:
        """Move these enabled triggers' next fire time forward to `next_fire_at` (never
        back: a replica that is behind cannot undo another's progress), and note the time
        they last fired (`last_fired_at`, unless None)."""
        key = tuple_(
            TRIGGER_STATES.c.namespace, TRIGGER_STATES.c.flow_id, TRIGGER_STATES.c.trigger_id
        )
        last = TRIGGER_STATES.c.last_fired_at if last_fired_at is None else last_fired_at
        for start in range(0, len(keys), IN_CHUNK):
            self.connection.execute(
                update(TRIGGER_STATES)
                .where(
                    key.in_(list(keys[start : start + IN_CHUNK])),
                    TRIGGER_STATES.c.disabled.is_(False),
                    or_(
                        TRIGGER_STATES.c.next_fire_at.is_(None),
                        TRIGGER_STATES.c.next_fire_at < next_fire_at,
                    ),
                )
                .values(next_fire_at=next_fire_at, last_fired_at=last)
            )

    def taken_trigger_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these trigger keys an execution already has."""
        taken: set[str] = set()
        for start in range(0, len(keys), IN_CHUNK):
            chunk = list(keys[start : start + IN_CHUNK])
            taken.update(
                self.connection.execute(
                    select(EXECUTIONS.c.trigger_key).where(EXECUTIONS.c.trigger_key.in_(chunk))
                ).scalars()
            )
        return taken

    def insert_executions(self, rows: Sequence[Row]) -> None:
        """New executions (rows with the same columns) in one statement.

        On SQLite the rows go to the driver's executemany with their JSON encoded here:
        SQLAlchemy's per-value processing costs more than the insert itself (for 10,000
        rows about 0.5 s against 0.2 s), and a scheduler writes that many at once.
        """
        if not rows:
            return
        if self.connection.dialect.name != "sqlite":
            self.connection.execute(insert(EXECUTIONS), list(rows))
            return
        columns = list(rows[0])
        encoded = [name in JSON_COLUMNS for name in columns]
        statement = (
            f"INSERT INTO {EXECUTIONS.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        values = [
            tuple(
                json.dumps(row[name]) if as_json else row[name]
                for name, as_json in zip(columns, encoded, strict=True)
            )
            for row in rows
        ]
        self.connection.exec_driver_sql(statement, values)


def _lost_a_deadlock(error: OperationalError) -> bool:
    """PostgreSQL ended this transaction to break a deadlock (or a serialization failure)."""
    return getattr(error.orig, "sqlstate", None) in RETRIED_SQLSTATES


class Store:
    """The database behind Headwater, reached only through these verbs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = is_sqlite(engine)
        self.health = WriteHealth()
        """Whether the last write failed, and why (readiness, 503 answers)."""
        self._gate = WriteGate() if self.sqlite else None
        self.commits = 0
        """Write transactions this store committed (when to checkpoint the WAL again)."""
        self.many_commits: Callable[[], None] | None = None
        """Called every CHECKPOINT_EVERY_COMMITS commits (the engine's checkpointer)."""

    @contextmanager
    def write(self, busy_timeout: float | None = None) -> Iterator[Tx]:
        """A write transaction. On SQLite, `busy_timeout` shortens the wait for another
        program's write lock."""
        with self._gate.ordinary() if self._gate is not None else nullcontext():
            try:
                with write_transaction(self.engine, busy_timeout) as connection:
                    tx = Tx(connection)
                    yield tx
            except OperationalError as error:
                if not _lost_a_deadlock(error):
                    self.health.failed(error)
                raise
            self.health.succeeded()
            self.commits += 1
            if self.commits % CHECKPOINT_EVERY_COMMITS == 0 and self.many_commits is not None:
                self.many_commits()
        for hook in tx.committed:
            hook()

    def checkpoint(self) -> None:
        """Copy SQLite's write-ahead log into the database, without waiting for readers
        or writers (a passive checkpoint); nothing on PostgreSQL."""
        if not self.sqlite:
            return
        with self.engine.connect() as connection:
            driver = connection.connection.driver_connection
            driver.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with read_transaction(self.engine) as connection:
            yield Tx(connection)

    def retrying(self, work: Callable[[Tx], T]) -> T:
        """`work` in a write transaction, run again when PostgreSQL picked it to break a
        deadlock. Executions lock their rows while they move, and some moves lock two
        in either order (a child reporting to its parent while the parent kills it):
        the server ends one of the two after `deadlock_timeout`, and it goes again."""
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                with self.write() as tx:
                    return work(tx)
            except OperationalError as error:
                if attempt == DEADLOCK_ATTEMPTS or not _lost_a_deadlock(error):
                    raise
                log.info("transaction ended to break a deadlock; trying again (%d)", attempt)
        raise AssertionError("unreachable")  # the last attempt returned or raised

    # -- work for workers --------------------------------------------------------------
    def claim_task_run(
        self,
        owner: str,
        now: float,
        lease_until: float,
        clock: Callable[[], float] | None = None,
        known: Container[str] = (),
    ) -> Row | None:
        """Take the oldest runnable task run that is due, with a lease; None if there is none.

        With `clock`, the time is read again once the write lock is held: a wait for the
        lock must not make a task run start before it was created. Unless its execution
        is in `known`, the execution's row comes along as `run["_execution"]` (read in the
        same transaction, not another).
        """
        with self.write() as tx:
            if clock is not None:
                now, lease_until = clock(), clock() + (lease_until - now)
            return tx.claim_task_run(owner, now, lease_until, known)

    def record_pgid(self, task_run_id: str, attempt: int, owner: str, pgid: int) -> bool:
        """Keep the process group of a running attempt, while `owner` still holds it."""
        with self.write() as tx:
            result = tx.connection.execute(
                update(TASK_RUNS)
                .where(
                    TASK_RUNS.c.id == task_run_id,
                    TASK_RUNS.c.attempt == attempt,
                    TASK_RUNS.c.lease_owner == owner,
                )
                .values(pgid=pgid)
            )
            return bool(result.rowcount)

    def expire_all_leases(self) -> int:
        """Mark every held lease expired (only when no other process can hold one)."""
        with self.write() as tx:
            result = tx.connection.execute(
                update(TASK_RUNS)
                .where(TASK_RUNS.c.lease_owner.is_not(None), TASK_RUNS.c.lease_expires > 0)
                .values(lease_expires=0.0)
            )
            return int(result.rowcount)

    def release_task_run(self, task_run_id: str, attempt: int, owner: str) -> bool:
        """Hand a running task run back unfinished, without using its attempt."""
        with self.write() as tx:
            result = tx.connection.execute(
                update(TASK_RUNS)
                .where(
                    TASK_RUNS.c.id == task_run_id,
                    TASK_RUNS.c.attempt == attempt,
                    TASK_RUNS.c.lease_owner == owner,
                )
                .values(
                    state="CREATED",
                    attempt=attempt - 1,
                    lease_owner=None,
                    lease_expires=None,
                    pgid=None,
                )
            )
            return bool(result.rowcount)

    def renew_leases(self, owner: str, task_run_ids: Iterable[str], until: float) -> set[str]:
        """Extend the leases `owner` still holds; return the ids it holds no more."""
        ids = list(task_run_ids)
        if not ids:
            return set()
        with self.write() as tx:
            tx.connection.execute(
                update(TASK_RUNS)
                .where(
                    TASK_RUNS.c.id.in_(ids),
                    TASK_RUNS.c.lease_owner == owner,
                    TASK_RUNS.c.state == "RUNNING",
                )
                .values(lease_expires=until)
            )
            held = tx.connection.execute(
                select(TASK_RUNS.c.id).where(
                    TASK_RUNS.c.id.in_(ids),
                    TASK_RUNS.c.lease_owner == owner,
                    TASK_RUNS.c.state == "RUNNING",
                )
            ).scalars()
            return set(ids) - set(held)

    def expired_leases(self, now: float) -> list[Row]:
        with self.read() as tx:
            rows = tx.connection.execute(
                select(TASK_RUNS).where(
                    TASK_RUNS.c.state.in_(("RUNNING", "KILLING")),
                    TASK_RUNS.c.runnable.is_(True),
                    TASK_RUNS.c.lease_expires < now,
                )
            ).mappings()
            return [dict(r) for r in rows]

    def executions_to_advance(self, now: float, limit: int = 100) -> list[str]:
        """Executions with changes or timers the executor has not acted on."""
        with self.read() as tx:
            return list(
                tx.connection.execute(
                    select(EXECUTIONS.c.id)
                    .where(or_(EXECUTIONS.c.dirty.is_(True), EXECUTIONS.c.wake_at <= now))
                    .order_by(EXECUTIONS.c.created_at)
                    .limit(limit)
                ).scalars()
            )

    def next_wake(self) -> float | None:
        with self.read() as tx:
            value = tx.connection.execute(
                select(func.min(EXECUTIONS.c.wake_at)).where(EXECUTIONS.c.wake_at.is_not(None))
            ).scalar()
            return float(value) if value is not None else None

    def next_claimable(self) -> float | None:
        """When the earliest waiting task run becomes claimable (retry backoff)."""
        with self.read() as tx:
            value = tx.connection.execute(
                select(func.min(TASK_RUNS.c.not_before)).where(
                    TASK_RUNS.c.runnable.is_(True), TASK_RUNS.c.state.in_(CLAIMABLE)
                )
            ).scalar()
            return float(value) if value is not None else None

    def kill_requested(self, task_run_ids: Iterable[str]) -> set[str]:
        """Of these running task runs, those whose execution is being killed."""
        ids = list(task_run_ids)
        if not ids:
            return set()
        with self.read() as tx:
            query = (
                select(TASK_RUNS.c.id)
                .join(EXECUTIONS, EXECUTIONS.c.id == TASK_RUNS.c.execution_id)
                .where(
                    TASK_RUNS.c.id.in_(ids),
                    or_(TASK_RUNS.c.state == "KILLING", EXECUTIONS.c.kill_requested.is_(True)),
                )
            )
            return set(tx.connection.execute(query).scalars())

    # -- reads for people ------------------------------------------------------------
    def logs(self, execution_id: str, after_id: int = 0, limit: int = 10_000) -> list[Row]:
        with self.read() as tx:
            rows = tx.connection.execute(
                select(LOGS)
                .where(LOGS.c.execution_id == execution_id, LOGS.c.id > after_id)
                .order_by(LOGS.c.id)
                .limit(limit)
            ).mappings()
            return [dict(r) for r in rows]

    def append_logs(self, rows: Sequence[Row]) -> None:
        if rows:
            with self.write() as tx:
                tx.insert_logs(rows)

    def wait_for_quiet(self) -> None:
        """Wait until no other write of this process is under way or waiting: background
        writes (batches of log lines) go after every other, so a lease renewal never
        waits behind more than one batch (`writes.WriteGate`; PostgreSQL needs no wait)."""
        if self._gate is not None:
            self._gate.wait_for_quiet()

    def probe_write(self, timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
        """Write nothing of consequence, to learn whether writing works (readiness);
        raises OperationalError when it does not, within about `timeout` seconds.

        On SQLite a row is rewritten rather than an empty transaction committed (on a full
        disk an empty transaction still commits, and the probe would lie), waiting at most
        `timeout` for the write lock. On PostgreSQL a transaction id is taken, which a
        read-only server refuses, without locking any row a deploy may hold.
        """
        if not self.sqlite:
            with self.write() as tx:
                tx.connection.exec_driver_sql("SELECT pg_current_xact_id()")
            return
        with self.write(busy_timeout=timeout) as tx:
            tx.connection.execute(update(SYNC_STATE).values(id=SYNC_STATE.c.id))


def _deployed_holding(fragment: str, *columns: Any) -> Select[Any]:
    """`columns` of the deployed flows whose deployed revision's source holds `fragment`."""
    return (
        select(*columns)
        .join(
            REVISIONS,
            (REVISIONS.c.namespace == FLOWS.c.namespace)
            & (REVISIONS.c.flow_id == FLOWS.c.flow_id)
            & (REVISIONS.c.revision == FLOWS.c.revision),
        )
        .where(FLOWS.c.deleted.is_(False), REVISIONS.c.source.contains(fragment))
    )
