"""What a check is given: the learner repo, the budget it is held to, and the running stack."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from grader.backends.base import Stack
from grader.engine.driver import Driver
from grader.engine.noise import LagMeter
from grader.errors import EnvironmentProblem
from grader.learner.budgets import Budgets
from grader.learner.repo import LearnerRepo

T = TypeVar("T")

# Each check owns a block of amounts: its checkouts and fault rules never meet another check's.
AMOUNT_BLOCK = 10_000

Measure = Callable[["Context"], Awaitable[T]]


@dataclass(slots=True)
class Context:
    """Everything one check may use; built by the runner, one per check.

    ``driver`` drives the learner's API (live checks only); ``stack`` programs the stub.
    """

    repo: LearnerRepo
    budgets: Budgets
    first_amount: int
    stack_: Stack | None = None
    driver_: Driver | None = None
    # Measurements several checks read (one retry storm serves the jitter and backoff checks),
    # keyed by the function that makes them; one dict per grading run.
    measurements: dict[Callable[..., Any], asyncio.Task[Any]] = field(default_factory=dict)
    lag: LagMeter | None = None
    started_at: float = field(default_factory=time.monotonic)
    _next_amount: int = field(init=False)

    def __post_init__(self) -> None:
        """Start handing out amounts at this check's block."""
        self._next_amount = self.first_amount

    def worst_lag_s(self) -> float:
        """How late the grader's own loop woke at worst since this check began: the noise."""
        return 0.0 if self.lag is None else self.lag.worst_since(self.started_at)

    async def once(self, measure: Measure[T]) -> T:
        """``measure(ctx)``, run once per grading run: every check asking for it shares it."""
        if measure not in self.measurements:
            self.measurements[measure] = asyncio.ensure_future(measure(self))
        result: T = await asyncio.shield(self.measurements[measure])
        return result

    @property
    def stack(self) -> Stack:
        """The running stack (live checks only)."""
        if self.stack_ is None:
            raise EnvironmentProblem("a live check ran without a stack: a bug in the grader")
        return self.stack_

    @property
    def driver(self) -> Driver:
        """The check's driver of the learner's API (live checks only)."""
        if self.driver_ is None:
            raise EnvironmentProblem("a live check ran without a driver: a bug in the grader")
        return self.driver_

    def amounts(self, count: int) -> range:
        """``count`` amounts no other checkout of this run uses."""
        if self._next_amount + count > self.first_amount + AMOUNT_BLOCK:
            raise EnvironmentProblem(
                "a check used more amounts than its block: a bug in the grader"
            )
        start = self._next_amount
        self._next_amount += count
        return range(start, start + count)
