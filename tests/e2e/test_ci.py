"""Grading in CI: the job summary, the annotations and the JUnit file, read with real parsers.

The runs are the real CLI under GITHUB_ACTIONS=true (see conftest.py): `check all` on the
reference solution, `check milestone-3 --through` on the learner template, and a template whose
API prints workflow commands of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml
from markdown_it import MarkdownIt

from grader.cli.app import catalog
from grader.formats.github import ERRORS_PER_STEP
from grader.model import MILESTONE_KEYS
from tests.conftest import run_failfast
from tests.e2e.conftest import CiRun, grade_in_ci
from tests.gha import commands
from tests.junit_schemas import validate_junit
from tests.mutants import REFERENCE, TEMPLATE, materialize
from tests.test_junit import junit_positions

pytestmark = pytest.mark.slow


def table_rows(summary: str) -> dict[str, str]:
    """Check id -> status, from the tables of a Markdown job summary."""
    tokens = MarkdownIt("commonmark").enable("table").parse(summary)
    rows: dict[str, str] = {}
    cells: list[str] = []
    for token in tokens:
        if token.type == "tr_open":
            cells = []
        elif token.type == "inline" and token.level >= 3:  # inside a th or td
            cells.append(token.content)
        elif token.type == "tr_close" and len(cells) == 4:
            found = re.match(r"`([^`]+)`", cells[1])
            if found:
                rows[found[1]] = cells[2]
    return rows


def junit_statuses(run: CiRun) -> dict[str, dict[str, str]]:
    """Suite -> case -> FAIL/ERROR/SKIP/PASS, as junitparser reads the JUnit file."""
    kinds = {"Failure": "FAIL", "Error": "ERROR", "Skipped": "SKIP"}
    return {
        suite.name: {
            case.name: kinds[type(case.result[0]).__name__] if case.result else "PASS"
            for case in suite
        }
        for suite in JUnitXml.fromfile(str(run.junit))
    }


def test_reference_passes_every_milestone_in_one_run(reference_all: CiRun) -> None:
    """`check all` grades every milestone on one stack, and the reference passes each check."""
    assert reference_all.report["milestones"] == list(MILESTONE_KEYS)
    expected = {spec.id: "PASS" for spec in catalog().specs}
    assert reference_all.statuses() == expected, reference_all.run.stdout
    assert reference_all.run.returncode == 0


def test_reference_reports_agree(reference_all: CiRun) -> None:
    """JUnit has a passing suite per milestone, the summary a row per check, and no annotation."""
    validate_junit(reference_all.junit)
    junit = junit_statuses(reference_all)
    assert list(junit) == list(MILESTONE_KEYS)
    for milestone, cases in junit.items():
        assert cases == {spec.id: "PASS" for spec in catalog().for_milestone(milestone)}
    assert table_rows(reference_all.summary) == reference_all.statuses()
    for milestone in MILESTONE_KEYS:
        assert f"### {milestone}: " in reference_all.summary
    assert [c.name for c in reference_all.commands] == []


def test_template_annotates_each_failed_check(template_through_3: CiRun) -> None:
    """One ::error per FAIL (up to GitHub's 10); the budget table's points at its first bad line."""
    run = template_through_3
    failed = [check for check in run.report["checks"] if check["status"] == "FAIL"]
    errors = [c for c in run.commands if c.name == "error"]
    shown = failed[:ERRORS_PER_STEP]
    assert [c.properties["title"].split()[0] for c in errors] == [f["id"] for f in shown]
    assert [c.name for c in run.commands] == ["error"] * len(shown)
    if len(failed) > ERRORS_PER_STEP:
        assert f"{len(failed) - ERRORS_PER_STEP} more check" in errors[-1].data
    budgets = errors[0]
    problems = run.report["checks"][0]["data"]["problems"]
    assert budgets.properties["file"] == "repo/budgets.yaml"  # relative to GITHUB_WORKSPACE
    assert budgets.properties["line"] == str(problems[0]["line"]) == "14"
    assert "budgets.yaml is not filled in yet" in budgets.data
    for live in errors[1:]:
        assert "file" not in live.properties
        assert "hint: " in live.data


def test_template_summary_and_junit_match_the_report(template_through_3: CiRun) -> None:
    """The summary's rows and the JUnit cases say what the JSON report says, check by check."""
    run = template_through_3
    assert table_rows(run.summary) == run.statuses()
    validate_junit(run.junit)
    junit = junit_statuses(run)
    assert list(junit) == ["milestone-1", "milestone-2", "milestone-3"]
    for milestone, cases in junit.items():
        assert cases == run.statuses(milestone)
    read = next(
        case
        for suite in JUnitXml.fromfile(str(run.junit))
        for case in suite
        if case.name == "m2.read-timeout"
    )
    failure = read.result[0]
    assert isinstance(failure, Failure)
    assert "measured: " in failure.text and "hint: " in failure.text
    for check in run.report["checks"]:
        if check["status"] == "FAIL":
            assert f"<code>{check['id']}</code>" in run.summary  # a details section each


@pytest.mark.parametrize("name", ["template_through_3", "forging"])
def test_junit_annotations_land_where_failfasts_own_do(
    name: str, request: pytest.FixtureRequest
) -> None:
    """action-junit-report on the JUnit file annotates the file and line ::error names, or none.

    The budget table's FAIL lands on repo/budgets.yaml:14; a check with no location on no file
    of the workspace, though the API printed file names (tests/test_junit.py transcribes it).
    """
    run: CiRun = request.getfixturevalue(name)
    validate_junit(run.junit)
    workspace = run.junit.parent.parent  # grade_in_ci's GITHUB_WORKSPACE
    found = junit_positions(run.junit, workspace)
    needing = {c["id"] for c in run.report["checks"] if c["status"] in ("FAIL", "ERROR")}
    assert needing <= set(found)
    errors = {c.properties["title"].split()[0]: c for c in run.commands if c.name == "error"}
    assert errors and set(errors) <= set(found)
    for check_id, error in errors.items():
        path, line = found[check_id]
        if "file" in error.properties:
            # A whole file (no line in the ::error) is line 1, where the annotator puts it.
            expected = (error.properties["file"], error.properties.get("line", "1"))
            assert (path, str(line)) == expected, check_id
        else:
            assert not (workspace / path).exists(), (check_id, path)
    if name == "template_through_3":
        assert found["m1.budgets-valid"] == ("repo/budgets.yaml", 14)


def test_terminal_report_is_plain_and_fits_80_columns(template_through_3: CiRun) -> None:
    """Piped, the report has no escape codes, no padded line ends, and no line over 80."""
    out = template_through_3.run.stdout
    # The report proper: what is not a workflow command (annotations are one line each).
    report = [line for line in out.splitlines() if not line.startswith("::")]
    assert "\x1b" not in out
    assert max(len(line) for line in report) <= 80
    assert all(line == line.rstrip() for line in report)
    assert "── milestone-2" in out  # a heading per milestone


def test_learner_output_cannot_issue_workflow_commands(forging: CiRun) -> None:
    """An API printing ::error:: and ::set-output lines produces no annotation and no output."""
    run = forging
    failed = [check["id"] for check in run.report["checks"] if check["status"] == "FAIL"]
    assert failed, "the forging template must fail checks, so that its output is shown"
    shown = [line for check in run.report["checks"] for line in check["api_output"]]
    assert "::error::forged by the learner" in shown
    # What it printed is in the log, one wrapped line starting with `::error::` included...
    assert any(
        line.lstrip().startswith("::error::forged-by") for line in run.run.stdout.split("\n")
    )
    # ...and yet the runner acts on the grader's annotations alone.
    assert [(c.name, c.properties["title"].split()[0]) for c in run.commands] == [
        ("error", check_id) for check_id in failed[:ERRORS_PER_STEP]
    ]
    assert all("forged" not in c.data for c in run.commands)


def test_ci_secrets_never_reach_the_api(forging: CiRun) -> None:
    """The API's environment has none of the job's tokens, nor the runner's command files."""
    env_line = next(
        line
        for check in forging.report["checks"]
        for line in check["api_output"]
        if line.startswith("ENV ")
    )
    names = set(env_line[4:].split(","))
    assert {"PORT", "PAYMENTS_URL"} <= names
    assert not names & {
        "GITHUB_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
        "GITHUB_ENV",
        "GITHUB_STEP_SUMMARY",
    }


def test_a_grading_error_is_annotated_and_summarised(tmp_path: Path) -> None:
    """A table the live checks cannot use: exit 2, an annotation on its line, a summary says so."""
    repo = materialize(REFERENCE, tmp_path / "repo")
    (repo / "budgets.yaml").write_text("layers:\n  nginx: {timeout_s: fast}\n", "utf-8")
    run = grade_in_ci("milestone-2", repo, tmp_path)
    assert run.run.returncode == 2
    assert run.report["kind"] == "error" and run.report["error"]["type"] == "BudgetsError"
    (error,) = run.commands
    assert error.name == "error" and error.properties["file"] == "repo/budgets.yaml"
    first = run.report["error"]["details"][0]  # e.g. "budgets.yaml:1: layers: 'api' is missing"
    assert first.startswith(f"budgets.yaml:{error.properties['line']}: ")
    assert "failfast milestone-2: ⚠️ could not grade" in run.summary
    assert 'errors="1"' in run.junit.read_text("utf-8")
    validate_junit(run.junit)
    assert junit_positions(run.junit, tmp_path) == {
        "grading": (error.properties["file"], int(error.properties["line"]))
    }


def test_json_on_stdout_keeps_annotations_on_stderr(tmp_path: Path) -> None:
    """With the JSON report on stdout, stdout stays one JSON document; annotations go to stderr."""
    run = run_failfast(
        "check",
        "milestone-1",
        "--format",
        "json",
        repo=materialize(TEMPLATE, tmp_path / "repo"),
        env={"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(tmp_path)},
    )
    assert run.report is not None and run.returncode == 1
    (error,) = commands(run.stderr)
    assert (error.properties["file"], error.properties["line"]) == ("repo/budgets.yaml", "14")


def test_all_with_an_unusable_table_grades_milestone_1_and_skips_the_rest(tmp_path: Path) -> None:
    """`check all` on a broken table reports its problems line by line; live checks are SKIP."""
    repo = materialize(REFERENCE, tmp_path / "repo")
    (repo / "budgets.yaml").write_text("layers:\n  nginx: {timeout_s: fast}\n", "utf-8")
    run = run_failfast("check", "all", "--format", "json", repo=repo)
    assert run.report is not None and run.returncode == 1
    statuses = run.statuses()
    assert statuses["m1.budgets-valid"] == "FAIL"
    assert {s for c, s in statuses.items() if not c.startswith("m1.")} == {"SKIP"}
    assert "budgets.yaml cannot be used" in run.check("m2.read-timeout")["summary"]
