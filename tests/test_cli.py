"""The small commands of the CLI: list, explain, stub, --help and --version."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema

from grader.cli.app import catalog
from grader.formats.terminal import exit_line
from grader.learner.yamlfile import schema
from grader.model import MILESTONES, ExitCode
from tests.conftest import ROOT, run_failfast
from tests.mutants import REFERENCE


def test_list_names_every_check() -> None:
    """`failfast list` prints every milestone and every registered check id."""
    run = run_failfast("list")
    assert run.returncode == 0
    for milestone in MILESTONES:
        assert milestone.key in run.stdout
    for spec in catalog().specs:
        assert spec.id in run.stdout


def test_explain_says_what_why_and_how() -> None:
    """`failfast explain` shows what a check does, why it matters and how to fix it."""
    run = run_failfast("explain", "m2.slow-body")
    assert run.returncode == 0
    for heading in ("What it does", "Why it matters", "How to fix a failure", "Runs after"):
        assert heading in run.stdout
    assert "asyncio.timeout" in run.stdout


def test_explain_says_an_eager_check_runs_alongside() -> None:
    """An eager check's dependencies run beside it, and explain says so."""
    run = run_failfast("explain", "m2.edge-answers-first")
    assert "Runs alongside m2.read-timeout (judged only if they pass)" in run.stdout
    assert "Runs after" not in run.stdout


def test_explain_unknown_check() -> None:
    """An unknown check id is exit 2 and lists the known ones."""
    run = run_failfast("explain", "m2.nope")
    assert run.returncode == 2
    assert "m2.read-timeout" in run.stdout


def test_help_documents_exit_codes() -> None:
    """`failfast --help` names every exit code the CLI can return, with what it means."""
    text = " ".join(run_failfast("--help").stdout.replace("│", " ").split())
    for code in ExitCode:
        assert f"{int(code)} {code.meaning}" in text, code
    # What the help says 2 means is what the CLI does with a milestone it does not know.
    assert run_failfast("check", "milestone-9").returncode == ExitCode.NOT_GRADED


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


def test_one_run_writes_every_report_asked_for(tmp_path: Path) -> None:
    """--json, --junit and repeated --report write each file, creating its directory."""
    out = tmp_path / "nested" / "dir"
    run = run_failfast(
        "check",
        "milestone-1",
        "--json",
        str(out / "a.json"),
        "--junit",
        str(out / "a.xml"),
        "--report",
        f"markdown={out / 'a.md'}",
        "--report",
        f"text={out / 'a.txt'}",
        repo=REFERENCE,
    )
    assert run.returncode == 0
    assert json.loads((out / "a.json").read_text())["milestones"] == ["milestone-1"]
    assert (out / "a.xml").read_text().startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert "| ✅ | `m1.budgets-valid`" in (out / "a.md").read_text()
    assert "PASS  m1.budgets-valid" in (out / "a.txt").read_text()
    assert "5 passed" in run.stdout


def test_report_spec_must_name_a_format_and_a_file(tmp_path: Path) -> None:
    """A --report that is not FORMAT=FILE is a usage error (exit 2) that lists the formats."""
    run = run_failfast("check", "milestone-1", "--report", "yaml=x.yaml", repo=REFERENCE)
    assert run.returncode == 2
    # typer draws the message in a box; its words are what matters.
    assert "text, json, junit, markdown" in " ".join(run.stderr.replace("│", " ").split())


def test_a_grading_error_still_writes_the_reports(tmp_path: Path) -> None:
    """Exit 2 still leaves a JUnit file (one errored case) and a JSON error document behind."""
    run = run_failfast(
        "check",
        "milestone-2",
        "--junit",
        str(tmp_path / "j.xml"),
        "--json",
        str(tmp_path / "r.json"),
        repo=tmp_path / "missing",
    )
    assert run.returncode == 2
    assert "There is no directory" in run.stdout
    assert json.loads((tmp_path / "r.json").read_text())["kind"] == "error"
    assert 'errors="1"' in (tmp_path / "j.xml").read_text()


def test_unknown_milestone_names_all_and_loadtest() -> None:
    """An unknown milestone is exit 2, with every valid name."""
    run = run_failfast("check", "milestone-9", repo=REFERENCE)
    assert run.returncode == 2
    assert "milestone-5, loadtest, or all" in " ".join(run.stdout.split())


def test_through_on_milestone_1_is_milestone_1() -> None:
    """--through grades milestone 1 to N: for N = 1 that is milestone 1 alone."""
    run = run_failfast("check", "milestone-1", "--through", "--format", "json", repo=REFERENCE)
    assert run.report is not None
    assert run.report["milestones"] == ["milestone-1"] and run.report["milestone"] == "milestone-1"


def test_no_color_is_respected() -> None:
    """Forced colour puts colour codes in the report; NO_COLOR takes them out again."""
    color = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7])[0-9;]*m")
    forced = run_failfast("check", "milestone-1", repo=REFERENCE, env={"FORCE_COLOR": "1"})
    assert color.search(forced.stdout)
    plain = run_failfast(
        "check", "milestone-1", repo=REFERENCE, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}
    )
    assert plain.returncode == 0 and "PASS" in plain.stdout
    assert not color.search(plain.stdout)


def test_doctor_command_exit_codes(tmp_path: Path) -> None:
    """`failfast doctor` is exit 0 on the reference here; 1 when the manifest is broken."""
    ok = run_failfast("doctor", repo=REFERENCE)
    assert ok.returncode == 0, ok.stdout
    assert "Everything needed to grade this repo is here." in ok.stdout
    (tmp_path / "failfast.yaml").write_text("command: [unclosed\n")
    broken = run_failfast("doctor", repo=tmp_path)
    assert broken.returncode == 1
    assert "failfast.yaml" in broken.stdout


def test_exit_line_states_the_code_the_process_returns() -> None:
    """A report file not written makes the exit line 2, with why; an interruption stays 130."""
    unwritten = ["failfast could not write the json report to /dev/full: No space left"]
    assert exit_line(ExitCode.PASSED, "every check passed") == "exit code 0: every check passed"
    assert exit_line(ExitCode.PASSED, "every check passed", unwritten) == (
        "exit code 2: every check passed, but failfast could not write the json report to "
        "/dev/full: No space left"
    )
    assert exit_line(ExitCode.FAILED, "a check failed", unwritten).startswith(
        "exit code 2: a check failed, but failfast could not write"
    )
    assert exit_line(ExitCode.INTERRUPTED, "interrupted", unwritten).startswith(
        "exit code 130: interrupted; also failfast could not write"
    )
