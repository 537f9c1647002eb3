"""The grader's hands on the learner's API: checkouts, fresh instances, crash detection.

One driver per check. It remembers which API instances the check talked to, and where their
output stood when it began, so that a failure shows what those instances printed meanwhile and
nothing else.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from grader.errors import CheckFailed
from grader.stack import ApiInstance, Stack


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


class Driver:
    """Drives the learner's API for one check: checkouts, extra instances, its output."""

    def __init__(self, stack: Stack, http: httpx.AsyncClient) -> None:
        self.stack, self.http = stack, http
        # The instances the check talked to, each with where its output stood at first use.
        self._main_mark = stack.api.output_mark()
        self._used: dict[str, tuple[ApiInstance, int]] = {}

    @property
    def api(self) -> ApiInstance:
        """The learner's API instance started with the stack."""
        return self._use(self.stack.api)

    def watch(self, api: ApiInstance) -> ApiInstance:
        """Show what ``api`` (started by another check) prints from now on, should this fail."""
        if api.name not in self._used:
            self._used[api.name] = (api, api.output_mark())
        return api

    def _use(self, api: ApiInstance) -> ApiInstance:
        if api.name not in self._used:
            mark = self._main_mark if api is self.stack.api else 0
            self._used[api.name] = (api, mark)
        return api

    async def start_api(self, name: str, *, payments_url: str | None = None) -> ApiInstance:
        """Start another instance of the learner's API; its output is shown on failure.

        A fresh instance has fresh state: a full retry budget, whatever earlier checks spent.
        """
        return self._use(await self.stack.start_api(name, payments_url=payments_url))

    def api_output(self, n: int = 12) -> tuple[str, ...]:
        """What the instances this check used printed meanwhile (the last ``n`` lines of each)."""
        shown: list[str] = []
        for name, (api, mark) in self._used.items():
            lines = api.output_since(mark, n)
            if len(self._used) > 1 and lines:
                shown.append(f"[{name}]")
            shown.extend(lines)
        return tuple(shown)

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
