"""Checkout service: httpx.AsyncClient, tenacity retries, a token bucket, Redis idempotency.

A learner solution written apart from the reference: the retry loop is tenacity's
``AsyncRetrying`` with ``wait_random_exponential`` (full jitter), the retry budget is consulted
by a tenacity retry strategy, and idempotency records live in Redis as JSON under ``SET NX``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
import yaml
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, PositiveInt
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, wait_random_exponential
from tenacity.retry import retry_base


@dataclass(frozen=True)
class Settings:
    """Every number the service obeys, read from budgets.yaml."""

    api_s: float
    connect_s: float
    read_s: float
    attempts: int
    base_s: float
    cap_s: float
    ratio: float
    burst: float

    @classmethod
    def load(cls, path: Path) -> Settings:
        """Read the budget table."""
        table = yaml.safe_load(path.read_text())
        layers, retries, bucket = table["layers"], table["retries"], table["retry_budget"]
        return cls(
            api_s=float(layers["api"]["timeout_s"]),
            connect_s=float(layers["payments"]["connect_timeout_s"]),
            read_s=float(layers["payments"]["read_timeout_s"]),
            attempts=int(retries["max_attempts"]),
            base_s=float(retries["base_delay_s"]),
            cap_s=float(retries["max_delay_s"]),
            ratio=float(bucket["ratio"]),
            burst=float(bucket["burst"]),
        )


SETTINGS = Settings.load(Path(__file__).resolve().parents[1] / "budgets.yaml")
# Leave a quarter second of the api budget for writing the answer.
DEADLINE_S = SETTINGS.api_s - 0.25


class TokenBucket:
    """Retry budget: first attempts earn `ratio` tokens, a retry costs one; starts full.

    The event loop is single-threaded and no method awaits, so no lock is needed.
    """

    def __init__(self, ratio: float, burst: float) -> None:
        self.ratio = ratio
        self.burst = burst
        self.level = burst

    def earn(self) -> None:
        """Credit one first attempt."""
        self.level = min(self.burst, self.level + self.ratio)

    def spend(self) -> bool:
        """Pay for one retry if a whole token is there."""
        if self.level >= 1.0:
            self.level -= 1.0
            return True
        return False


class ProviderError(Exception):
    """The provider answered with a status worth retrying (429 or 5xx)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"provider answered {response.status_code}")
        self.response = response


class RetryWhileBudgeted(retry_base):
    """Tenacity strategy: retry transport errors and 429/5xx, while attempts and tokens last.

    Tenacity asks the retry strategy before the stop strategy, so the attempt count is checked
    here too: the last attempt must not spend a token it cannot use.
    """

    def __init__(self, bucket: TokenBucket, attempts: int) -> None:
        self.bucket = bucket
        self.attempts = attempts

    def __call__(self, retry_state: RetryCallState) -> bool:
        """Whether to try again after the attempt that just ended."""
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        error = outcome.exception()
        if not isinstance(error, httpx.TransportError | ProviderError):
            return False
        if retry_state.attempt_number >= self.attempts:
            return False
        return self.bucket.spend()


class Body(BaseModel):
    """POST /checkout's JSON."""

    amount_cents: PositiveInt


class IdempotencyStore:
    """Idempotency records in Redis: ``{"fp": ..., "done": bool, "status": ..., "body": ...}``."""

    ttl_s = 86_400

    def __init__(self, url: str) -> None:
        self.redis = aioredis.Redis.from_url(url, decode_responses=True)

    @staticmethod
    def _name(key: str) -> str:
        return f"checkout:idem:{key}"

    async def reserve(self, key: str, fp: str) -> dict[str, Any] | None:
        """Claim the key atomically; None when this request owns it now, else the record."""
        fresh = json.dumps({"fp": fp, "done": False})
        if await self.redis.set(self._name(key), fresh, nx=True, ex=self.ttl_s):
            return None
        raw = await self.redis.get(self._name(key))
        # The owner released it in between: treat as still in flight, the client may retry.
        return json.loads(raw) if raw else {"fp": fp, "done": False}

    async def finish(self, key: str, fp: str, status: int, body: dict[str, Any]) -> None:
        """Keep the final answer for repeats."""
        record = {"fp": fp, "done": True, "status": status, "body": body}
        await self.redis.set(self._name(key), json.dumps(record), ex=self.ttl_s)

    async def forget(self, key: str) -> None:
        """Drop an unfinished claim so the client can try the key again."""
        await self.redis.delete(self._name(key))

    async def close(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the provider client and the store once per process."""
    timeout = httpx.Timeout(SETTINGS.read_s, connect=SETTINGS.connect_s, pool=SETTINGS.connect_s)
    app.state.bucket = TokenBucket(SETTINGS.ratio, SETTINGS.burst)
    app.state.store = IdempotencyStore(os.environ["REDIS_URL"])
    async with httpx.AsyncClient(base_url=os.environ["PAYMENTS_URL"], timeout=timeout) as client:
        app.state.client = client
        yield
    await app.state.store.close()


app = FastAPI(lifespan=lifespan)


async def call_provider(
    client: httpx.AsyncClient, bucket: TokenBucket, amount: int, provider_key: str
) -> httpx.Response:
    """POST /charge with retries; returns the final response or raises the last error."""
    bucket.earn()
    retrying = AsyncRetrying(
        stop=stop_after_attempt(SETTINGS.attempts),
        wait=wait_random_exponential(multiplier=SETTINGS.base_s, max=SETTINGS.cap_s),
        retry=RetryWhileBudgeted(bucket, SETTINGS.attempts),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            response = await client.post(
                "/charge",
                json={"amount_cents": amount},
                headers={"Idempotency-Key": provider_key},
            )
            if response.status_code == 429 or response.status_code >= 500:
                raise ProviderError(response)
            return response
    raise RuntimeError("tenacity stopped without an outcome")


def answer(status: int, body: dict[str, Any]) -> JSONResponse:
    """A JSON response."""
    return JSONResponse(body, status_code=status)


async def charge(request: Request, amount: int, provider_key: str) -> tuple[int, dict[str, Any]]:
    """One checkout's provider call, under the whole-checkout deadline."""
    state = request.app.state
    started = time.monotonic()
    try:
        async with asyncio.timeout(DEADLINE_S):
            response = await call_provider(state.client, state.bucket, amount, provider_key)
    except TimeoutError:
        return 504, {"error": "payments_timeout", "after_s": round(time.monotonic() - started, 3)}
    except httpx.TimeoutException:
        return 504, {"error": "payments_timeout"}
    except httpx.TransportError as exc:
        return 503, {"error": "payments_unreachable", "detail": type(exc).__name__}
    except ProviderError as exc:
        return 502, {"error": "payments_failed", "provider_status": exc.response.status_code}
    if response.is_success:
        return 200, {"status": "ok", "payment": response.json()}
    try:
        detail = response.json()
    except ValueError:
        detail = {"error": "payment_refused"}
    return response.status_code, detail if isinstance(detail, dict) else {"error": str(detail)}


@app.post("/checkout")
async def checkout(
    body: Body, request: Request, idempotency_key: str | None = Header(None)
) -> JSONResponse:
    """Charge once per Idempotency-Key, answering within the api budget."""
    if not idempotency_key:
        digest = hashlib.blake2b(os.urandom(16), digest_size=12).hexdigest()
        return answer(*await charge(request, body.amount_cents, f"anon-{digest}"))
    store: IdempotencyStore = request.app.state.store
    fp = hashlib.sha256(f"amount_cents={body.amount_cents}".encode()).hexdigest()
    record = await store.reserve(idempotency_key, fp)
    if record is not None:
        if record["fp"] != fp:
            return answer(422, {"error": "idempotency_key_reused_with_another_body"})
        if not record["done"]:
            return answer(409, {"error": "request_in_progress"})
        return answer(record["status"], record["body"])
    try:
        # The provider key is derived from the client's: every attempt, and every later retry
        # of this key by the client, asks the provider for the same charge.
        status, payload = await charge(request, body.amount_cents, f"co-{idempotency_key}")
    except BaseException:
        await store.forget(idempotency_key)
        raise
    if status >= 500:
        await store.forget(idempotency_key)
    else:
        await store.finish(idempotency_key, fp, status, payload)
    return answer(status, payload)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness only: never touches the provider or Redis."""
    return {"status": "ok"}
