"""Reads for people: searches with paging, and the rows behind the API and the page.

These are read verbs only, built on the tables of `tables.py`; the daemon's own verbs
(claiming, finishing, syncing) stay in `store.py`. Each takes the `Tx` of a read
transaction, so a view reads what it shows in one consistent snapshot.

Namespace filters include child namespaces (`company` finds `company.team`), as
Kestra's do. Text searches (`q`) match a flow's namespace or id, case-insensitively.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select

from headwater.daemon.store.store import (
    EXECUTIONS,
    FLOWS,
    LOGS,
    REVISIONS,
    SYNC_STATE,
    SYNCS,
    TASK_RUNS,
    Row,
    Tx,
)


@dataclass(frozen=True)
class Page:
    """Which slice of a search: `number` counts from 1."""

    number: int = 1
    size: int = 25

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


@dataclass
class Found:
    """One page of a search, and how many rows match in all."""

    results: list[Row]
    total: int


def _rows(tx: Tx, query: Select[Any]) -> list[Row]:
    return [dict(r) for r in tx.connection.execute(query).mappings()]


def _page(tx: Tx, query: Select[Any], page: Page) -> Found:
    total = tx.connection.execute(
        select(func.count()).select_from(query.order_by(None).subquery())
    ).scalar_one()
    rows = _rows(tx, query.limit(page.size).offset(page.offset))
    return Found(rows, int(total))


def _in_namespace(column: Any, namespace: str) -> ColumnElement[bool]:
    """The namespace itself and its children (`a` matches `a` and `a.b`, not `ab`)."""
    return or_(column == namespace, column.startswith(namespace + ".", autoescape=True))


# -- sync ----------------------------------------------------------------------------------
def sync_state(tx: Tx) -> Row:
    """The sync state row; before the first sync, its defaults (nothing is written)."""
    row = tx.connection.execute(select(SYNC_STATE).where(SYNC_STATE.c.id == 1)).mappings().first()
    if row is not None:
        return dict(row)
    return {column.name: None for column in SYNC_STATE.c} | {
        "id": 1,
        "suspended": False,
        "fetch_failures": 0,
    }


def sync_history(tx: Tx, page: Page) -> Found:
    """Sync attempts, newest first."""
    return _page(tx, select(SYNCS).order_by(SYNCS.c.id.desc()), page)


# -- flows ---------------------------------------------------------------------------------
_FLOW_WITH_REVISION = select(
    FLOWS,
    REVISIONS.c.source,
    REVISIONS.c.commit_sha,
    REVISIONS.c.commit_author,
    REVISIONS.c.commit_date,
    REVISIONS.c.commit_message,
    REVISIONS.c.equals_revision,
    REVISIONS.c.created_at,
).join(
    REVISIONS,
    (REVISIONS.c.namespace == FLOWS.c.namespace)
    & (REVISIONS.c.flow_id == FLOWS.c.flow_id)
    & (REVISIONS.c.revision == FLOWS.c.revision),
)


def search_flows(tx: Tx, page: Page, namespace: str | None = None, q: str | None = None) -> Found:
    """Deployed (not deleted) flows with their current revision, by namespace and id."""
    query = _FLOW_WITH_REVISION.where(FLOWS.c.deleted.is_(False))
    if namespace:
        query = query.where(_in_namespace(FLOWS.c.namespace, namespace))
    if q:
        query = query.where(
            or_(
                FLOWS.c.flow_id.icontains(q, autoescape=True),
                FLOWS.c.namespace.icontains(q, autoescape=True),
            )
        )
    return _page(tx, query.order_by(FLOWS.c.namespace, FLOWS.c.flow_id), page)


def flow(tx: Tx, namespace: str, flow_id: str) -> Row | None:
    """A flow with its current revision (the revision that deleted it, for a deleted flow)."""
    query = _FLOW_WITH_REVISION.where(FLOWS.c.namespace == namespace, FLOWS.c.flow_id == flow_id)
    row = tx.connection.execute(query).mappings().first()
    return dict(row) if row else None


def flow_revisions(tx: Tx, namespace: str, flow_id: str) -> list[Row]:
    """Every revision of a flow, newest first, without its source."""
    columns = [c for c in REVISIONS.c if c.name != "source"]
    return _rows(
        tx,
        select(*columns)
        .where(REVISIONS.c.namespace == namespace, REVISIONS.c.flow_id == flow_id)
        .order_by(REVISIONS.c.revision.desc()),
    )


# -- executions ----------------------------------------------------------------------------
def search_executions(
    tx: Tx,
    page: Page,
    namespace: str | None = None,
    flow_id: str | None = None,
    states: Collection[str] = (),
) -> Found:
    """Executions, newest first."""
    query = select(EXECUTIONS)
    if namespace:
        query = query.where(_in_namespace(EXECUTIONS.c.namespace, namespace))
    if flow_id:
        query = query.where(EXECUTIONS.c.flow_id == flow_id)
    if states:
        query = query.where(EXECUTIONS.c.state.in_(sorted(states)))
    return _page(tx, query.order_by(EXECUTIONS.c.created_at.desc(), EXECUTIONS.c.id), page)


def task_runs_of(tx: Tx, execution_ids: Sequence[str]) -> dict[str, list[Row]]:
    """The task runs of several executions in one query, by execution, in creation order."""
    found: dict[str, list[Row]] = {i: [] for i in execution_ids}
    if not execution_ids:
        return found
    query = (
        select(TASK_RUNS)
        .where(TASK_RUNS.c.execution_id.in_(list(execution_ids)))
        .order_by(TASK_RUNS.c.execution_id, TASK_RUNS.c.seq)
    )
    for row in _rows(tx, query):
        found[row["execution_id"]].append(row)
    return found


def execution_logs(
    tx: Tx,
    execution_id: str,
    levels: Collection[str] | None = None,
    task_run_id: str | None = None,
    after_id: int = 0,
    limit: int = 1000,
) -> list[Row]:
    """Log lines of an execution in the order they were written, after the line `after_id`."""
    query = select(LOGS).where(LOGS.c.execution_id == execution_id, LOGS.c.id > after_id)
    if levels is not None:
        query = query.where(LOGS.c.level.in_(sorted(levels)))
    if task_run_id:
        query = query.where(LOGS.c.task_run_id == task_run_id)
    return _rows(tx, query.order_by(LOGS.c.id).limit(limit))
