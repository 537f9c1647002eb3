"""Record what failfast decides, and compare two records: a refactor must change none of it.

    python scripts/compare_gradings.py record before.json     # on the old tree
    python scripts/compare_gradings.py record after.json      # on the new tree
    python scripts/compare_gradings.py compare before.json after.json

A record holds, for the reference solution and the learner template (`check all`) and for every
mutant of tests/mutants.py (its own milestone): the exit code, the score and maximum, and each
check's title, status, points and visibility; and every output format rendered from the fixed
reports of tests/test_formats.py and tests/test_grades_land.py, byte for byte. Timings and what
was measured are left out: they differ from run to run. `compare` prints every difference and
exits 1 if there is one. A timing check may rarely end INCONCLUSIVE on a busy machine in one
record and not the other: such a difference is printed as noise and does not count.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.load import grade_json  # noqa: E402
from tests.mutants import MUTANTS, REFERENCE, TEMPLATE, materialize  # noqa: E402

NOISE = {"INCONCLUSIVE"}


def decisions(report: dict[str, Any]) -> dict[str, Any]:
    """What a JSON report decided, without timings or measurements."""
    return {
        "exit_code": report.get("exit_code"),
        "score": report.get("score"),
        "max_score": report.get("max_score"),
        "checks": {
            c["id"]: [
                c["title"],
                c["status"],
                c.get("score"),
                c.get("max_score"),
                c.get("visibility"),
            ]
            for c in report.get("checks", [])
        },
    }


def renders() -> dict[str, str]:
    """Every format of the fixed reports the tests build, as text."""
    from grader.formats import OutputFormat
    from tests.test_formats import REPORT
    from tests.test_grades_land import HIDDEN, PATTERNS, graded, not_graded

    reports = {
        "formats-report": REPORT,
        "hidden-alternate": graded(HIDDEN, PATTERNS["alternate"]),
        "hidden-one-error": graded(HIDDEN, PATTERNS["one-error"]),
        "not-graded": not_graded(HIDDEN),
    }
    out = {}
    for name, report in reports.items():
        for fmt in OutputFormat:
            out[f"{name}/{fmt.value}"] = fmt.to_format().render(report)
    return out


def record(path: Path) -> None:
    """Grade everything once and write the record."""
    graded: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, source in (("reference", REFERENCE), ("template", TEMPLATE)):
            graded[f"{name}/all"] = decisions(grade_json("all", source))
            print(f"graded {name}", file=sys.stderr)
        for mutant in MUTANTS:
            repo = materialize(REFERENCE, Path(tmp) / mutant.name, mutant.edits)
            graded[f"{mutant.name}/{mutant.milestone}"] = decisions(
                grade_json(mutant.milestone, repo)
            )
            print(f"graded {mutant.name}", file=sys.stderr)
    document = {"gradings": graded, "renders": renders()}
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", "utf-8")


def _timeless(text: str | None) -> str | None:
    """A render without the time it was made (JUnit stamps a report with none with now)."""
    return None if text is None else re.sub(r'timestamp="[^"]*"', 'timestamp=""', text)


def compare(before: Path, after: Path) -> int:
    """Print every difference; 1 if any is more than noise."""
    old, new = (json.loads(p.read_text("utf-8")) for p in (before, after))
    real = 0
    for key in sorted(set(old["gradings"]) | set(new["gradings"])):
        a, b = old["gradings"].get(key), new["gradings"].get(key)
        if a == b:
            continue
        if a is None or b is None:
            print(f"{key}: only in {'after' if a is None else 'before'}")
            real += 1
            continue
        for check in sorted(set(a["checks"]) | set(b["checks"])):
            x, y = a["checks"].get(check), b["checks"].get(check)
            if x != y:
                noise = x and y and {x[1], y[1]} & NOISE and x[0] == y[0]
                print(f"{key} {check}: {x} -> {y}{' (noise)' if noise else ''}")
                real += 0 if noise else 1
        for field in ("exit_code", "score", "max_score"):
            if a[field] != b[field]:
                print(f"{key} {field}: {a[field]} -> {b[field]}")
    for key in sorted(set(old["renders"]) | set(new["renders"])):
        if _timeless(old["renders"].get(key)) != _timeless(new["renders"].get(key)):
            print(f"render {key} differs")
            real += 1
    print(f"{real} difference(s) beyond noise")
    return 1 if real else 0


def main() -> int:
    """Record or compare."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("record").add_argument("out", type=Path)
    both = sub.add_parser("compare")
    both.add_argument("before", type=Path)
    both.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        record(args.out)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
