"""Checkout service: the naive starting point of "Make every dependency call fail fast".

POST /checkout charges the customer through the payments provider at PAYMENTS_URL.
It works while the provider is healthy. When the provider is slow, flaky or drops a
response, it does the wrong thing; the comments below say which milestone fixes each spot.
"""

import os

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

PAYMENTS_URL = os.environ.get("PAYMENTS_URL", "http://127.0.0.1:8081")

# Milestone 2: this client has no timeout policy of its own. It runs on httpx's defaults:
# 5 s to connect, 5 s between two reads, and no limit on the call as a whole, all of it
# longer than the 3 s budgets.yaml gives the api layer.
client = httpx.AsyncClient()

app = FastAPI(title="checkout")


class CheckoutRequest(BaseModel):
    """Body of POST /checkout."""

    amount_cents: int = Field(gt=0)


async def charge(amount_cents: int) -> httpx.Response:
    """Ask the provider to charge `amount_cents`, once."""
    # Milestone 3: one attempt only. A 5xx, a 429 or a timeout that a second try would
    # have got past goes straight back to the customer.
    # Milestone 5: no Idempotency-Key header is sent, so the provider can't tell a retry
    # from a new charge.
    return await client.post(f"{PAYMENTS_URL}/charge", json={"amount_cents": amount_cents})


@app.post("/checkout")
async def checkout(body: CheckoutRequest) -> JSONResponse:
    """Charge the customer and report the outcome."""
    # Milestone 2: nothing bounds this await and nothing catches what it raises. A provider
    # that holds the response keeps the customer waiting; a timeout or a reset connection
    # becomes a bare 500 instead of a quick 502/503/504 with a JSON body.
    # Milestone 5: the Idempotency-Key header of the request is ignored.
    resp = await charge(body.amount_cents)

    if resp.status_code == 200:
        return JSONResponse({"status": "ok", "payment": resp.json()})

    if 400 <= resp.status_code < 500:
        # A decline (402) or another refusal: hand it back to the customer as it is.
        # Milestone 3: a 429 lands here too, although it means "slow down", not "no".
        return JSONResponse({"error": _provider_error(resp)}, status_code=resp.status_code)

    return JSONResponse({"error": "payments_unavailable"}, status_code=502)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers without touching the provider."""
    return {"status": "ok"}


def _provider_error(resp: httpx.Response) -> str:
    """The provider's error code, e.g. "card_declined", or a generic one."""
    if resp.headers.get("content-type", "").startswith("application/json"):
        payload = resp.json()
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            return payload["error"]
    return "payment_refused"
