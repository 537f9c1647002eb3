"""Submissions per hour of `failfast grade` at --jobs 1 and --jobs 2, and whether they agree.

Prints figures; asserts nothing. A class of the reference, the template and mutants of
tests/mutants.py is graded twice, one submission at a time and two at a time (each job pinned to
its own core). A verdict that differs between the two runs is printed: timing checks on a
machine shared by two gradings are what --jobs risks, and a disagreement is a finding to report,
not a number to hide.

    python benchmarks/batch_throughput.py [--milestone milestone-3] [--mutants 6]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.mutants import MUTANTS, REFERENCE, TEMPLATE, materialize

ROOT = Path(__file__).resolve().parent.parent
GRADE = (sys.executable, "-m", "grader", "grade")


def make_class(where: Path, milestone: str, mutants: int) -> int:
    """The reference, the template and mutants of ``milestone`` (or any); how many repos."""
    shutil.copytree(REFERENCE, where / "reference")
    shutil.copytree(TEMPLATE, where / "template")
    chosen = [m for m in MUTANTS if milestone in ("all", m.milestone)][:mutants]
    for mutant in chosen:
        materialize(REFERENCE, where / mutant.name, mutant.edits)
    return 2 + len(chosen)


def grade(
    klass: Path, out: Path, milestone: str, jobs: int
) -> tuple[float, dict[str, dict[str, str]]]:
    """One batch: its wall time and each submission's check statuses."""
    started = time.monotonic()
    subprocess.run(
        [*GRADE, str(klass), "--out", str(out), "--milestone", milestone, "--jobs", str(jobs)],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    wall = time.monotonic() - started
    with (out / "gradebook.csv").open(newline="") as file:
        rows = {row.pop("submission"): row for row in csv.DictReader(file)}
    return wall, rows


def main() -> int:
    """Grade the class at --jobs 1 and 2; print throughput and any verdict that differs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--milestone", default="milestone-3")
    parser.add_argument("--mutants", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        klass = Path(tmp) / "class"
        klass.mkdir()
        size = make_class(klass, args.milestone, args.mutants)
        results = {
            jobs: grade(klass, Path(tmp) / f"out-{jobs}", args.milestone, jobs) for jobs in (1, 2)
        }
    print(f"{size} submissions, `failfast grade --milestone {args.milestone}`")
    for jobs, (wall, _) in results.items():
        print(f"  --jobs {jobs}: {wall:6.1f} s, {3600 * size / wall:6.0f} submissions per hour")
    (_, one), (_, two) = results[1], results[2]
    differ = [
        f"  {submission} {column}: {row[column]} alone, {two[submission][column]} with --jobs 2"
        for submission, row in one.items()
        for column in row
        if column not in ("score", "max_score") and row[column] != two[submission].get(column)
    ]
    print(f"verdicts that differ between the two runs: {len(differ)}")
    print("\n".join(differ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
