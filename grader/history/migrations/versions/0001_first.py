"""The first schema: gradings and their check results.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create gradings and check_results."""
    op.create_table(
        "gradings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recorded_at", sa.String(40), nullable=False),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("repo_path", sa.Text, nullable=False),
        sa.Column("repo_remote", sa.Text),
        sa.Column("commit_sha", sa.String(64)),
        sa.Column("dirty", sa.Boolean),
        sa.Column("grader_version", sa.String(64), nullable=False),
        sa.Column("course_digest", sa.String(64), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("selection", sa.String(200), nullable=False),
        sa.Column("milestones", sa.Text, nullable=False),
        sa.Column("score", sa.String(32), nullable=False),
        sa.Column("max_score", sa.String(32), nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=False),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("submission", sa.Text),
        sa.Column("reuse_key", sa.String(64)),
        sa.Column("report_json", sa.Text, nullable=False),
        sa.UniqueConstraint("submission", "reuse_key", name="uq_gradings_submission_reuse_key"),
    )
    op.create_index("ix_gradings_repo_path", "gradings", ["repo_path", "id"])
    op.create_table(
        "check_results",
        sa.Column(
            "grading_id",
            sa.Integer,
            sa.ForeignKey("gradings.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("check_id", sa.String(100), primary_key=True),
        sa.Column("milestone", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score", sa.String(32), nullable=False),
        sa.Column("max_score", sa.String(32), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("measured", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("check_results")
    op.drop_index("ix_gradings_repo_path", "gradings")
    op.drop_table("gradings")
