"""Platform results from real grading runs: Gradescope, PrairieLearn and GitHub Classroom.

The real CLI grades milestone 5 of the reference solution and of the learner template with a
course file and all three platform reports, under GitHub Actions (so the classroom result is
also a step output); then a repo whose failfast.yaml is invalid, which cannot be graded.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from grader.cli import catalog
from grader.yamlfile import schema
from tests.conftest import Run, run_failfast
from tests.mutants import REFERENCE, TEMPLATE, materialize

pytestmark = pytest.mark.slow

COURSE = """\
version: 1
milestones:
  milestone-5: {points: 20}
checks:
  m5.double-submit: {points: 5}
  m5.lost-response: {visibility: after_due_date}
"""
# Milestone 5: live checks of every kind of verdict the template gets, in 2-3 s a grading.
MILESTONE = "milestone-5"
PLATFORMS = ("gradescope", "prairielearn", "classroom")


@dataclass
class PlatformRun:
    """One graded run and the three platform files it wrote, each valid against its schema."""

    run: Run
    files: dict[str, dict[str, Any]]
    classroom_bytes: bytes
    step_outputs: list[str]  # the lines $GITHUB_OUTPUT received


def grade(tmp: Path, repo: Path) -> PlatformRun:
    """`check milestone-5 --course … --report <platform>=…` for all three, as a CI step."""
    course = tmp / "course.yaml"
    course.write_text(COURSE, "utf-8")
    outputs = tmp / "github_output"
    reports = [f"--report={name}={tmp / name / 'results.json'}" for name in PLATFORMS]
    run = run_failfast(
        "check",
        MILESTONE,
        "--course",
        str(course),
        *reports,
        repo=repo,
        timeout_s=300,
        env={
            "GITHUB_ACTIONS": "true",
            "GITHUB_OUTPUT": str(outputs),
            "GITHUB_WORKSPACE": str(tmp),
        },
    )
    files = {}
    for name in PLATFORMS:
        document = json.loads((tmp / name / "results.json").read_text("utf-8"))
        jsonschema.validate(document, schema(f"platforms/{name}"))
        files[name] = document
    return PlatformRun(
        run,
        files,
        (tmp / "classroom" / "results.json").read_bytes(),
        outputs.read_text("utf-8").splitlines() if outputs.exists() else [],
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> PlatformRun:
    """Milestone 5 of the reference solution, which passes every check."""
    tmp = tmp_path_factory.mktemp("platforms-reference")
    return grade(tmp, materialize(REFERENCE, tmp / "repo"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> PlatformRun:
    """Milestone 5 of the learner template, which charges twice."""
    tmp = tmp_path_factory.mktemp("platforms-template")
    return grade(tmp, materialize(TEMPLATE, tmp / "repo"))


def step_result(run: PlatformRun) -> bytes:
    """The one `result` step output, decoded from base64."""
    (line,) = [line for line in run.step_outputs if line.startswith("result=")]
    return base64.b64decode(line.removeprefix("result="), validate=True)


def test_the_reference_scores_every_point_on_every_platform(reference: PlatformRun) -> None:
    """20 of 20 points: Gradescope's sum, PrairieLearn's 1.0, Classroom's pass."""
    assert reference.run.returncode == 0, reference.run.stdout
    gradescope = reference.files["gradescope"]
    checks = [spec.id for spec in catalog().for_milestone(MILESTONE)]
    assert [t["name"].split(":")[0] for t in gradescope["tests"]] == checks
    assert [t["number"] for t in gradescope["tests"]] == [f"5.{n}" for n in range(1, 8)]
    assert gradescope["score"] == sum(t["max_score"] for t in gradescope["tests"]) == 20
    double = next(t for t in gradescope["tests"] if t["name"].startswith("m5.double-submit"))
    assert double["max_score"] == 5
    lost = next(t for t in gradescope["tests"] if t["name"].startswith("m5.lost-response"))
    assert lost["visibility"] == "after_due_date"
    prairielearn = reference.files["prairielearn"]
    assert (prairielearn["gradable"], prairielearn["score"]) == (True, 1.0)
    classroom = reference.files["classroom"]
    assert (classroom["status"], classroom["max_score"]) == ("pass", 20)
    assert sum(t["score"] for t in classroom["tests"]) == 20
    assert step_result(reference) == reference.classroom_bytes
    assert "score 20/20" in reference.run.stdout


def test_the_template_scores_what_it_passes(template: PlatformRun) -> None:
    """The naive template fails: fewer points, Classroom fail; every platform agrees on passes."""
    assert template.run.returncode == 1, template.run.stdout
    gradescope = template.files["gradescope"]
    passed = {t["name"].split(":")[0] for t in gradescope["tests"] if t["status"] == "passed"}
    assert "m5.double-submit" not in passed
    assert 0 <= gradescope["score"] < 20
    assert gradescope["score"] == sum(t["score"] for t in gradescope["tests"])
    prairielearn = template.files["prairielearn"]
    assert {t["name"] for t in prairielearn["tests"] if t["points"] > 0} == passed
    assert prairielearn["score"] == round(gradescope["score"] / 20, 4)
    classroom = template.files["classroom"]
    assert classroom["status"] == "fail"
    assert {t["name"].split(":")[0] for t in classroom["tests"] if t["status"] == "pass"} == passed
    assert step_result(template) == template.classroom_bytes


def test_a_grading_error_still_gives_every_platform_its_file(tmp_path: Path) -> None:
    """Bad failfast.yaml: exit 2, a Gradescope file, PrairieLearn not gradable, Classroom error."""
    repo = materialize(TEMPLATE, tmp_path / "repo")
    (repo / "failfast.yaml").write_text("command: uvicorn app.main:app\nservices: [postgres]\n")
    run = grade(tmp_path, repo)
    assert run.run.returncode == 2, run.run.stdout
    gradescope = run.files["gradescope"]
    assert (gradescope["score"], gradescope["tests"]) == (0, [])
    assert "failfast.yaml:2" in gradescope["output"]
    assert run.files["prairielearn"]["gradable"] is False
    assert run.files["classroom"]["status"] == "error"
    assert json.loads(step_result(run))["status"] == "error"
