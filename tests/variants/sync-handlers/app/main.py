"""Checkout service with plain ``def`` handlers: FastAPI runs each one in its threadpool.

A learner solution written apart from the reference, synchronous throughout: a shared
``httpx.Client``, ``time.sleep`` between attempts (full jitter), a token bucket behind a
``threading.Lock``, and the synchronous Redis client for idempotency keys.

Two things a synchronous service must do by hand:
- httpx's sync client has no overall deadline, so each attempt gets timeouts no longer than the
  time the checkout has left, and its body is read in chunks with the deadline checked between
  them: a provider trickling its body cannot stretch the checkout.
- Every stuck checkout holds a worker thread. anyio's default limit is 40 threads, shared by
  every sync handler, /healthz included: 40 slow checkouts would starve it. The limit is raised
  at startup to far more than the api budget times the expected request rate.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import redis
import yaml
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

CONFIG = yaml.safe_load(Path(__file__).resolve().parent.parent.joinpath("budgets.yaml").read_text())
CONNECT_S = CONFIG["layers"]["payments"]["connect_timeout_s"]
READ_S = CONFIG["layers"]["payments"]["read_timeout_s"]
DEADLINE_S = CONFIG["layers"]["api"]["timeout_s"] - 0.25
MAX_ATTEMPTS = CONFIG["retries"]["max_attempts"]
BASE_S = CONFIG["retries"]["base_delay_s"]
CAP_S = CONFIG["retries"]["max_delay_s"]
WORKER_THREADS = 200
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
KEY_TTL_S = 86_400


class LockedBucket:
    """The retry budget, shared by every worker thread."""

    def __init__(self, ratio: float, burst: int) -> None:
        self._lock = threading.Lock()
        self._ratio = ratio
        self._burst = float(burst)
        self._tokens = float(burst)

    def add(self) -> None:
        """A first attempt adds `ratio` tokens."""
        with self._lock:
            self._tokens = min(self._burst, self._tokens + self._ratio)

    def take(self) -> bool:
        """A retry takes one token, if there is one."""
        with self._lock:
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True


bucket = LockedBucket(CONFIG["retry_budget"]["ratio"], CONFIG["retry_budget"]["burst"])
payments = httpx.Client(
    base_url=os.environ["PAYMENTS_URL"],
    limits=httpx.Limits(max_connections=WORKER_THREADS, max_keepalive_connections=50),
)
store = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


class DeadlineExceeded(Exception):
    """The checkout's time ran out."""


class ProviderDown(Exception):
    """The provider answered 429 or 5xx."""


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Give the threadpool room for stuck checkouts and /healthz; close clients on exit."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
    yield
    payments.close()
    store.close()


app = FastAPI(lifespan=lifespan)


def one_attempt(amount: int, key: str, deadline: float) -> tuple[int, bytes]:
    """POST /charge once, with no timeout past ``deadline``; status and raw body."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded
    timeout = httpx.Timeout(
        connect=min(CONNECT_S, left),
        read=min(READ_S, left),
        write=min(READ_S, left),
        pool=min(CONNECT_S, left),
    )
    chunks = []
    with payments.stream(
        "POST",
        "/charge",
        json={"amount_cents": amount},
        headers={"Idempotency-Key": key},
        timeout=timeout,
    ) as response:
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise DeadlineExceeded  # leaving the block closes the connection
    return response.status_code, b"".join(chunks)


def full_jitter(retry: int) -> float:
    """Wait before retry ``retry``: uniform(0, min(cap, base * 2 ** (retry - 1)))."""
    return random.uniform(0.0, min(CAP_S, BASE_S * 2 ** (retry - 1)))


def charge(amount: int, key: str) -> tuple[int, bytes]:
    """The provider's answer after the retries the policy and the budget allow."""
    deadline = time.monotonic() + DEADLINE_S
    bucket.add()
    attempt = 1
    while True:
        try:
            status, raw = one_attempt(amount, key, deadline)
            if status not in RETRY_STATUSES:
                return status, raw
            error: Exception = ProviderDown(status)
        except httpx.TransportError as exc:
            error = exc
        if attempt >= MAX_ATTEMPTS or not bucket.take():
            raise error
        pause = full_jitter(attempt)
        if time.monotonic() + pause >= deadline:
            raise error
        time.sleep(pause)
        attempt += 1


def outcome(amount: int, provider_key: str) -> tuple[int, dict[str, Any]]:
    """(status, body) for the client."""
    try:
        status, raw = charge(amount, provider_key)
    except (DeadlineExceeded, httpx.TimeoutException):
        return 504, {"error": "payments provider too slow"}
    except httpx.TransportError:
        return 503, {"error": "payments provider unreachable"}
    except ProviderDown as down:
        return 502, {"error": f"payments provider failing ({down.args[0]})"}
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if status == 200:
        return 200, {"status": "ok", "payment": body}
    error = body.get("error") if isinstance(body, dict) else None
    return status, {"error": error or "payment refused"}


class Purchase(BaseModel):
    """POST /checkout's body."""

    amount_cents: int = Field(gt=0)


@app.post("/checkout")
def checkout(
    purchase: Purchase, idempotency_key: str | None = Header(default=None)
) -> JSONResponse:
    """Charge once per Idempotency-Key; runs in a worker thread."""
    if idempotency_key is None:
        status, body = outcome(purchase.amount_cents, f"anon-{uuid.uuid4()}")
        return JSONResponse(body, status_code=status)
    name = "idem:" + hashlib.sha256(idempotency_key.encode()).hexdigest()
    digest = hashlib.sha256(purchase.model_dump_json().encode()).hexdigest()
    claim = json.dumps({"digest": digest})
    if not store.set(name, claim, nx=True, ex=KEY_TTL_S):
        record = json.loads(store.get(name) or claim)
        if record["digest"] != digest:
            return JSONResponse({"error": "key reused for another request"}, status_code=422)
        if "status" not in record:
            return JSONResponse({"error": "request with this key in flight"}, status_code=409)
        return JSONResponse(record["body"], status_code=record["status"])
    try:
        status, body = outcome(purchase.amount_cents, f"checkout-{idempotency_key}")
    except BaseException:
        store.delete(name)
        raise
    if status >= 500:
        store.delete(name)
    else:
        record = {"digest": digest, "status": status, "body": body}
        store.set(name, json.dumps(record), ex=KEY_TTL_S)
    return JSONResponse(body, status_code=status)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness; a plain def too, so it needs a free worker thread."""
    return {"status": "ok"}
