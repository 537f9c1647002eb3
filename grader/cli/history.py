"""The grading history on the command line: recording a `check`, and `failfast progress`.

A history that cannot be opened or written costs the run nothing but a paragraph on stderr:
the reports are written and the exit code is the grading's own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from grader import __version__
from grader import history as kept  # its names are imported on first use: SQLAlchemy is slow
from grader.cli.app import app
from grader.errors import HistoryError
from grader.formats import OutputFormat
from grader.lines import neutralise
from grader.model import (
    MILESTONES,
    CheckChange,
    ExitCode,
    HistoryNote,
    Report,
    changes_text,
    points_text,
)
from grader.series import MilestoneScore, ProgressSeries, ProgressStep

if TYPE_CHECKING:
    from grader.history import Grading

DB_HELP = (
    f"The grading history: an SQLite file or a sqlite:///, postgresql:// URL (also {kept.ENV}). "
    "Default: history.sqlite3 in your data directory."
)
DbOption = Annotated[str | None, typer.Option("--db", metavar="URL", help=DB_HELP)]
NoHistoryOption = Annotated[
    bool, typer.Option("--no-history", help="Record nothing in the grading history.")
]
# The most gradings the HTML report's progress chart shows: the latest, this one last.
PROGRESS_STEPS = 12


@dataclass(frozen=True, slots=True)
class Recorded:
    """A run recorded: the history's line for stdout, and the HTML report's progress chart."""

    note: HistoryNote
    progress: ProgressSeries | None = None


def record(
    report: Report,
    report_json: str,
    *,
    repo: Path,
    course_file: Path | None,
    db: str | None,
    submission: str | None = None,
) -> Recorded | None:
    """Record the run; what changed since the repo's last grading, and the repo's progress.

    None if it could not be recorded. A class's submission gets neither: its report pages are
    the same whoever graded it before.
    """
    try:
        url = kept.StoreUrl.chosen(db)
        grading = kept.grading_of(
            report,
            report_json,
            repo=repo,
            grader_version=__version__,
            digest=kept.course_digest(course_file),
            submission=submission,
        )
        with kept.Store.open(url) as store:
            grading_id = store.record(grading)
            if submission is not None:  # a class's: its changes are nobody's to read here
                return Recorded(HistoryNote(url.shown, grading_id, None))
            history = store.gradings_of(grading.repo_path)
    except (HistoryError, OSError) as error:
        text = error.args[0] if isinstance(error, HistoryError) else f"{error}"
        Console(stderr=True).print(
            f"{text} The grading was not recorded; its reports are written as usual "
            "(--no-history records nothing).",
            markup=False,
            soft_wrap=True,
        )
        return None
    this = next((g for g in history if g.id == grading_id), None)
    before = None if this is None else kept.previous(history, this)
    changes = None if this is None or before is None else kept.between(before, this)
    progress = None if this is None else progress_of(history, this)
    return Recorded(HistoryNote(url.shown, grading_id, changes), progress)


def progress_of(history: Sequence[Grading], this: Grading) -> ProgressSeries | None:
    """Score per milestone over the repo's gradings up to ``this``, which comes last.

    A milestone is scored on the checks ``this`` ran of it, so every point on its line is the
    same checks' points (a --target run, or a learner's view without hidden checks, compares
    like with like). An earlier grading is a point of a milestone only if it ran all of those
    checks and was complete (graded, not interrupted). None when ``this`` is not complete or no
    earlier grading scores on any of its milestones: nothing to compare.
    """
    if not this.complete:
        return None
    ran = {m: {c.check_id for c in this.checks if c.milestone == m} for m in this.milestones}
    milestones = tuple(m for m, ids in ran.items() if ids)

    def scores(grading: Grading) -> tuple[MilestoneScore | None, ...]:
        rows = {c.check_id: c for c in grading.checks}
        found: list[MilestoneScore | None] = []
        for key in milestones:
            if not ran[key] <= rows.keys():
                found.append(None)
                continue
            picked = [rows[i] for i in ran[key]]
            score = sum((c.score for c in picked), Decimal(0))
            most = sum((c.max_score for c in picked), Decimal(0))
            found.append(MilestoneScore(float(score), float(most)))
        return tuple(found)

    earlier = [
        ProgressStep(g.recorded_at, g.short_commit, scores(g))
        for g in history
        if g.complete and (g.id or 0) < (this.id or 0)
    ]
    steps = [step for step in earlier if any(s is not None for s in step.scores)]
    if not steps:
        return None
    current = ProgressStep(this.recorded_at, this.short_commit, scores(this))
    return ProgressSeries(milestones, (*steps[-(PROGRESS_STEPS - 1) :], current))


@app.command()
def progress(
    repo: Annotated[Path, typer.Option("--repo", help="Root of the learner's checkout.")] = Path(
        "."
    ),
    db: DbOption = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text or json.")
    ] = OutputFormat.TEXT,
) -> None:
    """Your progress on this repo: best score per milestone, and what changed run to run."""
    if output_format not in (OutputFormat.TEXT, OutputFormat.JSON):
        Console(stderr=True).print("--format: progress is shown as text or json.")
        raise typer.Exit(ExitCode.NOT_GRADED)
    path = str(repo.resolve())
    try:
        url = kept.StoreUrl.chosen(db)
        with kept.Store.open(url) as store:
            history = store.gradings_of(path)
    except HistoryError as error:
        Console(stderr=True).print(error.args[0], markup=False, soft_wrap=True)
        raise typer.Exit(ExitCode.NOT_GRADED) from None
    summary = summarize(history)
    if output_format is OutputFormat.JSON:
        document = {"kind": "progress", "repo": path, "store": url.shown, **summary}
        typer.echo(json.dumps(document, indent=2))
        return
    console = Console(highlight=False)
    if not history:
        console.print(
            f"No grading of {path} is recorded in {url.shown}: run `failfast check` first.",
            markup=False,
            soft_wrap=True,
        )
        return
    table = Table(title=f"failfast progress: {neutralise(path)}", title_justify="left")
    for column in ("milestone", "best score", "first passed", "last run", "last result"):
        table.add_column(column)
    for row in summary["milestones"]:
        table.add_row(
            row["milestone"],
            row["best_score"],
            row["first_passed"] or "not yet",
            row["last_run"],
            row["last_result"],
            style="green" if row["first_passed"] else None,
        )
    console.print(table)
    count = f"{len(history)} grading{'s' * (len(history) != 1)}"
    console.print(f"{count} recorded in {url.shown}", markup=False, soft_wrap=True)
    for step in summary["changes"]:
        console.print(f"{step['recorded_at'][:16].replace('T', ' ')}  {step['text']}", markup=False)


def summarize(history: list[Grading]) -> dict[str, Any]:
    """Per milestone: best score, first full pass, last run and result; and what changed."""
    rows = []
    for milestone in MILESTONES:
        runs = [
            (g, [c for c in g.checks if c.milestone == milestone.key])
            for g in history
            if any(c.milestone == milestone.key for c in g.checks)
        ]
        if not runs:
            continue
        zero = Decimal(0)
        scores = [
            (sum((c.score for c in cs), zero), sum((c.max_score for c in cs), zero), g)
            for g, cs in runs
        ]
        best = max(scores, key=lambda s: s[0] / s[1] if s[1] else 0)
        passed = next((g for g, cs in runs if cs and all(c.status == "PASS" for c in cs)), None)
        last, last_checks = runs[-1]
        failing = [c.check_id for c in last_checks if c.status != "PASS"]
        rows.append(
            {
                "milestone": milestone.key,
                "best_score": f"{points_text(best[0])}/{points_text(best[1])}",
                "first_passed": None if passed is None else _when(passed),
                "last_run": _when(last),
                "last_result": "all passed" if not failing else "failing " + ", ".join(failing),
            }
        )
    steps = []
    for index, grading in enumerate(history):
        before = kept.previous(history[:index], grading) if index else None
        found: tuple[CheckChange, ...] = () if before is None else kept.between(before, grading)
        if found:
            steps.append(
                {
                    "recorded_at": grading.recorded_at,
                    "commit": grading.short_commit,
                    "text": changes_text(found),
                    "changes": [
                        {
                            "check": c.check_id,
                            "before": c.before,
                            "after": c.after,
                            "before_commit": c.before_commit,
                            "after_commit": c.after_commit,
                        }
                        for c in found
                    ],
                }
            )
    return {"gradings": len(history), "milestones": rows, "changes": steps}


def _when(grading: Grading) -> str:
    """When, and at which commit: ``2026-12-07 15:54 (abc1234)``."""
    return f"{grading.recorded_at[:16].replace('T', ' ')} ({grading.short_commit})"
