"""A check measures while the load it claims is held, and a hint names the cause it saw (#23).

m2.healthz-under-load holds 20 checkouts. A Flask app on one gunicorn worker with 16 threads
takes 16 of them and queues the rest, and /healthz with them: it must FAIL, measured at that
plateau of 16; with 32 threads it must PASS, measured while all 20 were held. Both are graded on
the real stack, quiet and under two busy loops: noise may make a verdict INCONCLUSIVE, never the
other one. m2.connect-timeout's two causes of one late answer (too many connects, no connect
timeout) are run on the real stub and told apart by the connection attempts the grader counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from grader.model import Status
from tests.conftest import leftovers, run_failfast
from tests.mutants import MUTANTS, REFERENCE, VARIANT_MUTANTS, materialize, materialize_variant
from tests.test_inconclusive import _connect_timeout_on

pytestmark = pytest.mark.slow

HEALTHZ = "m2.healthz-under-load"


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """``count`` processes spinning on the CPU meanwhile, stopped by their own ids after."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=5)


def gunicorn_app(tmp_path: Path, threads: int) -> Path:
    """The flask-gunicorn variant: its own 32 threads, or its gunicorn-16-threads mutant."""
    (sixteen,) = VARIANT_MUTANTS["flask-gunicorn"]
    edits = sixteen.edits if threads == 16 else ()
    return materialize_variant("flask-gunicorn", tmp_path / f"threads-{threads}", edits)


def healthz_of(repo: Path, busy: int) -> tuple[dict[str, str], dict[str, Any]]:
    """Grade milestone 2 (with ``busy`` busy loops); every status, and the healthz check."""
    with busy_loops(busy):
        run = run_failfast("check", "milestone-2", "--format", "json", repo=repo, timeout_s=120)
    assert run.report is not None and run.report["kind"] == "report", run.stdout + run.stderr
    return run.statuses(), run.check(HEALTHZ)


@pytest.mark.parametrize("busy", [0, 2], ids=["quiet", "two-busy-loops"])
def test_fewer_threads_than_checkouts_held_fail_at_their_plateau(busy: int, tmp_path: Path) -> None:
    """16 threads for 20 stuck checkouts: /healthz queued behind them FAILs, at a plateau of 16."""
    statuses, check = healthz_of(gunicorn_app(tmp_path, 16), busy)
    others = {k: v for k, v in statuses.items() if k != HEALTHZ}
    assert set(others.values()) <= {"PASS", "INCONCLUSIVE"}, statuses
    assert check["status"] in ({"FAIL"} if busy == 0 else {"FAIL", "INCONCLUSIVE"}), check
    assert check["data"]["plateau"] == 16 and check["data"]["checkouts"] == 20, check["data"]
    assert "held 16 of 20 checkouts (its plateau" in check["measured"], check["measured"]
    slow = [p for p in check["data"]["probes"] if p["held"] == 16 and p["latency_ms"] > 250]
    assert slow, check["data"]["probes"]
    if check["status"] == "FAIL":
        assert check["hint"].startswith("Your service took only 16 of the 20 stuck checkouts")


@pytest.mark.parametrize("busy", [0, 2], ids=["quiet", "two-busy-loops"])
def test_more_threads_than_checkouts_held_pass_with_all_held(busy: int, tmp_path: Path) -> None:
    """32 threads for 20 stuck checkouts: 12 stay free, /healthz is fast while all 20 are held."""
    statuses, check = healthz_of(gunicorn_app(tmp_path, 32), busy)
    assert set(statuses.values()) <= {"PASS", "INCONCLUSIVE"}, statuses
    assert check["status"] in ({"PASS"} if busy == 0 else {"PASS", "INCONCLUSIVE"}), check
    assert check["data"]["plateau"] == 20, check["data"]
    at_plateau = [p for p in check["data"]["probes"] if p["held"] == 20]
    assert len(at_plateau) == check["data"]["plateau_probes"] >= 5, check["data"]
    assert "taken while the provider held all 20 checkouts" in check["measured"]


def test_connects_retried_past_max_attempts_are_named_by_their_count(tmp_path: Path) -> None:
    """The same late answer as no connect timeout, told apart by the connects counted."""
    # Its twin, the no-connect-timeout mutant and its connect-timeout hint, is run on the real
    # stack by tests/test_inconclusive.py (test_a_deadline_only_app_in_a_wide_band_...).
    edits = next(m for m in MUTANTS if m.name == "connects-retried-past-max-attempts").edits
    repo = materialize(REFERENCE, tmp_path / "repo", edits)
    # This process may own stubs of other tests' (a session's shared stub): only new ones count.
    before = set(leftovers(os.getpid(), repo))
    status, evidence = asyncio.run(_connect_timeout_on(repo, lag_s=0.0))
    assert status is Status.FAIL, evidence
    count = evidence.data["connect_attempts"]
    assert evidence.data["cause"] == "retries" and count > evidence.data["max_attempts"], evidence
    assert f"Your service made {count} connection attempts" in evidence.hint
    assert "retries beyond max_attempts" in evidence.hint and "connect=0.5" not in evidence.hint
    assert f"at least {count} connection attempt(s)" in evidence.measured
    assert set(leftovers(os.getpid(), repo)) - before == set()
