"""The admin API of a real stub process: rules, journal, ledger, reset, info."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.stub._support import Stub


def test_rules_can_be_added_listed_and_deleted(stub: Stub, client: httpx.Client) -> None:
    """POST /faults returns ids; GET lists rules with counters; DELETE removes them."""
    first = stub.add_rule({"type": "decline"}, match={"amount_cents": 9001})
    second = stub.add_rule({"type": "reset"}, match={"amount_cents": 9002})
    client.post("/charge", json={"amount_cents": 9001})
    listed = stub.admin("GET", "/faults").json()["faults"]
    assert [r["id"] for r in listed] == [first, second]
    assert listed[0] == {
        "id": first,
        "match": {"amount_cents": 9001},
        "fault": {"type": "decline"},
        "first_n": None,
        "rate": None,
        "times": None,
        "matched": 1,
        "fired": 1,
    }
    assert stub.admin("DELETE", f"/faults/{first}").json() == {"deleted": 1}
    assert stub.admin("DELETE", f"/faults/{first}").status_code == 404
    assert stub.admin("DELETE", "/faults").json() == {"deleted": 1}
    assert stub.admin("GET", "/faults").json() == {"faults": []}


@pytest.mark.parametrize(
    "rule",
    [{"fault": {"type": "explode"}}, {"fault": {"type": "decline"}, "oops": 1}, "not json"],
)
def test_invalid_rules_are_400(stub: Stub, rule: object) -> None:
    """A rule the stub cannot use is refused with a message, and not added."""
    if isinstance(rule, str):
        response = stub.admin("POST", "/faults", content=rule.encode())
    else:
        response = stub.admin("POST", "/faults", json=rule)
    assert response.status_code == 400
    assert response.json()["message"]
    assert stub.admin("GET", "/faults").json() == {"faults": []}


def test_journal_filters_by_amount_and_seq(stub: Stub, client: httpx.Client) -> None:
    """The journal filters on inclusive amount bounds and on since_seq."""
    for amount in (10, 20, 30):
        client.post("/charge", json={"amount_cents": amount})
    client.post("/charge", content=b"bad")
    everything = stub.journal()
    assert [a["amount_cents"] for a in everything] == [10, 20, 30, None]
    assert [a["amount_cents"] for a in stub.journal(amount_min=20, amount_max=30)] == [20, 30]
    since = everything[1]["seq"]
    assert [a["amount_cents"] for a in stub.journal(since_seq=since)] == [30, None]
    assert stub.admin("GET", "/journal", params={"since_seq": "x"}).status_code == 400


def test_journal_clock_is_the_system_monotonic_clock(stub: Stub) -> None:
    """The journal's "now" is comparable with the test's own time.monotonic()."""
    before = time.monotonic()
    now = stub.admin("GET", "/journal").json()["now"]
    assert before - 0.01 <= now <= time.monotonic() + 0.01


def test_ledger_filters_by_amount(stub: Stub, client: httpx.Client) -> None:
    """The ledger lists committed charges within inclusive amount bounds."""
    for amount in (10, 20, 30):
        client.post(
            "/charge", json={"amount_cents": amount}, headers={"Idempotency-Key": str(amount)}
        )
    charges = stub.ledger(amount_max=20)
    assert [c["amount_cents"] for c in charges] == [10, 20]
    assert set(charges[0]) == {"id", "amount_cents", "idempotency_key", "created_at", "attempt_seq"}
    assert charges[0]["idempotency_key"] == "10"


def test_reset_forgets_everything(stub: Stub, client: httpx.Client) -> None:
    """POST /reset clears rules, journal, ledger and idempotency keys."""
    stub.add_rule({"type": "decline"}, match={"amount_cents": 2})
    client.post("/charge", json={"amount_cents": 1}, headers={"Idempotency-Key": "r"})
    assert stub.admin("POST", "/reset").json() == {"reset": True}
    assert stub.journal() == [] and stub.ledger() == []
    assert stub.admin("GET", "/faults").json() == {"faults": []}
    # The key is forgotten too: another body with it is a new charge, not a 422.
    again = client.post("/charge", json={"amount_cents": 2}, headers={"Idempotency-Key": "r"})
    assert again.status_code == 200


def test_info_describes_the_stub(stub: Stub) -> None:
    """GET /info shows the ports, the knobs and the stub's clock."""
    info = stub.admin("GET", "/info").json()
    assert info["port"] == stub.port and info["admin_port"] == stub.admin_port
    assert info["connect_hang_port"] == stub.connect_hang_port
    assert info["connect_hang_full"] is True
    assert (info["latency_ms"], info["fail_rate"], info["seed"]) == (0, 0.0, 0)
    assert info["pid"] == stub.proc.pid and isinstance(info["now"], float)


def test_unknown_admin_routes(stub: Stub) -> None:
    """Unknown admin paths are 404 and wrong methods 405, as JSON."""
    assert stub.admin("GET", "/nope").status_code == 404
    assert stub.admin("GET", "/reset").status_code == 405
    assert stub.admin("PUT", "/faults/1").status_code == 405
