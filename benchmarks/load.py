"""What the benchmarks share: busy loops that load the machine, and grading for its JSON."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _burn() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """``count`` processes spinning on the CPU meanwhile: a CI runner's noisy neighbours."""
    hogs = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(count)]
    for hog in hogs:
        hog.start()
    try:
        yield
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.join(timeout=5)


def grade_json(milestone: str, repo: Path, *extra: str) -> dict[str, Any]:
    """Grade ``repo`` with the real CLI and return its JSON report ({} if it printed none)."""
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
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {}
    return report
