"""How much load a check held at each measurement: m5's race and the load test's slow phase.

m5.concurrent-double-submit says whether its two submits were in flight together and sent
before the provider answered the key's first attempt; every lt check says how many slow
checkouts the provider held at once, how many VUs k6 had busy, what it dropped and the rate the
recovery phase achieved. Pure logic, on journals and k6 summaries of chosen numbers.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from checks import held as held_mod
from checks import lt_loadtest as lt
from checks.held import answered_at, held_samples, overlap_s
from checks.m5_race import Race
from grader.engine import k6
from grader.engine.driver import CheckoutResult
from grader.model import Passed
from grader.stubclient import Attempt
from tests.test_inconclusive import FAILED, SLOW, failed, judged_by, load

_seq = itertools.count(1)


def attempt(
    amount: int, arrived: float, ended: float | None, *, answered: float | None = None
) -> Attempt:
    """An attempt answered 200 (its answer begun at ``answered``), or given up on at ``ended``."""
    return Attempt(
        seq=next(_seq),
        amount_cents=amount,
        idempotency_key="checkout:k",
        arrived_at=arrived,
        status=200 if answered is not None else None,
        outcome="in_progress" if ended is None else "responded" if answered else "client_gave_up",
        fault=None,
        response_started_at=answered,
        finished_at=ended,
        gave_up_at=None if answered is not None or ended is None else ended,
        charge_id="ch_1" if answered is not None else None,
        replayed=False,
    )


def submit(started: float, elapsed: float, status: int = 200) -> CheckoutResult:
    """One submit of the key, sent at ``started`` (monotonic), answered after ``elapsed``."""
    return CheckoutResult(1, started, elapsed, status, {"payment": {"id": "pay_1"}})


def test_answered_at_is_when_the_answer_began_else_when_the_attempt_ended() -> None:
    """A held charge is answered when the stub starts its answer; one given up on, at its end."""
    assert answered_at(attempt(1, 10.0, 10.52, answered=10.5)) == 10.5
    assert answered_at(attempt(1, 10.0, 12.0)) == 12.0
    assert answered_at(attempt(1, 10.0, None)) is None


def test_overlap_is_the_time_both_spans_were_open() -> None:
    """Nested, crossing and disjoint spans: the shared part, or 0."""
    assert overlap_s((0.0, 1.0), (0.2, 0.4)) == pytest.approx(0.2)
    assert overlap_s((0.0, 1.0), (0.5, 2.0)) == pytest.approx(0.5)
    assert overlap_s((0.0, 1.0), (1.5, 2.0)) == 0.0


def test_held_samples_count_the_held_checkouts_at_even_steps() -> None:
    """Two checkouts held 0.0-0.25 s and 0.1-0.35 s, sampled every 0.1 s from 0 to 0.4 s."""
    held = [attempt(1, 0.0, 0.25), attempt(2, 0.1, 0.35)]
    assert held_samples(held, 0.0, 0.4, 0.1) == [1, 2, 2, 1, 0]


def test_a_race_is_held_when_the_later_submit_beat_the_first_answer() -> None:
    """Sent 2 ms apart, the charge held 500 ms: 10 ms in flight together, 0.5 s to spare."""
    first = attempt(1, 100.01, 100.52, answered=100.51)
    race = Race.of(submit(100.0, 0.52), submit(100.002, 0.01, 409), [first])
    assert race.held and race.sent_apart_s == pytest.approx(0.002)
    assert race.together_s == pytest.approx(0.01)
    assert race.margin_s == pytest.approx(0.508)
    assert race.to_data()["race_held"] is True
    assert "the later sent 0.51 s before the provider answered the first" in race.describe()


def test_a_race_sent_after_the_first_answer_is_not_held() -> None:
    """The second submit sent 0.1 s after the provider answered the first: no race held."""
    first = attempt(1, 100.01, 100.52, answered=100.51)
    race = Race.of(submit(100.0, 0.52), submit(100.61, 0.01), [first])
    assert not race.held and race.together_s == 0.0
    assert race.to_data()["second_sent_before_first_answer_s"] == pytest.approx(-0.1)
    assert "after the provider answered the first" in race.describe()


def k6_run(**metrics: dict[str, float]) -> k6.Run:
    """A finished run whose summary has ``metrics`` (names with ``__`` for ``{scenario:...}``)."""
    named = {
        name.replace("__recovery", "{scenario:recovery}"): k6.Metric(name, values)
        for name, values in metrics.items()
    }
    summary = k6.Summary(named)
    return k6.Run(0, summary, summary, 11.0, ())


def test_held_load_reads_the_slow_phase_and_k6_summary() -> None:
    """Three slow checkouts, one retried: at most 2 held at once; k6's VUs, drops and rate."""
    slow = [
        attempt(1, 100.0, 102.0),
        attempt(1, 102.1, 103.0),  # the retry of checkout 1: still one checkout held
        attempt(2, 101.0, 104.0),
        attempt(3, 105.0, 105.5),
    ]
    run = k6_run(
        vus={"value": 0, "min": 0, "max": 31},
        vus_max={"value": 65, "min": 65, "max": 65},
        dropped_iterations={"count": 4, "rate": 0.4},
        http_req_duration__recovery={"count": 90, "med": 4.0},
    )
    held = held_mod.held_load(run, slow, slow_s=lt.SLOW_S, recovery_s=lt.RECOVERY_S)
    assert (held.slow_checkouts, held.held_most) == (3, 2)
    # Sampled every 0.1 s over 100.0-106.0 s (61 samples): 2 held in about 18, 1 in about 27,
    # none in about 16, so the median is 1 although the most is 2.
    assert held.held_median == 1.0
    assert (held.vus_max, held.vus_allocated, held.dropped_iterations) == (31, 65, 4)
    assert (held.recovery_requests, held.recovery_rate) == (90, 90 / lt.RECOVERY_S)
    assert "held up to 2 checkouts at once" in held.describe()
    assert "4 iterations dropped" in held.describe() and "k6 had up to 31 VUs" in held.describe()


def test_held_load_without_journal_or_metrics_says_none_were_held() -> None:
    """No slow checkout reached the provider and k6 reported no VUs: zeros and Nones, no drops."""
    held = held_mod.held_load(k6_run(), [], slow_s=lt.SLOW_S, recovery_s=lt.RECOVERY_S)
    assert (held.held_most, held.held_median, held.slow_checkouts) == (0, 0.0, 0)
    assert (held.vus_max, held.dropped_iterations, held.recovery_rate) == (None, 0, None)
    assert "dropped" not in held.describe() and "VUs" not in held.describe()


def test_every_lt_check_reports_the_load_held() -> None:
    """The held load is in each lt check's data and at the end of its measured line."""
    slow = [attempt(n, 100.0 + n / 10, 102.8 + n / 10) for n in range(1, 21)]
    held = held_mod.held_load(
        k6_run(vus={"max": 28}), slow, slow_s=lt.SLOW_S, recovery_s=lt.RECOVERY_S
    )
    measured = dataclasses.replace(load(), held=held)
    for check in (
        lt.k6_run,
        lt.slow_phase_fails_fast,
        lt.recovery_latency,
        lt.recovery_succeeds,
        lt.healthz_fast,
    ):
        verdict = judged_by(check, measured)
        assert isinstance(verdict, Passed)
        assert verdict.data["slow_held_most"] == 20, check
        assert verdict.data["k6_vus_max"] == 28
        assert verdict.measured.endswith(held.describe())


# --- The cause a load-test hint names, from the load the run held -----------------------------


def held_by(held_most: int, vus_max: int, dropped: int = 0) -> held_mod.HeldLoad:
    """A slow phase in which the provider held ``held_most`` at once, k6 had ``vus_max`` busy."""
    return held_mod.HeldLoad(60, held_most, float(held_most), vus_max, 123, dropped, 60, 12.0)


def test_queued_when_the_provider_held_under_half_the_busy_vus() -> None:
    """Measured: reference 28 held / 28 VUs, no deadline 32 / 31, sync 8 threads 8 / 103."""
    assert not held_mod.queued(28, 28) and not held_mod.queued(32, 31)
    assert held_mod.queued(8, 103) and held_mod.queued(1, 113) and held_mod.queued(4, 122)
    assert not held_mod.queued(14, 28) and held_mod.queued(13, 28)  # the line: half
    assert not held_mod.queued(0, 0) and not held_mod.queued(3, None)


def test_a_slow_phase_that_queued_names_threads_not_the_read_timeout() -> None:
    """sync-handlers with 8 threads: 8 held while 103 VUs waited: the queueing hint."""
    measured = dataclasses.replace(load({SLOW: 11000.0}), held=held_by(8, 103, dropped=106))
    evidence = failed(lambda: judged_by(lt.slow_phase_fails_fast, measured))
    assert evidence.hint.startswith("Your service queued the slow phase's checkouts")
    assert "held at most 8 at once while k6 had up to 103" in evidence.hint
    assert "dropped 106 iterations" in evidence.hint and "read timeout" not in evidence.hint
    assert evidence.data["queued"] is True


def test_a_slow_phase_held_at_the_provider_keeps_the_timeout_hint() -> None:
    """No deadline: 32 held, 31 VUs busy: the checkouts started, the bound is missing."""
    measured = dataclasses.replace(load({SLOW: 4100.0}), held=held_by(32, 31))
    evidence = failed(lambda: judged_by(lt.slow_phase_fails_fast, measured))
    assert evidence.hint == "" and evidence.data["queued"] is False


def test_refused_after_counts_the_refusals_once_one_got_through() -> None:
    """A limit interleaves refusals; a breaker that closed late refuses only a leading run."""
    assert held_mod.refused_after(frozenset({2, 5, 9}), 10) == 5  # 3, 4, 6, 7, 8 of 3..9
    assert held_mod.refused_after(frozenset(range(40, 100)), 100) == 0
    assert held_mod.refused_after(frozenset(), 100) == 0


def test_recovery_refused_by_a_full_limit_names_the_limit() -> None:
    """limit8: 80 of 100 failed, 20 reached the provider spread among them: the limit hint."""
    reached = frozenset(range(0, 100, 5))
    measured = dataclasses.replace(load({FAILED: 0.8}), recovery_reached=reached)
    evidence = failed(lambda: judged_by(lt.recovery_succeeds, measured))
    assert evidence.hint.startswith("80 of the 100 recovery checkouts never reached the provider")
    assert "--limit-concurrency" in evidence.hint and "circuit" not in evidence.hint
    assert evidence.data["recovery_never_at_provider"] == 80
    assert evidence.data["recovery_refused_after_first_through"] == 80  # all after iteration 0
    assert "80 of the 99 sent after the first one got through" in evidence.hint


@pytest.mark.parametrize(
    "reached",
    [frozenset(), frozenset(range(80, 100)), frozenset(range(100))],
    ids=["none-through", "breaker-closed-late", "all-reached"],
)
def test_recovery_failures_a_limit_cannot_explain_keep_the_breaker_hint(
    reached: frozenset[int],
) -> None:
    """None through, a leading run refused, or every failure at the provider: the own hint."""
    measured = dataclasses.replace(load({FAILED: 0.8}), recovery_reached=reached)
    evidence = failed(lambda: judged_by(lt.recovery_succeeds, measured))
    assert evidence.hint == "", evidence.hint
