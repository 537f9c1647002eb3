"""Error rates of milestone 3's statistical checks, by simulation over the policies learners use.

Imports the thresholds from checks/m3_retries.py, so the figures follow the code. For each
policy: how often the jitter check's spread test and the backoff check's growth test would FAIL
it (a false FAIL for a jittered, growing policy; the wanted verdict for a broken one).

    python benchmarks/simulate_retry_stats.py [--runs 100000] [--noise-ms 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checks.m3_retries import BOUND_TOLERANCE_S, SPREAD_MIN, STORM_CHECKOUTS

BASE, CAP = 0.1, 1.0  # the course's example policy: base 0.1 s, cap 1 s, 3 attempts


def capped(retry: int) -> float:
    """The exponential cap before retry ``retry``."""
    return min(CAP, BASE * 2.0 ** (retry - 1))


# Each policy draws the waits before retries 1 and 2.
Policy = Callable[[random.Random], tuple[float, float]]


def full(rng: random.Random) -> tuple[float, float]:
    """AWS full jitter, and tenacity's wait_random_exponential: uniform(0, cap)."""
    return rng.uniform(0, capped(1)), rng.uniform(0, capped(2))


def equal(rng: random.Random) -> tuple[float, float]:
    """AWS equal jitter: cap/2 + uniform(0, cap/2)."""
    return (
        capped(1) / 2 + rng.uniform(0, capped(1) / 2),
        capped(2) / 2 + rng.uniform(0, capped(2) / 2),
    )


def decorrelated(rng: random.Random) -> tuple[float, float]:
    """AWS decorrelated jitter: min(cap, uniform(base, 3 * previous))."""
    first = min(CAP, rng.uniform(BASE, 3 * BASE))
    return first, min(CAP, rng.uniform(BASE, 3 * first))


def stamina_defaults(rng: random.Random) -> tuple[float, float]:
    """Stamina's defaults: initial 0.1 s doubling, plus uniform(0, 1 s) of jitter."""
    return capped(1) + rng.uniform(0, 1.0), capped(2) + rng.uniform(0, 1.0)


def no_jitter(rng: random.Random) -> tuple[float, float]:
    """Exponential backoff without jitter: lockstep retries."""
    return capped(1), capped(2)


def token_jitter(rng: random.Random) -> tuple[float, float]:
    """Exponential backoff with 10 ms of jitter: lockstep for all practical purposes."""
    return capped(1) + rng.uniform(0, 0.01), capped(2) + rng.uniform(0, 0.01)


def constant_full_jitter(rng: random.Random) -> tuple[float, float]:
    """A fixed cap with full jitter: jittered, but the backoff does not grow."""
    return rng.uniform(0, BASE), rng.uniform(0, BASE)


POLICIES: dict[str, Policy] = {
    "full jitter (AWS, tenacity)": full,
    "equal jitter": equal,
    "decorrelated jitter": decorrelated,
    "stamina defaults": stamina_defaults,
    "no jitter": no_jitter,
    "10 ms of jitter": token_jitter,
    "constant + full jitter": constant_full_jitter,
}


def spread_fails(firsts: list[float]) -> bool:
    """The jitter check's spread test: IQR / median below SPREAD_MIN."""
    quartiles = statistics.quantiles(firsts, n=4)
    return (quartiles[2] - quartiles[0]) / statistics.median(firsts) < SPREAD_MIN


def growth_fails(seconds: list[float], tolerance: float) -> bool:
    """The backoff check's growth test: no second wait past the first cap plus tolerance."""
    return not any(w > capped(1) + tolerance for w in seconds)


def main() -> int:
    """Print the FAIL rate of each test for each policy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--noise-ms", type=float, default=5.0)
    parser.add_argument("--checkouts", type=int, default=STORM_CHECKOUTS)
    args = parser.parse_args()
    rng = random.Random(1)
    noise = args.noise_ms / 1000
    # The calibration's IQR of a normal noise is 1.35 sigma; the check adds it to the slack.
    tolerance = BOUND_TOLERANCE_S + 1.35 * noise
    print(f"{args.runs} runs, {args.checkouts} checkouts, timing noise sd {args.noise_ms:g} ms")
    print(f"{'policy':<30} {'spread test FAILs':>18} {'growth test FAILs':>18}")
    for name, policy in POLICIES.items():
        spread_count = growth_count = 0
        for _ in range(args.runs):
            pairs = [policy(rng) for _ in range(args.checkouts)]
            firsts = [max(0.0, a + rng.gauss(0, noise)) for a, _ in pairs]
            seconds = [max(0.0, b + rng.gauss(0, noise)) for _, b in pairs]
            spread_count += spread_fails(firsts)
            growth_count += growth_fails(seconds, tolerance)
        print(f"{name:<30} {spread_count / args.runs:>17.4%} {growth_count / args.runs:>17.4%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
