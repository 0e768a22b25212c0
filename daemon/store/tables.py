"""The tables, as SQLModel classes. Alembic migrations create and change them.

Times are seconds since the epoch in UTC (a float): one portable type for SQLite and
PostgreSQL, cheap to compare, converted to RFC 3339 only where people read them.
Structured values (inputs, outputs, labels, attempts) are JSON columns.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    false,
)
from sqlmodel import Field, SQLModel

# Constraint names are given so that Alembic's batch mode on SQLite can alter them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata = MetaData(naming_convention=NAMING)
metadata = SQLModel.metadata


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=nullable))


class FlowRow(SQLModel, table=True):
    """A deployed flow: its current revision (or the revision that deleted it)."""

    __tablename__ = "flows"
    namespace: str = Field(primary_key=True)
    flow_id: str = Field(primary_key=True)
    revision: int
    deleted: bool = False
    updated_at: float
    path: str | None = None
    """The file it comes from, relative to the repository root."""
    blob: str | None = None
    """The git blob of its source: "unchanged" means the same blob."""


class FlowRevisionRow(SQLModel, table=True):
    """Every version of a flow's source, tied to the commit that made it."""

    __tablename__ = "flow_revisions"
    namespace: str = Field(primary_key=True)
    flow_id: str = Field(primary_key=True)
    revision: int = Field(primary_key=True)
    source: str = Field(sa_column=Column(Text, nullable=False))
    blob: str | None = None
    commit_sha: str | None = None
    commit_author: str | None = None
    commit_date: float | None = None
    commit_message: str | None = None
    deleted: bool = False
    equals_revision: int | None = None
    created_at: float


class ExecutionRow(SQLModel, table=True):
    __tablename__ = "executions"
    __table_args__ = (
        Index("ix_executions_flow_created", "namespace", "flow_id", "created_at"),
        Index("ix_executions_state", "state"),
        Index("ix_executions_created", "created_at"),
        Index("ix_executions_wake", "wake_at"),
        # concurrency: counting a flow's running and queued executions reads only the index.
        Index("ix_executions_flow_state", "namespace", "flow_id", "state"),
        # web indexes: counts by state over the last day read a range of (created_at,
        # state) alone; a list filtered by state reads (state, created_at) newest first.
        Index("ix_executions_created_state", "created_at", "state"),
        Index("ix_executions_state_created", "state", "created_at"),
    )
    id: str = Field(primary_key=True)
    namespace: str
    flow_id: str
    flow_revision: int
    commit_sha: str | None = None
    state: str
    created_at: float
    start_date: float | None = None
    end_date: float | None = None
    inputs: dict[str, Any] | None = _json()
    outputs: dict[str, Any] | None = _json()
    labels: list[dict[str, str]] | None = _json()
    trigger: dict[str, Any] | None = _json()
    histories: list[dict[str, Any]] | None = _json()
    original_id: str | None = None
    parent_execution_id: str | None = Field(default=None, index=True)
    parent_task_run_id: str | None = None
    trigger_key: str | None = Field(default=None, unique=True)
    """What caused it (schedule time, upstream execution, delivery id): creation is idempotent."""
    error: str | None = Field(default=None, sa_column=Column(Text))
    wake_at: float | None = None
    """When the executor must look at it again (a sleep, a pause, a retry); None if not."""
    dirty: bool = False
    """Something changed that the executor has not acted on yet."""
    kill_requested: bool = False
    depth: int = 0
    """Subflow and flow-trigger nesting depth (bounded)."""


class TaskRunRow(SQLModel, table=True):
    __tablename__ = "task_runs"
    __table_args__ = (
        Index("ix_task_runs_claim", "state", "runnable", "not_before"),
        Index("ix_task_runs_lease", "state", "lease_expires"),
        # web indexes: /metrics reads the task runs that ended since its last scrape.
        Index("ix_task_runs_end", "end_date"),
        # the executor reads an execution's task runs that are not folded, in order
        Index("ix_task_runs_open", "execution_id", "folded", "seq"),
    )
    id: str = Field(primary_key=True)
    execution_id: str = Field(index=True)
    parent_id: str | None = None
    task_id: str
    branch: str = "tasks"
    """Which list of the parent the task is in: tasks, errors, finally, then, else, cases/x, …"""
    value: str | None = None
    """The loop value (ForEach), as text."""
    values_path: list[str] | None = _json()
    """Loop values of the enclosing loops, outermost first."""
    runnable: bool = True
    """Claimed by a worker (runnable tasks) or resolved by the executor (flowables)."""
    state: str
    attempt: int = 0
    attempts: list[dict[str, Any]] | None = _json()
    outputs: dict[str, Any] | None = _json()
    metrics: list[dict[str, Any]] | None = _json()
    created_at: float
    start_date: float | None = None
    end_date: float | None = None
    not_before: float = 0.0
    """A worker may claim it from this time on (retry backoff)."""
    wake_at: float | None = None
    """The executor acts on it at this time (sleep end, pause delay or timeout)."""
    lease_owner: str | None = None
    lease_expires: float | None = None
    pgid: int | None = None
    """Process group of the running attempt, to end leftovers after a crash."""
    error: str | None = Field(default=None, sa_column=Column(Text))
    seq: int = 0
    """Order of creation within the execution."""
    folded: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    """Ended for good and counted in its loop's `progress`: the executor no longer reads
    it when it plans (a loop of 10,000 items reads a few rows per step, not all)."""
    progress: dict[str, Any] | None = _json()
    """A loop's (or Parallel's) count of leading items folded, and whether any warned."""


class LogRow(SQLModel, table=True):
    __tablename__ = "logs"
    __table_args__ = (
        Index("ix_logs_execution", "execution_id", "id"),
        # web indexes: the page's level filter reads the last lines of one level directly.
        Index("ix_logs_execution_level", "execution_id", "level", "id"),
    )
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    execution_id: str
    task_run_id: str | None = None
    attempt: int = 0
    timestamp: float
    level: str
    message: str = Field(sa_column=Column(Text, nullable=False))


class TriggerStateRow(SQLModel, table=True):
    """What the scheduler and other triggers remember per trigger."""

    __tablename__ = "trigger_states"
    namespace: str = Field(primary_key=True)
    flow_id: str = Field(primary_key=True)
    trigger_id: str = Field(primary_key=True)
    revision: int = 0
    enabled_at: float | None = None
    last_fired_at: float | None = None
    next_fire_at: float | None = None
    """The next time a schedule fires that has not fired yet (the status page shows it)."""
    disabled: bool = False
    state: dict[str, Any] | None = _json()
    trigger_type: str | None = None
    """The trigger's type (core.trigger.Schedule, …): which component owns the row."""


class TriggerFireRow(SQLModel, table=True):
    """One row per cause that fired: the unique key makes each fire happen once."""

    __tablename__ = "trigger_fires"
    __table_args__ = (UniqueConstraint("fire_key", name="uq_trigger_fires_fire_key"),)
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    fire_key: str
    execution_id: str | None = None
    fired_at: float


class FilePickupRow(SQLModel, table=True):
    """A file a file trigger picked up. The key names the file's identity, so a file starts
    one execution; rows not yet done are finished (execution, MOVE, DELETE) after a restart."""

    __tablename__ = "file_pickups"
    __table_args__ = (
        Index("ix_file_pickups_pending", "done", "namespace", "flow_id", "trigger_id"),
        Index("ix_file_pickups_batch", "batch"),
    )
    file_key: str = Field(primary_key=True)
    """A hash of (flow, trigger, path, size, mtime, inode), and the event for realtime."""
    namespace: str
    flow_id: str
    trigger_id: str
    batch: str
    """The trigger key of the execution the file went to (several files for a poll)."""
    execution_id: str
    position: int = 0
    """Order within the batch (oldest file first)."""
    path: str = Field(sa_column=Column(Text, nullable=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    mtime_ns: int = Field(sa_column=Column(BigInteger, nullable=False))
    inode: int = Field(sa_column=Column(BigInteger, nullable=False))
    event: str | None = None
    """CREATE, UPDATE or DELETE (realtime triggers); None for a poll."""
    action: str = "NONE"
    """What happens to the file after the execution exists: NONE, MOVE, DELETE."""
    moved_to: str | None = Field(default=None, sa_column=Column(Text))
    uri: str | None = Field(default=None, sa_column=Column(Text))
    """Internal-storage copy of a file that DELETE removes."""
    picked_at: float
    done: bool = False
    """The execution exists and the action was applied."""


class SyncRow(SQLModel, table=True):
    """One sync attempt: what it was asked to do and what came of it."""

    __tablename__ = "syncs"
    __table_args__ = (Index("ix_syncs_started", "started_at"),)
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    started_at: float
    finished_at: float | None = None
    cause: str
    """poll, webhook, watch, manual, pin, startup."""
    from_commit: str | None = None
    to_commit: str | None = None
    result: str
    """Succeeded, Failed, or Running while it runs."""
    forced: bool = False
    """The new head does not descend from the deployed commit (history was rewritten)."""
    added: int = 0
    updated: int = 0
    deleted: int = 0
    errors: list[dict[str, Any]] | None = _json()
    message: str | None = Field(default=None, sa_column=Column(Text))
    warnings: list[dict[str, Any]] | None = _json()
    """Of a deploy: the secrets its flows name that are not set (daemon/secretrefs.py)."""


class SyncStateRow(SQLModel, table=True):
    """What is deployed and how sync is steered (a single row, id 1)."""

    __tablename__ = "sync_state"
    # No default: an integer key is then autoincrement as the migration made it (SERIAL
    # on PostgreSQL), so a store created from these models has the schema of one migrated
    # to them. The one row is inserted with id 1.
    id: int | None = Field(default=None, primary_key=True)
    repository: str | None = None
    branch: str | None = None
    deployed_commit: str | None = None
    deployed_at: float | None = None
    branch_head: str | None = None
    head_checked_at: float | None = None
    failed_commit: str | None = None
    """The last commit that failed to deploy; not tried again until a new one arrives."""
    suspended: bool = False
    pinned_commit: str | None = None
    fetch_error: str | None = Field(default=None, sa_column=Column(Text))
    fetch_failures: int = 0
    warnings: list[dict[str, Any]] | None = _json()
    """The deployed flows' secrets that are not set: kept at each deploy, rechecked at start."""


class FlowReferenceRow(SQLModel, table=True):
    """Which deployed flows name which other flows (subflows, flow triggers)."""

    __tablename__ = "flow_references"
    __table_args__ = (Index("ix_flow_references_target", "ref_namespace", "ref_flow_id"),)
    namespace: str = Field(primary_key=True)
    flow_id: str = Field(primary_key=True)
    ref_namespace: str = Field(primary_key=True)
    ref_flow_id: str = Field(primary_key=True)
    kind: str = "subflow"


class WebhookDeliveryRow(SQLModel, table=True):
    """Git webhook deliveries seen, so a redelivery is acknowledged and not acted on twice.

    Each delivery is remembered twice: by its provider and id (`github:<id>`) and by the
    digest of its signed body (`body:sha256:<hex>`), so a body sent again under a new id
    or none is known too (web/gitwebhook.py)."""

    __tablename__ = "webhook_deliveries"
    delivery_id: str = Field(primary_key=True)
    received_at: float
