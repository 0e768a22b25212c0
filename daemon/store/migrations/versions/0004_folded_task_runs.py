"""task runs folded into their loop's progress

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("folded", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("progress", sa.JSON(), nullable=True))
        batch_op.create_index("ix_task_runs_open", ["execution_id", "folded", "seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_task_runs_open")
        batch_op.drop_column("progress")
        batch_op.drop_column("folded")
