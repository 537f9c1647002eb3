"""The grading history through the real CLI: a learner's progress, and a store that fails.

The learner template is a real git checkout here: graded, fixed at milestone 2 with the
reference's app and committed, graded again. The second report and `failfast progress` name the
checks that changed with both commits.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import ROOT, run_failfast
from tests.gitclass import commit
from tests.mutants import REFERENCE, TEMPLATE

PROGRESS_SCHEMA = ROOT / "grader" / "schemas" / "progress.schema.json"


@pytest.mark.slow
def test_a_fix_shows_in_the_report_and_in_progress_with_both_commits(tmp_path: Path) -> None:
    """Template graded, fixed, graded: the changes, their commits, and the best score."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "checkout"
    shutil.copytree(TEMPLATE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    naive = commit(repo, "the template")
    db = ["--db", str(tmp_path / "history.sqlite3")]
    first = run_failfast("check", "milestone-2", "--format", "json", *db, repo=repo)
    assert first.report is not None and first.report["history"]["changes"] is None
    shutil.copytree(REFERENCE / "app", repo / "app", dirs_exist_ok=True)
    shutil.copy(REFERENCE / "budgets.yaml", repo / "budgets.yaml")  # the retries it reads
    fixed = commit(repo, "fail fast: timeouts and a deadline")
    second = run_failfast("check", "milestone-2", *db, repo=repo)
    assert second.returncode == 0, second.stdout
    line = " ".join(second.stdout.split())
    assert "m2.read-timeout FAIL → PASS" in line
    assert f"since commit {naive[:7]} (now commit {fixed[:7]})" in line
    shown = run_failfast("progress", "--format", "json", *db, repo=repo)
    progress = json.loads(shown.stdout)
    jsonschema.validate(progress, json.loads(PROGRESS_SCHEMA.read_text()))
    assert progress["gradings"] == 2
    (milestone,) = progress["milestones"]
    assert milestone["best_score"] == "6/6" and fixed[:7] in milestone["first_passed"]
    (step,) = progress["changes"]
    changed = {c["check"]: (c["before"], c["after"]) for c in step["changes"]}
    assert changed["m2.read-timeout"] == ("FAIL", "PASS")
    assert {c["before_commit"] for c in step["changes"]} == {naive[:7]}
    assert {c["after_commit"] for c in step["changes"]} == {fixed[:7]}
    table = run_failfast("progress", *db, repo=repo)
    assert "milestone-2" in table.stdout and "6/6" in table.stdout


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://grader:s3cret@127.0.0.1:9/course", "could not open"),
        ("mysql://grader:s3cret@127.0.0.1/course", "SQLite or PostgreSQL only"),
    ],
)
def test_a_store_that_cannot_be_used_costs_nothing_but_a_paragraph(
    url: str, said: str, tmp_path: Path
) -> None:
    """An unreachable server or another database: the report and exit code are the grading's."""
    report = tmp_path / "report.json"
    run = run_failfast("check", "milestone-1", "--db", url, "--json", str(report), repo=REFERENCE)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "exit code 0: every check passed" in run.stdout
    assert said in run.stderr and "s3cret" not in run.stdout + run.stderr
    assert "***" in run.stderr and "its reports are written as usual" in run.stderr
    assert json.loads(report.read_text())["exit_code"] == 0


def test_no_history_records_nothing(tmp_path: Path) -> None:
    """--no-history: no file is created, no history line is printed."""
    db = tmp_path / "never.sqlite3"
    run = run_failfast("check", "milestone-1", "--db", str(db), "--no-history", repo=REFERENCE)
    assert run.returncode == 0 and not db.exists() and "history " not in run.stdout


def test_progress_without_gradings_says_what_to_do(tmp_path: Path) -> None:
    """A repo never graded: one line naming the store and `failfast check`."""
    run = run_failfast("progress", "--db", str(tmp_path / "h.sqlite3"), repo=tmp_path)
    assert run.returncode == 0 and "run `failfast check` first" in run.stdout


def test_the_default_store_is_in_the_users_data_directory(tmp_path: Path) -> None:
    """No --db, no FAILFAST_DB: $XDG_DATA_HOME/failfast/history.sqlite3, created on first use."""
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "FAILFAST_DB": ""}
    run = run_failfast("check", "milestone-1", repo=REFERENCE, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "data" / "failfast" / "history.sqlite3").is_file()
