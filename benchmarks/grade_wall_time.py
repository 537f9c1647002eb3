"""Wall time of grading each milestone on the reference solution: median of N runs.

Prints figures; asserts nothing (speed targets live here, not in timed tests).
Targets on a 2-core machine: milestone 1 under 1 s, milestone 2 under 6 s, milestones 3 and 4
under 10 s each, milestone 5 under 6 s; the load test's overhead on top of the k6 run itself
(stack up and down, parsing, reporting) under 5 s. `all` (every milestone in one run, one stack)
must take less than the sum of the medians of the milestones graded one by one.

    python benchmarks/grade_wall_time.py [--runs 5] [--milestone milestone-2 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGETS_S = {
    "milestone-1": 1.0,
    "milestone-2": 6.0,
    "milestone-3": 10.0,
    "milestone-4": 10.0,
    "milestone-5": 6.0,
    "loadtest": 5.0,  # overhead over the k6 run, not the wall time
    "all": 0.0,  # the sum of the single milestones' wall times, measured in the same run
}


def grade_once(milestone: str, repo: Path) -> tuple[float, int, dict[str, Any]]:
    """Run `failfast check` once; its wall time, exit code and JSON report."""
    argv = [sys.executable, "-m", "grader", "check", milestone, "--repo", str(repo)]
    started = time.perf_counter()
    done = subprocess.run(
        [*argv, "--format", "json"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        report = {}
    return elapsed, done.returncode, report


def k6_seconds(report: dict[str, Any]) -> float:
    """How long k6 itself ran, from the load test's report."""
    for entry in report.get("checks", []):
        if entry["id"] == "lt.k6-run":
            return float(entry["data"].get("k6_duration_s", 0.0))
    return 0.0


def main() -> int:
    """Print the median, min and max per milestone against its target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--milestone", action="append", choices=list(TARGETS_S))
    parser.add_argument("--repo", type=Path, default=ROOT / "reference" / "solution")
    args = parser.parse_args()
    print(f"{'milestone':<12} {'median':>8} {'min':>8} {'max':>8} {'target':>8}  exit codes")
    walls: dict[str, float] = {}  # median wall time of each single milestone, k6 included
    for milestone in args.milestone or list(TARGETS_S):
        times, wall, codes = [], [], set()
        for _ in range(args.runs):
            elapsed, code, report = grade_once(milestone, args.repo)
            # The load test is mostly k6's own fixed duration: what the grader adds is the figure.
            times.append(elapsed - k6_seconds(report) if milestone == "loadtest" else elapsed)
            wall.append(elapsed)
            codes.add(code)
        walls[milestone] = statistics.median(wall)
        target = TARGETS_S[milestone]
        if milestone == "all":
            singles = [m for m in TARGETS_S if m != "all"]
            if not all(m in walls for m in singles):
                print("all          (grade every single milestone in the same run to compare)")
                continue
            target = sum(walls[m] for m in singles)
        median = statistics.median(times)
        # A run that did not pass measures nothing worth comparing with the target.
        verdict = "NOT GRADED" if codes != {0} else "ok" if median < target else "OVER"
        note = {
            "loadtest": "  (overhead over the k6 run)",
            "all": "  (target: the sum of the single milestones)",
        }.get(milestone, "")
        print(
            f"{milestone:<12} {median:>7.2f}s {min(times):>7.2f}s {max(times):>7.2f}s "
            f"{target:>7.1f}s  {sorted(codes)} {verdict}{note}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
