"""What the grading history saves a course: a class graded twice with `failfast grade --db`.

Six checkouts of the reference (each a git repo with a commit) graded at milestone 2, then
graded again with nothing changed: the second run reuses every grading from the history. Prints
both wall times and their ratio (issue #24 asks for the second under 10 % of the first), and
whether the second run's gradebook says every row was reused; and the time of a second run into
a new --out, where every submission's page is drawn again from its stored report.

    python benchmarks/history_reuse.py [--milestone milestone-2] [--submissions 6] [--jobs 1]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.gitclass import git_class

ROOT = Path(__file__).resolve().parent.parent
GRADE = (sys.executable, "-m", "grader", "grade")


def grade(klass: Path, out: Path, db: Path, milestone: str, jobs: int) -> float:
    """One `failfast grade --db` run; its wall time."""
    started = time.monotonic()
    options = ["--milestone", milestone, "--jobs", str(jobs), "--db", str(db)]
    subprocess.run(
        [*GRADE, str(klass), "--out", str(out), *options],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    return time.monotonic() - started


def reused(out: Path) -> list[str]:
    """The gradebook's reused column, row by row."""
    with (out / "gradebook.csv").open(newline="") as file:
        return [row["reused"] for row in csv.DictReader(file)]


def main() -> int:
    """Grade the class twice; print both times and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--milestone", default="milestone-2")
    parser.add_argument("--submissions", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="failfast-reuse-") as tmp:
        where = Path(tmp)
        names = [f"learner-{n:02d}" for n in range(1, args.submissions + 1)]
        klass = git_class(where / "class", names)
        db = where / "history.sqlite3"
        first = grade(klass, where / "out", db, args.milestone, args.jobs)
        # A course grades again into the same --out: the reports there are kept as they are.
        second = grade(klass, where / "out", db, args.milestone, args.jobs)
        marks = reused(where / "out")
        # Into a new --out: every page is drawn again from the history's reports.
        fresh = grade(klass, where / "fresh", db, args.milestone, args.jobs)
    print(f"class: {args.submissions} checkouts of the reference, {args.milestone}", end="")
    print(f", --jobs {args.jobs}")
    print(f"first run (graded):            {first:7.1f} s")
    print(
        f"second run, same --out:        {second:7.1f} s  "
        f"({marks.count('yes')}/{len(marks)} rows reused)"
    )
    print(f"second run, a new --out:       {fresh:7.1f} s  (every page drawn from the history)")
    print(f"second / first (same --out):   {100 * second / first:7.1f} %  (#24: under 10 %)")
    print(f"second / first (a new --out):  {100 * fresh / first:7.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
