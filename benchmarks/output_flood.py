"""The grader's peak memory and verdicts while a learner's API floods its output.

Grades milestone 2 of the quiet reference solution and of each flood of
``tests/e2e/test_output_flood.py`` (500 MiB per API instance, in 50 MiB lines or 100-byte lines,
on stdout or stderr), each as a subprocess, and prints per variant: the bytes the report says
the API printed, the wall time, the grader's peak resident memory (its own ``VmHWM``, sampled
from /proc while it runs, and ``ru_maxrss`` from wait4, the largest of the grader and the
processes it waited for), and whether every verdict is the quiet app's. Target: under 200 MB.
Under ``--backend docker`` it also samples how much the engine's per-container directories
(``<DockerRootDir>/containers``, where json-file logs go) grew at most during the grading, when
this user may read them.

    python benchmarks/output_flood.py [--runs 1] [--backend local|docker] [--rate MB/s, 0: unpaced]
        [--only NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.test_output_flood import FLOOD_MB_PER_S, FLOODS, MIB, Flood
from tests.mutants import REFERENCE, Edit, materialize

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 200.0


def _hwm_kb(pid: int) -> int | None:
    """The process's peak resident set so far (VmHWM), in kB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _tree_bytes(root: Path) -> int | None:
    """The bytes of every file under ``root``; None when it cannot be read."""
    total = 0
    try:
        for folder, _, files in os.walk(root, onerror=_raise):
            for name in files:
                with contextlib.suppress(FileNotFoundError):  # a container removed meanwhile
                    total += (Path(folder) / name).stat().st_size
    except OSError:
        return None
    return total


def _raise(error: OSError) -> None:
    raise error


def engine_containers_dir() -> Path | None:
    """The engine's containers directory (json-file logs go there), if this user may read it."""
    try:
        out = subprocess.run(
            ["docker", "info", "--format", "{{.DockerRootDir}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    folder = Path(out) / "containers"
    return folder if _tree_bytes(folder) is not None else None


def grade(
    repo: Path, backend: str, disk: Path | None = None
) -> tuple[float, float, float, dict[str, Any], float | None]:
    """Grade milestone 2 once: wall time, VmHWM MB, maxrss MB, the report, engine disk growth MB."""
    argv = [sys.executable, "-m", "grader", "check", "milestone-2", "--repo", str(repo)]
    argv += ["--format", "json", "--backend", backend]
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL)
        peak = [0]
        base = _tree_bytes(disk) if disk is not None else None
        grown = [0]

        def sample() -> None:
            while (kb := _hwm_kb(proc.pid)) is not None and proc.returncode is None:
                peak[0] = max(peak[0], kb)
                time.sleep(0.02)

        def sample_disk() -> None:
            while disk is not None and base is not None and proc.returncode is None:
                grown[0] = max(grown[0], (_tree_bytes(disk) or base) - base)
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        disk_sampler = threading.Thread(target=sample_disk, daemon=True)
        disk_sampler.start()
        _, _, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = 0  # reaped by wait4: stops the samplers
        sampler.join(1.0)
        disk_sampler.join(5.0)
        out.seek(0)
        report: dict[str, Any] = json.loads(out.read() or b"{}")
    growth = grown[0] / 1e6 if base is not None else None
    return wall, peak[0] / 1024, usage.ru_maxrss / 1024, report, growth


def flood_bytes(flood: Flood) -> int:
    """What one instance of ``flood``'s app writes in all: whole blocks, the last one too."""
    if flood.line_bytes >= MIB:
        return -(-flood.total // flood.line_bytes) * flood.line_bytes
    block = (8 * MIB // flood.line_bytes) * flood.line_bytes
    return -(-flood.total // block) * block


def statuses(report: dict[str, Any]) -> dict[str, str]:
    """Check id -> status."""
    return {check["id"]: check["status"] for check in report.get("checks", [])}


def main() -> None:
    """Grade the quiet app and every flood; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="gradings per variant")
    parser.add_argument("--backend", default="local", choices=["local", "docker"])
    parser.add_argument(
        "--rate", type=float, default=FLOOD_MB_PER_S, help="MB/s each flood writes; 0: unpaced"
    )
    parser.add_argument(
        "--only", nargs="*", default=None, help="grade only these floods (and the quiet app)"
    )
    args = parser.parse_args()
    rate = args.rate * 1e6 if args.rate > 0 else 1e15
    variants: list[tuple[str, Flood | None]] = [("quiet", None)]
    variants += [
        (flood.name, replace(flood, rate=rate))
        for flood in FLOODS
        if args.only is None or flood.name in args.only
    ]
    disk = engine_containers_dir() if args.backend == "docker" else None
    print(
        f"{'variant':<20} {'API printed':>15} {'of written':>15} {'lines':>10} {'wall s':>7} "
        f"{'VmHWM MB':>9} {'maxrss MB':>9} {'disk MB':>8} {'same verdicts':>13}"
    )
    quiet: dict[str, str] | None = None
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name, flood in variants:
            edits: tuple[Edit, ...] = flood.edits if flood is not None else ()
            repo = materialize(REFERENCE, Path(tmp) / name, edits)
            for _ in range(args.runs):
                wall, hwm, maxrss, report, growth = grade(repo, args.backend, disk)
                verdicts = statuses(report)
                quiet = verdicts if quiet is None else quiet
                printed = report.get("api_output") or {}
                # What the floods wrote (every instance's, whole), not counting the app's own lines.
                written = printed.get("instances", 0) * flood_bytes(flood) if flood else 0
                same = "yes" if verdicts == quiet and verdicts else "NO"
                worst = max(worst, hwm)
                grew = f"{growth:>8.1f}" if growth is not None else f"{'n/a':>8}"
                print(
                    f"{name:<20} {printed.get('bytes', 0):>15,} {written:>15,} "
                    f"{printed.get('lines', 0):>10,} {wall:>7.1f} {hwm:>9.1f} {maxrss:>9.1f} "
                    f"{grew} {same:>13}"
                )
                if same != "yes":
                    print(f"    quiet: {quiet}\n    {name}: {verdicts}")
    verdict = "under" if worst < TARGET_MB else "OVER"
    print(f"\ngrader peak resident memory {worst:.1f} MB: {verdict} the {TARGET_MB:.0f} MB target")


if __name__ == "__main__":
    main()
