"""Alembic's entry: run the migrations on the connection grader/history/migrate.py opened."""

from __future__ import annotations

from alembic import context

from grader.history.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
