"""Checkout service: aiohttp client, a hand-rolled retry loop with equal jitter.

A learner solution written apart from the reference. Each provider attempt runs under an
``aiohttp.ClientTimeout`` (connect, per-read and total); the loop waits
``cap / 2 + uniform(0, cap / 2)`` before retry n, cap = min(max_delay_s, base * 2 ** (n - 1)),
as budgets.yaml declares (``jitter: equal``); a token bucket guarded by nothing but the event
loop rations retries; idempotency keys are claimed in Redis by a Lua script.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

with open(Path(__file__).resolve().parent.parent / "budgets.yaml") as table_file:
    TABLE: dict[str, Any] = yaml.safe_load(table_file)

LAYERS = TABLE["layers"]
POLICY = TABLE["retries"]
ALLOWANCE = TABLE["retry_budget"]
CHECKOUT_BUDGET_S = LAYERS["api"]["timeout_s"] - 0.25

RETRY_ON = frozenset({408, 425, 429, 500, 502, 503, 504})
# Claim a key, or read what it holds, in one round trip: nothing can slip in between.
CLAIM = """
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return false
"""


class Allowance:
    """Retry budget as a token bucket: deposits of `ratio` per first attempt, 1 per retry."""

    def __init__(self, ratio: float, burst: int) -> None:
        self._ratio = ratio
        self._burst = float(burst)
        self._tokens = float(burst)

    def first_attempt(self) -> None:
        """Deposit for a first attempt."""
        self._tokens = min(self._burst, self._tokens + self._ratio)

    def may_retry(self) -> bool:
        """Withdraw a token for a retry, if one is left."""
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def equal_jitter(retry: int) -> float:
    """Seconds to wait before retry ``retry`` (1-based): half the cap fixed, half random."""
    cap = min(POLICY["max_delay_s"], POLICY["base_delay_s"] * 2 ** (retry - 1))
    return cap / 2 + random.uniform(0, cap / 2)


class Outcome(Exception):
    """Why the provider call ended without an answer to pass on."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


class Services:
    """What the process holds open: the provider session, Redis, the retry budget."""

    session: aiohttp.ClientSession
    redis: Redis
    claim: Any
    allowance: Allowance


services = Services()


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Open and close the process-wide clients."""
    services.allowance = Allowance(ALLOWANCE["ratio"], ALLOWANCE["burst"])
    services.redis = Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    services.claim = services.redis.register_script(CLAIM)
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(
        base_url=os.environ["PAYMENTS_URL"], connector=connector
    ) as services.session:
        yield
    await services.redis.aclose()


app = FastAPI(lifespan=lifespan)


async def attempt(amount: int, key: str, remaining: float) -> tuple[int, Any]:
    """One POST /charge, its body read, all within ``remaining`` seconds."""
    timeout = aiohttp.ClientTimeout(
        total=remaining,
        sock_connect=LAYERS["payments"]["connect_timeout_s"],
        sock_read=LAYERS["payments"]["read_timeout_s"],
    )
    async with services.session.post(
        "/charge", json={"amount_cents": amount}, headers={"Idempotency-Key": key}, timeout=timeout
    ) as response:
        raw = await response.read()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, None


async def charge(amount: int, key: str) -> tuple[int, Any]:
    """The provider's final (status, body): retried as the policy and the budget allow.

    Raises Outcome when no attempt produced an answer worth passing on.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CHECKOUT_BUDGET_S
    services.allowance.first_attempt()
    retry = 0
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise Outcome(504, "checkout_deadline_exceeded")
        try:
            status, body = await attempt(amount, key, remaining)
        except TimeoutError:
            failure = Outcome(504, "payments_timeout")
        except aiohttp.ClientError:
            failure = Outcome(503, "payments_connection_failed")
        else:
            if status not in RETRY_ON:
                return status, body
            failure = Outcome(502, f"payments_status_{status}")
        retry += 1
        if retry >= POLICY["max_attempts"] or not services.allowance.may_retry():
            raise failure
        pause = equal_jitter(retry)
        if loop.time() + pause >= deadline:
            raise failure
        await asyncio.sleep(pause)


async def settle(amount: int, provider_key: str) -> tuple[int, dict[str, Any]]:
    """What to answer the client."""
    try:
        async with asyncio.timeout(CHECKOUT_BUDGET_S + 0.05):  # belt and braces
            status, body = await charge(amount, provider_key)
    except Outcome as outcome:
        return outcome.status, {"error": outcome.code}
    except TimeoutError:
        return 504, {"error": "checkout_deadline_exceeded"}
    if status == 200 and isinstance(body, dict):
        return 200, {"status": "ok", "payment": body}
    if 400 <= status < 500:
        code = body.get("error") if isinstance(body, dict) else None
        return status, {"error": code or "payment_rejected"}
    return 502, {"error": f"unexpected_provider_status_{status}"}


def parse_amount(payload: Any) -> int | None:
    """amount_cents of a valid body, else None."""
    if not isinstance(payload, dict):
        return None
    amount = payload.get("amount_cents")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return None
    return amount


@app.post("/checkout")
async def checkout(request: Request) -> JSONResponse:
    """POST /checkout: charge once per Idempotency-Key, within the api budget."""
    try:
        amount = parse_amount(await request.json())
    except ValueError:
        amount = None
    if amount is None:
        return JSONResponse({"error": "amount_cents must be a positive integer"}, 422)
    client_key = request.headers.get("idempotency-key")
    if client_key is None:
        status, body = await settle(amount, "once-" + secrets.token_hex(12))
        return JSONResponse(body, status)
    slot = f"idem:v1:{client_key}"
    pending = json.dumps({"amount": amount, "state": "pending"})
    held = await services.claim(keys=[slot], args=[pending, 86_400])
    if held:
        record = json.loads(held)
        if record["amount"] != amount:
            return JSONResponse({"error": "idempotency_key_reused"}, 422)
        if record["state"] == "pending":
            return JSONResponse({"error": "idempotency_key_in_flight"}, 409)
        return JSONResponse(record["body"], record["status"])
    try:
        status, body = await settle(amount, "ck_" + client_key)
    except BaseException:
        await services.redis.delete(slot)
        raise
    if status >= 500:
        await services.redis.delete(slot)  # unfinished: the key may be retried
    else:
        done = {"amount": amount, "state": "done", "status": status, "body": body}
        await services.redis.set(slot, json.dumps(done), ex=86_400)
    return JSONResponse(body, status)


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    """Liveness."""
    return {"ok": True}
