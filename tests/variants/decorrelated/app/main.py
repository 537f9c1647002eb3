"""Checkout service: httpx with AWS's decorrelated jitter and an exact-arithmetic retry budget.

A learner solution written apart from the reference. Waits follow "Exponential Backoff And
Jitter": ``sleep = min(cap, uniform(base, previous_sleep * 3))``, the first seeded with base, as
budgets.yaml declares (``jitter: decorrelated``). The token bucket counts in Fractions, so ten
deposits of 0.1 make exactly one token. Idempotency uses two Redis keys per client key: a lock
taken with SET NX while the charge is in flight, and the stored result once it is done.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as redis
import yaml
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictInt, field_validator

_table = yaml.safe_load((Path(__file__).parent.parent / "budgets.yaml").read_text())


@dataclass(frozen=True)
class Policy:
    """The retries section of budgets.yaml, plus the api budget they must fit."""

    attempts: int
    base_s: float
    cap_s: float
    api_s: float

    def next_sleep(self, previous_s: float) -> float:
        """Decorrelated jitter: uniform between base and three times the previous sleep."""
        return min(self.cap_s, random.uniform(self.base_s, previous_s * 3))


POLICY = Policy(
    attempts=_table["retries"]["max_attempts"],
    base_s=_table["retries"]["base_delay_s"],
    cap_s=_table["retries"]["max_delay_s"],
    api_s=_table["layers"]["api"]["timeout_s"],
)
TIMEOUTS = httpx.Timeout(
    connect=_table["layers"]["payments"]["connect_timeout_s"],
    read=_table["layers"]["payments"]["read_timeout_s"],
    write=_table["layers"]["payments"]["read_timeout_s"],
    pool=_table["layers"]["payments"]["connect_timeout_s"],
)
SAFETY_S = 0.2  # answered this long before the api budget ends


class Budget:
    """Retry budget in exact arithmetic: +ratio per first attempt (to burst), -1 per retry."""

    def __init__(self, ratio: float, burst: int) -> None:
        self.ratio = Fraction(str(ratio))
        self.burst = Fraction(burst)
        self.balance = Fraction(burst)

    def credit(self) -> None:
        """A first attempt was made."""
        self.balance = min(self.burst, self.balance + self.ratio)

    def debit(self) -> bool:
        """Take one token for a retry; False when the bucket holds less than one."""
        if self.balance >= 1:
            self.balance -= 1
            return True
        return False


budget = Budget(_table["retry_budget"]["ratio"], _table["retry_budget"]["burst"])


class Failed(Exception):
    """The provider could not be used: the status to answer and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def classify(exc: BaseException) -> Failed:
    """A transport failure as the answer it leads to."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return Failed(504, "provider timed out")
    return Failed(503, f"provider unreachable ({type(exc).__name__})")


async def post_charge(
    client: httpx.AsyncClient, amount: int, key: str, time_left: float
) -> httpx.Response:
    """One attempt, body included, cut off when the checkout's time is up."""

    async def send() -> httpx.Response:
        response = await client.post(
            "/charge", json={"amount_cents": amount}, headers={"Idempotency-Key": key}
        )
        await response.aread()
        return response

    return await asyncio.wait_for(send(), time_left)


async def charge(client: httpx.AsyncClient, amount: int, key: str) -> httpx.Response:
    """The provider's answer to pass on (2xx or 4xx), or Failed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + POLICY.api_s - SAFETY_S
    budget.credit()
    sleep_s = POLICY.base_s
    for attempt in range(1, POLICY.attempts + 1):
        try:
            response = await post_charge(client, amount, key, deadline - loop.time())
        except (httpx.TransportError, TimeoutError) as exc:
            failure = classify(exc)
        else:
            if response.status_code < 500 and response.status_code != 429:
                return response
            failure = Failed(502, f"provider answered {response.status_code}")
        if attempt == POLICY.attempts or not budget.debit():
            raise failure
        sleep_s = POLICY.next_sleep(sleep_s)
        if loop.time() + sleep_s > deadline:
            raise failure
        await asyncio.sleep(sleep_s)
    raise AssertionError("the loop returns or raises")


class CheckoutIn(BaseModel):
    """The request body."""

    model_config = ConfigDict(extra="ignore")
    amount_cents: StrictInt

    @field_validator("amount_cents")
    @classmethod
    def positive(cls, value: int) -> int:
        """Only positive amounts can be charged."""
        if value <= 0:
            raise ValueError("must be positive")
        return value


db: redis.Redis
client: httpx.AsyncClient


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Process-wide clients."""
    global db, client
    db = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    async with httpx.AsyncClient(base_url=os.environ["PAYMENTS_URL"], timeout=TIMEOUTS) as c:
        client = c
        yield
    await db.aclose()


app = FastAPI(lifespan=lifespan)


async def run_checkout(amount: int, provider_key: str) -> tuple[int, dict[str, Any]]:
    """Charge and say what to answer."""
    try:
        response = await charge(client, amount, provider_key)
    except Failed as failed:
        return failed.status, {"error": failed.reason}
    if response.status_code < 300:
        return 200, {"status": "ok", "payment": response.json()}
    try:
        detail = response.json()
    except ValueError:
        detail = None
    reason = detail.get("error") if isinstance(detail, dict) else None
    return response.status_code, {"error": reason or "rejected by the provider"}


TTL_S = 24 * 60 * 60


@app.post("/checkout")
async def checkout(
    order: CheckoutIn, idempotency_key: str | None = Header(default=None)
) -> JSONResponse:
    """Charge once per Idempotency-Key; a retry of a key gets the stored answer."""
    if idempotency_key is None:
        status, body = await run_checkout(order.amount_cents, str(uuid.uuid4()))
        return JSONResponse(body, status)
    fp = hashlib.md5(order.model_dump_json().encode(), usedforsecurity=False).hexdigest()
    lock, result = f"lock:{idempotency_key}", f"result:{idempotency_key}"

    async def stored() -> JSONResponse | None:
        raw = await db.get(result)
        if raw is None:
            return None
        saved = json.loads(raw)
        if saved["fp"] != fp:
            return JSONResponse({"error": "Idempotency-Key reused with another body"}, 422)
        return JSONResponse(saved["body"], saved["status"])

    if (replay := await stored()) is not None:
        return replay
    if not await db.set(lock, fp, nx=True, ex=60):
        if (replay := await stored()) is not None:
            return replay
        if await db.get(lock) not in (fp, None):
            return JSONResponse({"error": "Idempotency-Key reused with another body"}, 422)
        return JSONResponse({"error": "a request with this Idempotency-Key is in flight"}, 409)
    try:
        # The result may have landed between the first look and the lock: look again.
        if (replay := await stored()) is not None:
            return replay
        status, body = await run_checkout(order.amount_cents, f"pay-{idempotency_key}")
        if status < 500:
            record = json.dumps({"fp": fp, "status": status, "body": body})
            await db.set(result, record, ex=TTL_S)
    finally:
        await db.delete(lock)
    return JSONResponse(body, status)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness."""
    return {"status": "up"}
