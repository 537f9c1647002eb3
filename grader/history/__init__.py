"""The grading history: every `failfast check`, and every submission of `failfast grade`, kept.

SQLite in the user's data directory by default; ``--db URL`` or ``FAILFAST_DB`` for another file
or a PostgreSQL server. The public surface: :class:`Store` (open, record, read),
:class:`StoreUrl`, :func:`grading_of` and :func:`reuse_key` (what is recorded), and
:mod:`changes` (what changed between two gradings). Every error is a
:class:`grader.errors.HistoryError`.
"""

from __future__ import annotations

from grader.history.changes import between, previous
from grader.history.recording import (
    course_digest,
    grading_of,
    reuse_key,
    selection_of,
    selection_text,
)
from grader.history.store import CheckRow, Grading, Store
from grader.history.url import ENV, StoreUrl, default_path

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
