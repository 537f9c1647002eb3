"""Journal, ledger, idempotency store and request parsing: pure logic, no sockets."""

from __future__ import annotations

import pytest

from reference.stub.faults import Match
from reference.stub.provider import InvalidCharge, parse_charge
from reference.stub.state import (
    Charge,
    ChargeIds,
    IdempotencyStore,
    Journal,
    JournalEntry,
    KeyState,
    Ledger,
    fingerprint,
)


def charge(amount: int = 100, key: str | None = "k") -> Charge:
    """Build a committed charge."""
    return Charge("ch_x", amount, key, 1.0, 1)


def record(journal: Journal, body: str = "{}") -> JournalEntry:
    """Journal an arbitrary request."""
    return journal.record(
        connection_id=1,
        connected_at=0.0,
        arrived_at=0.0,
        method="POST",
        path="/charge",
        headers={},
        body=body,
    )


def test_keys_commit_replay_and_reuse() -> None:
    """A committed key replays for the same body and is a reuse for another body."""
    store = IdempotencyStore()
    assert store.lookup("k", "a").state is KeyState.NEW
    reservation = store.reserve("k", "a")
    assert store.lookup("k", "a").state is KeyState.IN_USE
    store.commit(reservation, charge())
    replay = store.lookup("k", "a")
    assert replay.state is KeyState.REPLAY and replay.charge == charge()
    assert store.lookup("k", "b").state is KeyState.REUSED
    assert store.lookup(None, "a").state is KeyState.NEW


def test_released_keys_are_forgotten() -> None:
    """A key whose request never committed is not remembered at all."""
    store = IdempotencyStore()
    store.release(store.reserve("k", "a"))
    assert store.lookup("k", "b").state is KeyState.NEW


def test_release_leaves_a_newer_reservation_alone() -> None:
    """After a reset, an old request releasing its key does not free a newer holder's."""
    store = IdempotencyStore()
    old = store.reserve("k", "a")
    store.clear()
    store.reserve("k", "a")
    store.release(old)
    assert store.lookup("k", "a").state is KeyState.IN_USE


def test_fingerprint_ignores_spelling() -> None:
    """Key order and whitespace do not change a body's fingerprint; values do."""
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_journal_filters_and_sequence_numbers() -> None:
    """Amount bounds skip attempts without an amount; seq keeps counting after a clear."""
    journal = Journal()
    record(journal)
    record(journal).amount_cents = 50
    assert [a["seq"] for a in journal.query(Match(amount_min=10))] == [2]
    assert [a["seq"] for a in journal.query(Match(), since_seq=1)] == [2]
    journal.clear()
    record(journal)
    assert [a["seq"] for a in journal.query(Match())] == [3]


def test_ledger_filters_with_the_rule_matcher() -> None:
    """The ledger's amount filter is a fault rule's Match, bounds inclusive."""
    ledger = Ledger()
    for amount in (9, 10, 20, 21):
        ledger.add(charge(amount))
    assert [c.amount_cents for c in ledger.query(Match.within(range(10, 21)))] == [10, 20]
    assert len(ledger.query(Match())) == 4


def test_charge_ids_are_reproducible() -> None:
    """Charge ids are ch_ plus 24 hex digits, the same sequence for the same seed."""
    first, again, other = ChargeIds(1), ChargeIds(1), ChargeIds(2)
    ids = [first.next() for _ in range(3)]
    assert ids == [again.next() for _ in range(3)]
    assert ids[0] != other.next()
    assert all(len(i) == 27 and i.startswith("ch_") and int(i[3:], 16) >= 0 for i in ids)


@pytest.mark.parametrize(
    "body",
    [
        b"nope",
        b"[1]",
        b"{}",
        b'{"amount_cents": "5"}',
        b'{"amount_cents": 0}',
        b'{"amount_cents": true}',
        b'{"amount_cents": 1.5}',
        b"\xff",
    ],
)
def test_invalid_charge_bodies(body: bytes) -> None:
    """Only a JSON object with an integer amount_cents above 0 is a charge."""
    with pytest.raises(InvalidCharge):
        parse_charge(body)


def test_valid_charge_body() -> None:
    """A valid body parses to itself and its amount."""
    assert parse_charge(b'{"amount_cents": 250, "x": 1}') == ({"amount_cents": 250, "x": 1}, 250)
