"""Measure how late a learner's API really retries on this machine, quiet and busy.

Grades the reference solution with its jitter taken out (the `retries-without-jitter` mutant:
it waits exactly 50 ms, then 100 ms, half of each cap) and records, for each retry storm, how
much longer than that each wait came, beside how late the grader's own lockstep retries (which
sleep the first cap, 100 ms) came in the same storm
(the calibration the checks use). `benchmarks/simulate_retry_stats.py` draws its noise from the
file this writes, so the error rates beside the thresholds rest on measured noise.

    python benchmarks/measure_lateness.py [--runs 8] [--loads 0 2 4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.load import busy_loops, grade_json
from tests.mutants import MUTANTS, REFERENCE, materialize

ROOT = Path(__file__).resolve().parent.parent
DECLARED_MS = (50.0, 100.0)  # what the mutant waits before retries 1 and 2: half the caps
LOCKSTEP_MS = 100.0  # what the grader's own lockstep retries sleep: the first cap


def storm_lateness(report: dict[str, Any]) -> dict[str, Any] | None:
    """One storm's lateness: each wait past its exact length, and the lockstep calibration."""
    checks = {check["id"]: check for check in report.get("checks", [])}
    spread, growth = checks.get("m3.jitter-spread"), checks.get("m3.backoff-grows")
    if spread is None or growth is None:
        return None
    waits = growth["data"].get("waits_ms", [])[
        : len(spread["data"].get("first_retry_waits_ms", []))
    ]
    data = spread["data"]
    return {
        "w1_late_by_instance_ms": [
            [round(w - DECLARED_MS[0], 1) for w in group]
            for group in data.get("first_retry_waits_by_instance_ms", [])
        ],
        "lockstep_late_by_group_ms": [
            [round(w - LOCKSTEP_MS, 1) for w in group]
            for group in data.get("lockstep_waits_by_group_ms", [])
        ],
        "w1_late_ms": [round(ws[0] - DECLARED_MS[0], 1) for ws in waits if ws],
        "w2_late_ms": [round(ws[1] - DECLARED_MS[1], 1) for ws in waits if len(ws) > 1],
        "lockstep_late_ms": spread["data"].get("lateness_ms", []),
    }


def main() -> int:
    """Grade the no-jitter mutant at each load and write every storm's lateness."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data" / "lateness.json")
    args = parser.parse_args()
    mutant = next(m for m in MUTANTS if m.name == "retries-without-jitter")
    measured: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = materialize(REFERENCE, Path(tmp) / "repo", mutant.edits)
        for load in args.loads:
            storms = []
            with busy_loops(load):
                for _ in range(args.runs):
                    found = storm_lateness(grade_json("milestone-3", repo))
                    if found is not None:
                        storms.append(found)
            measured[str(load)] = storms
            late = [x for s in storms for x in s["w1_late_ms"] + s["w2_late_ms"]]
            lockstep = [x for s in storms for x in s["lockstep_late_ms"]]
            print(
                f"{load} busy loops: {len(storms)} storms; API waits late "
                f"{min(late, default=0):.0f}-{max(late, default=0):.0f} ms, "
                f"lockstep {min(lockstep, default=0):.0f}-{max(lockstep, default=0):.0f} ms"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(measured, indent=1) + "\n", "utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
