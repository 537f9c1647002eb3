"""The history's schema, kept by Alembic: created on first use, upgraded in place, never downgraded.

The revisions are in grader/history/migrations/versions, one file per change of
grader/history/tables.py. Upgrading runs inside one transaction holding a lock (PostgreSQL's
advisory lock; for SQLite, store.py's file lock), so shards starting at once on an empty
database create it once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from grader.errors import HistoryError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The newest revision, as migrations/versions ends (tests/test_history.py holds the two equal).
# A history already there is the common case, every `failfast check`: it is known from one
# query, without loading Alembic and parsing every revision file (about 0.1 s a run).
HEAD = "0002"
# pg_advisory_xact_lock's key for "failfast upgrades its history": any constant of our own.
PG_LOCK_KEY = 0x6661696C66617374  # "failfast"


def config() -> Config:
    """Alembic's configuration, from code: no alembic.ini to ship or find."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    """The newest revision this failfast knows, as Alembic reads the revision files."""
    from alembic.script import ScriptDirectory

    found = ScriptDirectory.from_config(config()).get_current_head()
    assert found is not None, "grader/history/migrations/versions has no revision"
    return found


def to_head(engine: sa.Engine, shown: str, *, target: str = "head") -> None:
    """Bring the schema to ``target`` (the newest by default); refuse a newer one."""
    if target == "head" and _revision(engine) == HEAD:
        return
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    cfg = config()
    script = ScriptDirectory.from_config(cfg)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        current = MigrationContext.configure(connection).get_current_revision()
        if current is not None:
            try:
                script.get_revision(current)
            except CommandError:
                raise HistoryError(
                    f"The grading history at {shown} was written by a newer failfast (its schema "
                    f"is at revision {current}, which this one, {head()}, does not know). "
                    "Upgrade failfast (pip install -U failfast-grader), or point --db elsewhere."
                ) from None
        if current == (head() if target == "head" else target):
            return
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, target)


def _revision(engine: sa.Engine) -> str | None:
    """The schema's revision, read with one query; None for a new or unreadable database."""
    try:
        with engine.connect() as connection:
            found = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            return found.scalar_one_or_none()
    except sa.exc.DBAPIError:
        return None  # no table yet (or no database): the locked path below finds out
