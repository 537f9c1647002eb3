"""Runs a milestone's checks against a learner repo and collects the report.

Checks run as soon as the checks they depend on have finished; a check whose dependency did not
pass is SKIP. Ready checks run concurrently, except ``exclusive`` ones, which run alone because
they load the service and would distort what other checks time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from grader import budgets as budgets_mod
from grader.context import AMOUNT_BLOCK, Context
from grader.errors import CheckFailed, CheckVerdict, GradingError
from grader.model import CheckResult, Passed, Report, Status
from grader.registry import CheckSpec, checks_for
from grader.repo import LearnerRepo
from grader.stack import LocalStack, Stack


@dataclass(frozen=True, slots=True)
class Hooks:
    """Callbacks for progress; the runner itself never prints."""

    on_start: Callable[[CheckSpec], None] = lambda spec: None
    on_finish: Callable[[CheckResult], None] = lambda result: None


async def grade(milestone: str, repo_path: Path, hooks: Hooks = Hooks()) -> Report:
    """Grade one milestone; raises :class:`GradingError` when it cannot grade at all."""
    started_wall = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    repo = LearnerRepo.open(repo_path)
    specs = checks_for(milestone)
    budgets, source = budgets_mod.COURSE, None
    live = any(spec.is_async for spec in specs)
    if live:
        budgets, source = budgets_mod.for_live_checks(repo.path)
    async with _stack(repo, live) as (stack, http):
        results = await _run_all(specs, repo, budgets, stack, http, hooks)
    return Report(
        milestone=milestone,
        repo=str(repo.path),
        started_at=started_wall.isoformat(timespec="seconds"),
        duration_s=round(time.monotonic() - started, 3),
        results=tuple(results[spec.id] for spec in specs),
        budgets=source,
    )


@contextlib.asynccontextmanager
async def _stack(
    repo: LearnerRepo, live: bool
) -> AsyncIterator[tuple[Stack | None, httpx.AsyncClient | None]]:
    if not live:
        yield None, None
        return
    manifest = repo.manifest()
    stack = await LocalStack.start(repo, manifest)
    # Generous pool limits: a check may hold twenty checkouts open at once.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    try:
        async with httpx.AsyncClient(limits=limits) as http:
            yield stack, http
    finally:
        await stack.aclose()


async def _run_all(
    specs: tuple[CheckSpec, ...],
    repo: LearnerRepo,
    budgets: budgets_mod.Budgets,
    stack: Stack | None,
    http: httpx.AsyncClient | None,
    hooks: Hooks,
) -> dict[str, CheckResult]:
    results: dict[str, CheckResult] = {}
    blocks = {spec.id: (index + 1) * AMOUNT_BLOCK for index, spec in enumerate(specs)}
    shared: dict[str, asyncio.Task[Any]] = {}
    pending = list(specs)

    async def run(spec: CheckSpec) -> None:
        hooks.on_start(spec)
        ctx = Context(repo, budgets, blocks[spec.id], stack, http, shared)
        result = await _run_one(spec, ctx, stack)
        results[spec.id] = result
        hooks.on_finish(result)

    while pending:
        ready = [s for s in pending if all(d in results or d not in blocks for d in s.depends)]
        if not ready:  # cannot happen: dependencies are registered before their dependants
            raise GradingError("the checks' dependencies form a cycle: a bug in the grader")
        for spec in ready:
            pending.remove(spec)
        runnable = []
        for spec in ready:
            blocked = [
                d for d in spec.depends if d in results and results[d].status is not Status.PASS
            ]
            if blocked:
                skipped = _skip(spec, blocked, results)
                results[spec.id] = skipped
                hooks.on_finish(skipped)
            else:
                runnable.append(spec)
        await asyncio.gather(*(run(s) for s in runnable if not s.exclusive))
        for spec in runnable:
            if spec.exclusive:
                await run(spec)
    return results


def _skip(spec: CheckSpec, blocked: list[str], results: dict[str, CheckResult]) -> CheckResult:
    reasons = ", ".join(f"{d} is {results[d].status.value}" for d in blocked)
    return CheckResult(
        id=spec.id,
        title=spec.title,
        milestone=spec.milestone,
        status=Status.SKIP,
        summary=f"not run: {reasons}",
        hint=f"Fix {blocked[0]} first; this check builds on it.",
    )


async def _run_one(spec: CheckSpec, ctx: Context, stack: Stack | None) -> CheckResult:
    started = time.monotonic()
    status, summary, measured, expected, hint, data = Status.PASS, "", "", "", "", {}
    figure: tuple[str, ...] = ()
    try:
        outcome = spec.func(ctx)
        if inspect.isawaitable(outcome):
            outcome = await asyncio.wait_for(outcome, timeout=spec.timeout_s)
        assert isinstance(outcome, Passed), f"{spec.id} returned {outcome!r}, not Passed"
        summary, measured, expected, data = (
            outcome.summary,
            outcome.measured,
            outcome.expected,
            dict(outcome.data),
        )
        figure = outcome.figure
    except CheckVerdict as verdict:
        status = Status.FAIL if isinstance(verdict, CheckFailed) else Status.INCONCLUSIVE
        summary, measured, expected = verdict.summary, verdict.measured, verdict.expected
        hint, data, figure = verdict.hint or spec.hint, verdict.data, verdict.figure
    except TimeoutError:
        status, hint = Status.ERROR, "This is the grader's fault, not yours: please report it."
        summary = f"the check did not finish within its limit of {spec.timeout_s:g} s"
    except GradingError as problem:
        status, summary, hint = (
            Status.ERROR,
            problem.message,
            "Grade again; report it if it persists.",
        )
    except Exception as bug:
        status, hint = (
            Status.ERROR,
            "This is a bug in the grader, not your fault: please report it.",
        )
        summary = f"the check crashed: {bug!r}"
    api_output: tuple[str, ...] = ()
    if stack is not None and status in (Status.FAIL, Status.ERROR):
        api_output = ctx.api_output()
        exited = stack.api.exit_description()
        if exited is not None and "your API" not in summary:
            summary = f"{summary} (your API {exited} meanwhile)"
    return CheckResult(
        id=spec.id,
        title=spec.title,
        milestone=spec.milestone,
        status=status,
        summary=summary,
        measured=measured,
        expected=expected,
        hint=hint,
        duration_s=round(time.monotonic() - started, 3),
        data=data,
        api_output=api_output,
        figure=figure,
    )
