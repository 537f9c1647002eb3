"""The statistics the timing checks judge with: pure functions, unit-tested on fixed inputs.

A verdict on timing has three outcomes, never two: FAIL only when what was measured is wrong by
more than the machine's noise, measured in the same run, could explain; INCONCLUSIVE when noise
could explain it either way; PASS otherwise. ``benchmarks/simulate_retry_stats.py`` imports these
functions and the thresholds of milestone 3's storm checks, written first with their error rates.

At the end, what milestone 3's two modules share: when an attempt ended, the waits between
attempts, what a declared retry policy gives (each wait's range and mean), and how many failing
checkouts a fresh retry budget retries in full; and :func:`charted`, which gives a verdict raised
by any check its chart.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from grader.checkkit import CheckFailed, CheckInconclusive, CheckSkipped

if TYPE_CHECKING:
    from grader.checkkit import Attempt, Chart, Retries, RetryBudget


# --- Milestone 3's thresholds, with their error rates ----------------------------------------
#
# The storm checks (checks/m3_storm.py) judge with these. Figures from `python
# benchmarks/simulate_retry_stats.py`, which imports these thresholds and the functions below,
# and draws timing noise from lateness measured on this machine (benchmarks/data/lateness.json:
# the no-jitter mutant's waits minus their declared length, graded quiet, with two and with four
# busy loops). It prints the rates quoted here.
#
# Spread of first retries: the storm's checkouts run on up to MAX_STORM_INSTANCES fresh instances,
# and a busy machine makes the waits of one instance late together (measured: within an instance
# they differ by 0-7 ms at any load; between instances by up to 30 ms). So the statistic is D,
# the mean difference of two first-retry waits of the same instance (checks/stats.spread_test),
# over the width of the declared range: a uniform draw over the range gives 1/3, stamina's
# U(50, 100) ms against a declared 0-100 ms 0.17, no jitter 0.00-0.07 (measured). Noise only
# widens the spread, so LOCKSTEP (FAIL) below SPREAD_LOCKSTEP; a PASS from SPREAD_PASS, and only
# when D is NOISE_FACTOR times that of the grader's own lockstep retries (groups of the same
# size, one after another); in between, or when noise is as wide, INCONCLUSIVE.
#   Measured noise (benchmarks/data/lateness.json, 8 storms per load of the no-jitter mutant):
#   D of its waits 0.9-3.6 ms quiet, 2.2-4.3 with two busy loops, 1.3-5.8 with four; of the
#   grader's lockstep retries 0.8-6.2 ms. Simulated with it (simulate_retry_stats.py, 2000
#   gradings per row, quiet / 2 / 4 loops): full, equal and decorrelated jitter and stamina's
#   waits never FAIL, INCONCLUSIVE <= 0.6 %; no jitter FAILs 100 / 100 / 100 % (10 ms of jitter
#   99.4-100 %). The IQR/median this replaced let no jitter PASS 9-17 % under load: the
#   lateness between instances looked like jitter. Measured (verdict_stability.py --policies,
#   10 runs per correct repo, with docker gradings and other tests running too): 0 FAIL;
#   jitter-spread INCONCLUSIVE 1 of 60 with two busy loops, 7 of 60 with four (equal jitter
#   near its upper bound the most); no jitter FAILed 10 of 10 at each load.
SPREAD_LOCKSTEP = 0.08
SPREAD_PASS = 0.10
NOISE_FACTOR = 2.0
# Bounds: a wait is compared with its declared range widened by BOUND_SLACK_S (the API learns
# of a failure a little after the stub sent it: 3-20 ms measured on a quiet machine), then by the
# noise measured now: LATENESS_FACTOR x the latest of the grader's own lockstep retries (under
# four busy loops those came 16-33 ms late, the API's own waits 2-36 ms). A wait past both is
# the service's doing; one only past the slack is noise's benefit of the doubt. Lateness only
# lengthens a wait, so one too short is never noise.
BOUND_SLACK_S = 0.03
LATENESS_FACTOR = 2.0
LATENESS_FLOOR_S = 0.02
# At most this share of waits may fall outside the declared bounds (one stray sample of 20
# on a busy machine is noise; a policy with other bounds puts most of them outside).
OUTSIDE_ALLOWED = 0.10
# Growth: mean(second waits) - mean(first waits), against its standard error (a lateness common
# to both cancels out). GROWS when > 0 by Z_GROWS standard errors; FLAT (FAIL) when below half
# the declared mean gain by Z_FLAT standard errors; otherwise another storm of fresh instances
# adds data, up to MAX_STORMS, and then it is INCONCLUSIVE. Simulated with the measured noise
# (quiet / 2 / 4 busy loops): full jitter falsely FAILs 0 / 0 / 0.1 % and ends INCONCLUSIVE
# 0.3-0.9 %; equal, decorrelated and stamina's waits never FAIL (INCONCLUSIVE <= 2.4 %); a
# fixed cap, or the same 40-100 ms before every retry, FAILs 97.6-99.8 % and PASSes <= 1.1 %.
# Measured: 0 FAIL on every correct repo at two and four loops; both mutants FAILed 10 of 10.
Z_GROWS = 3.09  # one-sided 0.1 %
Z_FLAT = 2.33  # one-sided 1 %
MAX_STORMS = 3
GROWTH_OBSERVABLE = 1.3  # declared cap ratio below which growth is not asserted


class Zone(enum.Enum):
    """Where a measurement falls against a limit the machine's noise may blur."""

    WITHIN = "within"  # inside the limit and its fixed slack
    NOISY = "noisy"  # past it, by no more than the measured noise could explain
    BEYOND = "beyond"  # past it by more than noise could explain: the service's doing


def zone(value: float, limit: float, noise: float) -> Zone:
    """How ``value`` stands against an upper ``limit``, with ``noise`` seconds of doubt above."""
    if value <= limit:
        return Zone.WITHIN
    return Zone.NOISY if value <= limit + noise else Zone.BEYOND


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation between order statistics)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean_difference(groups: Sequence[Sequence[float]]) -> float | None:
    """The mean absolute difference of two values of the same group, over every such pair.

    Gini's mean difference, pooled over groups: a uniform draw over a range of width W gives
    W / 3. Taken within groups that share a lateness (the waits of one process, which a busy
    machine wakes late together), that lateness cancels out of it. None without a pair.
    """
    diffs = [abs(a - b) for group in groups for a, b in itertools.combinations(group, 2)]
    return statistics.fmean(diffs) if diffs else None


def lateness_noise(late: Sequence[float], factor: float, floor: float) -> float:
    """Seconds of doubt to allow a wait, from how late known waits came on this machine now.

    ``late`` are the grader's own lockstep retries' overshoots (each slept a known time); their
    90th percentile, not their maximum, so that one stray spike does not excuse everything.
    """
    return max(floor, factor * quantile(late, 0.9)) if late else floor


@dataclass(frozen=True, slots=True)
class BoundsCount:
    """How many waits fell within their declared bounds, in the noise band, or beyond it."""

    within: int
    noisy: int
    beyond: int

    @property
    def total(self) -> int:
        """Every wait counted."""
        return self.within + self.noisy + self.beyond

    def zone(self, allowed_share: float) -> Zone:
        """Too many waits (over ``allowed_share``) beyond their bounds, or only with the noise."""
        allowed = allowed_share * self.total
        if self.beyond > allowed:
            return Zone.BEYOND
        return Zone.NOISY if self.beyond + self.noisy > allowed else Zone.WITHIN


def count_bounds(
    waits: Sequence[tuple[float, float, float]], slack: float, noise: float
) -> BoundsCount:
    """Classify ``(wait, lo, hi)`` triples against ``[lo - slack, hi + slack]``.

    Lateness only lengthens a wait, so a wait too short is never noise; a wait too long by no
    more than ``noise`` past the slack may be.
    """
    within = noisy = beyond = 0
    for wait, lo, hi in waits:
        if wait < lo - slack:
            beyond += 1
            continue
        found = zone(wait, hi + slack, noise)
        within += found is Zone.WITHIN
        noisy += found is Zone.NOISY
        beyond += found is Zone.BEYOND
    return BoundsCount(within, noisy, beyond)


class Growth(enum.Enum):
    """What the first and second waits of many checkouts say about backoff."""

    GROWS = "grows"  # second waits longer than first ones, beyond doubt
    FLAT = "flat"  # clearly less growth than declared: no backoff
    UNSURE = "unsure"  # not enough evidence either way: measure more, or say INCONCLUSIVE


@dataclass(frozen=True, slots=True)
class GrowthTest:
    """The growth test's numbers: mean(second) - mean(first), its standard error, the verdict."""

    gain_s: float
    stderr_s: float
    declared_gain_s: float
    verdict: Growth


def growth(
    firsts: Sequence[float],
    seconds: Sequence[float],
    declared_gain_s: float,
    *,
    z_grows: float,
    z_flat: float,
) -> GrowthTest:
    """Judge growth from the two distributions of waits, not from one sample's extreme.

    The statistic is the difference of the means, mean(seconds) - mean(firsts): a lateness
    common to both waits cancels out of it. GROWS when it is above zero by ``z_grows`` standard
    errors; FLAT when it is below half the declared mean gain by ``z_flat`` standard errors (a
    policy without backoff gains nothing); UNSURE in between.
    """
    if len(firsts) < 2 or len(seconds) < 2:
        return GrowthTest(0.0, math.inf, declared_gain_s, Growth.UNSURE)
    gain = statistics.fmean(seconds) - statistics.fmean(firsts)
    stderr = math.sqrt(
        statistics.variance(firsts) / len(firsts) + statistics.variance(seconds) / len(seconds)
    )
    if gain - z_grows * stderr > 0:
        verdict = Growth.GROWS
    elif gain + z_flat * stderr < declared_gain_s / 2:
        verdict = Growth.FLAT
    else:
        verdict = Growth.UNSURE
    return GrowthTest(gain, stderr, declared_gain_s, verdict)


class Spread(enum.Enum):
    """What the first-retry waits of one storm say about jitter."""

    LOCKSTEP = "lockstep"  # far less spread than the declared range gives: no jitter
    SPREAD = "spread"  # spread as jitter spreads them, beyond what noise explains
    UNSURE = "unsure"  # in between, or the machine's own noise is as wide


@dataclass(frozen=True, slots=True)
class SpreadTest:
    """The spread test's numbers: mean differences within instances, their ratio, the verdict."""

    difference_s: float  # two waits of the same instance, apart on average
    ratio: float  # difference_s over the declared range's width (a uniform draw: 1/3)
    noise_difference_s: float  # the same of the grader's own lockstep retries
    verdict: Spread


def spread_test(
    groups: Sequence[Sequence[float]],
    width_s: float,
    noise_groups: Sequence[Sequence[float]],
    *,
    lockstep_below: float,
    spread_from: float,
    noise_factor: float,
) -> SpreadTest:
    """Judge jitter from how far apart waits of the same instance are, against the declared range.

    Waits of one instance are made late together by a busy machine, so their differences are
    the policy's jitter plus little noise; waits of different instances differ by their
    processes' lateness too. LOCKSTEP below ``lockstep_below`` of the range's width; SPREAD from
    ``spread_from`` when also ``noise_factor`` times the grader's own lockstep retries' mean
    difference; UNSURE otherwise. Groups of one wait are pooled, so a storm of single-checkout
    instances is still judged (with the lateness between processes in it).
    """
    difference = mean_difference(groups)
    if difference is None:
        difference = mean_difference([[x for group in groups for x in group]]) or 0.0
    noise = mean_difference(noise_groups)
    noise_s = math.inf if noise is None else noise
    ratio = difference / width_s if width_s > 0 else math.inf
    if ratio < lockstep_below:
        verdict = Spread.LOCKSTEP
    elif ratio >= spread_from and difference >= noise_factor * noise_s:
        verdict = Spread.SPREAD
    else:
        verdict = Spread.UNSURE
    return SpreadTest(difference, ratio, noise_s, verdict)


# --- What the checks share beyond the statistics ----------------------------------------------


def ended_at(attempt: Attempt) -> float:
    """When an attempt ended (answered or given up on); its arrival while it is still open."""
    return attempt.finished_at or attempt.gave_up_at or attempt.arrived_at


def checkouts_per_instance(bucket: RetryBudget | None, retries_each: int, wanted: int) -> int:
    """How many failing checkouts a fresh instance's retry ``bucket`` can retry in full."""
    if bucket is None or retries_each == 0:
        return wanted
    return max(1, min(wanted, bucket.burst // retries_each))


def waits(attempts: Sequence[Attempt]) -> list[float]:
    """The waits between consecutive attempts: from the end of one to the next's arrival."""
    gaps = []
    for previous, following in itertools.pairwise(attempts):
        gaps.append(following.arrived_at - ended_at(previous))
    return gaps


def declared_bounds(retries: Retries, retry: int) -> tuple[float, float]:
    """The declared range of the wait before retry ``retry`` (1 = the first retry)."""
    cap = retries.max_delay_before(retry)
    if retries.jitter == "equal":
        return cap / 2, cap
    if retries.jitter == "decorrelated":
        return min(retries.base_delay_s, cap), cap
    return 0.0, cap


def declared_mean(retries: Retries, retry: int) -> float:
    """The mean wait the declared policy gives before retry ``retry``."""
    if retries.jitter == "decorrelated":
        # min(cap, uniform(base, 3 * previous)), starting from previous = base: the mean
        # follows (base + 3 * previous mean) / 2, capped.
        mean = retries.base_delay_s
        for _ in range(retry):
            mean = min(retries.max_delay_s, (retries.base_delay_s + 3 * mean) / 2)
        return mean
    lo, hi = declared_bounds(retries, retry)
    return (lo + hi) / 2


@contextlib.contextmanager
def charted(chart: Chart | None) -> Iterator[None]:
    """A verdict raised inside carries ``chart`` (grader.series) in its evidence.

    ``Passed`` takes its chart as a keyword; CheckFailed and its kin take none, so a check
    judges under ``with charted(chart):`` (a ``Problems.judge``, a ``raise``) instead.
    """
    try:
        yield
    except (CheckFailed, CheckInconclusive, CheckSkipped) as verdict:
        verdict.evidence = replace(verdict.evidence, chart=chart)
        raise
