"""Checkout service: httpx.AsyncClient and stamina, with stamina's own additive jitter.

A learner solution written apart from the reference. stamina waits
``min(wait_max, wait_initial * wait_exp_base ** (n - 1) + uniform(0, wait_jitter))`` before
retry n; with wait_initial 0.05 s, wait_jitter 0.05 s and base 2 that is 0.05-0.1 s, then
0.1-0.15 s: inside the full-jitter bounds budgets.yaml declares (0-0.1 s, 0-0.2 s), and growing.
The retry budget is consulted by the predicate stamina calls on each failure; idempotency keys
are Redis hashes claimed with HSETNX.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as redis
import stamina
import yaml
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

BUDGETS = yaml.safe_load(Path(__file__).parent.parent.joinpath("budgets.yaml").read_text())
API_S: float = BUDGETS["layers"]["api"]["timeout_s"]
CONNECT_S: float = BUDGETS["layers"]["payments"]["connect_timeout_s"]
READ_S: float = BUDGETS["layers"]["payments"]["read_timeout_s"]
ATTEMPTS: int = BUDGETS["retries"]["max_attempts"]
CAP_S: float = BUDGETS["retries"]["max_delay_s"]
RATIO: float = BUDGETS["retry_budget"]["ratio"]
BURST: float = BUDGETS["retry_budget"]["burst"]

# stamina's waits: half the declared base, plus up to half the base of jitter. Every wait stays
# within the declared full-jitter cap for its retry, min(max_delay_s, base_delay_s * 2**(n-1)).
WAIT_INITIAL_S = BUDGETS["retries"]["base_delay_s"] / 2
WAIT_JITTER_S = BUDGETS["retries"]["base_delay_s"] / 2
WAIT_EXP_BASE = 2

DEADLINE_S = API_S - 0.3  # answer before the caller's 3 s are up, with room to spare

PAYMENTS_URL = os.environ["PAYMENTS_URL"].rstrip("/")
REDIS_URL = os.environ["REDIS_URL"]

tokens = float(BURST)  # the retry budget, shared by every request of this process


def deposit() -> None:
    """A first attempt earns RATIO tokens, up to BURST."""
    global tokens
    tokens = min(float(BURST), tokens + RATIO)


def withdraw() -> bool:
    """A retry costs one token; none left means no retry."""
    global tokens
    if tokens < 1:
        return False
    tokens -= 1
    return True


class RetryableStatus(Exception):
    """429 or 5xx from the provider."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class RetryGate:
    """stamina's ``on`` predicate for one checkout: what to retry, within attempts and budget."""

    def __init__(self) -> None:
        self.attempts_made = 0

    def __call__(self, exc: Exception) -> bool:
        """Whether the failure ``exc`` of the attempt just made may be retried."""
        if not isinstance(exc, httpx.TransportError | RetryableStatus):
            return False  # 4xx never get here as errors, and nothing else is worth a retry
        if self.attempts_made >= ATTEMPTS:
            return False  # stamina would stop anyway: do not spend a token on nothing
        return withdraw()


http: httpx.AsyncClient
kv: redis.Redis


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """One provider connection pool and one Redis pool per process."""
    global http, kv
    kv = redis.from_url(REDIS_URL)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    timeout = httpx.Timeout(connect=CONNECT_S, read=READ_S, write=READ_S, pool=CONNECT_S)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        yield
    await kv.aclose()


app = FastAPI(lifespan=lifespan)


class Order(BaseModel):
    """The checkout request."""

    amount_cents: int = Field(gt=0)


async def charge_with_retries(amount_cents: int, provider_key: str) -> httpx.Response:
    """Charge through stamina's retry loop; raises the last failure when retries end."""
    deposit()
    gate = RetryGate()
    async for attempt in stamina.retry_context(
        on=gate,
        attempts=ATTEMPTS,
        timeout=DEADLINE_S,
        wait_initial=WAIT_INITIAL_S,
        wait_jitter=WAIT_JITTER_S,
        wait_exp_base=WAIT_EXP_BASE,
        wait_max=CAP_S,
    ):
        with attempt:
            gate.attempts_made = attempt.num
            response = await http.post(
                f"{PAYMENTS_URL}/charge",
                json={"amount_cents": amount_cents},
                headers={"Idempotency-Key": provider_key},
            )
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableStatus(response.status_code)
    return response


async def pay(amount_cents: int, provider_key: str) -> tuple[int, dict[str, Any]]:
    """Status and body of the checkout's answer; never longer than DEADLINE_S."""
    try:
        response = await asyncio.wait_for(
            charge_with_retries(amount_cents, provider_key), DEADLINE_S
        )
    except (TimeoutError, httpx.TimeoutException):
        return 504, {"error": "gateway_timeout"}
    except httpx.TransportError:
        return 503, {"error": "payments_unreachable"}
    except RetryableStatus as exc:
        return 502, {"error": "bad_gateway", "provider_status": exc.status}
    if response.status_code == 200:
        return 200, {"status": "ok", "payment": response.json()}
    try:
        reason = response.json().get("error", "declined")
    except (ValueError, AttributeError):
        reason = "declined"
    return response.status_code, {"error": reason}


async def remembered(key: str, fingerprint: str) -> dict[bytes, bytes] | None:
    """Claim ``key`` (HSETNX on its hash); None if we own it now, else what it holds."""
    name = f"idempotency:{key}"
    async with kv.pipeline(transaction=True) as pipe:
        pipe.hsetnx(name, "fingerprint", fingerprint)
        pipe.expire(name, 86_400, nx=True)
        claimed, _ = await pipe.execute()
    if claimed:
        return None
    return await kv.hgetall(name)


@app.post("/checkout")
async def checkout(order: Order, idempotency_key: str | None = Header(None)) -> JSONResponse:
    """Charge once per key; repeats are answered from Redis."""
    if idempotency_key is None:
        status, body = await pay(order.amount_cents, uuid.uuid4().hex)
        return JSONResponse(body, status)
    fingerprint = hashlib.sha1(str(order.amount_cents).encode(), usedforsecurity=False).hexdigest()
    held = await remembered(idempotency_key, fingerprint)
    if held is not None:
        if held.get(b"fingerprint", fingerprint.encode()) != fingerprint.encode():
            return JSONResponse({"error": "idempotency key reused with a different body"}, 422)
        if b"status" not in held:
            return JSONResponse({"error": "a request with this key is in flight"}, 409)
        return JSONResponse(json.loads(held[b"body"]), int(held[b"status"]))
    name = f"idempotency:{idempotency_key}"
    try:
        status, body = await pay(order.amount_cents, f"idem-{idempotency_key}")
    except BaseException:
        await kv.delete(name)
        raise
    if status >= 500:
        await kv.delete(name)  # not done: let the client retry; the provider key dedupes
    else:
        await kv.hset(name, mapping={"status": status, "body": json.dumps(body)})
    return JSONResponse(body, status)


@app.get("/healthz")
async def healthz() -> JSONResponse:
    """Always quick."""
    return JSONResponse({"ok": True})
