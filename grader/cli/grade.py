"""`failfast grade`, `failfast gradebook merge` and `export`: grade a class, shard by shard.

Each submission is graded by its own `failfast check` (:mod:`grader.course.batch`); this module
finds the submissions, checks the options once, shows the progress and writes the class files.
With ``--db`` each submission is recorded in the history as it finishes, and one it holds a
complete grading of (same commit, grader, course file, backend, selection) is reused
(:mod:`grader.cli.classhistory`); ``gradebook export`` writes the class files from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from grader.cli import app as shared
from grader.cli import classhistory, machine
from grader.course.file import Course
from grader.course.reuse import Inputs
from grader.engine import registry
from grader.errors import GradingError, HistoryError
from grader.formats import OutputFormat
from grader.lines import neutralise
from grader.model import ExitCode, points_text
from grader.paths import followed

# Where each platform's file goes in a submission's folder of `failfast grade --out DIR`.
PLATFORM_FILES = {
    "gradescope": "results.json",
    "prairielearn": "results-prairielearn.json",
    "classroom": "classroom.json",
}

# --platform of `grade` and of `gradebook export`: which platform's file each submission gets.
PlatformOption = Annotated[
    str | None,
    typer.Option(
        "--platform",
        help="Also write each submission's results for "
        + ", ".join(PLATFORM_FILES)
        + " in its folder.",
    ),
]


@shared.app.command("grade")
@shared.with_backend_options
def grade_class(
    submissions: Annotated[
        Path,
        typer.Argument(
            help="A directory with one learner repo per subdirectory, or a file listing repos.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Where the reports, the gradebook and the summary go.")
    ] = Path("failfast-grades"),
    milestone: Annotated[
        str, typer.Option("--milestone", help="What to grade: a milestone, or all.")
    ] = "all",
    through: Annotated[
        bool, typer.Option("--through", help="Every milestone up to --milestone.")
    ] = False,
    jobs: Annotated[
        int, typer.Option("--jobs", help="Submissions graded at once, each on its own cores.")
    ] = 1,
    resume: Annotated[
        bool, typer.Option("--resume", help="Grade only the submissions without a report.")
    ] = False,
    shard: Annotated[
        str, typer.Option("--shard", help="Grade slice I of N of the class (I/N, 1-based).")
    ] = "1/1",
    backend: shared.BackendName = "local",
    platform: PlatformOption = None,
    course: Annotated[
        Path | None, typer.Option("--course", help="Points and visibility per check (YAML).")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="Record each submission in this grading history (an SQLite file, sqlite:/// or "
            "postgresql:// URL) as it finishes, and reuse what it holds for an unchanged commit. "
            "Without it nothing is recorded.",
        ),
    ] = None,
    regrade: Annotated[
        bool,
        typer.Option("--regrade", help="With --db: grade every submission, reusing nothing."),
    ] = False,
    **options: Any,
) -> None:
    """Grade a class: every submission, a gradebook CSV, a summary and a class page."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from grader.course import batch as batch_mod

    console = Console(highlight=False)
    try:
        machine.refuse_relative({"SUBMISSIONS": submissions, "--out": out, "--course": course})
        chosen = registry.select(milestone, through=through)
        part = batch_mod.Shard.parse(shard)
        warning = batch_mod.check_jobs(jobs)
        everyone = batch_mod.find_submissions(submissions)
        if platform is not None and platform not in PLATFORM_FILES:
            raise batch_mod.BatchError(
                f"--platform {platform}: choose one of {', '.join(PLATFORM_FILES)}."
            )
        if course is not None:  # checked once here, not once per submission
            planned = shared.planned_checks(chosen)
            formats = [OutputFormat(platform)] if platform is not None else []
            shared.refuse_hidden(Course.load(course, shared.catalog()), course, planned, formats)
        out = _followed(out)
        mine = [s for s in everyone if part.holds(s.id)]
        batch_mod.prepare_out(out, mine)
    except GradingError as error:
        Console(stderr=True).print(error.message, markup=False, soft_wrap=True)
        raise typer.Exit(ExitCode.NOT_GRADED) from None
    # A class's gradings are not the course author's own progress: kept only with --db (never
    # FAILFAST_DB's or the default history), in a store that is opened once, before grading.
    store = None if db is None else classhistory.open_store(db)
    # Each submission's `failfast check` gets the backend and its options as given here.
    extra = ["--backend", backend, *_as_arguments(shared.backend_settings(options))]
    if course is not None:
        extra += ["--course", str(course.resolve())]
    if platform is not None:
        extra += ["--report", f"{platform}={{dir}}/{PLATFORM_FILES[platform]}"]
    selection = [milestone, "--through"] if through else [milestone]
    work = batch_mod.Batch(selection, out, jobs, extra)
    todo = [s for s in mine if not (resume and work.done(s))]
    if warning:
        console.print(f"warning: {warning}", style="yellow", markup=False)
    reused: list[tuple[batch_mod.Submission, str]] = []
    early: list[int] = []
    if store is not None:
        work.history = store.url.url.render_as_string(hide_password=False)
        files = [] if platform is None else [(OutputFormat(platform), PLATFORM_FILES[platform])]
        inputs = Inputs.of(
            milestone, through, backend, None if course is None else course.resolve()
        )
        # --resume with --db: what the history holds is done too (written from it, as reused).
        # Ctrl-C here stops the batch as it would while grading: no submission is left half
        # written, none is graded after it.
        with batch_mod.interrupted_by_signals(work) as early:
            reused = classhistory.reuse(
                store, inputs, [] if regrade else todo, out, files, work.problems, early
            )
        todo = [s for s in todo if s not in {r for r, _ in reused}]
    console.print(
        f"{len(mine)} of {len(everyone)} submissions in shard {part.index}/{part.count}; "
        + (f"{len(reused)} reused from the history ({store.url.shown}); " if store else "")
        + f"{len(todo)} to grade, {jobs} at a time",
        markup=False,
        soft_wrap=True,
    )
    for _, line in reused:
        console.print(line, markup=False)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("grading", total=len(todo))

        def done(outcome: batch_mod.Outcome) -> None:
            found = batch_mod.row_of(work.out, outcome.submission.id)
            progress.console.print(
                f"{found.status:<12} {points_text(found.score)}/{points_text(found.max_score)}  "
                f"{neutralise(outcome.submission.id, keep_cr=False)}  ({outcome.seconds:.0f} s)",
                markup=False,
            )
            progress.advance(task)

        work.on_done = done
        with batch_mod.interrupted_by_signals(work) as received:
            received += early
            work.run(todo)
    problems = list(work.problems)
    rows: list[batch_mod.Row] = []
    try:
        rows = batch_mod.collect([work.out], only=[s.id for s in mine])
        batch_mod.write_class_files(work.out, rows, f"failfast: {len(rows)} submissions")
        console.print(
            f"gradebook: {work.out / batch_mod.GRADEBOOK}; summary: "
            f"{work.out / batch_mod.SUMMARY}; class page: {work.out / batch_mod.CLASS_PAGE}",
            markup=False,
            soft_wrap=True,
        )
    except OSError as error:  # a full disk, --out removed meanwhile
        problems.append(
            f"the gradebook, summary and class page could not be written in {work.out} "
            f"({error.strerror or error})"
        )
    # The last line: the exit code this process returns, and why.
    if received:
        left = len([s for s in todo if not work.done(s)])
        also = f"; also {'; '.join(problems)}" if problems else ""
        code, why = (
            ExitCode.INTERRUPTED,
            f"interrupted: {left} submission(s) left; --resume grades them{also}",
        )
    elif problems:
        code, why = (
            ExitCode.NOT_GRADED,
            f"{len(rows)} submission(s) in the gradebook, but {'; '.join(problems)}",
        )
    else:
        code, why = (
            ExitCode.PASSED,
            f"{len(rows)} submission(s) graded"
            + (f" ({len(reused)} reused from the history)" if reused else "")
            + ", each with its gradebook row",
        )
    console.print(f"exit code {int(code)}: {why}", markup=False, soft_wrap=True)
    if code is not ExitCode.PASSED:
        raise typer.Exit(code)


gradebook_app = typer.Typer(help="Gradebooks of `failfast grade` runs.", no_args_is_help=True)
shared.app.add_typer(gradebook_app, name="gradebook")


@gradebook_app.command("merge")
def gradebook_merge(
    shards: Annotated[
        list[Path], typer.Argument(help="The --out directories of the shards.", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", help="Where the merged gradebook goes.")] = Path(
        "failfast-grades"
    ),
) -> None:
    """Merge the shards' reports into one gradebook, summary and class page."""
    from grader.course import batch as batch_mod

    try:
        machine.refuse_relative({"--out": out} | {f"shard {n}": p for n, p in enumerate(shards, 1)})
    except GradingError as error:
        Console(stderr=True).print(error.message, markup=False, soft_wrap=True)
        raise typer.Exit(ExitCode.NOT_GRADED) from None
    missing = [str(p) for p in shards if not p.is_dir()]
    if missing:
        Console(stderr=True).print(
            f"Not a directory of `failfast grade --out`: {', '.join(missing)}.", markup=False
        )
        raise typer.Exit(ExitCode.NOT_GRADED)
    try:  # before anything is written
        batch_mod.check_merge_names(shards)
    except GradingError as error:
        Console(stderr=True).print(error.message, markup=False, soft_wrap=True)
        raise typer.Exit(ExitCode.NOT_GRADED) from None
    rows = batch_mod.collect(shards)
    try:
        batch_mod.write_class_files(out, rows, f"failfast: {len(rows)} submissions")
    except OSError as error:
        Console(stderr=True).print(
            f"exit code 2: the merged gradebook, summary and class page could not be written "
            f"in {out} ({error.strerror or error}); pass --out a directory that can be written",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(ExitCode.NOT_GRADED) from None
    Console(highlight=False).print(
        f"merged {len(rows)} submissions from {len(shards)} shard(s) into {out}", markup=False
    )


@gradebook_app.command("export")
def gradebook_export(
    db: Annotated[
        str,
        typer.Option(
            "--db", metavar="URL", help="The history `failfast grade --db` recorded the class in."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Where the reports and the gradebook go.")
    ] = Path("failfast-grades"),
    platform: PlatformOption = None,
) -> None:
    """From each submission's latest grading in the history: its reports, the class files."""
    try:
        machine.refuse_relative({"--out": out})
        if platform is not None and platform not in PLATFORM_FILES:
            raise GradingError(f"--platform {platform}: choose one of {', '.join(PLATFORM_FILES)}.")
        out = _followed(out)
    except GradingError as error:
        Console(stderr=True).print(error.message, markup=False, soft_wrap=True)
        raise typer.Exit(ExitCode.NOT_GRADED) from None
    store = classhistory.open_store(db)
    files = [] if platform is None else [(OutputFormat(platform), PLATFORM_FILES[platform])]
    try:
        rows = classhistory.export(store, out, files)
    except (HistoryError, OSError) as error:
        why = error.args[0] if isinstance(error, HistoryError) else error.strerror or error
        Console(stderr=True).print(
            f"exit code 2: the gradebook could not be exported into {out}: {why}",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(ExitCode.NOT_GRADED) from None
    Console(highlight=False).print(
        f"exported {len(rows)} submissions from {store.url.shown} into {out}",
        markup=False,
        soft_wrap=True,
    )


def _followed(out: Path) -> Path:
    """``--out`` resolved, or refused when a symlink loop is on its way."""
    resolved = followed(out)
    if resolved is None:
        from grader.course.batch import BatchError

        raise BatchError(
            f"--out {out} cannot be followed: a symlink on the way leads back to itself (a "
            "symlink loop). Pass --out a real directory, then grade again."
        )
    return resolved


def _as_arguments(settings: dict[str, object]) -> list[str]:
    """Backend options as `failfast check` arguments: ``--api-cpus 0.5``, ``--pull``."""
    arguments: list[str] = []
    for flag, value in settings.items():
        if value is None or value is False:
            continue
        arguments += [f"--{flag}"] if value is True else [f"--{flag}", str(value)]
    return arguments
