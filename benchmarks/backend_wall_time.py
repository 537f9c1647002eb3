"""Wall time of `check all` on the reference under each backend, and where docker's extra goes.

Prints figures; asserts nothing. For each backend: the median wall time of N runs of
`failfast check all`. Then the split of the difference: the image build (the learner's image,
layers cached as on a second grading; the stub's image is built once per failfast version),
bringing the containers up (network, stub, Redis, the first API instance), and the rest spread
over the checks (per check: its duration under docker minus under local, median over runs).
Last, what containers add to what the timing checks measure: each check's `elapsed_s` (how long
the checkout took to answer) under both backends, against the tolerance the checks allow
(checks/common.py's ANSWER_TOLERANCE_S).

    python benchmarks/backend_wall_time.py [--runs 3] [--repo reference/solution]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checks.common import ANSWER_TOLERANCE_S
from grader.backends.docker.stack import DockerStack
from grader.learner.repo import LearnerRepo

ROOT = Path(__file__).resolve().parent.parent
GRADE_ALL = (sys.executable, "-m", "grader", "check", "all", "--format", "json")


def grade_all(repo: Path, backend: str) -> tuple[float, dict[str, Any]]:
    """One `check all` run: its wall time and JSON report."""
    started = time.monotonic()
    done = subprocess.run(
        [*GRADE_ALL, "--backend", backend, "--repo", str(repo)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return time.monotonic() - started, json.loads(done.stdout)


async def _start_split(repo: Path) -> dict[str, float]:
    learner = LearnerRepo.open(repo)
    started = time.monotonic()
    stack = await DockerStack.start(learner, learner.manifest())
    total = time.monotonic() - started
    timings = dict(stack.timings)
    started = time.monotonic()
    await stack.aclose()
    timings["teardown_s"] = time.monotonic() - started
    timings["start_total_s"] = total
    return timings


def main() -> int:
    """Print each backend's wall time and the split of docker's extra time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=ROOT / "reference" / "solution")
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"local": [], "docker": []}
    durations: dict[str, dict[str, list[float]]] = {"local": {}, "docker": {}}
    elapsed: dict[str, dict[str, list[float]]] = {"local": {}, "docker": {}}
    for _ in range(args.runs):
        for backend in walls:
            wall, report = grade_all(args.repo, backend)
            walls[backend].append(wall)
            for check in report.get("checks", []):
                durations[backend].setdefault(check["id"], []).append(check["duration_s"])
                if isinstance(check["data"].get("elapsed_s"), int | float):
                    elapsed[backend].setdefault(check["id"], []).append(check["data"]["elapsed_s"])
    splits = [asyncio.run(_start_split(args.repo)) for _ in range(args.runs)]
    local, docker = (statistics.median(walls[b]) for b in ("local", "docker"))
    print(f"`check all` on {args.repo}, median of {args.runs} runs")
    print(f"  local   {local:6.1f} s")
    print(f"  docker  {docker:6.1f} s   (+{docker - local:.1f} s)")
    build = statistics.median(s["build_s"] for s in splits)
    up = statistics.median(s["start_s"] for s in splits)
    down = statistics.median(s["teardown_s"] for s in splits)
    per_check = {
        check_id: statistics.median(durations["docker"][check_id])
        - statistics.median(durations["local"].get(check_id, [0.0]))
        for check_id in durations["docker"]
    }
    print("where docker's extra goes:")
    print(f"  image build (cached layers)         {build:6.2f} s")
    print(f"  start, the build included           {up:6.2f} s   (stub and Redis start meanwhile)")
    print(f"  teardown (remove everything)        {down:6.2f} s")
    print(
        f"  checks, summed                      {sum(per_check.values()):6.2f} s "
        f"over {len(per_check)} checks"
    )
    for check_id, extra in sorted(per_check.items(), key=lambda item: -abs(item[1]))[:8]:
        print(f"    {check_id:<28} {extra:+6.2f} s")
    print(f"what containers add to answer times (tolerance {ANSWER_TOLERANCE_S:g} s):")
    for check_id in sorted(elapsed["docker"]):
        here, there = elapsed["local"].get(check_id), elapsed["docker"][check_id]
        if here:
            a, b = statistics.median(here), statistics.median(there)
            print(f"  {check_id:<28} local {a:6.3f} s  docker {b:6.3f} s  ({b - a:+.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
