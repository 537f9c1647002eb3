"""Checkout service, reference solution of "Make every dependency call fail fast".

Every number comes from budgets.yaml, the table the grader holds this service to:
- the provider call has a connect and a read timeout (milestone 2),
- the whole checkout has a deadline inside the api budget, so neither retries nor a provider
  that trickles its body can stretch it (milestone 2),
- failed attempts are retried with capped exponential backoff and full jitter, never a decline
  (milestone 3),
- retries draw on a token bucket shared by the whole process, so an outage is not amplified
  (milestone 4),
- one Idempotency-Key per checkout is sent on every attempt, so a retry after a lost response
  cannot charge twice (milestone 5).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

TABLE = yaml.safe_load((Path(__file__).resolve().parent.parent / "budgets.yaml").read_text())
PAYMENTS = TABLE["layers"]["payments"]
RETRIES = TABLE["retries"]
MAX_ATTEMPTS = RETRIES["max_attempts"]
BUCKET = TABLE["retry_budget"]
# Answer a little before the api budget ends: the answer itself needs time to reach the caller.
DEADLINE_S = TABLE["layers"]["api"]["timeout_s"] - 0.2
TIMEOUT = httpx.Timeout(
    connect=PAYMENTS["connect_timeout_s"],
    read=PAYMENTS["read_timeout_s"],
    write=PAYMENTS["read_timeout_s"],
    pool=PAYMENTS["connect_timeout_s"],
)
# Worth another try: the provider is overloaded or failing, not saying no.
RETRYABLE_STATUSES = {429, 500, 502, 503, 504}
PAYMENTS_URL = os.environ["PAYMENTS_URL"]


class RetryBudget:
    """A token bucket: each first attempt deposits `ratio` tokens, each retry spends one."""

    def __init__(self, ratio: float, burst: int) -> None:
        self.ratio, self.burst, self.tokens = ratio, burst, float(burst)

    def deposit(self) -> None:
        """Credit a first attempt."""
        self.tokens = min(self.burst, self.tokens + self.ratio)

    def try_spend(self) -> bool:
        """Take a token for a retry, if there is one."""
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


budget = RetryBudget(BUCKET["ratio"], BUCKET["burst"])
client: httpx.AsyncClient


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """One connection pool for the process, closed on shutdown."""
    global client
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        yield


app = FastAPI(title="checkout", lifespan=lifespan)


class CheckoutRequest(BaseModel):
    """Body of POST /checkout."""

    amount_cents: int = Field(gt=0)


class Unavailable(Exception):
    """The provider kept failing: no attempt or retry budget left."""


def backoff(retry: int) -> float:
    """Full jitter: uniform between 0 and the capped exponential delay before retry `retry`."""
    cap = min(RETRIES["max_delay_s"], RETRIES["base_delay_s"] * 2 ** (retry - 1))
    return random.uniform(0, cap)


async def charge(amount_cents: int, key: str, deadline: float) -> httpx.Response:
    """Charge once, retrying what is worth retrying while attempts, budget and time remain."""
    budget.deposit()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            response = await client.post(
                f"{PAYMENTS_URL}/charge",
                json={"amount_cents": amount_cents},
                headers={"Idempotency-Key": key},
            )
            if response.status_code not in RETRYABLE_STATUSES:
                return response
            failure: Exception = Unavailable(f"provider answered {response.status_code}")
        except httpx.TransportError as exc:  # timeouts, refused or reset connections
            failure = exc
        if attempt == MAX_ATTEMPTS or not budget.try_spend():
            raise failure
        delay = backoff(attempt)
        if time.monotonic() + delay >= deadline:
            raise failure  # sleeping would spend the budget: fail now instead
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def error(status: int, code: str) -> JSONResponse:
    """A JSON error answer."""
    return JSONResponse({"error": code}, status_code=status)


@app.post("/checkout")
async def checkout(
    body: CheckoutRequest, idempotency_key: str | None = Header(default=None)
) -> JSONResponse:
    """Charge the customer within the api budget, and say how it went."""
    key = idempotency_key or str(uuid.uuid4())
    try:
        async with asyncio.timeout(DEADLINE_S):
            response = await charge(body.amount_cents, key, time.monotonic() + DEADLINE_S)
    except (TimeoutError, httpx.TimeoutException):
        return error(504, "payments_timeout")
    except httpx.TransportError:
        return error(503, "payments_unreachable")
    except Unavailable:
        return error(502, "payments_unavailable")
    if response.status_code == 200:
        return JSONResponse({"status": "ok", "payment": response.json()})
    return error(response.status_code, provider_error(response))


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers without touching the provider."""
    return {"status": "ok"}


def provider_error(response: httpx.Response) -> str:
    """The provider's error code, e.g. "card_declined", or a generic one."""
    try:
        payload: Any = response.json()
    except ValueError:
        return "payment_refused"
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return str(payload["error"])
    return "payment_refused"
