"""The `failfast` command line: the one place that wires the checks to the runner.

Exit codes (:class:`grader.model.ExitCode`): 0 every check passed; 1 a check failed (or was
skipped because one it needs failed); 2 the grader could not grade: bad input, an API that would
not start, an environment problem; 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import os
import signal
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from grader import __version__
from grader.backends.base import StartStack
from grader.backends.docker.stack import DockerOptions, DockerStack, Limits
from grader.backends.local.stack import LocalStack
from grader.cli.output import Delivery, ReportFile
from grader.course.file import Course
from grader.engine import registry
from grader.engine.runner import Hooks, Tally, grade, now_iso
from grader.errors import CourseError, GradingError
from grader.formats import OutputFormat
from grader.formats.github import GitHubActions
from grader.model import MILESTONES, ExitCode, Report, Selection, points_text

CHECKS_PACKAGE = "checks"  # where the milestone checks live: checks/m<N>_*.py
STUB_PORT = 8081
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
DEFAULT_LIMITS = Limits()


class Backend(enum.Enum):
    """What runs the learner's code."""

    LOCAL = "local"  # processes on loopback ports: a learner's laptop, their own CI
    DOCKER = "docker"  # containers on an internal network: strangers' repos (grader/docker_stack)


app = typer.Typer(
    name="failfast",
    help="Grade the course project 'Make every dependency call fail fast'.\n\n"
    + "Exit codes: "
    + ", ".join(f"{int(code)} {code.meaning}" for code in ExitCode)
    + ".",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def catalog() -> registry.Catalog:
    """The checks the grader grades with."""
    return registry.load(CHECKS_PACKAGE)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"failfast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Grade the course project 'Make every dependency call fail fast'."""


def _report_file(spec: str) -> ReportFile:
    try:
        return ReportFile.parse(spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--report") from None


@app.command()
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
            "--through", help="Grade every milestone up to this one (milestone-1 to N) in one run."
        ),
    ] = False,
    repo: Annotated[Path, typer.Option("--repo", help="Root of the learner's checkout.")] = Path(
        "."
    ),
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
    backend: Annotated[
        Backend,
        typer.Option(
            "--backend",
            envvar="FAILFAST_BACKEND",
            help="What runs the learner's code: local processes, or docker containers (built "
            "from the repo's Dockerfile, isolated and limited: for grading strangers' repos).",
        ),
    ] = Backend.LOCAL,
    pull: Annotated[
        bool, typer.Option("--pull", help="docker: pull missing base images (never by default).")
    ] = False,
    api_memory: Annotated[
        str, typer.Option("--api-memory", help="docker: the API container's memory limit.")
    ] = DEFAULT_LIMITS.memory,
    api_cpus: Annotated[
        float, typer.Option("--api-cpus", help="docker: the API container's CPUs.", min=0.1)
    ] = DEFAULT_LIMITS.cpus,
    api_pids: Annotated[
        int, typer.Option("--api-pids", help="docker: the API container's process limit.", min=16)
    ] = DEFAULT_LIMITS.pids,
    redis_image: Annotated[
        str, typer.Option("--redis-image", help="docker: the image Redis runs from.")
    ] = DockerOptions().redis_image,
    nginx_image: Annotated[
        str | None,
        typer.Option("--nginx-image", help="docker: the image the learner's nginx runs in."),
    ] = None,
    course_file: Annotated[
        Path | None,
        typer.Option(
            "--course",
            help="The course file (YAML): points and visibility per check or milestone. "
            "Without it every check is worth 1 point and is visible.",
        ),
    ] = None,
    for_learners: Annotated[
        bool,
        typer.Option(
            "--for-learners",
            help="Every report, the terminal and the exit code show only what learners may "
            "see: the checks the course hides are left out, with their points.",
        ),
    ] = False,
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
            if course_file is not None:  # before grading: a bad course file is bad input
                course = Course.load(course_file, catalog())
            selection = registry.select(milestone, through=through)
            planned = _planned(selection)
            _refuse_hidden(course, course_file, planned, [f.format for f in files])
            tally = Tally(selection, str(repo))
            options = DockerOptions(
                Limits(memory=api_memory, cpus=api_cpus, pids=api_pids),
                pull=pull,
                redis_image=redis_image,
                nginx_image=nginx_image,
            )
            report = _run(selection, repo, delivery, tally, backend, options)
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
        with _signals_deferred() as received:
            unwritten = delivery.write_files(report)
            delivery.show(report)
            if report.interrupted:
                done = len(tally.results) if tally else 0
                Console(stderr=delivery.stdout_format is not OutputFormat.TEXT).print(
                    f"grading interrupted after {done} of {len(report.results)} checks: "
                    "everything the grader started has been stopped",
                    markup=False,
                    soft_wrap=True,
                )
    with _signals_deferred() as received_later:
        delivery.to_github(report, repo)
        for problem in unwritten:  # one line each, however long the path
            Console(stderr=True).print(problem, markup=False, soft_wrap=True)
    if report.interrupted or received or received_later:
        raise typer.Exit(ExitCode.INTERRUPTED)
    # A learner's CI shows its exit code: it is the learner's view's, like everything else.
    shown = delivery.shown(report)
    raise typer.Exit(ExitCode.NOT_GRADED if unwritten else shown.exit_code)


def _planned(selection: Selection) -> list[tuple[str, str]]:
    """(milestone, check id) of every check a run of ``selection`` is asked for."""
    return [(s.milestone, s.id) for s in catalog().specs if s.milestone in selection.milestones]


def _refuse_hidden(
    course: Course,
    course_file: Path | None,
    planned: Sequence[tuple[str, str]],
    formats: Iterable[OutputFormat],
) -> None:
    """Refuse, before grading, a platform file that would show checks the course hides."""
    showing = sorted({f.value for f in formats if not f.can_hide})
    hidden = course.hidden(planned)
    if not showing or not hidden:
        return
    # The message reaches the learner in the platform's own file: it names no hidden check.
    checks = "a check" if len(hidden) == 1 else f"{len(hidden)} checks"
    raise CourseError(
        f"The course file {course_file} hides {checks} from learners (its visibility settings), "
        f"but {' and '.join(showing)} show the learner every check and the total score (they "
        f"have no way to hide one), so those results could be read or worked out. Give every "
        f"check visibility: visible in the course file you grade {' and '.join(showing)} with, "
        f"or grade hidden checks on Gradescope, which hides a test by its visibility."
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM wait while reports are written: the caller honours them after."""
    received: list[int] = []
    previous = {}
    with contextlib.suppress(ValueError):  # not the main thread: nothing to defer
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(
    selection: Selection,
    repo: Path,
    delivery: Delivery,
    tally: Tally,
    backend: Backend,
    options: DockerOptions,
) -> Report:
    checks = catalog()
    start_stack: StartStack = LocalStack.start
    if backend is Backend.DOCKER:
        start_stack = functools.partial(DockerStack.start, options=options)

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
            return await grade(
                selection, repo, checks, hooks, tally, start_stack, backend=backend.value
            )

    return asyncio.run(main())


@app.command()
def doctor(
    repo: Annotated[Path, typer.Option("--repo", help="Root of the learner's checkout.")] = Path(
        "."
    ),
    backend: Annotated[
        Backend,
        typer.Option("--backend", envvar="FAILFAST_BACKEND", help="The backend to check for."),
    ] = Backend.LOCAL,
) -> None:
    """Say what the grader needs, whether this machine has it, and the exact fix for each."""
    from grader.cli import doctor as doctor_mod

    findings = doctor_mod.diagnose(repo, docker_backend=backend is Backend.DOCKER)
    doctor_mod.render(findings, Console(highlight=False))
    raise typer.Exit(doctor_mod.exit_code(findings))


@app.command("list")
def list_checks() -> None:
    """List the milestones and their checks, one line each."""
    console = Console(highlight=False)
    checks = catalog()
    for milestone in MILESTONES:
        console.print(f"[bold]{milestone.key}[/]  {milestone.title}")
        specs = checks.for_milestone(milestone.key)
        width = max((len(s.id) for s in specs), default=0)
        for spec in specs:
            console.print(f"  {spec.id:<{width}}  {spec.title}", markup=False)
        if not specs:
            console.print("  (no checks yet)", style="dim")


@app.command()
def explain(
    check_id: Annotated[str, typer.Argument(help="A check id, e.g. m2.read-timeout")],
) -> None:
    """Say what a check does, why it matters, and how to fix a failure."""
    console = Console(highlight=False)
    checks = catalog()
    spec = checks.get(check_id)
    if spec is None:
        known = ", ".join(s.id for s in checks.specs)
        console.print(f"There is no check {check_id!r}. Known checks: {known}.", markup=False)
        raise typer.Exit(ExitCode.NOT_GRADED)
    console.print(f"[bold]{spec.id}[/]  {spec.title}  [dim]({spec.milestone})[/]")
    for label, text in (
        ("What it does", spec.what),
        ("Why it matters", spec.why),
        ("How to fix a failure", spec.hint),
    ):
        console.print(f"\n[bold]{label}[/]")
        console.print(text, markup=False)
    if spec.depends and spec.eager:
        console.print(
            f"\n[bold]Runs alongside[/] {', '.join(spec.depends)} (judged only if they pass)"
        )
    elif spec.depends:
        console.print(f"\n[bold]Runs after[/] {', '.join(spec.depends)} (skipped if one fails)")


# Where each platform's file goes in a submission's folder of `failfast grade --out DIR`.
PLATFORM_FILES = {
    "gradescope": "results.json",
    "prairielearn": "results-prairielearn.json",
    "classroom": "classroom.json",
}


@app.command("grade")
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
    backend: Annotated[
        Backend, typer.Option("--backend", envvar="FAILFAST_BACKEND", help="As for check.")
    ] = Backend.LOCAL,
    platform: Annotated[
        str | None,
        typer.Option(
            "--platform",
            help="Also write each submission's results for "
            + ", ".join(PLATFORM_FILES)
            + " in its folder.",
        ),
    ] = None,
    course: Annotated[
        Path | None, typer.Option("--course", help="Points and visibility per check (YAML).")
    ] = None,
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
        chosen = registry.select(milestone, through=through)
        part = batch_mod.Shard.parse(shard)
        warning = batch_mod.check_jobs(jobs)
        everyone = batch_mod.find_submissions(submissions)
        if platform is not None and platform not in PLATFORM_FILES:
            raise batch_mod.BatchError(
                f"--platform {platform}: choose one of {', '.join(PLATFORM_FILES)}."
            )
        if course is not None:  # checked once here, not once per submission
            planned = _planned(chosen)
            formats = [OutputFormat(platform)] if platform is not None else []
            _refuse_hidden(Course.load(course, catalog()), course, planned, formats)
    except GradingError as error:
        Console(stderr=True).print(error.message, markup=False, soft_wrap=True)
        raise typer.Exit(ExitCode.NOT_GRADED) from None
    mine = [s for s in everyone if part.holds(s.id)]
    extra = ["--backend", backend.value]
    if course is not None:
        extra += ["--course", str(course.resolve())]
    if platform is not None:
        extra += ["--report", f"{platform}={{dir}}/{PLATFORM_FILES[platform]}"]
    selection = [milestone, "--through"] if through else [milestone]
    work = batch_mod.Batch(selection, out.resolve(), jobs, extra)
    todo = [s for s in mine if not (resume and work.done(s))]
    if warning:
        console.print(f"warning: {warning}", style="yellow", markup=False)
    console.print(
        f"{len(mine)} of {len(everyone)} submissions in shard {part.index}/{part.count}; "
        f"{len(todo)} to grade, {jobs} at a time",
        markup=False,
    )
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
                f"{outcome.submission.id}  ({outcome.seconds:.0f} s)",
                markup=False,
            )
            progress.advance(task)

        work.on_done = done
        with batch_mod.interrupted_by_signals(work) as received:
            work.run(todo)
    rows = batch_mod.collect([work.out], only=[s.id for s in mine])
    batch_mod.write_class_files(work.out, rows, f"failfast: {len(rows)} submissions")
    console.print(
        f"gradebook: {work.out / batch_mod.GRADEBOOK}; summary: {work.out / batch_mod.SUMMARY}; "
        f"class page: {work.out / batch_mod.CLASS_PAGE}",
        markup=False,
        soft_wrap=True,
    )
    if received:
        left = len([s for s in todo if not work.done(s)])
        console.print(f"interrupted: {left} submission(s) left; --resume grades them", markup=False)
        raise typer.Exit(ExitCode.INTERRUPTED)


gradebook_app = typer.Typer(help="Gradebooks of `failfast grade` runs.", no_args_is_help=True)
app.add_typer(gradebook_app, name="gradebook")


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
    batch_mod.write_class_files(out, rows, f"failfast: {len(rows)} submissions")
    Console(highlight=False).print(
        f"merged {len(rows)} submissions from {len(shards)} shard(s) into {out}", markup=False
    )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def stub(ctx: typer.Context) -> None:
    """Run the reference payments stub by hand (PORT, ADMIN_PORT, LATENCY_MS, FAIL_RATE, SEED)."""
    from reference.stub import main as stub_main

    # By hand, the course's well-known ports (as in prod-sim.yml); the grader itself always asks
    # for free ones. Options given on the command line come later and win.
    ports = ["--port", os.environ.get("PORT", str(STUB_PORT))]
    ports += ["--admin-port", os.environ.get("ADMIN_PORT", str(STUB_PORT + 1))]
    raise typer.Exit(stub_main([*ports, *ctx.args]))


def main() -> None:
    """Entry point of the console script: no traceback ever reaches a learner."""
    try:
        app()
    except Exception as bug:
        if os.environ.get("FAILFAST_DEBUG"):
            raise
        Console(stderr=True).print(
            f"failfast crashed: {bug!r}. This is a bug in the grader, not in your code; run again "
            f"with FAILFAST_DEBUG=1 to see the traceback, and report it.",
            markup=False,
        )
        sys.exit(ExitCode.NOT_GRADED)
