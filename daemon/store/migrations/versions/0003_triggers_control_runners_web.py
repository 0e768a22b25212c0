"""triggers, execution control, runners and web indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # -- scheduler --
    # -- webhook and flow triggers --
    # -- file triggers --
    # -- concurrency and execution control --
    # -- runners --
    # -- web indexes --
    pass


def downgrade() -> None:
    # -- web indexes --
    # -- runners --
    # -- concurrency and execution control --
    # -- file triggers --
    # -- webhook and flow triggers --
    # -- scheduler --
    pass
