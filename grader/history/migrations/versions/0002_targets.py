"""The checks --target narrowed a grading to (failfast 0.3).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add gradings.targets; gradings recorded before it graded every check ("")."""
    with op.batch_alter_table("gradings") as batch:
        batch.add_column(sa.Column("targets", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    """Drop gradings.targets."""
    with op.batch_alter_table("gradings") as batch:
        batch.drop_column("targets")
