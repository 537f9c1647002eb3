"""What the grader says about itself: ``--version``, ``doctor``, ``list``, ``explain``, ``stub``.

None of these grades anything: they show the version, what this machine lacks (and the fix),
the milestones and their checks, what one check does, or run the reference stub by hand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from grader import __version__
from grader.backends.base import backend_names
from grader.cli.app import app, backend_name, catalog
from grader.model import MILESTONES, ExitCode

STUB_PORT = 8081


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
def doctor(
    repo: Annotated[Path, typer.Option("--repo", help="Root of the learner's checkout.")] = Path(
        "."
    ),
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            envvar="FAILFAST_BACKEND",
            help="The backend to check for: " + ", ".join(backend_names()) + ".",
            callback=backend_name,
        ),
    ] = "local",
) -> None:
    """Say what the grader needs, whether this machine has it, and the exact fix for each."""
    from grader.cli import doctor as doctor_mod

    findings = doctor_mod.diagnose(repo, backend)
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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def stub(ctx: typer.Context) -> None:
    """Run the reference payments stub by hand (PORT, ADMIN_PORT, LATENCY_MS, FAIL_RATE, SEED)."""
    from reference.stub import main as stub_main

    # By hand, the course's well-known ports (as in prod-sim.yml); the grader itself always asks
    # for free ones. Options given on the command line come later and win.
    ports = ["--port", os.environ.get("PORT", str(STUB_PORT))]
    ports += ["--admin-port", os.environ.get("ADMIN_PORT", str(STUB_PORT + 1))]
    raise typer.Exit(stub_main([*ports, *ctx.args]))
