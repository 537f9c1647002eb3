"""The timing statistics on fixed inputs: a regression shows here in a second, not in a grading."""

from __future__ import annotations

import math

import pytest

from checks.common import fail_fast_problems
from checks.stats import (
    BoundsCount,
    Growth,
    Spread,
    Zone,
    count_bounds,
    declared_bounds,
    declared_mean,
    growth,
    lateness_noise,
    mean_difference,
    quantile,
    spread_test,
    zone,
)
from checks.warmup import cap_of
from grader.engine.context import Context
from grader.engine.driver import CheckoutResult
from grader.engine.noise import LagMeter
from grader.errors import CheckFailed, CheckInconclusive
from grader.learner import budgets
from grader.learner.budgets import Retries, RetryBudget
from grader.learner.repo import LearnerRepo
from tests.mutants import REFERENCE


def test_zone_has_three_outcomes() -> None:
    """Within the limit, within the noise past it, or beyond both."""
    assert zone(1.0, 1.0, 0.2) is Zone.WITHIN
    assert zone(1.1, 1.0, 0.2) is Zone.NOISY
    assert zone(1.21, 1.0, 0.2) is Zone.BEYOND


def test_quantile_interpolates() -> None:
    """Quantiles interpolate between order statistics, whatever the input order."""
    assert quantile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.5
    assert quantile([5.0], 0.9) == 5.0
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_mean_difference_is_within_groups() -> None:
    """Pairs are taken within a group only: a lateness shared by a group cancels out."""
    assert mean_difference([[0.1, 0.1], [0.5, 0.5]]) == 0.0
    assert mean_difference([[0.0, 0.3]]) == pytest.approx(0.3)
    assert mean_difference([[0.0, 0.1, 0.2]]) == pytest.approx((0.1 + 0.2 + 0.1) / 3)
    assert mean_difference([[0.1], [0.2]]) is None
    uniform = [0.001 * n for n in range(101)]
    assert mean_difference([uniform]) == pytest.approx(0.1 / 3, rel=0.03)  # (n + 1) / 3n of it


def _spread(groups: list[list[float]], noise: list[list[float]]) -> Spread:
    return spread_test(
        groups, 0.1, noise, lockstep_below=0.08, spread_from=0.1, noise_factor=2.0
    ).verdict


def test_spread_test_has_three_outcomes() -> None:
    """Lockstep within instances FAILs even when instances differ; jitter passes unless noisy."""
    quiet = [[0.1, 0.101], [0.2, 0.2005]]
    # Each instance late by its own amount, no jitter within: lockstep, whatever the lateness.
    assert _spread([[0.10, 0.101, 0.102], [0.13, 0.131, 0.13]], quiet) is Spread.LOCKSTEP
    jittered = [[0.01, 0.05, 0.09], [0.02, 0.06, 0.095]]
    assert _spread(jittered, quiet) is Spread.SPREAD
    # The grader's own lockstep retries as far apart: noise could explain it.
    assert _spread(jittered, [[0.1, 0.15], [0.1, 0.2]]) is Spread.UNSURE
    # Between the two thresholds (0.09 of the range): neither.
    assert _spread([[0.1, 0.109]], quiet) is Spread.UNSURE
    # Instances of one checkout each are pooled rather than judged lockstep.
    assert _spread([[0.01], [0.05], [0.09]], quiet) is Spread.SPREAD
    assert (
        spread_test(
            jittered, 0.1, [], lockstep_below=0.08, spread_from=0.1, noise_factor=2.0
        ).noise_difference_s
        == math.inf
    )


def test_lateness_noise_scales_the_latest_and_has_a_floor() -> None:
    """Doubt grows with how late the grader's own retries came (90th percentile), floored."""
    assert lateness_noise([0.005, 0.03, 0.01], factor=2.0, floor=0.02) == pytest.approx(0.052)
    assert lateness_noise([0.001], factor=2.0, floor=0.02) == 0.02
    assert lateness_noise([], factor=2.0, floor=0.02) == 0.02


def test_bounds_count_gives_late_waits_the_benefit_of_the_doubt() -> None:
    """Late by less than slack + noise is noisy; early is never noise; far late is beyond."""
    waits = [
        (0.05, 0.0, 0.1),  # within
        (0.125, 0.0, 0.1),  # within the slack
        (0.15, 0.0, 0.1),  # noisy: 20 ms past the slack, noise 40 ms
        (0.2, 0.0, 0.1),  # beyond
        (0.01, 0.05, 0.1),  # too early: beyond, whatever the noise
    ]
    assert count_bounds(waits, slack=0.03, noise=0.04) == BoundsCount(2, 1, 2)


def test_stamina_waits_late_by_noise_are_not_beyond() -> None:
    """The issue's case: 50-100 ms waits that woke 20-40 ms late are noise, not a FAIL."""
    waits = [(0.05 + 0.0025 * n + 0.04, 0.0, 0.1) for n in range(20)]
    counted = count_bounds(waits, slack=0.03, noise=lateness_noise([0.03], 2.0, 0.02))
    assert counted.beyond == 0 and counted.noisy > 0


def test_growth_grows_for_doubling_caps() -> None:
    """Full-jitter-like waits whose second range doubles the first: GROWS."""
    firsts = [0.005 * n for n in range(20)]
    seconds = [0.01 * n for n in range(20)]
    test = growth(firsts, seconds, 0.05, z_grows=3.09, z_flat=2.33)
    assert test.verdict is Growth.GROWS
    assert math.isclose(test.gain_s, 0.0475)


def test_growth_is_flat_for_the_same_distribution_shifted_by_noise() -> None:
    """The same waits twice over three storms, the second ones 5 ms later (noise): FLAT."""
    firsts = [0.05 + 0.1 * n / 59 for n in range(60)]
    seconds = [w + 0.005 for w in reversed(firsts)]
    assert growth(firsts, seconds, 0.05, z_grows=3.09, z_flat=2.33).verdict is Growth.FLAT


def test_growth_of_a_straddling_uniform_wait_is_flat() -> None:
    """Uniform 50-150 ms before every retry straddles the first cap but does not grow."""
    firsts = [0.05 + 0.1 * n / 19 for n in range(20)]
    seconds = list(reversed(firsts))
    assert growth(firsts, seconds, 0.05, z_grows=3.09, z_flat=2.33).verdict is Growth.FLAT


def test_growth_is_unsure_on_too_little_data() -> None:
    """Two samples each, noisy: UNSURE, so the check measures more before it judges."""
    test = growth([0.01, 0.09], [0.02, 0.15], 0.05, z_grows=3.09, z_flat=2.33)
    assert test.verdict is Growth.UNSURE
    assert growth([0.1], [0.2], 0.05, z_grows=3.09, z_flat=2.33).verdict is Growth.UNSURE


@pytest.mark.parametrize(
    ("jitter", "first", "second"),
    [
        ("full", (0.0, 0.1), (0.0, 0.2)),
        ("equal", (0.05, 0.1), (0.1, 0.2)),
        ("decorrelated", (0.1, 0.3), (0.1, 0.9)),
    ],
)
def test_declared_bounds_of_each_jitter(
    jitter: str, first: tuple[float, float], second: tuple[float, float]
) -> None:
    """The course's policy (base 0.1 s, cap 1 s) under each declared jitter."""
    retries = Retries(3, 0.1, 1.0, jitter)  # type: ignore[arg-type]
    assert declared_bounds(retries, 1) == pytest.approx(first)
    assert declared_bounds(retries, 2) == pytest.approx(second)


def test_declared_mean_gain_of_each_jitter() -> None:
    """The mean wait grows by half the cap's growth (full), 3/4 (equal), 1.5 base (decorr.)."""
    gains = {
        jitter: declared_mean(Retries(3, 0.1, 1.0, jitter), 2)
        - declared_mean(Retries(3, 0.1, 1.0, jitter), 1)
        for jitter in ("full", "equal", "decorrelated")
    }
    assert gains == pytest.approx({"full": 0.05, "equal": 0.075, "decorrelated": 0.15})


JSON = "application/json"


def context(lag_s: float = 0.0) -> Context:
    """A context on the reference's repo whose machine woke ``lag_s`` late at worst."""
    meter = LagMeter()
    ctx = Context(LearnerRepo.open(REFERENCE), budgets.COURSE, 0, lag=meter)
    meter.record(ctx.started_at, lag_s)
    return ctx


def test_fail_fast_answer_within_budget_has_no_problem() -> None:
    """A JSON 504 at 2.9 s (api budget 3 s + 0.5 s tolerance) is what the contract asks."""
    result = CheckoutResult(1, 0.0, 2.9, 504, {"error": "timeout"}, content_type=JSON)
    problems = fail_fast_problems(context(), result)
    assert list(problems) == [] and problems.doubts == []


def test_fail_fast_answer_late_by_noise_is_a_doubt_not_a_problem() -> None:
    """3.6 s on a machine whose loop woke 40 ms late (band 160 ms): INCONCLUSIVE material."""
    result = CheckoutResult(1, 0.0, 3.6, 503, {"error": "x"}, content_type=JSON)
    problems = fail_fast_problems(context(lag_s=0.04), result)
    assert list(problems) == [] and len(problems.doubts) == 1
    with pytest.raises(CheckInconclusive):
        problems.judge("late")


def test_json_labelled_text_plain_is_not_the_contracts_json_body() -> None:
    """A 503 whose JSON body says text/plain is a problem: clients parse by the label."""
    result = CheckoutResult(1, 0.0, 0.5, 503, {"error": "x"}, content_type="text/plain")
    assert len(fail_fast_problems(context(), result)) == 1


def test_fail_fast_answer_late_beyond_noise_fails() -> None:
    """5 s on a quiet machine is the service's doing; so are a 200 and a body not JSON."""
    result = CheckoutResult(1, 0.0, 5.0, 200, None)
    problems = fail_fast_problems(context(), result)
    assert len(problems) == 3
    with pytest.raises(CheckFailed, match=r"late: checkout answered after 5\.00 s"):
        problems.judge("late")


def test_no_answer_fails_whatever_the_noise() -> None:
    """No answer at all is never noise."""
    result = CheckoutResult(1, 0.0, 5.5, error="no answer")
    assert len(fail_fast_problems(context(lag_s=1.0), result)) == 1


def test_outage_cap_is_one_plus_ratio_plus_slack() -> None:
    """The course's bucket (ratio 0.1) allows 1.15 attempts per checkout once spent."""
    assert cap_of(RetryBudget(ratio=0.1, burst=10)) == pytest.approx(1.15)


def test_bounds_zone_counts_noise_only_to_reach_the_share() -> None:
    """Over 10 % beyond is BEYOND; over 10 % only with the noisy ones is NOISY."""
    assert BoundsCount(18, 0, 2).zone(0.10) is Zone.WITHIN
    assert BoundsCount(17, 0, 3).zone(0.10) is Zone.BEYOND
    assert BoundsCount(17, 2, 1).zone(0.10) is Zone.NOISY
