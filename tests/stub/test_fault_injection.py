"""Every fault type, observed for real from a client of a stub process."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.stub._support import Stub


def test_delay_holds_the_headers(stub: Stub, client: httpx.Client) -> None:
    """A delay fault makes the answer take delay_ms, then charges as usual."""
    rule_id = stub.add_rule({"type": "delay", "delay_ms": 300}, match={"amount_cents": 1001})
    started = time.monotonic()
    response = client.post("/charge", json={"amount_cents": 1001})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert 0.29 <= elapsed < 0.8
    [attempt] = stub.journal()
    assert attempt["fault"]["type"] == "delay" and attempt["rule_id"] == rule_id
    assert attempt["response_started_at"] - attempt["arrived_at"] >= 0.29
    assert len(stub.ledger()) == 1


def test_client_giving_up_during_a_delay_is_not_charged(stub: Stub) -> None:
    """When the client times out during a delay, the stub records it and charges nothing."""
    stub.add_rule({"type": "delay", "delay_ms": 2000})
    with httpx.Client(base_url=stub.url, timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/charge", json={"amount_cents": 1002}, headers={"Idempotency-Key": "gone"})
    [attempt] = stub.wait_for_attempts(1)
    assert attempt["outcome"] == "client_gave_up"
    assert attempt["gave_up_at"] - attempt["arrived_at"] == pytest.approx(0.3, abs=0.25)
    assert attempt["status"] is None and attempt["charge_id"] is None
    assert stub.ledger() == []
    # The key was never committed, so it is free again.
    stub.admin("DELETE", "/faults")
    with httpx.Client(base_url=stub.url, timeout=2) as http:
        again = http.post(
            "/charge", json={"amount_cents": 1002}, headers={"Idempotency-Key": "gone"}
        )
    assert again.status_code == 200


def test_dribble_sends_headers_fast_and_the_body_slowly(stub: Stub) -> None:
    """Dribbled headers come at once; the padded body takes about body_bytes x interval_ms."""
    stub.add_rule({"type": "dribble", "interval_ms": 5, "body_bytes": 100})
    with httpx.Client(base_url=stub.url, timeout=5) as http:
        started = time.monotonic()
        with http.stream("POST", "/charge", json={"amount_cents": 1003}) as response:
            headers_after = time.monotonic() - started
            body = response.read()
        body_after = time.monotonic() - started
    assert response.status_code == 200 and response.headers["content-length"] == "100"
    assert headers_after < 0.25
    assert 0.45 <= body_after < 1.5
    assert len(body) == 100 and body.endswith(b" ")
    assert httpx.Response(200, content=body).json()["amount_cents"] == 1003
    assert len(stub.ledger()) == 1


def test_hang_until_the_client_gives_up(stub: Stub) -> None:
    """A hang never answers; the journal records when the client gave up."""
    stub.add_rule({"type": "hang", "max_hold_ms": 5000})
    with httpx.Client(base_url=stub.url, timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/charge", json={"amount_cents": 1004})
    [attempt] = stub.wait_for_attempts(1)
    assert attempt["outcome"] == "client_gave_up" and attempt["status"] is None
    assert attempt["gave_up_at"] - attempt["arrived_at"] == pytest.approx(0.3, abs=0.25)
    assert stub.ledger() == []


def test_hang_to_its_limit_closes(stub: Stub) -> None:
    """A hang whose max_hold_ms passes first closes the connection without answering."""
    stub.add_rule({"type": "hang", "max_hold_ms": 200})
    with (
        httpx.Client(base_url=stub.url, timeout=3) as http,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        http.post("/charge", json={"amount_cents": 1005})
    [attempt] = stub.wait_for_attempts(1)
    assert attempt["outcome"] == "held_to_limit"
    assert attempt["finished_at"] - attempt["arrived_at"] == pytest.approx(0.2, abs=0.2)


def test_status_first_n_per_amount(stub: Stub, client: httpx.Client) -> None:
    """first_n fails the first N attempts of each amount in the range, with Retry-After."""
    stub.add_rule(
        {"type": "status", "status": 503, "retry_after_s": 1},
        match={"amount_min": 5000, "amount_max": 5999},
        first_n=2,
    )
    statuses = {
        amount: [client.post("/charge", json={"amount_cents": amount}) for _ in range(3)]
        for amount in (5001, 5002, 7000)
    }
    assert [r.status_code for r in statuses[5001]] == [503, 503, 200]
    assert [r.status_code for r in statuses[5002]] == [503, 503, 200]
    assert [r.status_code for r in statuses[7000]] == [200, 200, 200]
    failed = statuses[5001][0]
    assert failed.headers["retry-after"] == "1"
    assert failed.json()["error"] == "unavailable"
    assert len(stub.ledger(amount_min=5000, amount_max=5999)) == 2


def test_slow_failure_holds_then_fails(stub: Stub, client: httpx.Client) -> None:
    """A status fault with delay_ms answers its status only after the hold."""
    stub.add_rule({"type": "status", "status": 503, "delay_ms": 300})
    started = time.monotonic()
    answer = client.post("/charge", json={"amount_cents": 1010})
    assert answer.status_code == 503
    assert time.monotonic() - started == pytest.approx(0.3, abs=0.2)
    [attempt] = stub.wait_for_attempts(1)
    assert attempt["outcome"] == "responded" and attempt["fault"]["delay_ms"] == 300


def test_decline_is_402(stub: Stub, client: httpx.Client) -> None:
    """A decline answers 402 card_declined and charges nothing."""
    stub.add_rule({"type": "decline"})
    response = client.post("/charge", json={"amount_cents": 1006})
    assert response.status_code == 402
    assert response.json()["error"] == "card_declined"
    assert stub.ledger() == []


def test_reset_aborts_with_rst(stub: Stub) -> None:
    """A reset fault aborts the connection with an RST: the client's read fails, not EOF."""
    stub.add_rule({"type": "reset"})
    body = b'{"amount_cents": 1007}'
    request = (
        b"POST /charge HTTP/1.1\r\nHost: stub\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection((stub.host, stub.port), timeout=2) as sock:
        sock.sendall(request)
        with pytest.raises(ConnectionResetError):
            sock.recv(4096)
    with httpx.Client(base_url=stub.url, timeout=2) as http, pytest.raises(httpx.TransportError):
        http.post("/charge", json={"amount_cents": 1007})
    attempts = stub.wait_for_attempts(2)
    assert [a["outcome"] for a in attempts] == ["reset", "reset"]
    assert stub.ledger() == []


def test_lost_response_charges_and_a_retry_replays(stub: Stub) -> None:
    """A lost response charges without answering; a retry with the key replays that charge."""
    stub.add_rule({"type": "lost_response"}, first_n=1)
    headers = {"Idempotency-Key": "lost-1"}
    with httpx.Client(base_url=stub.url, timeout=2) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/charge", json={"amount_cents": 1008}, headers=headers)
        [charge] = stub.ledger()
        retry = http.post("/charge", json={"amount_cents": 1008}, headers=headers)
    assert retry.status_code == 200 and retry.json()["id"] == charge["id"]
    assert len(stub.ledger()) == 1
    lost, replayed = stub.journal()
    assert lost["outcome"] == "dropped" and lost["status"] is None
    assert lost["charge_id"] == charge["id"]
    assert replayed["replayed"] and replayed["charge_id"] == charge["id"]


def test_connect_hang_port_times_out(stub: Stub) -> None:
    """A connect to the connect-hang port times out rather than being refused."""
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        socket.create_connection((stub.host, stub.connect_hang_port), timeout=0.5)
    assert time.monotonic() - started >= 0.45
