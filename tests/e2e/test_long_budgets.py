"""A correct solution with a long but schema-valid budget table is graded PASS, never FAIL.

The reference solution with every layer of its table lengthened (and its nginx.conf to agree):
an api budget of 12 s and a read timeout of 11 s, past the 10 s the course's table is held.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_failfast
from tests.mutants import REFERENCE, Edit, materialize

pytestmark = pytest.mark.slow

# Before the holds followed the table, m2.read-timeout (the provider answered at 10 s, before
# the 11 s read timeout) and m2.slow-body (the trickle ended at 10 s, before the 12 s budget's
# deadline, and the service answered 200) both FAILed this table.
LONG_TABLE = (
    Edit("budgets.yaml", "nginx:    {timeout_s: 10}", "nginx:    {timeout_s: 15}"),
    Edit("budgets.yaml", "api:      {timeout_s: 3}", "api:      {timeout_s: 12}"),
    Edit("budgets.yaml", "read_timeout_s: 2}", "read_timeout_s: 11}"),
    Edit("nginx/nginx.conf", "proxy_send_timeout 10s;", "proxy_send_timeout 15s;"),
    Edit("nginx/nginx.conf", "proxy_read_timeout 10s;", "proxy_read_timeout 15s;"),
)


def test_long_table_passes_milestone_2(tmp_path: Path) -> None:
    """The reference with a 12 s api budget passes every check of milestone 2."""
    repo = materialize(REFERENCE, tmp_path / "repo", LONG_TABLE)
    run = run_failfast("check", "milestone-2", "--format", "json", repo=repo, timeout_s=300)
    assert run.report is not None
    assert run.report["budgets"]["origin"] == "learner"
    statuses = {c["id"]: c["status"] for c in run.report["checks"]}
    assert statuses == dict.fromkeys(statuses, "PASS"), run.stdout
    assert statuses.keys() >= {"m2.read-timeout", "m2.slow-body", "m2.edge-answers-first"}
    read = next(c for c in run.report["checks"] if c["id"] == "m2.read-timeout")
    # Cut by the service's own 11 s read timeout, not ended by the provider.
    assert read["data"]["attempts"][0]["abandoned_after_s"] == pytest.approx(11.0, abs=0.3)
    assert run.returncode == 0
