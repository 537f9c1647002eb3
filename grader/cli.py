"""The `failfast` command line.

Exit codes: 0 every check passed; 1 a check failed (or was skipped because one it needs failed);
2 the grader could not grade: bad input, an API that would not start, an environment problem.
"""

from __future__ import annotations

import asyncio
import enum
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from grader import __version__, registry
from grader.errors import GradingError
from grader.formats.json import JsonFormat
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
    """The report formats."""

    rich = "rich"
    json = "json"


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


@app.command()
def check(
    milestone: Annotated[str, typer.Argument(help="milestone-1 … milestone-5", show_default=False)],
    repo: Annotated[Path, typer.Option("--repo", help="Root of the learner's checkout.")] = Path(
        "."
    ),
    output_format: Annotated[
        FormatName, typer.Option("--format", help="Report format.")
    ] = FormatName.rich,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Write the report in --format to FILE; the terminal report still prints.",
        ),
    ] = None,
) -> None:
    """Grade one milestone of a learner repo and report every check with its evidence."""
    console = Console(highlight=False)
    terminal = TerminalFormat(console)
    fmt = JsonFormat() if output_format is FormatName.json else terminal
    to_stdout = output is None
    if milestone not in registry.MILESTONES:
        error = GradingError(
            f"There is no milestone {milestone!r}; choose one of "
            f"{', '.join(registry.MILESTONES)} (`failfast list` shows their checks)."
        )
        _emit_error(error, milestone, repo, fmt, terminal, output)
    # A plain terminal report prints live progress; JSON on stdout must stay one document.
    live = output_format is FormatName.rich or not to_stdout
    try:
        report = _run(milestone, repo, terminal if live else None)
    except GradingError as error:
        _emit_error(error, milestone, repo, fmt, terminal, output)
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print("grading interrupted: everything the grader started has been stopped")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if output is not None:
        _write(output, fmt.render(report))
    if live:
        terminal.print(report)
    else:
        sys.stdout.write(fmt.render(report))
    raise typer.Exit(report.exit_code)


def _run(milestone: str, repo: Path, terminal: TerminalFormat | None) -> Report:
    async def main() -> Report:
        # SIGTERM (CI cancelling a job, `kill`) stops grading like Ctrl-C: the stack is torn down.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        if terminal is None:
            return await grade(milestone, repo)
        with terminal.progress() as hooks:
            return await grade(milestone, repo, hooks)

    return asyncio.run(main())


def _emit_error(
    error: GradingError,
    milestone: str,
    repo: Path,
    fmt: JsonFormat | TerminalFormat,
    terminal: TerminalFormat,
    output: Path | None,
) -> None:
    if output is not None:
        _write(output, fmt.render_error(error, milestone, str(repo)))
    if isinstance(fmt, JsonFormat) and output is None:
        sys.stdout.write(fmt.render_error(error, milestone, str(repo)))
    else:
        terminal.print_error(error, milestone, str(repo))
    raise typer.Exit(2)


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, "utf-8")
    except OSError as exc:
        Console(stderr=True).print(f"failfast could not write the report to {path}: {exc}")
        raise typer.Exit(2) from None


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
