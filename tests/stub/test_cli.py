"""The stub as a command: knobs, seeds, owner process, signals and bad usage."""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.stub._support import REPO_ROOT, StubFactory, stub_env


def statuses_and_ids(base_url: str, count: int) -> list[tuple[int, str | None]]:
    """Send ``count`` charges of distinct amounts; return each status and charge id."""
    results = []
    with httpx.Client(base_url=base_url, timeout=5) as http:
        for amount in range(1, count + 1):
            response = http.post("/charge", json={"amount_cents": amount})
            results.append((response.status_code, response.json().get("id")))
    return results


def test_seeded_rate_is_reproducible_across_runs(make_stub: StubFactory) -> None:
    """Two stubs with the same seed fire a rate rule on the same attempts, with the same ids."""
    runs = []
    for _ in range(2):
        stub = make_stub(["--seed", "42"])
        stub.add_rule({"type": "status", "status": 503}, rate=0.5)
        runs.append(statuses_and_ids(stub.url, 16))
    assert runs[0] == runs[1]
    assert {status for status, _ in runs[0]} == {200, 503}


def test_latency_knob_slows_every_response(make_stub: StubFactory) -> None:
    """LATENCY_MS holds every request before it is answered, and shows in the journal."""
    stub = make_stub(env={"LATENCY_MS": "300"})
    started = time.monotonic()
    response = httpx.post(stub.url + "/charge", json={"amount_cents": 5}, timeout=5)
    assert response.status_code == 200
    assert 0.29 <= time.monotonic() - started < 0.8
    [attempt] = stub.journal()
    assert attempt["fault"] == {"type": "latency", "delay_ms": 300}


def fail_rate_draws(seed: int, rate: float, count: int) -> list[int]:
    """The amounts 1..count that the stub's FAIL_RATE rule fails, drawn as the stub draws them."""
    # reference/stub/provider.py: one draw per charge attempt no fault rule took, from
    # random.Random(f"{seed}:fail_rate"); a draw below the rate answers 503.
    draws = random.Random(f"{seed}:fail_rate")
    return [amount for amount in range(1, count + 1) if draws.random() < rate]


def test_fail_rate_knob_fails_a_seeded_fraction(make_stub: StubFactory) -> None:
    """FAIL_RATE=0.5 with SEED=7 answers 503 to exactly the attempts its seeded draws pick."""
    stub = make_stub(env={"FAIL_RATE": "0.5", "SEED": "7"})
    results = statuses_and_ids(stub.url, 20)
    failed = [amount for amount, (status, _) in enumerate(results, 1) if status == 503]
    # Pinned as well as recomputed: a change of the stub's seeding rule must show up here.
    expected = [1, 2, 3, 4, 6, 7, 9, 11, 13, 16, 17, 20]
    assert fail_rate_draws(7, 0.5, 20) == expected
    assert failed == expected
    assert {status for status, _ in results} == {200, 503}
    failures = [a for a in stub.journal() if a["status"] == 503]
    assert all(a["fault"] == {"type": "fail_rate", "rate": 0.5} for a in failures)
    assert len(stub.ledger()) == 20 - len(failed)


# A fresh seed each run, 1000 attempts at FAIL_RATE=0.2: a correct stub fails Binomial(1000, 0.2)
# of them (mean 200, sd 12.6), outside [138, 262] with probability 9.99e-7 (the exact two-sided
# binomial tail), so a false failure is about one run in a million. A stub that inverts the draw
# (800 expected) is inside with probability below 1e-290, one that ignores the rate (0) never,
# one that halves it (100 expected) with probability 8e-5.
FRACTION_ATTEMPTS, FRACTION_RATE, FRACTION_BOUNDS = 1000, 0.2, (138, 262)


def test_fail_rate_knob_fails_that_fraction_whatever_the_seed(make_stub: StubFactory) -> None:
    """FAIL_RATE=0.2 with a random seed fails 13.8 % to 26.2 % of 1000 attempts."""
    seed = secrets.randbelow(2**31)
    stub = make_stub(env={"FAIL_RATE": str(FRACTION_RATE), "SEED": str(seed)})
    results = statuses_and_ids(stub.url, FRACTION_ATTEMPTS)
    failed = sum(status == 503 for status, _ in results)
    low, high = FRACTION_BOUNDS
    assert low <= failed <= high, f"SEED={seed}: {failed} of {FRACTION_ATTEMPTS} failed"
    assert {status for status, _ in results} == {200, 503}, f"SEED={seed}"
    assert len(stub.ledger()) == FRACTION_ATTEMPTS - failed


def test_rules_take_precedence_over_fail_rate(make_stub: StubFactory) -> None:
    """When a rule fires, FAIL_RATE does not also apply."""
    stub = make_stub(env={"FAIL_RATE": "1"})
    stub.add_rule({"type": "decline"})
    assert httpx.post(stub.url + "/charge", json={"amount_cents": 5}).status_code == 402


def test_stub_exits_when_its_owner_does(make_stub: StubFactory) -> None:
    """With --owner-pid, the stub exits by itself soon after that process is gone."""
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stub = make_stub(owner_pid=owner.pid)
    finally:
        owner.kill()
        owner.wait()
    assert stub.proc.wait(timeout=2) == 0


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ([], {"FAIL_RATE": "abc"}),
        ([], {"FAIL_RATE": "1.5"}),
        (["--fail-rate", "-0.1"], {}),
        (["--latency-ms", "soon"], {}),
        (["--port", "70000"], {}),
        (["--no-such-flag"], {}),
    ],
)
def test_bad_settings_exit_2_with_one_line(args: list[str], env: dict[str, str]) -> None:
    """A bad knob exits 2 with a one-line message on stderr and no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "reference.stub", *args],
        env=stub_env(env),
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=10,
    )
    assert result.returncode == 2
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "error" in lines[0]
    assert "Traceback" not in result.stderr.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_stub_cleanly(make_stub: StubFactory, sig: signal.Signals) -> None:
    """SIGTERM and SIGINT make the stub exit 0 promptly, without a traceback."""
    stub = make_stub()
    # An open, idle keep-alive connection must not hold the exit up.
    with httpx.Client(base_url=stub.url) as http:
        http.post("/charge", json={"amount_cents": 5})
        os.kill(stub.proc.pid, sig)
        assert stub.proc.wait(timeout=2) == 0
    assert "Traceback" not in stub.stderr()


def test_ready_line_is_the_only_stdout(make_stub: StubFactory) -> None:
    """Stdout carries only the ready line; the banner with the URLs goes to stderr."""
    stub = make_stub()
    assert stub.proc.stdout is not None
    stub.proc.terminate()
    assert stub.proc.wait(timeout=2) == 0
    assert stub.proc.stdout.read() == b""
    assert stub.url in stub.stderr() and "FAIL_RATE=0.0" in stub.stderr()
