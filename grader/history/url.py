"""Where the history lives: ``--db``, else ``FAILFAST_DB``, else an SQLite file of the user's.

A URL is SQLAlchemy's (``sqlite:///path``, ``postgresql://user:pw@host/db``); a plain path is an
SQLite file. Every message names the URL with its password hidden.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from platformdirs import user_data_path

from grader.errors import HistoryError
from grader.history import ENV

DEFAULT_FILE = "history.sqlite3"


def default_path() -> Path:
    """The SQLite file used when nothing else is given: ~/.local/share/failfast/ on Linux."""
    return user_data_path("failfast", appauthor=False) / DEFAULT_FILE


@dataclass(frozen=True, slots=True)
class StoreUrl:
    """A history's address, ready for SQLAlchemy, and how to name it in a message."""

    url: sa.URL

    @property
    def shown(self) -> str:
        """The URL with its password hidden, for messages and reports."""
        return self.url.render_as_string(hide_password=True)

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite file, or None for a server (or an in-memory database)."""
        if self.url.get_backend_name() != "sqlite" or not self.url.database:
            return None
        database = self.url.database
        return None if database == ":memory:" else Path(database)

    @classmethod
    def parse(cls, text: str) -> StoreUrl:
        """A URL or a path; raises :class:`HistoryError` naming what would be understood."""
        if "://" not in text:
            return cls(sa.URL.create("sqlite", database=str(Path(text).expanduser().absolute())))
        try:
            url = sa.make_url(text)
        except sa.exc.ArgumentError:
            raise HistoryError(
                f"--db {text!r} is not a database URL: give sqlite:///PATH, "
                "postgresql://USER:PASSWORD@HOST/DB, or a plain file path."
            ) from None
        backend = url.get_backend_name()
        if backend == "postgresql":
            # psycopg 3 is the driver failfast installs; a URL naming another is refused.
            if "+" not in url.drivername:
                url = url.set(drivername="postgresql+psycopg")
            elif url.get_driver_name() != "psycopg":
                raise HistoryError(
                    f"--db {url.render_as_string(hide_password=True)}: failfast talks to "
                    "PostgreSQL through psycopg 3; write the URL as postgresql://..."
                )
        elif backend != "sqlite":
            raise HistoryError(
                f"--db {url.render_as_string(hide_password=True)}: failfast keeps its history "
                "in SQLite or PostgreSQL only (sqlite:///PATH or postgresql://...)."
            )
        return cls(url)

    @classmethod
    def chosen(cls, given: str | None) -> StoreUrl:
        """``--db`` if given, else ``FAILFAST_DB`` if set, else :func:`default_path`."""
        text = given or os.environ.get(ENV) or str(default_path())
        return cls.parse(text)
