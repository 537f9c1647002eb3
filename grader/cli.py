"""The `failfast` command line.

Exit codes: 0 every check passed; 1 a check failed (or was skipped because one it needs failed);
2 the grader could not grade: bad input, an API that would not start, an environment problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from grader import __version__, registry
from grader.errors import GradingError
from grader.formats import Format
from grader.formats.github import AnnotationsFormat, GitHubActions
from grader.formats.json import JsonFormat
from grader.formats.junit import JUnitFormat
from grader.formats.markdown import MarkdownFormat
from grader.formats.terminal import TerminalFormat
from grader.model import Report
from grader.runner import grade

EXIT_INTERRUPTED = 130
STUB_PORT = 8081

app = typer.Typer(
    name="failfast",
    help="Grade the course project 'Make every dependency call fail fast'.\n\n"
    "Exit codes: 0 every check passed, 1 a check failed, 2 the grader could not grade.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class FormatName(enum.StrEnum):
    """The formats --format prints (or writes to --output)."""

    rich = "rich"
    json = "json"


# Formats a report file can be written in: --report FORMAT=FILE.
REPORT_FORMATS: dict[str, Callable[[], Format]] = {
    "text": lambda: TerminalFormat(Console()),
    "json": JsonFormat,
    "junit": JUnitFormat,
    "markdown": MarkdownFormat,
}


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


def _report_file(spec: str) -> tuple[Format, Path]:
    name, _, file = spec.partition("=")
    if name not in REPORT_FORMATS or not file:
        raise typer.BadParameter(
            f"{spec!r} is not FORMAT=FILE with FORMAT one of {', '.join(REPORT_FORMATS)}, "
            f"e.g. junit=reports/failfast.xml",
            param_hint="--report",
        )
    return REPORT_FORMATS[name](), Path(file)


@app.command()
def check(
    milestone: Annotated[
        str,
        typer.Argument(
            help="milestone-1 … milestone-5, loadtest, or all (every one, in one run)",
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
        FormatName, typer.Option("--format", help="Report format on stdout (or in --output).")
    ] = FormatName.rich,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Write the report in --format to FILE; the terminal report still prints.",
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
            help="Also write a report: FORMAT=FILE, FORMAT one of text, json, junit, markdown. "
            "Repeatable.",
        ),
    ] = None,
) -> None:
    """Grade a milestone of a learner repo and report every check with its evidence.

    Under GitHub Actions (GITHUB_ACTIONS set) it also writes the job summary and annotates each
    failed check, on the learner's file where there is one.
    """
    console = Console(highlight=False)
    terminal = TerminalFormat(console)
    files = [_report_file(spec) for spec in report_files or ()]
    if json_file is not None:
        files.append((JsonFormat(), json_file))
    if junit_file is not None:
        files.append((JUnitFormat(), junit_file))
    json_out = output_format is FormatName.json
    if output is not None:
        files.append((JsonFormat() if json_out else terminal, output))
    json_on_stdout = json_out and output is None
    github = GitHubActions.detect()
    outcome: Report | GradingError
    # Everything printed while grading may carry the learner's words: under GitHub Actions none
    # of it may be taken for a workflow command. JSON on stdout escapes line starts by itself.
    fence = github.fenced(sys.stdout) if github and not json_on_stdout else contextlib.nullcontext()
    with fence:
        try:
            outcome = _run(
                registry.select(milestone, through=through),
                repo,
                None if json_on_stdout else terminal,
            )
        except GradingError as error:
            outcome = error
        except (KeyboardInterrupt, asyncio.CancelledError):
            console.print("grading interrupted: everything the grader started has been stopped")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        for fmt, path in files:
            _write(path, _render(fmt, outcome, milestone, repo))
        if json_on_stdout:
            sys.stdout.write(_render(JsonFormat(), outcome, milestone, repo))
        elif isinstance(outcome, Report):
            terminal.print(outcome)
        else:
            terminal.print_error(outcome, milestone, str(repo))
    if github is not None:
        annotations = AnnotationsFormat(repo, github.workspace)
        stream = sys.stderr if json_on_stdout else sys.stdout
        stream.write(_render(annotations, outcome, milestone, repo))
        stream.flush()
        github.add_summary(_render(MarkdownFormat(), outcome, milestone, repo))
    raise typer.Exit(outcome.exit_code if isinstance(outcome, Report) else 2)


def _render(fmt: Format, outcome: Report | GradingError, milestone: str, repo: Path) -> str:
    if isinstance(outcome, Report):
        return fmt.render(outcome)
    return fmt.render_error(outcome, milestone, str(repo))


def _run(selection: registry.Selection, repo: Path, terminal: TerminalFormat | None) -> Report:
    async def main() -> Report:
        # SIGTERM (CI cancelling a job, `kill`) stops grading like Ctrl-C: the stack is torn down.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        if terminal is None:
            return await grade(selection, repo)
        with terminal.progress() as hooks:
            return await grade(selection, repo, hooks)

    return asyncio.run(main())


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    except OSError as exc:
        Console(stderr=True).print(
            f"failfast could not write the report to {path}: {exc}", markup=False
        )
        raise typer.Exit(2) from None


@app.command()
def doctor(
    repo: Annotated[Path, typer.Option("--repo", help="Root of the learner's checkout.")] = Path(
        "."
    ),
) -> None:
    """Say what the grader needs, whether this machine has it, and the exact fix for each."""
    from grader import doctor as doctor_mod

    findings = doctor_mod.diagnose(repo)
    doctor_mod.render(findings, Console(highlight=False))
    raise typer.Exit(doctor_mod.exit_code(findings))


@app.command("list")
def list_checks() -> None:
    """List the milestones and their checks, one line each."""
    console = Console(highlight=False)
    for milestone, title in registry.MILESTONES.items():
        console.print(f"[bold]{milestone}[/]  {title}")
        specs = registry.checks_for(milestone)
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
    spec = registry.get(check_id)
    if spec is None:
        known = ", ".join(s.id for s in registry.all_checks())
        console.print(f"There is no check {check_id!r}. Known checks: {known}.", markup=False)
        raise typer.Exit(2)
    console.print(f"[bold]{spec.id}[/]  {spec.title}  [dim]({spec.milestone})[/]")
    for label, text in (
        ("What it does", spec.what),
        ("Why it matters", spec.why),
        ("How to fix a failure", spec.hint),
    ):
        console.print(f"\n[bold]{label}[/]")
        console.print(text, markup=False)
    if spec.depends:
        console.print(f"\n[bold]Runs after[/] {', '.join(spec.depends)} (skipped if one fails)")


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
        sys.exit(2)
