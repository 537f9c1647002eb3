"""m4's outage judgement on counted checkouts: those the provider never saw, and buckets counted.

The verdict rests on checkouts that reached the provider: past 5 % that did not, the count is not
evidence and the check FAILs on that, with the hint the outcomes point to. m4.budget-shared also
bounds how many of its connections found a bucket of their own. These feed ``_judge`` measured
outages, as the e2e tests (tests/e2e/test_m4_outage.py) produce from real services.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from checks import outage as m4
from checks import warmup as warming
from grader.checkkit import COURSE_RETRY_BUDGET, RetryBudget
from grader.engine.driver import CheckoutResult
from grader.errors import CheckFailed
from grader.model import Passed
from tests.test_stats import context

CHECKOUTS = m4.OUTAGE_CHECKOUTS
# The course's bucket: ratio 0.1, so a spent bucket lets through 1.1 attempts per checkout.
SPENT = 1.1


def outage(
    *,
    untried: tuple[tuple[str, int], ...] = (),
    own_buckets: int = 1,
    clients: int = m4.SHARED_CLIENTS,
    per_reached: float = SPENT,
) -> m4.Outage:
    """200 counted checkouts, ``untried`` of them never tried, the rest at ``per_reached``."""
    reached = CHECKOUTS - sum(n for _, n in untried)
    warmup = warming.Warmup(
        counts=(3,) * 5 + (1,) * clients, drained=clients, own_buckets=own_buckets
    )
    return m4.Outage(
        api=cast(Any, None),  # the judgement reads no instance
        checkouts=CHECKOUTS,
        attempts=round(per_reached * reached),
        warmup=warmup,
        clients=clients,
        untried=untried,
        outcomes=(("answered 502", reached), *untried),
    )


def judge(found: m4.Outage, own_buckets_limit: int | None = 15) -> Passed:
    """m4's verdict on ``found``, as m4.budget-shared gives it (limit 15 of 20)."""
    return m4.judge(context(), found, "20 separate clients", own_buckets_limit=own_buckets_limit)


def test_checkouts_refused_at_once_fail_with_the_concurrency_limit_hint() -> None:
    """165 of 200 answered 503 at once, untried: FAIL naming a concurrency limit, not a pass."""
    found = outage(untried=(("answered 503 within 1.5 s", 165),))
    with pytest.raises(CheckFailed) as failed:
        judge(found)
    assert failed.value.evidence.summary.startswith(
        "165 of 200 checkouts never reached the provider"
    )
    hint = failed.value.evidence.hint
    assert "--limit-concurrency" in hint and "event loop" not in hint
    assert failed.value.evidence.data is not None
    assert failed.value.evidence.data["untried"] == {"answered 503 within 1.5 s": 165}
    assert failed.value.evidence.data["statuses"]["answered 502"] == 35


def test_checkouts_never_answered_fail_with_the_blocked_loop_hint() -> None:
    """Untried checkouts answered late or never point at a loop or pool that did not get there."""
    found = outage(
        untried=(("answered 504 after 1.5 s or more", 166), ("no answer within 5.5 s", 27))
    )
    with pytest.raises(CheckFailed) as failed:
        judge(found)
    hint = failed.value.evidence.hint
    assert "blocking call" in hint and "--limit-concurrency" not in hint


def test_a_cause_seen_in_a_few_untried_checkouts_is_not_named() -> None:
    """1 answered at once of 32 untried is no concurrency limit; 10 of 30 is, after the larger."""
    starved = ("answered 504 after 1.5 s or more", 31)
    with pytest.raises(CheckFailed) as failed:
        judge(outage(untried=(starved, ("answered 504 within 1.5 s", 1))))
    assert "--limit-concurrency" not in failed.value.evidence.hint
    with pytest.raises(CheckFailed) as failed:
        judge(
            outage(
                untried=(
                    ("answered 504 after 1.5 s or more", 20),
                    ("answered 503 within 1.5 s", 10),
                )
            )
        )
    hint = failed.value.evidence.hint
    assert hint.startswith(m4.STARVED_HINT) and hint.endswith(m4.REFUSED_HINT)


def test_untried_up_to_five_percent_still_passes_on_those_that_were_tried() -> None:
    """10 untried of 200 is within the share; 11 is past it."""
    assert judge(outage(untried=(("no answer within 5.5 s", 10),))).data["reached_provider"] == 190
    with pytest.raises(CheckFailed):
        judge(outage(untried=(("no answer within 5.5 s", 11),)))


def test_attempts_per_checkout_count_only_checkouts_that_were_tried() -> None:
    """Untried checkouts do not dilute the attempts: 190 tried at 1.2 each is over 1.15."""
    found = outage(untried=(("no answer within 5.5 s", 10),), per_reached=1.2)
    assert found.attempts / CHECKOUTS < warming.cap_of(COURSE_RETRY_BUDGET)
    with pytest.raises(CheckFailed) as failed:
        judge(found)
    assert failed.value.evidence.summary.startswith("retries multiplied the outage")


def test_connections_each_with_a_bucket_fail_the_shared_check_only() -> None:
    """16 of 20 connections with a full bucket FAIL m4.budget-shared; 15 (processes) pass."""
    assert judge(outage(own_buckets=15)).data["warmup_own_buckets"] == 15
    with pytest.raises(CheckFailed) as failed:
        judge(outage(own_buckets=16))
    assert (
        failed.value.evidence.summary
        == "16 of 20 connections each found a full bucket of their own"
    )
    # m4.outage-capped does not bound them: a bucket per connection is m4.budget-shared's case.
    judge(outage(own_buckets=4, clients=4), own_buckets_limit=None)


@pytest.mark.parametrize(
    ("elapsed_s", "status", "expected"),
    [
        (0.02, 503, "answered 503 within 1.5 s"),
        (2.9, 504, "answered 504 after 1.5 s or more"),
        (5.5, None, "no answer within 5.5 s"),
    ],
)
def test_untried_outcomes_say_whether_the_answer_came_at_once(
    elapsed_s: float, status: int | None, expected: str
) -> None:
    """Half the api budget (3 s) splits an answer refused at once from one that waited."""
    error = None if status is not None else "no answer"
    result = CheckoutResult(1, 0.0, elapsed_s, status, error=error)
    assert m4._outcome(context(), result, timed=True) == expected
    assert m4._refused(expected) is (status == 503)


@pytest.mark.parametrize(("burst", "retries"), [(1, 1), (2, 2), (10, 2)])
def test_a_bucket_of_its_own_is_two_retries_or_the_whole_burst(burst: int, retries: int) -> None:
    """A lone checkout on a spent bucket gets one retry at most; a full one gives min(2, burst)."""
    assert warming.own_at(RetryBudget(ratio=0.1, burst=burst)) == retries
