"""A class's history on the command line: `failfast grade --db` and `failfast gradebook export`.

The store is opened once, before anything is graded: one that cannot be used is refused then,
in one paragraph naming its URL (password hidden), exit 2. Reusing and exporting write each
submission's files through :mod:`grader.course.reuse`; the class files through the gradebook's
own :func:`grader.course.gradebook.write_class_files`, as the batch does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from grader import history as kept  # its names are imported on first use: SQLAlchemy is slow
from grader.course import reuse as reuse_mod
from grader.course.batch import Submission
from grader.course.gradebook import Row, row_of, write_class_files
from grader.errors import HistoryError
from grader.formats import OutputFormat
from grader.lines import neutralise
from grader.model import ExitCode, points_text

if TYPE_CHECKING:
    from grader.history import Grading, Store


def open_store(db: str) -> Store:
    """The history at ``--db``, opened (and its schema made); exit 2 when it cannot be used."""
    try:
        return kept.Store.open(kept.StoreUrl.parse(db))
    except HistoryError as error:
        Console(stderr=True).print(
            f"{error.args[0]} Nothing was graded: pass --db a history this machine can open "
            "and write, or leave --db out to record nothing.",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(ExitCode.NOT_GRADED) from None


def reuse(
    store: Store,
    inputs: reuse_mod.Inputs,
    todo: Sequence[Submission],
    out: Path,
    platform: Sequence[tuple[OutputFormat, str]],
    problems: list[str],
    stopped: Sequence[int] = (),
) -> list[tuple[Submission, str]]:
    """The submissions of ``todo`` the history holds, their files written; each with its line.

    A history that fails while it is read costs nothing but its paragraph: the submissions not
    yet looked up are graded. ``stopped`` (the signals received) ends the loop once not empty.
    """
    reused: list[tuple[Submission, str]] = []
    with _closing(store):
        for submission in todo:
            if stopped:
                break
            try:
                grading = reuse_mod.reusable(store, inputs, submission.id, submission.path)
            except HistoryError as error:
                Console(stderr=True).print(
                    f"{error.args[0]} The submissions not looked up yet are graded.",
                    markup=False,
                    soft_wrap=True,
                )
                break
            if grading is None:
                continue
            folder = out / submission.id
            try:
                reuse_mod.write_from(folder, grading, platform, store=store.url.shown)
            except OSError as error:  # graded again: its folder may be writable by then
                problems.append(
                    f"{submission.id}'s reused grading could not be written in {folder} "
                    f"({error.strerror or error})"
                )
                continue
            reused.append((submission, _line(row_of(out, submission.id), grading)))
    return reused


def export(store: Store, out: Path, platform: Sequence[tuple[OutputFormat, str]]) -> list[Row]:
    """Each submission's latest grading written into ``out``, then the class files; the rows."""
    with _closing(store):
        latest = store.latest_submissions()
    for grading in latest:
        assert grading.submission is not None
        reuse_mod.write_from(out / grading.submission, grading, platform)
    rows = [row_of(out, g.submission) for g in latest if g.submission is not None]
    write_class_files(out, rows, f"failfast: {len(rows)} submissions")
    return rows


def _line(row: Row, grading: Grading) -> str:
    """A reused submission's progress line, as a graded one's, saying when it was graded."""
    when = grading.recorded_at[:16].replace("T", " ")
    return (
        f"{row.status:<12} {points_text(row.score)}/{points_text(row.max_score)}  "
        f"{neutralise(row.submission, keep_cr=False)}  (reused: graded {when} at "
        f"{grading.short_commit})"
    )


@contextlib.contextmanager
def _closing(store: Store) -> Iterator[None]:
    """Use the store, then release its connections (its children write while it is closed)."""
    try:
        yield
    finally:
        store.close()
