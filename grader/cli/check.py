"""`failfast check`: grade a milestone of one learner repo, and deliver its report.

The report goes wherever it was asked for (the terminal, ``--report`` files, GitHub Actions),
whatever happens: a run that cannot grade, or is interrupted, still writes every file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from grader.backends.base import StartStack, get_backend
from grader.cli import history, machine
from grader.cli.app import (
    BackendName,
    app,
    backend_settings,
    catalog,
    planned_checks,
    refuse_hidden,
    with_backend_options,
)
from grader.cli.output import Delivery, ReportFile
from grader.course.file import Course
from grader.engine import registry
from grader.engine.runner import Hooks, Tally, grade, now_iso
from grader.errors import GradingError
from grader.formats import OutputFormat
from grader.formats.github import GitHubActions
from grader.formats.terminal import exit_line
from grader.model import MILESTONES, ExitCode, Report, Selection
from grader.paths import followed
from grader.process.signals import STOP_SIGNALS, deferred_signals


def _report_file(spec: str) -> ReportFile:
    try:
        return ReportFile.parse(spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--report") from None


@app.command()
@with_backend_options
def check(
    milestone: Annotated[
        str,
        typer.Argument(
            help=" … ".join((MILESTONES[0].key, MILESTONES[-2].key))
            + f", {MILESTONES[-1].key}, or all (every one, in one run)",
            show_default=False,
        ),
    ],
    through: Annotated[
        bool,
        typer.Option(
            "--through",
            help=f"Grade every milestone up to this one ({MILESTONES[0].key} to it) in one run.",
        ),
    ] = False,
    repo: Annotated[Path, typer.Option("--repo", help="Root of the learner's checkout.")] = Path(
        "."
    ),
    targets: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            metavar="CHECK",
            help="Grade only this check (an id from `failfast list`) and the checks it depends "
            "on. Repeatable.",
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Report format on stdout.")
    ] = OutputFormat.TEXT,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Write the report in --format to FILE (like --report FORMAT=FILE); the "
            "readable report still prints.",
        ),
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the JSON report to FILE.")
    ] = None,
    junit_file: Annotated[
        Path | None, typer.Option("--junit", help="Also write a JUnit XML report to FILE.")
    ] = None,
    report_files: Annotated[
        list[str] | None,
        typer.Option(
            "--report",
            help="Also write a report: FORMAT=FILE, FORMAT one of "
            + ", ".join(f.value for f in OutputFormat)
            + ". Repeatable.",
        ),
    ] = None,
    backend: BackendName = "local",
    course_file: Annotated[
        Path | None,
        typer.Option(
            "--course",
            help="The course file (YAML): points and visibility per check or milestone. "
            "Without it every check is worth 1 point and is visible.",
        ),
    ] = None,
    db: history.DbOption = None,
    no_history: history.NoHistoryOption = False,
    submission: Annotated[
        str | None,
        typer.Option("--submission", hidden=True, help="failfast grade's id of the submission."),
    ] = None,
    for_learners: Annotated[
        bool,
        typer.Option(
            "--for-learners",
            help="Every report, the terminal and the exit code show only what learners may "
            "see: the checks the course hides are left out, with their points.",
        ),
    ] = False,
    **options: Any,
) -> None:
    """Grade a milestone of a learner repo and report every check with its evidence.

    Under GitHub Actions (GITHUB_ACTIONS set) it also writes the job summary and annotates each
    failed check, on the learner's file where there is one.
    """
    # Every way of asking for a file is one list of report files; --output keeps --format's.
    files = [_report_file(spec) for spec in report_files or ()]
    files += [ReportFile(OutputFormat.JSON, path) for path in (json_file,) if path is not None]
    files += [ReportFile(OutputFormat.JUNIT, path) for path in (junit_file,) if path is not None]
    if output is not None:
        files.append(ReportFile(output_format, output))
        output_format = OutputFormat.TEXT
    # Run from a deleted directory, a relative path means nothing: refused, and no file is
    # written where it would land instead (under /).
    lost_cwd = machine.relative_paths_error(
        {"--repo": repo, "--course": course_file}
        | {f"the {f.format.value} report": f.path for f in files}
    )
    if lost_cwd is not None:
        files = [f for f in files if f.path.is_absolute()]
    delivery = Delivery(
        Console(highlight=False),
        output_format,
        files,
        GitHubActions.detect(),
        for_learners=for_learners,
    )
    # Until grading's event loop takes them over, SIGTERM is Ctrl-C: the run is still reported.
    with contextlib.suppress(ValueError):  # not the main thread: the default stays
        signal.signal(signal.SIGTERM, _interrupt)
    with delivery.fenced():
        tally: Tally | None = None
        course = Course.DEFAULT
        planned: list[tuple[str, str]] = []
        try:
            if lost_cwd is not None:
                raise lost_cwd
            if course_file is not None:  # before grading: a bad course file is bad input
                course = Course.load(course_file, catalog())
            selection = registry.select(
                milestone, through=through, targets=targets or (), catalog=catalog()
            )
            planned = planned_checks(selection)
            refuse_hidden(course, course_file, planned, [f.format for f in files])
            tally = Tally(selection, str(repo))
            start_stack = get_backend(backend).starter(backend_settings(options))
            report = _run(selection, repo, delivery, tally, backend, start_stack)
        except GradingError as error:
            report = Report(milestone, str(repo), now_iso(), not_graded=error.not_graded())
        except (KeyboardInterrupt, asyncio.CancelledError):
            # Everything the grader started is stopped by now; the checks done are reported.
            report = (
                Report(milestone, str(repo), now_iso(), interrupted=True)
                if tally is None
                else tally.report(interrupted=True)
            )
        report = course.apply(report, planned)
        # Reports are written whatever comes now: a signal here waits until they are.
        with deferred_signals() as received:
            recorded = None
            # A class's submission that could not be graded is recorded too (never reused):
            # the gradebook exported from the history has its row, as the batch's has.
            if (report.not_graded is None or submission is not None) and not no_history:
                # Recorded as the JSON report file would be: reused and exported, it is that.
                shown = delivery.shown(report)
                recorded = history.record(
                    shown,
                    OutputFormat.JSON.to_format().render(shown),
                    repo=repo,
                    course_file=course_file,
                    db=db,
                    submission=submission,
                )
            # The HTML report alone draws the repo's progress; every other file is what
            # grading found, and the history's line is shown on stdout only.
            unwritten = delivery.write_files(
                report, progress=None if recorded is None else recorded.progress
            )
            with_note = (
                report if recorded is None else dataclasses.replace(report, history=recorded.note)
            )
            delivery.show(with_note, unwritten)  # its last line says what the exit code will be
            if report.interrupted:
                done = len(tally.results) if tally else 0
                Console(stderr=delivery.stdout_format is not OutputFormat.TEXT).print(
                    f"grading interrupted after {done} of {len(report.results)} checks: "
                    "everything the grader started has been stopped",
                    markup=False,
                    soft_wrap=True,
                )
    with deferred_signals() as received_later:
        delivery.to_github(report, _followable(repo))
        for problem in unwritten:  # one line each, however long the path
            Console(stderr=True).print(problem, markup=False, soft_wrap=True)
        if unwritten and delivery.stdout_format is not OutputFormat.TEXT:
            # No readable report on stdout to end with the exit line: stderr ends with it.
            code = delivery.shown(report).exit_code
            line = exit_line(code, code.meaning, unwritten)
            Console(stderr=True).print(line, markup=False, soft_wrap=True)
    if report.interrupted or received or received_later:
        if not report.interrupted:  # the exit line above said otherwise: this is the last word
            Console(stderr=True).print(
                f"exit code {int(ExitCode.INTERRUPTED)}: a stop signal arrived while the "
                "reports were written (they were written whole)",
                markup=False,
                soft_wrap=True,
            )
        raise typer.Exit(ExitCode.INTERRUPTED)
    # A learner's CI shows its exit code: it is the learner's view's, like everything else.
    shown = delivery.shown(report)
    raise typer.Exit(ExitCode.NOT_GRADED if unwritten else shown.exit_code)


def _followable(repo: Path) -> Path:
    """The repo, or ``/`` when its path cannot be followed (a symlink loop): nothing to annotate.

    Annotations place a location relative to the resolved repo; a repo that cannot be resolved
    was refused, and its refusal has no location in it.
    """
    return repo if followed(repo) is not None else Path("/")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(
    selection: Selection,
    repo: Path,
    delivery: Delivery,
    tally: Tally,
    backend: str,
    start_stack: StartStack,
) -> Report:
    checks = catalog()

    async def main() -> Report:
        # Ctrl-C and SIGTERM (CI cancelling a job, `kill`) cancel grading wherever it waits; the
        # stack and k6 are torn down on the way out. A repeated signal does not cut that short.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        stopping: list[bool] = []

        def stop() -> None:
            if not stopping:
                stopping.append(True)
                task.cancel()

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop)
        hooks: Hooks
        with delivery.progress() as hooks:
            return await grade(selection, repo, checks, hooks, tally, start_stack, backend=backend)

    return asyncio.run(main())
