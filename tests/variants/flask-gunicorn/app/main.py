"""Checkout service on Flask, served by the threads of one gunicorn worker (see failfast.yaml).

A learner solution written apart from the reference, synchronous throughout like the
`sync-handlers` variant (whose provider logic it shares): a shared ``httpx.Client``,
``time.sleep`` between attempts (full jitter), a token bucket behind a ``threading.Lock``, and the
synchronous Redis client for idempotency keys.

What a threaded WSGI server means for it: every stuck checkout holds one of gunicorn's threads,
and /healthz needs a free one too. With 32 threads, the 20 checkouts m2.healthz-under-load holds
leave 12 free; with 16 (tests/e2e/test_load_held.py), the last 4 checkouts and every /healthz
wait in gunicorn's queue until a checkout gives up: the check must fail that.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml
from flask import Flask, Response, request

CONFIG = yaml.safe_load(Path(__file__).resolve().parent.parent.joinpath("budgets.yaml").read_text())
CONNECT_S = CONFIG["layers"]["payments"]["connect_timeout_s"]
READ_S = CONFIG["layers"]["payments"]["read_timeout_s"]
DEADLINE_S = CONFIG["layers"]["api"]["timeout_s"] - 0.25
MAX_ATTEMPTS = CONFIG["retries"]["max_attempts"]
BASE_S = CONFIG["retries"]["base_delay_s"]
CAP_S = CONFIG["retries"]["max_delay_s"]
CONNECTIONS = 64  # more than gunicorn's threads: the pool never makes a checkout wait
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
    limits=httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=32),
)
store = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


class DeadlineExceeded(Exception):
    """The checkout's time ran out."""


class ProviderDown(Exception):
    """The provider answered 429 or 5xx."""


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


app = Flask(__name__)


def answer(body: dict[str, Any], status: int) -> Response:
    """A JSON answer."""
    return Response(json.dumps(body), status=status, mimetype="application/json")


@app.post("/checkout")
def checkout() -> Response:
    """Charge once per Idempotency-Key; runs in one of gunicorn's threads."""
    purchase = request.get_json(silent=True)
    amount = purchase.get("amount_cents") if isinstance(purchase, dict) else None
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        return answer({"error": "amount_cents must be a positive integer"}, 422)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is None:
        status, body = outcome(amount, f"anon-{uuid.uuid4()}")
        return answer(body, status)
    name = "idem:" + hashlib.sha256(idempotency_key.encode()).hexdigest()
    digest = hashlib.sha256(json.dumps({"amount_cents": amount}).encode()).hexdigest()
    claim = json.dumps({"digest": digest})
    if not store.set(name, claim, nx=True, ex=KEY_TTL_S):
        record = json.loads(store.get(name) or claim)
        if record["digest"] != digest:
            return answer({"error": "key reused for another request"}, 422)
        if "status" not in record:
            return answer({"error": "request with this key in flight"}, 409)
        return answer(record["body"], record["status"])
    try:
        status, body = outcome(amount, f"checkout-{idempotency_key}")
    except BaseException:
        store.delete(name)
        raise
    if status >= 500:
        store.delete(name)
    else:
        record = {"digest": digest, "status": status, "body": body}
        store.set(name, json.dumps(record), ex=KEY_TTL_S)
    return answer(body, status)


@app.get("/healthz")
def healthz() -> Response:
    """Liveness; needs a free gunicorn thread like any request."""
    return answer({"status": "ok"}, 200)
