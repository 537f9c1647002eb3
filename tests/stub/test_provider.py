"""The provider port of a real stub process: charges, errors, keep-alive, idempotency."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import httpx
import pytest

from tests.stub._support import Stub


def test_plain_charge(stub: Stub, client: httpx.Client) -> None:
    """A valid charge answers 200 with a charge object, and lands in journal and ledger."""
    response = client.post("/charge", json={"amount_cents": 1234})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert re.fullmatch(r"ch_[0-9a-f]{24}", body["id"])
    assert body == {"id": body["id"], "amount_cents": 1234, "status": "succeeded"}
    [charge] = stub.ledger()
    assert charge["id"] == body["id"] and charge["amount_cents"] == 1234
    [attempt] = stub.journal()
    assert attempt["seq"] == charge["attempt_seq"]
    assert attempt["outcome"] == "responded" and attempt["status"] == 200
    assert attempt["charge_id"] == body["id"] and attempt["fault"] is None
    assert attempt["headers"]["content-type"] == "application/json"
    assert attempt["connected_at"] <= attempt["arrived_at"] <= attempt["response_started_at"]
    assert attempt["response_started_at"] <= attempt["finished_at"] <= time.monotonic()


@pytest.mark.parametrize(
    "content", [b"nope", b"[]", b"{}", b'{"amount_cents": "5"}', b'{"amount_cents": 0}']
)
def test_bad_body_is_400(stub: Stub, client: httpx.Client, content: bytes) -> None:
    """A body that is not a valid charge gets 400 invalid_request and no charge."""
    response = client.post("/charge", content=content)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert stub.ledger() == []
    [attempt] = stub.journal()
    assert attempt["body"] == content.decode() and attempt["amount_cents"] is None


def test_other_routes_are_json_404_and_405(client: httpx.Client) -> None:
    """Unknown paths get 404, other methods on /charge get 405, both as JSON."""
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = client.get("/charge")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.headers["content-type"] == "application/json"


def test_keep_alive_reuses_the_connection(stub: Stub, client: httpx.Client) -> None:
    """Several requests travel on one HTTP/1.1 connection."""
    for amount in (1, 2, 3):
        assert client.post("/charge", json={"amount_cents": amount}).status_code == 200
    assert len({a["connection_id"] for a in stub.journal()}) == 1


def test_protocol_error_is_400_then_close(stub: Stub) -> None:
    """A request h11 cannot parse gets a 400 and the connection is closed."""
    with socket.create_connection((stub.host, stub.port), timeout=2) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert received.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in received.lower()


def test_same_key_same_body_replays(stub: Stub, client: httpx.Client) -> None:
    """A repeated key with the same body replays the first charge without a new one."""
    headers = {"Idempotency-Key": "replay-1"}
    first = client.post("/charge", json={"amount_cents": 500}, headers=headers)
    # Same body spelled differently: the comparison is of the parsed JSON.
    again = client.post("/charge", content=b'{ "amount_cents" : 500 }', headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(stub.ledger()) == 1
    assert [a["replayed"] for a in stub.journal()] == [False, True]


def test_same_key_other_body_is_422(stub: Stub, client: httpx.Client) -> None:
    """A repeated key with another body gets 422 and no charge."""
    headers = {"Idempotency-Key": "reuse-1"}
    assert client.post("/charge", json={"amount_cents": 600}, headers=headers).status_code == 200
    reused = client.post("/charge", json={"amount_cents": 601}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reuse"
    assert [c["amount_cents"] for c in stub.ledger()] == [600]


def test_same_key_in_flight_is_409(stub: Stub) -> None:
    """A key whose first request is still held gets 409; the first one then succeeds."""
    stub.add_rule({"type": "delay", "delay_ms": 600}, match={"amount_cents": 700})
    headers = {"Idempotency-Key": "busy-1"}

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        """Send a held request, and the same one again while it is held."""
        async with httpx.AsyncClient(base_url=stub.url, timeout=5) as http:
            first = asyncio.ensure_future(
                http.post("/charge", json={"amount_cents": 700}, headers=headers)
            )
            deadline = time.monotonic() + 3
            while not stub.journal() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            second = await http.post("/charge", json={"amount_cents": 700}, headers=headers)
            return await first, second

    first, second = asyncio.run(scenario())
    assert second.status_code == 409
    assert second.json()["error"] == "idempotency_key_in_use"
    assert first.status_code == 200
    assert len(stub.ledger()) == 1


def test_key_is_recorded_only_on_commit(stub: Stub, client: httpx.Client) -> None:
    """A key whose first attempt failed with no charge is free for a real charge."""
    stub.add_rule({"type": "status", "status": 503}, first_n=1)
    headers = {"Idempotency-Key": "later-1"}
    assert client.post("/charge", json={"amount_cents": 800}, headers=headers).status_code == 503
    retry = client.post("/charge", json={"amount_cents": 800}, headers=headers)
    assert retry.status_code == 200
    assert [a["replayed"] for a in stub.journal()] == [False, False]
    assert len(stub.ledger()) == 1
