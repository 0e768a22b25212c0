"""triggers, execution control, runners and web indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # -- scheduler --
    with op.batch_alter_table("trigger_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trigger_type", sa.String(), nullable=True))
    # -- webhook and flow triggers --
    # -- file triggers --
    op.create_table(
        "file_pickups",
        sa.Column("file_key", sa.String(), nullable=False),
        sa.Column("namespace", sa.String(), nullable=False),
        sa.Column("flow_id", sa.String(), nullable=False),
        sa.Column("trigger_id", sa.String(), nullable=False),
        sa.Column("batch", sa.String(), nullable=False),
        sa.Column("execution_id", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(), nullable=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("moved_to", sa.Text(), nullable=True),
        sa.Column("uri", sa.Text(), nullable=True),
        sa.Column("picked_at", sa.Float(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("file_key", name=op.f("pk_file_pickups")),
    )
    with op.batch_alter_table("file_pickups", schema=None) as batch_op:
        batch_op.create_index("ix_file_pickups_batch", ["batch"], unique=False)
        batch_op.create_index(
            "ix_file_pickups_pending",
            ["done", "namespace", "flow_id", "trigger_id"],
            unique=False,
        )
    # -- concurrency and execution control --
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_executions_flow_state", ["namespace", "flow_id", "state"], unique=False
        )
    # -- runners --
    # -- web indexes --
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.create_index("ix_executions_created_state", ["created_at", "state"], unique=False)
        batch_op.create_index("ix_executions_state_created", ["state", "created_at"], unique=False)
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_logs_execution_level", ["execution_id", "level", "id"], unique=False
        )
    with op.batch_alter_table("task_runs", schema=None) as batch_op:  # /metrics
        batch_op.create_index("ix_task_runs_end", ["end_date"], unique=False)


def downgrade() -> None:
    # -- web indexes --
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_task_runs_end")
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.drop_index("ix_logs_execution_level")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_state_created")
        batch_op.drop_index("ix_executions_created_state")
    # -- runners --
    # -- concurrency and execution control --
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_flow_state")
    # -- file triggers --
    with op.batch_alter_table("file_pickups", schema=None) as batch_op:
        batch_op.drop_index("ix_file_pickups_pending")
        batch_op.drop_index("ix_file_pickups_batch")
    op.drop_table("file_pickups")
    # -- webhook and flow triggers --
    # -- scheduler --
    with op.batch_alter_table("trigger_states", schema=None) as batch_op:
        batch_op.drop_column("trigger_type")
