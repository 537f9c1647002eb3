"""The load a check held at each measurement, and the causes a hint may name: pure logic.

checks/held.py reads from the stub's journal how many checkouts the provider held when each
/healthz probe was sent, and the plateau (the most held at once); m2.healthz-under-load passes
only on probes sent at the plateau. checks/connects.py reads the service's connection attempts
from the socket table and says which cause of a late answer they show.
"""

from __future__ import annotations

import ipaddress
import itertools

import pytest

import checks.m2_timeouts  # noqa: F401  registers m2.healthy-checkout, which healthz depends on
from checks.common import HEALTHZ_LIMIT_S, NOISE_HINT
from checks.connects import ConnectAttempt, diagnose, syn_sent
from checks.held import (
    HeldProbe,
    Probe,
    checkout_spans,
    firsts_spread,
    held_at,
    most_at_once,
    plateau,
    refused,
    status_counts,
    with_load,
)
from checks.m2_under_load import (
    LIMITED_HINT,
    MIN_PLATEAU_PROBES,
    QUEUED_HINT,
    judge_healthz_under_load,
)
from grader.engine.driver import CheckoutResult
from grader.errors import CheckFailed, CheckInconclusive
from grader.model import Passed
from grader.stubclient import Attempt
from tests.test_stats import context

_seq = itertools.count(1)


def attempt(amount: int, arrived: float, gave_up: float | None = None) -> Attempt:
    """A provider attempt held by a Delay: given up on by the client at ``gave_up``, else open."""
    return Attempt(
        seq=next(_seq),
        amount_cents=amount,
        idempotency_key=None,
        arrived_at=arrived,
        status=None,
        outcome="in_progress" if gave_up is None else "client_gave_up",
        fault=None,
        response_started_at=None,
        finished_at=gave_up,
        gave_up_at=gave_up,
        charge_id=None,
        replayed=False,
    )


def sixteen_threads() -> list[Attempt]:
    """20 checkouts on a 16-thread server: 16 held from ~0 s to 2.0 s, the last 4 from then."""
    first = [attempt(a, 0.01 * a, gave_up=2.0) for a in range(1, 17)]
    return first + [attempt(a, 2.01) for a in range(17, 21)]


def probes(*sent: tuple[float, float], outstanding: int = 0) -> list[Probe]:
    """Probes answered 200, each (sent at, latency), ``outstanding`` checkouts unanswered."""
    return [Probe(at, latency, 200, None, outstanding=outstanding) for at, latency in sent]


def test_held_at_counts_checkouts_with_an_attempt_open() -> None:
    """An attempt is held from its arrival until it ended; two of one checkout count once."""
    journal = [attempt(1, 0.0, gave_up=1.0), attempt(1, 1.2), attempt(2, 0.5)]
    assert [held_at(journal, t) for t in (-0.1, 0.0, 0.6, 1.0, 1.1, 1.3)] == [0, 1, 2, 1, 1, 2]


def test_plateau_is_the_most_held_at_once_in_the_window() -> None:
    """16 threads for 20 checkouts: the provider never holds more than 16, before or after 2 s."""
    journal = sixteen_threads()
    assert plateau(journal, 0.0, 5.0) == 16
    assert plateau(journal, 2.5, 5.0) == 4  # after the first 16 gave up: the 4 queued ones
    assert plateau([attempt(a, 0.05) for a in range(20)], 0.0, 1.0) == 20


def test_with_load_gives_each_probe_the_load_when_it_was_sent() -> None:
    """A probe sent at 0.4 s finds 16 held, one at 2.1 s the 4 that had waited for a thread."""
    held = with_load(sixteen_threads(), probes((0.4, 1.6), (2.1, 0.002), (-1.0, 0.002)))
    assert [p.held for p in held] == [16, 4, 0]


def judged(held: list[HeldProbe], most: int) -> Passed:
    """m2.healthz-under-load's verdict on a quiet machine."""
    return judge_healthz_under_load(context(0.0), held, most, since=0.0)


def test_a_slow_probe_at_a_plateau_below_n_fails_with_the_queueing_hint() -> None:
    """The issue's gunicorn: 16 threads for 20 checkouts, /healthz queued 1.6 s: FAIL, why."""
    queued = probes((0.4, 1.6), outstanding=20)  # 16 held, 4 not started
    held = with_load(sixteen_threads(), queued + probes(*((2.1 + n / 10, 0.002) for n in range(9))))
    with pytest.raises(CheckFailed) as raised:
        judged(held, 16)
    evidence = raised.value.evidence
    assert evidence.hint == QUEUED_HINT.format(plateau=16, n=20)
    assert "while the provider held 16 of 20 checkouts (its plateau" in evidence.measured
    assert evidence.data["plateau"] == 16 and evidence.data["probes"][0]["held"] == 16


def test_fast_probes_at_a_plateau_below_n_pass_and_say_so() -> None:
    """A service that queues checkouts but keeps /healthz fast passes: the condition is met."""
    sent = [(0.4 + n / 20, 0.003) for n in range(MIN_PLATEAU_PROBES)]
    result = judged(with_load(sixteen_threads(), probes(*sent)), 16)
    assert "held 16 of 20 checkouts (its plateau" in result.measured
    assert result.data["plateau_probes"] == MIN_PLATEAU_PROBES


def test_fast_probes_taken_below_the_plateau_never_pass() -> None:
    """The issue's false PASS: fast probes while 4 of the 16 were held are not enough."""
    sent = [(2.1 + n / 20, 0.003) for n in range(10)]
    with pytest.raises(CheckInconclusive) as raised:
        judged(with_load(sixteen_threads(), probes(*sent)), 16)
    assert raised.value.evidence.hint == NOISE_HINT
    assert "only 0 probe(s) were sent while the provider held its most (16 of 20)" in (
        raised.value.evidence.summary
    )


def test_a_slow_probe_below_the_plateau_still_fails() -> None:
    """/healthz 1 s late while 4 checkouts were held is slow while checkouts are stuck."""
    sent = [(0.4 + n / 20, 0.003) for n in range(MIN_PLATEAU_PROBES)] + [(2.1, 1.0)]
    with pytest.raises(CheckFailed) as raised:
        judged(with_load(sixteen_threads(), probes(*sent)), 16)
    assert "sent while 4 of 20 checkouts were held at the provider answered after 1.00 s" in (
        raised.value.evidence.summary
    )


def test_a_slow_probe_before_any_checkout_reached_the_provider_fails() -> None:
    """A blocked event loop: 20 checkouts unanswered, none at the provider yet, /healthz 2 s."""
    blocked = Probe(1.5, 2.0, None, "no answer within 2 s", timed_out=True, outstanding=20)
    later = [attempt(a, 4.0 + a / 100) for a in range(14)]
    sent = [blocked, *probes(*((4.2 + n / 20, 0.003) for n in range(MIN_PLATEAU_PROBES)))]
    with pytest.raises(CheckFailed) as raised:
        judged(with_load(later, sent), 14)
    evidence = raised.value.evidence
    assert "0 of 20 checkouts were held at the provider (20 more not yet there)" in (
        evidence.summary
    )
    assert evidence.data["probes"][0]["outstanding"] == 20
    # Slow before any checkout reached the provider: a blocked loop, not a queue of threads.
    assert "took only" not in (evidence.hint or "")


def test_a_probe_given_up_on_is_as_slow_as_its_timeout() -> None:
    """A probe not answered within its timeout counts that long: past the limit, a FAIL."""
    gone = Probe(0.4, 2.0, None, "no answer within 2 s", timed_out=True)
    held = with_load([attempt(a, 0.01) for a in range(20)], [gone, *probes((0.5, 0.01))])
    with pytest.raises(CheckFailed) as raised:
        judged(held, 20)
    assert f"past {HEALTHZ_LIMIT_S:.2f} s" in raised.value.evidence.summary


def limited() -> tuple[list[Attempt], list[CheckoutResult]]:
    """A server limit of 8 (uvicorn): 7 checkouts held from ~0 s, 13 answered 503 in 3 ms."""
    held = [attempt(a, 0.01 * a) for a in range(1, 8)]
    turned_away = [CheckoutResult(a, 0.0, 0.003, 503) for a in range(8, 21)]
    return held, turned_away


def test_a_probe_refused_while_checkouts_were_refused_names_the_limit() -> None:
    """limit8: /healthz 503 in 3 ms at a plateau of 7, 13 checkouts refused: the limit hint."""
    journal, answered = limited()
    sent = [Probe(0.4 + n / 20, 0.003, 503, "answered 503", outstanding=7) for n in range(6)]
    turned_away = refused(answered, journal)
    with pytest.raises(CheckFailed) as raised:
        judge_healthz_under_load(
            context(0.0), with_load(journal, sent), 7, since=0.0, refused=turned_away
        )
    evidence = raised.value.evidence
    assert evidence.hint == LIMITED_HINT.format(status=503, refused=13, n=20, statuses="503 x 13")
    assert "took only" not in evidence.hint and "event loop" not in evidence.hint
    assert evidence.data["refused_checkouts"] == 13
    assert evidence.data["refused_statuses"] == {"503": 13}
    assert "13 checkout(s) answered without reaching the provider (503 x 13)" in evidence.measured


def test_a_bulkhead_that_refuses_checkouts_but_answers_healthz_passes() -> None:
    """Refused checkouts fail nothing by themselves: /healthz 200 at the plateau is a PASS."""
    journal, answered = limited()
    sent = probes(*((0.4 + n / 20, 0.003) for n in range(MIN_PLATEAU_PROBES)), outstanding=7)
    turned_away = refused(answered, journal)
    result = judge_healthz_under_load(
        context(0.0), with_load(journal, sent), 7, since=0.0, refused=turned_away
    )
    assert result.data["refused_checkouts"] == 13 and result.data["plateau_probes"] == 5
    assert "13 checkout(s) answered without reaching the provider" in result.measured


def test_refused_are_the_answered_checkouts_with_no_attempt_at_the_provider() -> None:
    """An answered checkout whose amount reached the provider was not refused."""
    journal, answered = limited()
    done = [CheckoutResult(3, 0.0, 2.8, 504), *answered[:2]]
    assert [r.amount_cents for r in refused(done, journal)] == [8, 9]
    assert status_counts([*done, CheckoutResult(9, 0.0, 1.0, None, error="reset")]) == {
        "503": 2,
        "504": 1,
        "none": 1,
    }


def test_most_at_once_counts_overlapping_spans_only() -> None:
    """Spans that touch end to start never overlap; four clients in step overlap four deep."""
    assert most_at_once([(0, 1), (1, 2), (2, 3)]) == 1
    assert most_at_once([(0, 2), (0.1, 2), (0.2, 2), (0.3, 2), (2, 3)]) == 4
    assert most_at_once([]) == 0


def test_checkout_spans_run_from_first_arrival_to_last_end() -> None:
    """A checkout of three 503s spans its first attempt's arrival to its last attempt's end."""
    failed = [attempt(7, 1.0, gave_up=1.1), attempt(7, 1.3, gave_up=1.4)]
    spans = checkout_spans({7: failed, 8: [attempt(8, 1.05, gave_up=1.2)]})
    assert spans == [(1.0, 1.4), (1.05, 1.2)] and most_at_once(spans) == 2


def test_firsts_spread_is_the_widest_instance_spread_of_first_attempts() -> None:
    """Two instances: first attempts within 10 ms on one, 300 ms on the other: 0.3 s."""
    grouped = {1: [attempt(1, 5.0)], 2: [attempt(2, 5.01)], 3: [attempt(3, 5.0)]}
    grouped[4] = [attempt(4, 5.3)]
    assert firsts_spread(grouped, {1: 0, 2: 0, 3: 1, 4: 1}) == pytest.approx(0.3)


# --- Connection attempts: the cause a late connect-timeout answer shows ----------------------


def test_more_attempts_than_allowed_name_retries_beyond_max_attempts() -> None:
    """Six 0.5 s attempts where 3 are allowed: the connect timeout works, the count does not."""
    seen = [ConnectAttempt(n * 0.5, n * 0.5 + 0.48) for n in range(6)]
    found = diagnose(seen, max_attempts=3, connect_s=0.5, tolerance_s=0.3, elapsed_s=2.8)
    assert found.cause == "retries"
    assert found.hint.startswith("Your service made 6 connection attempts for one checkout")
    assert "retries beyond max_attempts" in found.hint and "at least 6" in found.measured


def test_one_long_attempt_names_the_missing_connect_timeout() -> None:
    """One attempt waiting 2.76 s where 0.5 s is declared: no connect timeout."""
    found = diagnose(
        [ConnectAttempt(0.03, 2.79)], max_attempts=3, connect_s=0.5, tolerance_s=0.3, elapsed_s=2.8
    )
    assert found.cause == "no-connect-timeout" and "connect=0.5" in found.hint
    assert "waited 2.76 s" in found.hint


def test_both_causes_and_no_evidence_name_both() -> None:
    """Too many and too long names both; attempts not seen name both as possibilities."""
    both = [ConnectAttempt(n * 1.0, n * 1.0 + 0.9) for n in range(4)]
    assert diagnose(both, max_attempts=3, connect_s=0.5, tolerance_s=0.3, elapsed_s=4).cause == (
        "both"
    )
    nothing: list[ConnectAttempt] = []
    for unseen in (None, nothing):
        found = diagnose(unseen, max_attempts=3, connect_s=0.5, tolerance_s=0.3, elapsed_s=2.8)
        assert found.cause == "unknown" and found.hint.startswith("Either")
        assert "max_attempts" in found.hint and "connect=0.5" in found.hint


def test_syn_sent_finds_the_sockets_connecting_to_the_port() -> None:
    """/proc/net/tcp rows: only SYN-SENT (02) ones to 127.0.0.1:port, v4 or v4-mapped v6."""
    port = 0x9C41
    v4 = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
        "   0: 0100007F:D431 0100007F:9C41 02 00000001:00000000 01:00000064 00000002  1000 "
        "0 7001 1\n"
        "   1: 0100007F:D432 0100007F:9C41 01 00000000:00000000 00:00000000 00000000  1000 "
        "0 7002 1\n"
        "   2: 0100007F:D433 0100007F:9C42 02 00000001:00000000 01:00000064 00000002  1000 "
        "0 7003 1\n"
    )
    loopback = frozenset({ipaddress.ip_address("127.0.0.1")})
    assert syn_sent(v4, loopback, port) == {"7001"}
    v6 = (
        "  sl  local_address remote_address st tx_queue rx_queue tr tm->when retrnsmt uid "
        "timeout inode\n"
        "   0: 0000000000000000FFFF00000100007F:D434 0000000000000000FFFF00000100007F:9C41 02 "
        "00000001:00000000 01:00000064 00000002 1000 0 7004 1\n"
    )
    assert syn_sent(v6, loopback, port) == {"7004"}
