"""The provider port: ``POST /charge``, with the faults of ``faults.py`` and the course knobs.

The life of one well-formed charge attempt:

1. Idempotency conflicts answer first and consume no fault: a key still in progress gets 409,
   a key committed with another body gets 422.
2. The rules choose a fault; when none fires, FAIL_RATE may turn the attempt into a 503.
3. Faults that never charge (status, decline, reset, hang) act, after the LATENCY_MS hold.
4. Otherwise the key is reserved, the stub holds for LATENCY_MS plus any delay fault while
   watching the client (no charge if it gives up), commits the charge (or finds the one to
   replay), then answers: whole, dribbled, or not at all (lost_response).
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from reference.stub.channel import Channel, Headers, Incoming
from reference.stub.faults import (
    Decline,
    Delay,
    Dribble,
    ErrorStatus,
    Fault,
    Hang,
    LostResponse,
    Reset,
)
from reference.stub.state import (
    Charge,
    JournalEntry,
    KeyLookup,
    KeyState,
    Outcome,
    StubState,
    fingerprint,
)

# The "error" of a status fault's body: what a real provider would say for that code.
_STATUS_ERRORS = {
    400: "invalid_request",
    401: "unauthorized",
    402: "card_declined",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


class InvalidCharge(ValueError):
    """A charge request body that is not ``{"amount_cents": <int > 0>}``."""


def parse_charge(body: bytes) -> tuple[dict[str, Any], int]:
    """Parse a charge request body; return it and its amount, or raise ``InvalidCharge``."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidCharge(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidCharge('the body must be a JSON object like {"amount_cents": 1000}')
    amount = data.get("amount_cents")
    # bool is an int in Python; `true` is not an amount.
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidCharge("'amount_cents' must be an integer")
    if amount <= 0:
        raise InvalidCharge("'amount_cents' must be greater than 0")
    return data, amount


class Provider:
    """Serves the provider port against the shared stub state."""

    def __init__(self, state: StubState, *, latency_ms: int, fail_rate: float, seed: int) -> None:
        self._state = state
        self._latency_ms = latency_ms
        self._fail_rate = fail_rate
        self._fail_rng = random.Random(f"{seed}:fail_rate")

    async def handle(self, channel: Channel, request: Incoming) -> None:
        """Serve one request received on the provider port, journaling what happens to it."""
        attempt = self._state.journal.record(
            connection_id=channel.connection_id,
            connected_at=channel.connected_at,
            arrived_at=request.arrived_at,
            method=request.method,
            path=request.path,
            headers=request.headers,
            body=request.body.decode("utf-8", errors="replace"),
        )
        attempt.idempotency_key = request.headers.get("idempotency-key")
        if self._latency_ms > 0:
            attempt.fault = {"type": "latency", "delay_ms": self._latency_ms}
        if request.path != "/charge":
            error = {"error": "not_found", "message": f"no route {request.path}; try POST /charge"}
            await self._answer(channel, attempt, 404, error)
            return
        if request.method != "POST":
            error = {"error": "method_not_allowed", "message": "/charge only takes POST"}
            await self._answer(channel, attempt, 405, error, [("Allow", "POST")])
            return
        try:
            body, amount = parse_charge(request.body)
        except InvalidCharge as exc:
            await self._answer(
                channel, attempt, 400, {"error": "invalid_request", "message": str(exc)}
            )
            return
        attempt.amount_cents = amount
        await self._charge(channel, attempt, body)

    async def _charge(self, channel: Channel, attempt: JournalEntry, body: dict[str, Any]) -> None:
        """Serve a well-formed charge attempt: idempotency conflicts, then faults, then charge."""
        assert attempt.amount_cents is not None
        key, body_fingerprint = attempt.idempotency_key, fingerprint(body)
        lookup = self._state.keys.lookup(key, body_fingerprint)
        if lookup.state is KeyState.IN_USE:
            message = "a request with this Idempotency-Key is still in progress"
            error = {"error": "idempotency_key_in_use", "message": message}
            await self._answer(channel, attempt, 409, error)
            return
        if lookup.state is KeyState.REUSED:
            message = "this Idempotency-Key was used with a different request body"
            error = {"error": "idempotency_key_reuse", "message": message}
            await self._answer(channel, attempt, 422, error)
            return

        chosen = self._state.rules.select(attempt.amount_cents)
        if chosen is not None:
            attempt.rule_id, attempt.fault = chosen.rule_id, chosen.describe()
        elif self._fail_rate > 0 and self._fail_rng.random() < self._fail_rate:
            attempt.fault = {"type": "fail_rate", "rate": self._fail_rate}
            error = {"error": "unavailable", "message": "FAIL_RATE: the provider is unavailable"}
            await self._answer(channel, attempt, 503, error)
            return
        fault = None if chosen is None else chosen.fault

        if isinstance(fault, ErrorStatus):
            error = {"error": _STATUS_ERRORS.get(fault.status, f"http_{fault.status}")}
            error["message"] = f"injected status {fault.status}"
            retry_after = (
                [] if fault.retry_after_s is None else [("Retry-After", str(fault.retry_after_s))]
            )
            if await self._hold(channel, attempt, fault.delay_ms / 1000):
                await self._answer(channel, attempt, fault.status, error, retry_after)
            return
        if isinstance(fault, Decline):
            error = {"error": "card_declined", "message": "the card was declined"}
            await self._answer(channel, attempt, 402, error)
            return
        if isinstance(fault, Reset):
            if await self._hold(channel, attempt, self._latency_ms / 1000):
                channel.abort_with_rst()
                self._end(attempt, "reset")
            return
        if isinstance(fault, Hang):
            held = await self._hold(channel, attempt, self._latency_ms / 1000)
            if held and await self._hold(channel, attempt, fault.max_hold_ms / 1000):
                await channel.close()
                self._end(attempt, "held_to_limit")
            return

        delay_s = chosen.hold_ms / 1000 if chosen is not None else 0.0
        await self._charge_and_answer(channel, attempt, lookup, body_fingerprint, fault, delay_s)

    async def _charge_and_answer(
        self,
        channel: Channel,
        attempt: JournalEntry,
        lookup: KeyLookup,
        body_fingerprint: str,
        fault: Fault | None,
        delay_s: float,
    ) -> None:
        """Hold, commit the charge (or find the one to replay), then answer as ``fault`` says."""
        assert attempt.amount_cents is not None
        key = attempt.idempotency_key
        # The key is held from here to the commit, so that a concurrent request with the same
        # key during the hold gets 409, as from a real provider.
        reservation = None
        if lookup.state is KeyState.NEW and key is not None:
            reservation = self._state.keys.reserve(key, body_fingerprint)
        try:
            hold_s = self._latency_ms / 1000 + (delay_s if isinstance(fault, Delay) else 0.0)
            if not await self._hold(channel, attempt, hold_s):
                return
            if lookup.charge is not None:
                charge = lookup.charge
                attempt.replayed = True
            else:
                charge = Charge(
                    id=self._state.charge_ids.next(),
                    amount_cents=attempt.amount_cents,
                    idempotency_key=key,
                    created_at=time.monotonic(),
                    attempt_seq=attempt.seq,
                )
                self._state.ledger.add(charge)
                if reservation is not None:
                    self._state.keys.commit(reservation, charge)
            attempt.charge_id = charge.id
        finally:
            if reservation is not None:
                self._state.keys.release(reservation)

        # Stripe marks replays with this header; a client may use it, the grader does not.
        headers = [("Idempotent-Replayed", "true")] if attempt.replayed else []
        if isinstance(fault, LostResponse):
            await channel.close()
            self._end(attempt, "dropped")
        elif isinstance(fault, Dribble):
            await self._dribble(channel, attempt, charge.response_body(), fault, headers)
        else:
            await self._respond(channel, attempt, 200, charge.response_body(), headers)

    async def _answer(
        self,
        channel: Channel,
        attempt: JournalEntry,
        status: int,
        payload: dict[str, Any],
        headers: Headers = (),
    ) -> None:
        """Hold for LATENCY_MS, then send a whole response."""
        if await self._hold(channel, attempt, self._latency_ms / 1000):
            await self._respond(channel, attempt, status, payload, headers)

    async def _hold(self, channel: Channel, attempt: JournalEntry, seconds: float) -> bool:
        """Hold ``seconds`` while watching the client; False (journaled) when it gave up."""
        if await channel.watch(seconds) is None:
            return True
        self._gave_up(channel, attempt)
        return False

    async def _respond(
        self,
        channel: Channel,
        attempt: JournalEntry,
        status: int,
        payload: dict[str, Any],
        headers: Headers = (),
    ) -> None:
        """Send a whole JSON response now."""
        attempt.status = status
        attempt.response_started_at = time.monotonic()
        if await channel.send_json(status, payload, headers):
            self._end(attempt, "responded")
        else:
            self._gave_up(channel, attempt)

    async def _dribble(
        self,
        channel: Channel,
        attempt: JournalEntry,
        payload: dict[str, Any],
        fault: Dribble,
        headers: Headers,
    ) -> None:
        """Send 200 headers at once, then the body padded to ``body_bytes``, a byte at a time."""
        body = json.dumps(payload).encode("utf-8")
        # Trailing spaces keep the body valid JSON; a body_bytes below the JSON's own size is
        # rounded up, since a truncated body would be a different fault.
        body = body.ljust(fault.body_bytes, b" ")
        attempt.status = 200
        attempt.response_started_at = time.monotonic()
        if not await channel.send_head(200, len(body), headers):
            self._gave_up(channel, attempt)
            return
        for index in range(len(body)):
            if not await self._hold(channel, attempt, fault.interval_ms / 1000):
                return
            if not await channel.send_body(body[index : index + 1]):
                self._gave_up(channel, attempt)
                return
        if await channel.finish():
            self._end(attempt, "responded")
        else:
            self._gave_up(channel, attempt)

    @staticmethod
    def _gave_up(channel: Channel, attempt: JournalEntry) -> None:
        """Journal that the client went away before the stub was done."""
        attempt.gave_up_at = channel.gone_at
        Provider._end(attempt, "client_gave_up")

    @staticmethod
    def _end(attempt: JournalEntry, outcome: Outcome) -> None:
        """Journal how the attempt ended, and when."""
        attempt.outcome = outcome
        attempt.finished_at = time.monotonic()
