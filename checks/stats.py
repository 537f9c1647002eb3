"""The statistics the timing checks judge with: pure functions, unit-tested on fixed inputs.

A verdict on timing has three outcomes, never two: FAIL only when what was measured is wrong by
more than the machine's noise, measured in the same run, could explain; INCONCLUSIVE when noise
could explain it either way; PASS otherwise. ``benchmarks/simulate_retry_stats.py`` imports these
functions and thresholds to compute the error rates written beside them in the checks.
"""

from __future__ import annotations

import enum
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


def spread(values: Sequence[float], shift: float = 0.0) -> tuple[float, float]:
    """(IQR / median, IQR) of ``values``; the ratio is infinite for a zero median.

    ``shift`` is taken off the median first: the lateness common to every wait on a busy
    machine, which lengthens the waits without spreading them.
    """
    quartiles = statistics.quantiles(values, n=4)
    iqr = quartiles[2] - quartiles[0]
    median = statistics.median(values) - shift
    return (iqr / median if median > 0 else math.inf), iqr


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
