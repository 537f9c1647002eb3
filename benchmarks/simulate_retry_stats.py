"""Error rates of milestone 3's statistical checks, by simulation, with the noise measured here.

Runs the checks' own statistics (checks/stats.py, with the thresholds beside them) on
waits drawn from the policies learners use, each wait made late as this machine made the API's
waits late: the lateness of a storm recorded by `benchmarks/measure_lateness.py` (quiet, two and
four busy loops), its own lockstep calibration included. For each policy and load it prints how
often `m3.jitter-spread` and `m3.backoff-grows` end PASS, FAIL and INCONCLUSIVE: a FAIL of a
correct policy is a false FAIL; a PASS of a broken one a miss.

    python benchmarks/simulate_retry_stats.py [--runs 5000] [--lateness FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checks.stats import (
    BOUND_SLACK_S,
    LATENESS_FACTOR,
    LATENESS_FLOOR_S,
    MAX_STORMS,
    NOISE_FACTOR,
    OUTSIDE_ALLOWED,
    SPREAD_LOCKSTEP,
    SPREAD_PASS,
    Z_FLAT,
    Z_GROWS,
    Growth,
    Spread,
    Zone,
    count_bounds,
    declared_bounds,
    declared_mean,
    growth,
    lateness_noise,
    spread_test,
)
from grader.learner.budgets import Jitter, Retries

ROOT = Path(__file__).resolve().parent.parent
BASE, CAP = 0.1, 1.0  # the course's example policy: base 0.1 s, cap 1 s, 3 attempts


def capped(retry: int) -> float:
    """The exponential cap before retry ``retry``."""
    return min(CAP, BASE * 2.0 ** (retry - 1))


@dataclass(frozen=True, slots=True)
class Policy:
    """How a learner's code waits before retries 1 and 2, and what its table declares."""

    draw: Callable[[random.Random], tuple[float, float]]
    declared: Jitter
    jitters: bool  # m3.jitter-spread should PASS it
    grows: bool  # m3.backoff-grows should PASS it


def _decorrelated(rng: random.Random) -> tuple[float, float]:
    first = min(CAP, rng.uniform(BASE, 3 * BASE))
    return first, min(CAP, rng.uniform(BASE, 3 * first))


POLICIES: dict[str, Policy] = {
    "full jitter (AWS, tenacity)": Policy(
        lambda r: (r.uniform(0, capped(1)), r.uniform(0, capped(2))), "full", True, True
    ),
    "equal jitter": Policy(
        lambda r: (
            capped(1) / 2 + r.uniform(0, capped(1) / 2),
            capped(2) / 2 + r.uniform(0, capped(2) / 2),
        ),
        "equal",
        True,
        True,
    ),
    "decorrelated jitter": Policy(_decorrelated, "decorrelated", True, True),
    "stamina 0.05*2^n + U(0, 0.05)": Policy(
        lambda r: (0.05 + r.uniform(0, 0.05), 0.1 + r.uniform(0, 0.05)), "full", True, True
    ),
    "no jitter (mutant: half of each cap)": Policy(
        lambda r: (capped(1) / 2, capped(2) / 2), "full", False, True
    ),
    "10 ms of jitter": Policy(
        lambda r: (capped(1) + r.uniform(0, 0.01), capped(2) + r.uniform(0, 0.01)),
        "full",
        False,
        True,
    ),
    "fixed cap + full jitter (mutant)": Policy(
        lambda r: (r.uniform(0, BASE), r.uniform(0, BASE)), "full", True, False
    ),
    "uniform 40-100 ms every retry (mutant)": Policy(
        lambda r: (r.uniform(0.04, 0.1), r.uniform(0.04, 0.1)), "full", True, False
    ),
    "uniform 50-150 ms every retry": Policy(
        lambda r: (r.uniform(0.05, 0.15), r.uniform(0.05, 0.15)), "full", True, False
    ),
}


@dataclass(frozen=True, slots=True)
class Storm:
    """One recorded storm's lateness, in seconds: per instance, and the lockstep calibration."""

    w1_late: list[list[float]]  # first waits' lateness, one list per instance
    w2_late: list[float]
    lockstep_late: list[list[float]]  # the grader's own retries' lateness, per group


def _seconds(groups: list[list[float]]) -> list[list[float]]:
    return [[max(0.0, x / 1000) for x in group] for group in groups if group]


def load_storms(path: Path) -> dict[str, list[Storm]]:
    """The storms measured per load (busy loops), from measure_lateness.py's file."""
    measured = json.loads(path.read_text("utf-8"))
    return {
        load: [
            Storm(
                _seconds(s["w1_late_by_instance_ms"]),
                [max(0.0, x / 1000) for x in s["w2_late_ms"]],
                _seconds(s["lockstep_late_by_group_ms"]),
            )
            for s in storms
            if s["w1_late_by_instance_ms"] and s["w2_late_ms"] and s["lockstep_late_by_group_ms"]
        ]
        for load, storms in measured.items()
    }


def wave(
    rng: random.Random, policy: Policy, storm: Storm
) -> tuple[list[list[tuple[float, float]]], float, list[list[float]]]:
    """One wave: (first, second) waits per instance, the noise band, lockstep waits per group.

    Each simulated instance's waits are made late as one of ``storm``'s instances was.
    """
    instances = []
    for late in storm.w1_late:
        waits = []
        for _ in late:
            first, second = policy.draw(rng)
            waits.append((first + rng.choice(late), second + rng.choice(storm.w2_late)))
        instances.append(waits)
    flat_lockstep = [x for group in storm.lockstep_late for x in group]
    noise = lateness_noise(flat_lockstep, LATENESS_FACTOR, LATENESS_FLOOR_S)
    lockstep = [[capped(1) + late for late in group] for group in storm.lockstep_late]
    return instances, noise, lockstep


def bounds_verdict(triples: list[tuple[float, float, float]], noise: float) -> str | None:
    """FAIL or INCONCLUSIVE from the bounds, as the checks judge them; None when within."""
    found = count_bounds(triples, BOUND_SLACK_S, noise).zone(OUTSIDE_ALLOWED)
    return {Zone.BEYOND: "FAIL", Zone.NOISY: "INCONCLUSIVE", Zone.WITHIN: None}[found]


def judge(
    rng: random.Random, policy: Policy, storms: list[Storm], retries: Retries
) -> tuple[str, str]:
    """The verdicts of m3.jitter-spread and m3.backoff-grows for one simulated grading."""
    bounds = [declared_bounds(retries, 1), declared_bounds(retries, 2)]
    storm = rng.choice(storms)
    instances, noise, lockstep = wave(rng, policy, storm)
    groups = [[w for w, _ in waits] for waits in instances]
    spread = spread_test(
        groups,
        bounds[0][1] - bounds[0][0],
        lockstep,
        lockstep_below=SPREAD_LOCKSTEP,
        spread_from=SPREAD_PASS,
        noise_factor=NOISE_FACTOR,
    )
    if spread.verdict is Spread.LOCKSTEP:
        jitter = "FAIL"
    else:
        firsts = [w for group in groups for w in group]
        jitter = bounds_verdict([(w, *bounds[0]) for w in firsts], noise) or (
            "INCONCLUSIVE" if spread.verdict is Spread.UNSURE else "PASS"
        )
    gain = declared_mean(retries, 2) - declared_mean(retries, 1)
    waits = [pair for group in instances for pair in group]
    all_waits, noises = list(waits), [noise]
    test = growth(
        [a for a, _ in all_waits], [b for _, b in all_waits], gain, z_grows=Z_GROWS, z_flat=Z_FLAT
    )
    while test.verdict is Growth.UNSURE and len(noises) < MAX_STORMS:
        more, more_noise, _ = wave(rng, policy, rng.choice(storms))
        all_waits += [pair for group in more for pair in group]
        noises.append(more_noise)
        test = growth(
            [a for a, _ in all_waits],
            [b for _, b in all_waits],
            gain,
            z_grows=Z_GROWS,
            z_flat=Z_FLAT,
        )
    if test.verdict is Growth.FLAT:
        return jitter, "FAIL"
    triples = [(a, *bounds[0]) for a, _ in all_waits] + [(b, *bounds[1]) for _, b in all_waits]
    grows = bounds_verdict(triples, max(noises)) or (
        "INCONCLUSIVE" if test.verdict is Growth.UNSURE else "PASS"
    )
    return jitter, grows


def main() -> int:
    """Print PASS / FAIL / INCONCLUSIVE rates of both checks for each policy and load."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument(
        "--lateness", type=Path, default=ROOT / "benchmarks" / "data" / "lateness.json"
    )
    args = parser.parse_args()
    rng = random.Random(1)
    by_load = load_storms(args.lateness)
    print(f"{args.runs} simulated gradings per row; noise from {args.lateness.name}")
    print(
        f"{'policy':<40} {'load':>4}  {'jitter-spread P/F/I %':>22}  {'backoff-grows P/F/I %':>22}"
    )
    for name, policy in POLICIES.items():
        retries = Retries(3, BASE, CAP, policy.declared)
        for load, storms in by_load.items():
            counts: tuple[Counter[str], Counter[str]] = (Counter(), Counter())
            for _ in range(args.runs):
                for counter, verdict in zip(
                    counts, judge(rng, policy, storms, retries), strict=True
                ):
                    counter[verdict] += 1
            cells = [
                "/".join(f"{100 * c[v] / args.runs:.2f}" for v in ("PASS", "FAIL", "INCONCLUSIVE"))
                for c in counts
            ]
            print(f"{name:<40} {load:>4}  {cells[0]:>22}  {cells[1]:>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
