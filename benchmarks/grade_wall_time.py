"""Wall time of grading each milestone on the reference solution: median of N runs.

Prints figures; asserts nothing (speed targets live here, not in timed tests).
Targets on a 2-core machine: milestone 1 under 1 s, milestone 2 under 6 s, milestones 3 and 4
under 10 s each, milestone 5 under 6 s.

    python benchmarks/grade_wall_time.py [--runs 5] [--milestone milestone-2 ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS_S = {
    "milestone-1": 1.0,
    "milestone-2": 6.0,
    "milestone-3": 10.0,
    "milestone-4": 10.0,
    "milestone-5": 6.0,
}


def grade_once(milestone: str, repo: Path) -> tuple[float, int]:
    """Run `failfast check` once; its wall time and exit code."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "check",
            milestone,
            "--repo",
            str(repo),
            "--format",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    return time.perf_counter() - started, done.returncode


def main() -> int:
    """Print the median, min and max wall time per milestone."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--milestone", action="append", choices=sorted(TARGETS_S))
    parser.add_argument("--repo", type=Path, default=ROOT / "reference" / "solution")
    args = parser.parse_args()
    print(f"{'milestone':<12} {'median':>8} {'min':>8} {'max':>8} {'target':>8}  exit codes")
    for milestone in args.milestone or sorted(TARGETS_S):
        times, codes = [], set()
        for _ in range(args.runs):
            elapsed, code = grade_once(milestone, args.repo)
            times.append(elapsed)
            codes.add(code)
        target = TARGETS_S[milestone]
        median = statistics.median(times)
        # A run that did not pass measures nothing worth comparing with the target.
        verdict = "NOT GRADED" if codes != {0} else "ok" if median < target else "OVER"
        print(
            f"{milestone:<12} {median:>7.2f}s {min(times):>7.2f}s {max(times):>7.2f}s "
            f"{target:>7.1f}s  {sorted(codes)} {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
