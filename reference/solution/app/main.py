"""Checkout service, reference solution of "Make every dependency call fail fast".

Every number comes from budgets.yaml, the table the grader holds this service to:
- the provider call has a connect and a read timeout (milestone 2),
- the whole checkout has a deadline inside the api budget, so neither retries nor a provider
  that trickles its body can stretch it (milestone 2),
- failed attempts are retried with capped exponential backoff and full jitter, never a decline
  (milestone 3),
- retries draw on a token bucket shared by the whole process, so an outage is not amplified
  (milestone 4),
- a client's Idempotency-Key is claimed atomically in Redis before the provider is called, and
  the response stored under it, so a repeat on any instance is answered from the store; the
  provider gets one key per checkout on every attempt, so a retry after a lost response cannot
  charge twice (milestone 5).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
import redis.asyncio as aioredis
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
REDIS_URL = os.environ.get("REDIS_URL")


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


class Store(Protocol):
    """Responses by Idempotency-Key: claimed before the charge, completed after it."""

    async def claim(self, key: str, fingerprint: str) -> dict[str, Any] | None:
        """Reserve `key` for this request; None if it was free, else what it holds."""

    async def peek(self, key: str) -> dict[str, Any] | None:
        """What `key` holds, without claiming it."""

    async def complete(self, key: str, record: dict[str, Any]) -> None:
        """Store the final response under `key`."""

    async def release(self, key: str) -> None:
        """Free `key` so that the client may retry it (the checkout did not complete)."""


class RedisStore:
    """The store every instance of the API shares: SET NX makes the claim atomic."""

    TTL_S = 24 * 3600

    def __init__(self, url: str) -> None:
        self.redis = aioredis.from_url(url, decode_responses=True)

    async def claim(self, key: str, fingerprint: str) -> dict[str, Any] | None:
        record = json.dumps({"state": "in_flight", "fingerprint": fingerprint})
        if await self.redis.set(f"idem:{key}", record, nx=True, ex=self.TTL_S):
            return None
        return await self.peek(key) or {"state": "in_flight", "fingerprint": fingerprint}

    async def peek(self, key: str) -> dict[str, Any] | None:
        stored = await self.redis.get(f"idem:{key}")
        return None if stored is None else dict(json.loads(stored))

    async def complete(self, key: str, record: dict[str, Any]) -> None:
        await self.redis.set(f"idem:{key}", json.dumps(record), ex=self.TTL_S)

    async def release(self, key: str) -> None:
        await self.redis.delete(f"idem:{key}")


class MemoryStore:
    """Without REDIS_URL: one process only, so a retry on another instance is not covered."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    async def claim(self, key: str, fingerprint: str) -> dict[str, Any] | None:
        if key in self.records:
            return self.records[key]
        self.records[key] = {"state": "in_flight", "fingerprint": fingerprint}
        return None

    async def peek(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    async def complete(self, key: str, record: dict[str, Any]) -> None:
        self.records[key] = record

    async def release(self, key: str) -> None:
        self.records.pop(key, None)


budget = RetryBudget(BUCKET["ratio"], BUCKET["burst"])
store: Store = RedisStore(REDIS_URL) if REDIS_URL else MemoryStore()
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


def error(status: int, code: str) -> tuple[int, dict[str, Any]]:
    """A JSON error answer."""
    return status, {"error": code}


async def settle(amount_cents: int, provider_key: str) -> tuple[int, dict[str, Any]]:
    """Charge within the api budget; the status and body to answer with."""
    try:
        async with asyncio.timeout(DEADLINE_S):
            response = await charge(amount_cents, provider_key, time.monotonic() + DEADLINE_S)
    except (TimeoutError, httpx.TimeoutException):
        return error(504, "payments_timeout")
    except httpx.TransportError:
        return error(503, "payments_unreachable")
    except Unavailable:
        return error(502, "payments_unavailable")
    if response.status_code == 200:
        return 200, {"status": "ok", "payment": response.json()}
    return error(response.status_code, provider_error(response))


def fingerprint(body: CheckoutRequest) -> str:
    """What makes two requests with one key the same request."""
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


@app.post("/checkout")
async def checkout(
    body: CheckoutRequest, idempotency_key: str | None = Header(default=None)
) -> JSONResponse:
    """Charge the customer once per Idempotency-Key, within the api budget."""
    if idempotency_key is None:
        status, payload = await settle(body.amount_cents, str(uuid.uuid4()))
        return JSONResponse(payload, status_code=status)
    print_ = fingerprint(body)
    existing = await store.claim(idempotency_key, print_)
    if existing is not None:
        if existing["fingerprint"] != print_:
            status, payload = error(422, "idempotency_key_reuse")
        elif existing["state"] == "in_flight":
            status, payload = error(409, "idempotency_key_in_use")
        else:
            status, payload = existing["status"], existing["body"]
        return JSONResponse(payload, status_code=status)
    provider_key = f"checkout:{idempotency_key}"
    try:
        status, payload = await settle(body.amount_cents, provider_key)
    except BaseException:
        await store.release(idempotency_key)
        raise
    if status < 500:
        record = {"state": "done", "fingerprint": print_, "status": status, "body": payload}
        await store.complete(idempotency_key, record)
    else:
        # Not completed: the client may retry the key, and the provider key replays any charge.
        await store.release(idempotency_key)
    return JSONResponse(payload, status_code=status)


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
