"""What a check is given: the learner repo, the budget it is held to, and the running stack."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from grader.budgets import Budgets
from grader.errors import CheckFailed, EnvironmentProblem
from grader.repo import LearnerRepo
from grader.stack import ApiInstance, Stack

T = TypeVar("T")

# Each check owns a block of amounts: its checkouts and fault rules never meet another check's.
AMOUNT_BLOCK = 10_000


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    """What one POST /checkout came back with, seen from the client."""

    amount_cents: int
    started_at: float  # grader's time.monotonic(), comparable with the stub's journal
    elapsed_s: float
    status: int | None = None  # None: no answer (see ``error``)
    body: Any = None  # parsed JSON, or None when the body is not JSON
    error: str | None = None

    def describe(self) -> str:
        """In words, e.g. ``answered 504 after 2.81 s``."""
        if self.status is None:
            return f"{self.error} after {self.elapsed_s:.2f} s"
        json_note = "" if self.body is not None else " (body not JSON)"
        return f"answered {self.status}{json_note} after {self.elapsed_s:.2f} s"


@dataclass(slots=True)
class Context:
    """Everything one check may use; built by the runner, one per check."""

    repo: LearnerRepo
    budgets: Budgets
    first_amount: int
    stack_: Stack | None = None
    http_: httpx.AsyncClient | None = None
    # Measurements several checks read (one retry storm serves the jitter and backoff checks),
    # one dict per grading run.
    shared_: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    _next_amount: int = field(init=False)
    # Where the main API's output stood when the check began, and the instances the check
    # talked to with their marks: a failure shows what those printed meanwhile, nothing else.
    _main_mark: int = field(init=False, default=0)
    _outputs: dict[str, tuple[ApiInstance, int]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        """Start handing out amounts at this check's block; mark the API's output."""
        self._next_amount = self.first_amount
        if self.stack_ is not None:
            self._main_mark = self.stack_.api.output_mark()

    @property
    def api(self) -> ApiInstance:
        """The learner's API instance started with the stack."""
        return self._use(self.stack.api)

    def _use(self, api: ApiInstance) -> ApiInstance:
        if api.name not in self._outputs:
            mark = self._main_mark if api is self.stack.api else 0
            self._outputs[api.name] = (api, mark)
        return api

    async def start_api(self, name: str, *, payments_url: str | None = None) -> ApiInstance:
        """Start another instance of the learner's API for this check; its output is shown.

        A fresh instance has fresh state: a full retry budget, whatever earlier checks spent.
        """
        return self._use(await self.stack.start_api(name, payments_url=payments_url))

    async def shared(self, key: str, measure: Callable[[], Awaitable[T]]) -> T:
        """Run ``measure`` once per grading run; every check asking for ``key`` gets its result."""
        if key not in self.shared_:
            self.shared_[key] = asyncio.ensure_future(measure())
        result: T = await asyncio.shield(self.shared_[key])
        return result

    def api_output(self, n: int = 12) -> tuple[str, ...]:
        """What the API instances printed while this check ran (the last ``n`` lines of each)."""
        shown: list[str] = []
        for name, (api, mark) in self._outputs.items():
            lines = api.output_since(mark, n)
            if len(self._outputs) > 1 and lines:
                shown.append(f"[{name}]")
            shown.extend(lines)
        return tuple(shown)

    @property
    def stack(self) -> Stack:
        """The running stack (live checks only)."""
        if self.stack_ is None:
            raise EnvironmentProblem("a live check ran without a stack: a bug in the grader")
        return self.stack_

    @property
    def http(self) -> httpx.AsyncClient:
        """The grader's HTTP client to the learner's API."""
        if self.http_ is None:
            raise EnvironmentProblem("a live check ran without an HTTP client: a bug in the grader")
        return self.http_

    def amounts(self, count: int) -> range:
        """``count`` amounts no other checkout of this run uses."""
        if self._next_amount + count > self.first_amount + AMOUNT_BLOCK:
            raise EnvironmentProblem(
                "a check used more amounts than its block: a bug in the grader"
            )
        start = self._next_amount
        self._next_amount += count
        return range(start, start + count)

    async def checkout(
        self,
        amount_cents: int,
        *,
        timeout_s: float,
        api: ApiInstance | None = None,
        headers: dict[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> CheckoutResult:
        """POST /checkout for ``amount_cents``, waiting at most ``timeout_s`` for the answer.

        ``http`` sends it through another client (another connection pool) than the grader's.
        """
        target = self._use(api or self.stack.api)
        started = time.monotonic()
        try:
            response = await (http or self.http).post(
                f"{target.base_url}/checkout",
                json={"amount_cents": amount_cents},
                headers=headers,
                timeout=timeout_s,
            )
        except httpx.TimeoutException:
            return CheckoutResult(
                amount_cents, started, time.monotonic() - started, error="no answer"
            )
        except httpx.HTTPError as exc:
            # A connection the API's crash cut comes in before the kernel reports the exit.
            for _ in range(10):
                self.raise_if_dead(target)
                await asyncio.sleep(0.05)
            return CheckoutResult(
                amount_cents,
                started,
                time.monotonic() - started,
                error=f"connection failed ({type(exc).__name__})",
            )
        elapsed = time.monotonic() - started
        try:
            body = response.json()
        except ValueError:
            body = None
        return CheckoutResult(amount_cents, started, elapsed, response.status_code, body)

    def raise_if_dead(self, api: ApiInstance | None = None) -> None:
        """Fail the check, with the API's last words, if the instance is no longer running."""
        target = self._use(api or self.stack.api)
        exited = target.exit_description()
        if exited is not None:
            raise CheckFailed(
                f"your API {exited} while this check ran",
                measured=f"the API process {exited}",
                expected="the API keeps running whatever the provider does",
                hint="Read the API's last output lines below: an unhandled error, or a crash "
                "under load, ended the process.",
            )
