"""m2.edge-answers-first on the local backend: the learner's own nginx, a real one, in front.

The reference passes; an nginx that gives up before the api fails it; without nginx on PATH the
check is SKIP, saying why, and the run still exits 0. scripts/setup.sh installs nginx.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from grader.backends.local.edge import NO_NGINX
from grader.process.procs import describe, proc_table
from tests.conftest import ROOT, run_failfast
from tests.e2e.conftest import CiRun
from tests.mutants import REFERENCE, materialize

pytestmark = pytest.mark.slow
CHECK = "m2.edge-answers-first"


def test_reference_gets_its_own_answer_through_nginx(reference_all: CiRun) -> None:
    """Through the reference's nginx the api's own 504, with its JSON body, comes in time."""
    entry = reference_all.check(CHECK)  # the reference's `check all`, graded once for all tests
    assert entry["status"] == "PASS", entry
    assert entry["data"]["status"] == 504 and not entry["data"]["nginx_page"]
    assert entry["data"]["elapsed_s"] < 3.5
    assert "location / (nginx/nginx.conf:18)" in entry["measured"]
    # nginx's access log line for the checkout: the grader read nginx's own output.
    assert any('"POST /checkout HTTP/1.1" 504' in line for line in entry["data"]["nginx_output"])


def test_nginx_that_gives_up_first_fails(tmp_path: Path, grade_json: Any) -> None:
    """A proxy_read_timeout of 1 s: nginx's own HTML 504 reaches the customer, not the api's."""
    repo = materialize(REFERENCE, tmp_path / "repo")
    conf = repo / "nginx" / "nginx.conf"
    conf.write_text(conf.read_text().replace("proxy_read_timeout 10s;", "proxy_read_timeout 1s;"))
    run = grade_json("milestone-2", repo)
    entry = run.check(CHECK)
    assert entry["status"] == "FAIL", entry
    assert entry["data"]["nginx_page"] and entry["data"]["status"] == 504
    assert entry["data"]["elapsed_s"] == pytest.approx(1.0, abs=0.4)
    assert entry["location"] == {"path": "nginx/nginx.conf", "line": 18}
    assert {s for c, s in run.statuses().items() if c != CHECK} == {"PASS"}
    assert run.returncode == 1


def test_without_nginx_the_check_is_skipped_with_the_reason(
    tmp_path: Path, grade_json: Any
) -> None:
    """No nginx on PATH: SKIP, saying why and that the repo is not at fault; the rest passes."""
    # PATH without any directory holding nginx; the API's uvicorn is still found, beside the
    # grader's interpreter (grader.process.procs.child_env), and so is k6.
    path = os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if not os.path.exists(f"{d}/nginx")
    )
    run = grade_json("milestone-2", materialize(REFERENCE, tmp_path / "repo"), env={"PATH": path})
    entry = run.check(CHECK)
    assert entry["status"] == "SKIP", entry
    assert entry["measured"].startswith(NO_NGINX)
    assert "Nothing to fix in your repo" in entry["hint"]
    assert {s for c, s in run.statuses().items() if c != CHECK} == {"PASS"}
    assert run.returncode == 0, "a check this machine cannot run is not the learner's failure"


def _nginx_workers() -> set[int]:
    """Every nginx worker running now, found as the grader finds processes."""
    return {pid for pid in proc_table() if describe(pid).startswith("nginx: worker process")}


def test_a_killed_grader_leaves_no_nginx_worker(tmp_path: Path) -> None:
    """Grader and watchdog SIGKILLed while nginx runs: the next run kills its workers too.

    Run as root, nginx's workers are nobody's processes; the master dies with the grader, and
    only the sweep of the next run can stop the workers it leaves behind.
    """
    repo = materialize(REFERENCE, tmp_path / "repo")
    before = _nginx_workers()
    grader = subprocess.Popen(
        [sys.executable, "-m", "grader", "check", "milestone-2", "--repo", str(repo)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "FAILFAST_NO_CGROUP": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while not _nginx_workers() - before and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _nginx_workers() - before
        assert workers, "nginx never started"
        for child in proc_table().values():
            if child.ppid == grader.pid and "--watchdog" in describe(child.pid):
                os.kill(child.pid, signal.SIGKILL)
    finally:
        grader.kill()
        grader.wait(10)
    run_failfast("doctor", repo=repo, env={"FAILFAST_NO_CGROUP": "1"})
    deadline = time.monotonic() + 2
    while workers & _nginx_workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not workers & _nginx_workers(), "nginx's workers outlived the sweep"
