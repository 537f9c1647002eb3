"""A threadpool smaller than the load a check holds: the verdict follows the threads (#23).

The sync-handlers variant runs plain `def` handlers, /healthz among them, in anyio's threadpool.
m2.healthz-under-load holds 20 checkouts: with 24 threads, 4 stay free and /healthz is fast
while all 20 are held (PASS); with 8, the last 12 checkouts queue and /healthz behind them
(FAIL, with the queueing hint, at a plateau of 8). The load test keeps about 28 checkouts in
flight (10/s for the 2.75 s deadline): 24 threads are too few there, and /healthz's p99 shows
it. Graded on the real stack, quiet and under two busy loops: noise may make a verdict
INCONCLUSIVE, never the other one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import checks.m2_timeouts  # noqa: F401  registers m2.healthy-checkout, which healthz depends on
from checks.m2_under_load import QUEUED_HINT
from tests.conftest import run_failfast
from tests.e2e.test_load_held import HEALTHZ, busy_loops
from tests.mutants import VARIANT_MUTANTS, materialize_variant

pytestmark = pytest.mark.slow

FLAWED = {mutant.name: mutant for mutant in VARIANT_MUTANTS["sync-handlers"]}


def sync_app(tmp_path: Path, threads: int) -> Path:
    """The sync-handlers variant with a threadpool of ``threads`` (one of its mutants)."""
    mutant = FLAWED[f"threadpool-{threads}"]
    return materialize_variant("sync-handlers", tmp_path / f"threads-{threads}", mutant.edits)


def graded(milestone: str, repo: Path, busy: int) -> tuple[dict[str, str], dict[str, Any]]:
    """Grade one milestone (with ``busy`` busy loops); every status, and the whole report."""
    with busy_loops(busy):
        run = run_failfast("check", milestone, "--format", "json", repo=repo, timeout_s=120)
    assert run.report is not None and run.report["kind"] == "report", run.stdout + run.stderr
    return run.statuses(), run.report


def check_of(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    """One check of a JSON report."""
    return next(c for c in report["checks"] if c["id"] == check_id)


@pytest.mark.parametrize("busy", [0], ids=["quiet"])  # under load: test_load_held's
def test_eight_threads_for_twenty_checkouts_fail_with_the_queueing_hint(
    busy: int, tmp_path: Path
) -> None:
    """8 threads for 20 stuck checkouts: /healthz queued behind them FAILs, at a plateau of 8."""
    statuses, report = graded("milestone-2", sync_app(tmp_path, 8), busy)
    check = check_of(report, HEALTHZ)
    others = {k: v for k, v in statuses.items() if k != HEALTHZ}
    assert set(others.values()) <= {"PASS", "INCONCLUSIVE"}, statuses
    assert check["status"] in ({"FAIL"} if busy == 0 else {"FAIL", "INCONCLUSIVE"}), check
    assert check["data"]["plateau"] == 8 and check["data"]["checkouts"] == 20, check["data"]
    assert "held 8 of 20 checkouts (its plateau" in check["measured"], check["measured"]
    if check["status"] == "FAIL":
        assert check["hint"] == QUEUED_HINT.format(plateau=8, n=20), check["hint"]


@pytest.mark.parametrize("busy", [0], ids=["quiet"])  # under load: test_load_held's
def test_twenty_four_threads_for_twenty_checkouts_pass_with_all_held(
    busy: int, tmp_path: Path
) -> None:
    """24 threads for 20 stuck checkouts: 4 stay free, /healthz is fast while all 20 are held."""
    statuses, report = graded("milestone-2", sync_app(tmp_path, 24), busy)
    check = check_of(report, HEALTHZ)
    assert set(statuses.values()) <= {"PASS", "INCONCLUSIVE"}, statuses
    assert check["status"] in ({"PASS"} if busy == 0 else {"PASS", "INCONCLUSIVE"}), check
    assert check["data"]["plateau"] == 20, check["data"]
    assert "taken while the provider held all 20 checkouts" in check["measured"]


def test_twenty_four_threads_are_too_few_for_the_load_test(tmp_path: Path) -> None:
    """The load test keeps ~28 checkouts in flight: 24 threads queue /healthz past 100 ms."""
    statuses, report = graded("loadtest", sync_app(tmp_path, 24), 0)
    (mutant,) = (m for m in VARIANT_MUTANTS["sync-handlers"] if m.name == "threadpool-24")
    assert statuses == mutant.verdicts(statuses), statuses
    healthz = check_of(report, "lt.healthz-fast")
    assert healthz["data"]["value"] > healthz["data"]["limit"], healthz["data"]
