"""The grader's side of the reference stub's admin API: program faults, read the journal.

Faults are the stub's own typed values (``ErrorStatus(503)``, ``Delay(delay_ms=...)``), re-exported
here for the checks, so a misspelled fault type or field is a type error, not a 400 at run time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from grader.errors import EnvironmentProblem
from reference.stub.faults import Decline as Decline
from reference.stub.faults import Delay as Delay
from reference.stub.faults import Dribble as Dribble
from reference.stub.faults import ErrorStatus as ErrorStatus
from reference.stub.faults import Fault as Fault
from reference.stub.faults import Hang as Hang
from reference.stub.faults import LostResponse as LostResponse
from reference.stub.faults import Match, Rule
from reference.stub.faults import Reset as Reset


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request that reached the provider, as the stub's journal saw it.

    Times are CLOCK_MONOTONIC seconds, the same clock as the grader's ``time.monotonic()``.
    """

    seq: int
    amount_cents: int | None
    idempotency_key: str | None
    arrived_at: float
    status: int | None
    outcome: str
    fault: Mapping[str, Any] | None
    response_started_at: float | None
    finished_at: float | None
    gave_up_at: float | None
    charge_id: str | None
    replayed: bool

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Attempt:
        """Build from one journal entry."""
        return cls(
            seq=int(item["seq"]),
            amount_cents=item.get("amount_cents"),
            idempotency_key=item.get("idempotency_key"),
            arrived_at=float(item["arrived_at"]),
            status=item.get("status"),
            outcome=str(item["outcome"]),
            fault=item.get("fault"),
            response_started_at=item.get("response_started_at"),
            finished_at=item.get("finished_at"),
            gave_up_at=item.get("gave_up_at"),
            charge_id=item.get("charge_id"),
            replayed=bool(item.get("replayed", False)),
        )

    @property
    def ended(self) -> bool:
        """Whether the attempt is over, one way or another."""
        return self.outcome != "in_progress"

    @property
    def abandoned_after_s(self) -> float | None:
        """How long after arrival the client gave up on it, if it did."""
        return None if self.gave_up_at is None else self.gave_up_at - self.arrived_at


@dataclass(frozen=True, slots=True)
class Charge:
    """A committed charge in the stub's ledger."""

    id: str
    amount_cents: int
    idempotency_key: str | None
    attempt_seq: int


class StubAdmin:
    """Async client of the admin API; stub failures are the environment's, never the learner's."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.AsyncClient(base_url=base_url, timeout=5.0)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
            response.raise_for_status()
            return response.json() if response.content else None
        except (httpx.HTTPError, ValueError) as exc:
            raise EnvironmentProblem(
                f"The grader's payments stub stopped answering its admin API ({exc!r}). This is "
                f"the grader's fault, not yours: grade again, and report it if it persists."
            ) from exc

    async def add_fault(
        self,
        fault: Fault,
        *,
        amounts: range,
        first_n: int | None = None,
        rate: float | None = None,
        times: int | None = None,
    ) -> int:
        """Apply ``fault`` to charge attempts whose amount is in ``amounts``; returns its id."""
        rule = Rule(Match.within(amounts), fault, first_n=first_n, rate=rate, times=times)
        # The stub assigns the id, and refuses a rule that names one as an unknown key.
        body = {key: value for key, value in rule.to_dict().items() if key != "id"}
        created = await self._call("POST", "/faults", json=body)
        return int(created["id"])

    async def journal(self, amounts: range) -> list[Attempt]:
        """Every attempt whose amount is in ``amounts``, in arrival order."""
        body = await self._call("GET", "/journal", params=Match.within(amounts).to_dict())
        return [Attempt.from_json(item) for item in body["attempts"]]

    async def ledger(self, amounts: range) -> list[Charge]:
        """Every committed charge whose amount is in ``amounts``."""
        body = await self._call("GET", "/ledger", params=Match.within(amounts).to_dict())
        return [
            Charge(
                id=str(c["id"]),
                amount_cents=int(c["amount_cents"]),
                idempotency_key=c.get("idempotency_key"),
                attempt_seq=int(c["attempt_seq"]),
            )
            for c in body["charges"]
        ]

    async def wait_for_journal(
        self, amounts: range, *, arrived: int = 1, ended: bool = True, timeout_s: float
    ) -> list[Attempt]:
        """Poll the journal until ``arrived`` attempts are there (and over), or ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            attempts = await self.journal(amounts)
            done = len(attempts) >= arrived and (not ended or all(a.ended for a in attempts))
            if done or time.monotonic() >= deadline:
                return attempts
            await asyncio.sleep(0.05)
