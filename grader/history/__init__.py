"""The grading history: every `failfast check`, and every submission of `failfast grade`, kept.

SQLite in the user's data directory by default; ``--db URL`` or ``FAILFAST_DB`` for another file
or a PostgreSQL server. The public surface: :class:`Store` (open, record, read),
:class:`StoreUrl`, :func:`grading_of` and :func:`reuse_key` (what is recorded), and
:mod:`changes` (what changed between two gradings). Every error is a
:class:`grader.errors.HistoryError`.

Its names are imported on first use (PEP 562): SQLAlchemy costs about 0.2 s to import, which
every `failfast` command would otherwise pay, --version and --no-history included.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

ENV = "FAILFAST_DB"  # where the history is when --db is not given

if TYPE_CHECKING:
    from grader.history.changes import between, previous
    from grader.history.recording import (
        course_digest,
        grading_of,
        reuse_key,
        selection_of,
        selection_text,
    )
    from grader.history.store import CheckRow, Grading, Store
    from grader.history.url import StoreUrl, default_path

_WHERE = {
    "between": "changes",
    "previous": "changes",
    "course_digest": "recording",
    "grading_of": "recording",
    "reuse_key": "recording",
    "selection_of": "recording",
    "selection_text": "recording",
    "CheckRow": "store",
    "Grading": "store",
    "Store": "store",
    "StoreUrl": "url",
    "default_path": "url",
}

__all__ = [
    "ENV",
    "CheckRow",
    "Grading",
    "Store",
    "StoreUrl",
    "between",
    "course_digest",
    "default_path",
    "grading_of",
    "previous",
    "reuse_key",
    "selection_of",
    "selection_text",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
