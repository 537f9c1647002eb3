"""What the stub remembers: the journal of attempts, the ledger of charges, idempotency keys.

All times are ``time.monotonic()`` seconds. CLOCK_MONOTONIC is system-wide on Linux, so the grader
compares them with its own clock.
"""

from __future__ import annotations

import enum
import json
import random
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from reference.stub.faults import Match, RuleBook

Outcome: TypeAlias = Literal[
    "in_progress",  # the stub has not finished with it yet
    "responded",  # a whole response went out
    "client_gave_up",  # the client closed the connection before the response was complete
    "reset",  # the stub aborted the connection with an RST (the reset fault)
    "dropped",  # the stub closed without answering (lost_response, or a response it could not send)
    "held_to_limit",  # a hang fault held the request for its max_hold_ms, then closed
]


@dataclass(slots=True)
class JournalEntry:
    """One request received on the provider port; the server fills it in as the request goes."""

    seq: int
    connection_id: int
    connected_at: float
    arrived_at: float
    method: str
    path: str
    headers: dict[str, str]
    body: str
    amount_cents: int | None = None
    idempotency_key: str | None = None
    rule_id: int | None = None
    fault: dict[str, Any] | None = None
    status: int | None = None
    outcome: Outcome = "in_progress"
    response_started_at: float | None = None
    finished_at: float | None = None
    gave_up_at: float | None = None
    charge_id: str | None = None
    replayed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Render as the admin API's journal shows it."""
        return {
            "seq": self.seq,
            "connection_id": self.connection_id,
            "connected_at": self.connected_at,
            "arrived_at": self.arrived_at,
            "method": self.method,
            "path": self.path,
            "headers": dict(self.headers),
            "body": self.body,
            "amount_cents": self.amount_cents,
            "idempotency_key": self.idempotency_key,
            "rule_id": self.rule_id,
            "fault": None if self.fault is None else dict(self.fault),
            "status": self.status,
            "outcome": self.outcome,
            "response_started_at": self.response_started_at,
            "finished_at": self.finished_at,
            "gave_up_at": self.gave_up_at,
            "charge_id": self.charge_id,
            "replayed": self.replayed,
        }


class Journal:
    """Every request received on the provider port, in arrival order."""

    def __init__(self) -> None:
        self._attempts: list[JournalEntry] = []
        # Sequence numbers survive a reset, so a poller using since_seq never sees one twice.
        self._next_seq = 1

    def record(
        self,
        *,
        connection_id: int,
        connected_at: float,
        arrived_at: float,
        method: str,
        path: str,
        headers: dict[str, str],
        body: str,
    ) -> JournalEntry:
        """Open the entry of a request that has just arrived, and return it for filling in."""
        attempt = JournalEntry(
            seq=self._next_seq,
            connection_id=connection_id,
            connected_at=connected_at,
            arrived_at=arrived_at,
            method=method,
            path=path,
            headers=headers,
            body=body,
        )
        self._next_seq += 1
        self._attempts.append(attempt)
        return attempt

    def query(self, match: Match, since_seq: int | None = None) -> list[dict[str, Any]]:
        """Entries ``match`` takes and after ``since_seq``, as the admin API shows them.

        An entry without an amount (not a charge, or a body without one) passes only a match
        without bounds.
        """
        return [
            a.to_dict()
            for a in self._attempts
            if (since_seq is None or a.seq > since_seq) and match.matches(a.amount_cents)
        ]

    def clear(self) -> None:
        """Forget every entry (requests still being served keep updating their detached entry)."""
        self._attempts = []


@dataclass(frozen=True, slots=True)
class Charge:
    """A committed charge: what the customer would see on their statement."""

    id: str
    amount_cents: int
    idempotency_key: str | None
    created_at: float
    attempt_seq: int

    def to_dict(self) -> dict[str, Any]:
        """Render as the admin API's ledger shows it."""
        return {
            "id": self.id,
            "amount_cents": self.amount_cents,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at,
            "attempt_seq": self.attempt_seq,
        }

    def response_body(self) -> dict[str, Any]:
        """Render the answer for this charge, the same on a first response and on a replay."""
        return {"id": self.id, "amount_cents": self.amount_cents, "status": "succeeded"}


class Ledger:
    """Committed charges, in commit order."""

    def __init__(self) -> None:
        self._charges: list[Charge] = []

    def add(self, charge: Charge) -> None:
        """Record a committed charge."""
        self._charges.append(charge)

    def query(self, match: Match) -> list[Charge]:
        """Charges whose amount ``match`` takes."""
        return [c for c in self._charges if match.matches(c.amount_cents)]

    def clear(self) -> None:
        """Forget every charge."""
        self._charges = []


class ChargeIds:
    """Charge ids (``ch_`` + 24 hex digits) from an RNG seeded by the stub's seed: reproducible."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"{seed}:charge_ids")

    def next(self) -> str:
        """Draw a fresh charge id."""
        return f"ch_{self._rng.getrandbits(96):024x}"


def fingerprint(body: object) -> str:
    """Canonical JSON of a parsed request body: the same request, however it was spelled."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


class KeyState(enum.Enum):
    """What an Idempotency-Key means for a new request carrying it."""

    NEW = "new"  # unknown key, or no key: charge as usual
    IN_USE = "in_use"  # a request with this key is still between arrival and commit: 409
    REUSED = "reused"  # committed with another body: 422
    REPLAY = "replay"  # committed with this body: replay the first response


@dataclass(frozen=True, slots=True)
class KeyLookup:
    """The answer of ``IdempotencyStore.lookup``; ``charge`` is set for a replay."""

    state: KeyState
    charge: Charge | None = None


@dataclass(eq=False, slots=True)
class Reservation:
    """A key held by one request between its arrival on the charge path and its commit."""

    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class _Committed:
    """A key whose charge committed: the body it came with and the charge it made."""

    fingerprint: str
    charge: Charge


@dataclass(slots=True)
class IdempotencyStore:
    """Idempotency keys, Stripe-style: a key is remembered only once its charge commits."""

    _committed: dict[str, _Committed] = field(default_factory=dict)
    _reserved: dict[str, Reservation] = field(default_factory=dict)

    def lookup(self, key: str | None, body_fingerprint: str) -> KeyLookup:
        """Tell what a request with ``key`` and this body fingerprint should get."""
        if key is None:
            return KeyLookup(KeyState.NEW)
        committed = self._committed.get(key)
        if committed is not None:
            if committed.fingerprint == body_fingerprint:
                return KeyLookup(KeyState.REPLAY, committed.charge)
            return KeyLookup(KeyState.REUSED)
        if key in self._reserved:
            return KeyLookup(KeyState.IN_USE)
        return KeyLookup(KeyState.NEW)

    def reserve(self, key: str, body_fingerprint: str) -> Reservation:
        """Hold ``key`` for a request that is on its way to a commit (call after ``lookup``)."""
        reservation = Reservation(key, body_fingerprint)
        self._reserved[key] = reservation
        return reservation

    def commit(self, reservation: Reservation, charge: Charge) -> None:
        """Remember the key of a committed charge, and let go of its reservation."""
        self.release(reservation)
        self._committed[reservation.key] = _Committed(reservation.fingerprint, charge)

    def release(self, reservation: Reservation) -> None:
        """Let go of a reservation without committing (the client gave up first)."""
        # Only our own: after an admin reset another request may hold the same key by now.
        if self._reserved.get(reservation.key) is reservation:
            del self._reserved[reservation.key]

    def clear(self) -> None:
        """Forget every key, committed or reserved."""
        self._committed.clear()
        self._reserved.clear()


@dataclass(slots=True)
class StubState:
    """Everything the provider port acts on and the admin port reads or programs."""

    rules: RuleBook
    journal: Journal
    ledger: Ledger
    keys: IdempotencyStore
    charge_ids: ChargeIds

    @classmethod
    def new(cls, seed: int) -> StubState:
        """Empty state whose random draws all derive from ``seed``."""
        return cls(RuleBook(seed), Journal(), Ledger(), IdempotencyStore(), ChargeIds(seed))

    def reset(self) -> None:
        """Forget rules, journal, ledger and keys (ids and sequence numbers keep counting)."""
        self.rules.clear()
        self.journal.clear()
        self.ledger.clear()
        self.keys.clear()
