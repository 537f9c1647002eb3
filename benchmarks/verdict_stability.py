"""Grade repos again and again, optionally with busy loops on the cores, and count the verdicts.

A correct solution must never FAIL, however busy the machine: noise ends as INCONCLUSIVE. A
mutant must FAIL its target check. Two modes:

    python benchmarks/verdict_stability.py --runs 20 --load 2 [--milestone milestone-2] [--repo P]
    python benchmarks/verdict_stability.py --policies --runs 10 --loads 2 4
    python benchmarks/verdict_stability.py --policies --milestones milestone-2 --loads 0 2 4
    python benchmarks/verdict_stability.py --policies --milestones loadtest --loads 0 2

``--policies`` grades milestones 3 and 4 (or ``--milestones``) of the reference solution, of
every correct variant in tests/variants/ (other libraries, servers and jitters), of the mutants
of tests/mutants.py at those milestones and of the variants' own mutants (VARIANT_MUTANTS), at
each load, and prints PASS / FAIL / INCONCLUSIVE per check and repo: the
table the accuracy targets are read from (0 FAIL on a correct repo; INCONCLUSIVE under 5 % of
verdicts with two busy loops and under 25 % with four; a mutant FAILs its check in 95 % of runs).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.load import busy_loops, grade_json
from tests.mutants import MUTANTS, REFERENCE, VARIANT_MUTANTS, materialize, materialize_variant

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ROOT / "tests" / "variants"
SHORT = {"PASS": "P", "FAIL": "F", "INCONCLUSIVE": "I", "SKIP": "S", "ERROR": "E"}

Counts = dict[str, collections.Counter[str]]


def check_prefix(milestone: str) -> str:
    """How the ids of a milestone's checks begin: ``m2.`` for milestone-2, ``lt.`` for loadtest."""
    return "lt." if milestone == "loadtest" else f"m{milestone.removeprefix('milestone-')}."


def grade_many(repo: Path, milestones: list[str], runs: int) -> Counts:
    """Verdict counts per check over ``runs`` gradings of each milestone."""
    counts: Counts = collections.defaultdict(collections.Counter)
    for _ in range(runs):
        for milestone in milestones:
            report = grade_json(milestone, repo)
            for check in report.get("checks", []):
                counts[check["id"]][check["status"]] += 1
            if not report.get("checks"):
                counts[f"{milestone} (no report)"]["ERROR"] += 1
    return counts


def cell(counter: collections.Counter[str]) -> str:
    """``10P`` or ``8P 1F 1I``."""
    return " ".join(f"{n}{SHORT.get(status, '?')}" for status, n in sorted(counter.items()))


def policies(args: argparse.Namespace) -> int:
    """The accuracy table: correct repos and mutants, milestones 3 and 4, at each load."""
    milestones = args.milestones
    with tempfile.TemporaryDirectory() as tmp:
        repos: list[tuple[str, Path, frozenset[str]]] = [("reference", REFERENCE, frozenset())]
        repos += [
            (
                f"variant {path.name}",
                materialize_variant(path.name, Path(tmp) / path.name),
                frozenset(),
            )
            for path in sorted(VARIANTS.iterdir())
            if (path / "app").is_dir()
        ]
        for mutant in MUTANTS:
            if mutant.milestone in milestones and (not args.mutants or mutant.name in args.mutants):
                repo = materialize(REFERENCE, Path(tmp) / mutant.name, mutant.edits)
                repos.append((f"mutant {mutant.name}", repo, mutant.fails))
        # Flaws only a variant can carry: a correct variant with one setting broken (gunicorn
        # or anyio's threadpool with fewer threads than the checkouts a check holds; at
        # ``--milestones loadtest``, sync-handlers' 24 threads for the load test's ~28).
        for variant, flawed in VARIANT_MUTANTS.items():
            for mutant in flawed:
                if mutant.milestone in milestones and (
                    not args.mutants or mutant.name in args.mutants
                ):
                    repo = materialize_variant(variant, Path(tmp) / mutant.name, mutant.edits)
                    repos.append((f"mutant {variant}/{mutant.name}", repo, mutant.fails))
        for load in args.loads:
            started = time.monotonic()
            print(f"\n## {load} busy loops, {args.runs} runs per correct repo\n")
            print("| repo | check | verdicts | expected |")
            print("|---|---|---|---|")
            with busy_loops(load):
                for name, repo, fails in repos:
                    ms = [
                        m
                        for m in milestones
                        if not fails or any(f.startswith(check_prefix(m)) for f in fails)
                    ]
                    runs = args.mutant_runs if fails else args.runs
                    counts = grade_many(repo, ms, runs)
                    for check_id, counter in sorted(counts.items()):
                        wanted = "FAIL" if check_id in fails else "not FAIL"
                        print(f"| {name} | {check_id} | {cell(counter)} | {wanted} |", flush=True)
            print(f"\n({time.monotonic() - started:.0f} s)")
    return 0


def main() -> int:
    """Print verdict counts per check (one repo), or the policies table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--milestone", default="milestone-2")
    parser.add_argument("--repo", type=Path, default=REFERENCE)
    parser.add_argument("--load", type=int, default=0, help="busy loops meanwhile")
    parser.add_argument("--policies", action="store_true", help="the accuracy table")
    parser.add_argument("--loads", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--mutants", nargs="*", help="only these mutants (default: every m3/m4)")
    parser.add_argument("--mutant-runs", type=int, default=10, help="runs per mutant")
    parser.add_argument(
        "--milestones", nargs="+", default=["milestone-3", "milestone-4"], help="with --policies"
    )
    args = parser.parse_args()
    if args.policies:
        return policies(args)
    with busy_loops(args.load):
        counts = grade_many(args.repo, [args.milestone], args.runs)
    print(f"{args.runs} runs of {args.milestone} on {args.repo}, {args.load} busy loops")
    for check_id, counter in sorted(counts.items()):
        print(f"  {check_id:<28} {cell(counter)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
