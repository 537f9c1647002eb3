"""The small commands of the CLI: list, explain, stub, --help and --version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema

from grader import registry
from grader.yamlfile import schema
from tests.conftest import ROOT, run_failfast
from tests.mutants import REFERENCE


def test_list_names_every_check() -> None:
    """`failfast list` prints every milestone and every registered check id."""
    run = run_failfast("list")
    assert run.returncode == 0
    for milestone in registry.MILESTONES:
        assert milestone in run.stdout
    for spec in registry.all_checks():
        assert spec.id in run.stdout


def test_explain_says_what_why_and_how() -> None:
    """`failfast explain` shows what a check does, why it matters and how to fix it."""
    run = run_failfast("explain", "m2.slow-body")
    assert run.returncode == 0
    for heading in ("What it does", "Why it matters", "How to fix a failure", "Runs after"):
        assert heading in run.stdout
    assert "asyncio.timeout" in run.stdout


def test_explain_unknown_check() -> None:
    """An unknown check id is exit 2 and lists the known ones."""
    run = run_failfast("explain", "m2.nope")
    assert run.returncode == 2
    assert "m2.read-timeout" in run.stdout


def test_help_documents_exit_codes() -> None:
    """`failfast --help` says what the exit codes mean."""
    run = run_failfast("--help")
    assert "0 every check passed, 1 a check failed, 2 the grader could not grade" in run.stdout


def test_stub_by_hand_honours_port_and_knobs() -> None:
    """`failfast stub` serves on PORT with the knobs from the environment, until SIGTERM."""
    env = {**os.environ, "PORT": "0", "ADMIN_PORT": "0", "FAIL_RATE": "1", "SEED": "7"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "grader", "stub"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        answer = httpx.post(f"http://127.0.0.1:{ready['port']}/charge", json={"amount_cents": 5})
        assert answer.status_code == 503  # FAIL_RATE=1: every charge fails
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_output_file_gets_json_and_terminal_gets_report(tmp_path: Path) -> None:
    """With --output the JSON report goes to the file and the readable report still prints."""
    out = tmp_path / "report.json"
    run = run_failfast(
        "check", "milestone-1", "--format", "json", "--output", str(out), repo=REFERENCE
    )
    assert run.returncode == 0
    report = json.loads(out.read_text())
    jsonschema.validate(report, schema("report"))
    assert report["summary"] == {
        "passed": 5,
        "failed": 0,
        "skipped": 0,
        "errors": 0,
        "inconclusive": 0,
    }
    assert "5 passed, 0 failed, 0 skipped, 0 errors" in run.stdout
