"""The history's tables, in SQLAlchemy Core: one row per grading, one per check it graded.

The schema is Alembic's to change (grader/history/migrations): a new column is a new revision,
never an edit here alone. ``tests/test_history.py`` holds the two to each other.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# One grading: a `failfast check` run, or one submission of `failfast grade`.
gradings = sa.Table(
    "gradings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recorded_at", sa.String(40), nullable=False),  # ISO 8601, UTC
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
    # The repo: its resolved path, and what git says of it when it is a checkout.
    sa.Column("repo_path", sa.Text, nullable=False),
    sa.Column("repo_remote", sa.Text),
    sa.Column("commit_sha", sa.String(64)),
    sa.Column("dirty", sa.Boolean),
    # What graded it: a different one of these is a different grading of the same commit.
    sa.Column("grader_version", sa.String(64), nullable=False),
    sa.Column("course_digest", sa.String(64), nullable=False),  # sha256 of the course file, or ""
    sa.Column("backend", sa.String(32), nullable=False),
    sa.Column("selection", sa.String(200), nullable=False),  # "milestone-N --through"
    sa.Column("milestones", sa.Text, nullable=False),  # space-separated keys
    # --target: the checks it was narrowed to, space-separated; "" for every check (0002).
    sa.Column("targets", sa.Text, nullable=False, server_default=""),
    sa.Column("score", sa.String(32), nullable=False),  # a Decimal, exactly
    sa.Column("max_score", sa.String(32), nullable=False),
    sa.Column("exit_code", sa.Integer, nullable=False),
    # Graded to the end with no ERROR or INCONCLUSIVE: only such a grading is reused.
    sa.Column("complete", sa.Boolean, nullable=False),
    # `failfast grade`: the submission's id, and the key that makes recording it idempotent.
    sa.Column("submission", sa.Text),
    sa.Column("reuse_key", sa.String(64)),
    # The whole JSON report, as --format json writes it: a reused or exported submission's
    # files are written from it, so they equal what grading it wrote.
    sa.Column("report_json", sa.Text, nullable=False),
    # The database, not a check before inserting, keeps one row per submission and inputs:
    # two shards, or a retried recording, cannot double it (NULLs never collide: `check` runs).
    sa.UniqueConstraint("submission", "reuse_key", name="uq_gradings_submission_reuse_key"),
)
sa.Index("ix_gradings_repo_path", gradings.c.repo_path, gradings.c.id)

# One check of a grading, with what it measured: progress and changes read these.
check_results = sa.Table(
    "check_results",
    metadata,
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
