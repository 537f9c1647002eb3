"""The `failfast` command line: the typer app, its entry point, and what the commands share.

The commands live one module per group, each adding itself to :data:`app`: ``check`` (grade a
learner repo), ``grade`` (grade a class; merge gradebooks) and ``info`` (``--version``,
``doctor``, ``list``, ``explain``, ``stub``). The package imports them (``grader/cli/__init__.py``),
so ``app`` has every command whichever module of the CLI is imported first; none of them is
imported here, and this module imports none of them.

Exit codes (:class:`grader.model.ExitCode`): 0 every check passed; 1 a check failed (or was
skipped because one it needs failed); 2 the grader could not grade: bad input, an API that would
not start, an environment problem; 130 interrupted.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from grader.backends.base import BackendOption, backend_names, get_backend
from grader.cli import machine
from grader.course.file import Course
from grader.engine import registry
from grader.errors import CourseError
from grader.formats import OutputFormat
from grader.model import ExitCode, Selection

CHECKS_PACKAGE = "checks"  # where the milestone checks live: checks/m<N>_*.py


def backend_name(name: str) -> str:
    """``--backend NAME``: one of the registry's names (``failfast check --help`` lists them)."""
    if name not in backend_names():
        raise typer.BadParameter(f"choose one of {', '.join(backend_names())}, not {name!r}")
    return name


BACKEND_HELP = "What runs the learner's code: " + "; ".join(
    f"{name}, {get_backend(name).summary}" for name in backend_names()
)
# `--backend NAME` of every command that grades: one of the registry's names.
BackendName = Annotated[
    str,
    typer.Option("--backend", envvar="FAILFAST_BACKEND", help=BACKEND_HELP, callback=backend_name),
]


def backend_settings(kwargs: dict[str, Any]) -> dict[str, object]:
    """The backend options a command was given (flag -> value), taken out of ``kwargs``."""
    return {option.flag: kwargs.pop(option.flag.replace("-", "_")) for option in _backend_options()}


def _backend_options() -> list[BackendOption]:
    """Every option every backend declares, each once, in registry order."""
    seen: dict[str, BackendOption] = {}
    for name in backend_names():
        for option in get_backend(name).options:
            seen.setdefault(option.flag, option)
    return list(seen.values())


def with_backend_options(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` offering every backend's declared options (``--api-memory``, ``--pull``…).

    The options come from the backend registry (grader/backends/base.py), so a new backend's
    options reach `check` and `grade` without a line here; the command receives them in its
    keyword arguments and reads them with :func:`backend_settings`.
    """
    signature = inspect.signature(command, eval_str=True)
    owners = {option.flag: name for name in backend_names() for option in get_backend(name).options}
    extra = []
    for option in _backend_options():
        kind: Any = option.kind if option.default is not None else option.kind | None
        flag = typer.Option(
            f"--{option.flag}", help=f"{owners[option.flag]}: {option.help}", min=option.minimum
        )
        extra.append(
            inspect.Parameter(
                option.flag.replace("-", "_"),
                inspect.Parameter.KEYWORD_ONLY,
                default=option.default,
                annotation=Annotated[kind, flag],
            )
        )

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        command(**kwargs)

    parameters = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in signature.parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD  # where the backend options arrive
    ]
    wrapper.__signature__ = signature.replace(parameters=[*parameters, *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*parameters, *extra]}
    return wrapper


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


def planned_checks(selection: Selection) -> list[tuple[str, str]]:
    """(milestone, check id) of every check a run of ``selection`` is asked for."""
    return [
        (s.milestone, s.id)
        for s in catalog().specs
        if s.milestone in selection.milestones and selection.includes(s.id)
    ]


def refuse_hidden(
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


def main() -> None:
    """Entry point of the console script: no traceback ever reaches a learner."""
    machine.prepare()  # before anything runs: a deleted cwd, an unwritable HOME
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
