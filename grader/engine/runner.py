"""Runs a milestone's checks against a learner repo and collects the report.

Checks run as soon as the checks they depend on have finished; a check whose dependency did not
pass is SKIP. Ready checks run concurrently, except ``exclusive`` ones, which run alone because
they load the service and would distort what other checks time. An ``eager`` check starts
alongside the checks it depends on, and its verdict is kept only if they pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from grader.backends.base import Stack, StartStack
from grader.engine.context import AMOUNT_BLOCK, Context
from grader.engine.driver import Driver
from grader.engine.noise import LagMeter
from grader.engine.registry import Catalog, CheckSpec
from grader.errors import (
    BudgetsError,
    CheckFailed,
    CheckInconclusive,
    CheckSkipped,
    EnvironmentProblem,
    GradingError,
    ToolTimeout,
)
from grader.learner import budgets as budgets_mod
from grader.learner.repo import LearnerRepo
from grader.lines import OutputSummary
from grader.model import (
    MILESTONES,
    BudgetSource,
    CheckResult,
    Evidence,
    Passed,
    Report,
    Selection,
    Status,
)


@dataclass(frozen=True, slots=True)
class Hooks:
    """Callbacks for progress; the runner itself never prints."""

    on_start: Callable[[str, str], None] = lambda check_id, title: None  # id and title
    on_finish: Callable[[CheckResult], None] = lambda result: None


INTERRUPTED_HINT = "Grade again and let the run finish: this check has no verdict yet."


def now_iso() -> str:
    """Now, as the reports stamp it: ISO 8601, UTC, to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class Tally:
    """What a grading run has done so far, kept by its caller for a run that is cut short.

    However the run ends early (Ctrl-C, SIGTERM, before or while checks run), :meth:`report`
    with ``interrupted=True`` has every check that finished, and every other one as SKIP: not
    run, or not finished, because grading was interrupted.
    """

    selection: Selection
    repo: str
    started_at: str = field(default_factory=now_iso)  # ISO 8601, UTC
    started: float = field(default_factory=time.monotonic)
    specs: tuple[CheckSpec, ...] = ()  # every check of the run, in report order
    results: dict[str, CheckResult] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)  # check id -> when it started
    budgets: BudgetSource | None = None
    backend: str = "local"
    notes: tuple[str, ...] = ()  # what the stack says of how the run was isolated
    api_output: OutputSummary | None = None  # what the learner's API printed, once it stopped

    def hooks(self, inner: Hooks) -> Hooks:
        """``inner``, also recording which checks run and what each finished with."""

        def on_start(check_id: str, title: str) -> None:
            self.running[check_id] = time.monotonic()
            inner.on_start(check_id, title)

        def on_finish(result: CheckResult) -> None:
            self.running.pop(result.id, None)
            self.results[result.id] = result
            inner.on_finish(result)

        return Hooks(on_start, on_finish)

    def report(self, *, interrupted: bool = False) -> Report:
        """The report of the run: finished, or cut short with the rest marked not run."""
        now = time.monotonic()
        results = []
        for spec in self.specs:
            done = self.results.get(spec.id)
            if done is None and not interrupted:
                raise AssertionError(f"{spec.id} has no result: a bug in the runner")
            if done is None:
                started = self.running.get(spec.id)
                summary = (
                    "not run: grading was interrupted"
                    if started is None
                    else f"not finished: grading was interrupted {now - started:.1f} s into it"
                )
                evidence = Evidence(summary, hint=INTERRUPTED_HINT, data={"interrupted": True})
                elapsed = 0.0 if started is None else now - started
                done = result_of(spec, Status.SKIP, evidence, duration_s=elapsed)
            results.append(done)
        return Report(
            milestone=self.selection.name,
            repo=self.repo,
            started_at=self.started_at,
            duration_s=round(now - self.started, 3),
            results=tuple(results),
            budgets=self.budgets,
            milestones=self.selection.milestones,
            through=self.selection.through,
            targets=self.selection.targets,
            interrupted=interrupted,
            backend=self.backend,
            notes=self.notes,
            api_output=self.api_output,
        )


async def grade(
    selection: Selection,
    repo_path: Path,
    catalog: Catalog,
    hooks: Hooks,
    tally: Tally | None,
    start_stack: StartStack,
    backend: str = "local",
) -> Report:
    """Grade one milestone or several; raises :class:`GradingError` when it cannot grade at all.

    ``start_stack`` starts what runs the learner's code: the backend's
    (:func:`grader.backends.base.get_backend`), which the caller chose and names as ``backend``.

    Several milestones share one stack (the stub, Redis, the grader's client) and run one after
    another. Each live milestone gets a fresh instance of the learner's API, so that it sees what
    it would see graded alone: a full retry budget whatever the milestone before it spent.

    ``tally``, if given, keeps what the run has done so far: its caller reports from it if the
    run is cut short (:meth:`Tally.report`).
    """
    if tally is None:
        tally = Tally(selection, str(repo_path))
    tally.backend = backend
    repo = LearnerRepo.open(repo_path)
    tally.repo = str(repo.path)
    groups = [
        tuple(spec for spec in catalog.for_milestone(milestone) if selection.includes(spec.id))
        for milestone in selection.milestones
    ]
    groups = [group for group in groups if group]  # --target: a milestone with none of them
    specs = tuple(spec for group in groups for spec in group)
    tally.specs = specs
    budgets, source, unusable = budgets_mod.COURSE, None, None
    live = any(spec.live for spec in specs)
    if live:
        try:
            budgets, source = budgets_mod.for_live_checks(repo.path)
        except BudgetsError as error:
            # Graded with the first milestone (the budget table's), an unusable table is its
            # FAIL, with every line at fault; the live checks it would have held to are
            # skipped, not the whole run.
            # (--target may have left milestone 1 with nothing to grade: then it is not there.)
            if len(groups) == 1 or all(g[0].milestone != MILESTONES[0].key for g in groups):
                raise
            unusable = error
    tally.budgets = source
    run = _Run(repo, budgets, specs, tally.hooks(hooks))
    # Timing noise matters only to live checks: a static run samples none.
    metering = LagMeter.running() if live else contextlib.nullcontext(None)
    live_stack = live and unusable is None
    async with _stack(repo, live_stack, start_stack) as (stack, http), metering as run.lag:
        tally.notes = stack.notes if stack is not None else ()
        fresh = True
        for group in groups:
            if any(spec.live for spec in group):
                if unusable is not None:
                    run.skip_unusable(group, unusable)
                    continue
                if stack is not None and not fresh:
                    await stack.restart_api()
                fresh = False
            await run.run_all(group, stack, http)
    if stack is not None:  # stopped: its output is read to the end
        tally.api_output = stack.output_summary()
    return tally.report()


@contextlib.asynccontextmanager
async def _stack(
    repo: LearnerRepo, live: bool, start_stack: StartStack
) -> AsyncIterator[tuple[Stack | None, httpx.AsyncClient | None]]:
    if not live:
        yield None, None
        return
    manifest = repo.manifest()
    stack = await start_stack(repo, manifest)
    # Generous pool limits: a check may hold twenty checkouts open at once.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    try:
        async with httpx.AsyncClient(limits=limits) as http:
            yield stack, http
    finally:
        await stack.aclose()


class _Run:
    """The state of one grading run: results so far, amount blocks, measurements checks share."""

    def __init__(
        self,
        repo: LearnerRepo,
        budgets: budgets_mod.Budgets,
        specs: tuple[CheckSpec, ...],
        hooks: Hooks,
    ) -> None:
        self.repo, self.budgets, self.hooks = repo, budgets, hooks
        self.results: dict[str, CheckResult] = {}
        # Blocks are unique across the whole run: milestones share the stub, and its journal.
        self.blocks = {spec.id: (index + 1) * AMOUNT_BLOCK for index, spec in enumerate(specs)}
        self.measurements: dict[Callable[..., Any], asyncio.Task[Any]] = {}
        self.lag: LagMeter | None = None

    def finish(self, result: CheckResult) -> None:
        """Record a result and report it."""
        self.results[result.id] = result
        self.hooks.on_finish(result)

    def skip_unusable(self, group: tuple[CheckSpec, ...], error: BudgetsError) -> None:
        """Skip live checks that have no budget table to hold the service to."""
        for spec in group:
            evidence = Evidence(
                "not run: budgets.yaml cannot be used (m1.budgets-valid says why)",
                hint="Fix budgets.yaml first: every live check holds your service to it.",
                data={"reason": error.message},
            )
            self.finish(result_of(spec, Status.SKIP, evidence))

    async def run_all(
        self,
        specs: tuple[CheckSpec, ...],
        stack: Stack | None,
        http: httpx.AsyncClient | None,
    ) -> None:
        """Run checks as their dependencies allow: concurrently, exclusive ones alone."""
        results = self.results
        pending = list(specs)

        async def judge(spec: CheckSpec) -> CheckResult:
            self.hooks.on_start(spec.id, spec.title)
            driver = None if stack is None or http is None else Driver(stack, http)
            ctx = Context(
                self.repo,
                self.budgets,
                self.blocks[spec.id],
                stack,
                driver,
                self.measurements,
                self.lag,
            )
            return await _run_one(spec, ctx, stack)

        async def run(spec: CheckSpec, finished: asyncio.Event | None = None) -> None:
            try:
                self.finish(await judge(spec))
            finally:
                if finished is not None:
                    finished.set()

        async def run_eager(spec: CheckSpec, finished: dict[str, asyncio.Event]) -> None:
            # Its verdict waits for its dependencies, which run alongside it in this batch.
            result = await judge(spec)
            await asyncio.gather(*(finished[d].wait() for d in spec.depends if d in finished))
            blocked = _blocked(spec, results)
            self.finish(_skipped(spec, results, blocked, "not judged") if blocked else result)

        def settled(check_id: str) -> bool:
            return check_id in results or check_id not in self.blocks

        while pending:
            ready = [s for s in pending if all(settled(d) for d in s.depends)]
            if not ready:  # cannot happen: dependencies are registered before their dependants
                raise GradingError("the checks' dependencies form a cycle: a bug in the grader")
            runnable = []
            for spec in ready:
                pending.remove(spec)
                blocked = _blocked(spec, results)
                if blocked:
                    self.finish(_skipped(spec, results, blocked, "not run"))
                else:
                    runnable.append(spec)
            concurrent = [s for s in runnable if not s.exclusive]
            finished = {s.id: asyncio.Event() for s in concurrent}
            # Eager checks start with the dependencies this batch runs, if none has failed yet;
            # the others wait their turn, and a failed dependency then skips them as "not run".
            eager = [
                s
                for s in pending
                if s.eager
                and not _blocked(s, results)
                and all(settled(d) or d in finished for d in s.depends)
            ]
            for spec in eager:
                pending.remove(spec)
            await asyncio.gather(
                *(run(s, finished[s.id]) for s in concurrent),
                *(run_eager(s, finished) for s in eager),
            )
            for spec in runnable:
                if spec.exclusive:
                    await run(spec)


def _blocked(spec: CheckSpec, results: dict[str, CheckResult]) -> list[str]:
    """The dependencies of ``spec`` that finished and did not pass."""
    return [d for d in spec.depends if d in results and results[d].status is not Status.PASS]


def _skipped(
    spec: CheckSpec, results: dict[str, CheckResult], blocked: list[str], verb: str
) -> CheckResult:
    """SKIP, because ``blocked`` did not pass: said with ``verb`` ("not run", "not judged")."""
    reasons = ", ".join(f"{d} is {results[d].status.value}" for d in blocked)
    # "Fix it first" only where there is something of the learner's to fix: a FAIL.
    first = next((d for d in blocked if results[d].status is Status.FAIL), blocked[0])
    status = results[first].status
    why = {
        Status.FAIL: f"Fix {first} first; this check builds on it.",
        Status.INCONCLUSIVE: f"{first} could not tell on this machine; this check builds on it. "
        "Nothing to fix yet: grade again, on a quieter machine if you can.",
        Status.ERROR: f"{first} could not run (its report says why); this check builds on it. "
        "Nothing of yours to fix here.",
    }.get(status, f"{first} was skipped (its report says why); this check builds on it.")
    evidence = Evidence(f"{verb}: {reasons}", hint=why)
    return result_of(spec, Status.SKIP, evidence)


def result_of(
    spec: CheckSpec,
    status: Status,
    evidence: Evidence,
    *,
    duration_s: float = 0.0,
    api_output: tuple[str, ...] = (),
) -> CheckResult:
    """The one way a result is built; a FAIL or INCONCLUSIVE without a hint gets the check's."""
    if not evidence.hint and status in (Status.FAIL, Status.INCONCLUSIVE):
        evidence = replace(evidence, hint=spec.hint)
    return CheckResult(
        id=spec.id,
        title=spec.title,
        milestone=spec.milestone,
        status=status,
        evidence=evidence,
        duration_s=round(duration_s, 3),
        api_output=api_output,
    )


async def _verdict(spec: CheckSpec, ctx: Context) -> tuple[Status, Evidence]:
    """Run the check and turn whatever it ends with into a status and its evidence."""
    limit_s = spec.limit_s(ctx.budgets)
    try:
        outcome = spec.func(ctx)
        if inspect.isawaitable(outcome):
            outcome = await asyncio.wait_for(outcome, timeout=limit_s)
        assert isinstance(outcome, Passed), f"{spec.id} returned {outcome!r}, not Passed"
        return Status.PASS, outcome
    except CheckFailed as verdict:
        return Status.FAIL, verdict.evidence
    except CheckInconclusive as verdict:
        return Status.INCONCLUSIVE, verdict.evidence
    except CheckSkipped as verdict:
        return Status.SKIP, verdict.evidence
    except TimeoutError:
        return Status.ERROR, Evidence(
            f"the check did not finish within its limit of {limit_s:g} s",
            hint="This is the grader's fault, not yours: please report it.",
        )
    except GradingError as problem:
        # A machine that lacks something (k6, a FAILFAST_K6 that names no binary) is fixed
        # before grading again; the summary says how.
        fix_first = isinstance(problem, EnvironmentProblem) and not isinstance(problem, ToolTimeout)
        hint = (
            "This machine needs fixing, not your code: do what the summary says, then grade again."
            if fix_first
            else "Grade again; report it if it persists."
        )
        return Status.ERROR, Evidence(problem.message, hint=hint)
    except Exception as bug:
        return Status.ERROR, Evidence(
            f"the check crashed: {bug!r}",
            hint="This is a bug in the grader, not your fault: please report it.",
        )


async def _run_one(spec: CheckSpec, ctx: Context, stack: Stack | None) -> CheckResult:
    started = time.monotonic()
    status, evidence = await _verdict(spec, ctx)
    api_output: tuple[str, ...] = ()
    if ctx.driver_ is not None and stack is not None and status in (Status.FAIL, Status.ERROR):
        api_output = ctx.driver_.api_output()
        exited = stack.api.exit_description()
        if exited is not None and "your API" not in evidence.summary:
            summary = f"{evidence.summary} (your API {exited} meanwhile)"
            evidence = replace(evidence, summary=summary)
    return result_of(
        spec, status, evidence, duration_s=time.monotonic() - started, api_output=api_output
    )
