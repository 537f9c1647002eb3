"""The statistics the timing checks judge with: pure functions, unit-tested on fixed inputs.

A verdict on timing has three outcomes, never two: FAIL only when what was measured is wrong by
more than the machine's noise, measured in the same run, could explain; INCONCLUSIVE when noise
could explain it either way; PASS otherwise. ``benchmarks/simulate_retry_stats.py`` imports these
functions and thresholds to compute the error rates written beside them in the checks.
"""

from __future__ import annotations

import enum
import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


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
