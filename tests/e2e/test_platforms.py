"""Platform results from real grading runs: Gradescope, PrairieLearn and GitHub Classroom.

The real CLI grades milestone 5 of the reference solution and of the learner template with a
course file of unequal, fractional points and every report a course reads, under GitHub Actions
(so the classroom result is also a step output); then a repo whose failfast.yaml is invalid,
which cannot be graded; then the template with a course that hides checks, on Gradescope. Each
file is read by its platform's reader (tests/platform_readers.py): the score it records must be
failfast's, to the last digit.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from grader.cli.app import catalog
from grader.learner.yamlfile import schema
from tests.conftest import Run, run_failfast
from tests.mutants import REFERENCE, TEMPLATE, materialize
from tests.platform_readers import (
    ClassroomReading,
    classroom_reporter,
    gradescope_score,
    json_scores,
    prairielearn_reading,
    score_in_text,
    summary_html,
)

pytestmark = pytest.mark.slow

# 20 points: 5 and 3.33 on two checks, 11.67 spread over the other five (2.34, 2.34, 2.33 …).
COURSE = """\
version: 1
milestones:
  milestone-5: {points: 20}
checks:
  m5.double-submit: {points: 5}
  m5.lost-response: {points: 3.33}
"""
HIDING_COURSE = COURSE + "  m5.concurrent-double-submit: {visibility: hidden}\n"
# Milestone 5: live checks of every kind of verdict the template gets, in 2-3 s a grading.
MILESTONE = "milestone-5"
PLATFORMS = ("gradescope", "prairielearn", "classroom")
OTHERS = {"json": "report.json", "markdown": "summary.md", "html": "report.html"}


@dataclass
class PlatformRun:
    """One graded run, its files (platform files valid against their schemas), and readings."""

    run: Run
    files: dict[str, dict[str, Any]]
    classroom_bytes: bytes
    step_outputs: list[str]  # the lines $GITHUB_OUTPUT received
    texts: dict[str, str]  # the JSON, Markdown and HTML reports

    @property
    def step_result(self) -> bytes:
        """The one `result` step output, decoded from base64."""
        (line,) = [line for line in self.step_outputs if line.startswith("result=")]
        return base64.b64decode(line.removeprefix("result="), validate=True)

    def classroom(self) -> ClassroomReading:
        """What Classroom's reporter records from the step output, as the workflow passes it."""
        return classroom_reporter(failfast=self.step_result)

    @property
    def score(self) -> tuple[Decimal, Decimal]:
        """The score and maximum failfast computed, from its JSON report."""
        return json_scores(self.texts["json"])


def grade(
    tmp: Path,
    repo: Path,
    course: str = COURSE,
    platforms: tuple[str, ...] = PLATFORMS,
    *extra: str,
) -> PlatformRun:
    """`check milestone-5 --course … --report …` for the platforms and the others, as a CI step."""
    course_file = tmp / "course.yaml"
    course_file.write_text(course, "utf-8")
    outputs = tmp / "github_output"
    reports = [f"--report={name}={tmp / name / 'results.json'}" for name in platforms]
    reports += [f"--report={name}={tmp / file}" for name, file in OTHERS.items()]
    run = run_failfast(
        "check",
        MILESTONE,
        "--course",
        str(course_file),
        *reports,
        *extra,
        repo=repo,
        timeout_s=300,
        env={
            "GITHUB_ACTIONS": "true",
            "GITHUB_OUTPUT": str(outputs),
            "GITHUB_WORKSPACE": str(tmp),
        },
    )
    files = {}
    for name in platforms:
        document = json.loads((tmp / name / "results.json").read_text("utf-8"))
        jsonschema.validate(document, schema(f"platforms/{name}"))
        files[name] = document
    classroom = tmp / "classroom" / "results.json"
    return PlatformRun(
        run,
        files,
        classroom.read_bytes() if classroom.exists() else b"",
        outputs.read_text("utf-8").splitlines() if outputs.exists() else [],
        {name: (tmp / file).read_text("utf-8") for name, file in OTHERS.items()},
    )


def assert_every_reader_records(run: PlatformRun) -> None:
    """Classroom, Gradescope, PrairieLearn, Markdown, HTML and the terminal: failfast's score."""
    score, worth = run.score
    assert run.classroom().recorded == (score, worth)
    gradable = run.files["prairielearn"]["gradable"]
    assert gradescope_score(run.files["gradescope"]) == (score if gradable else 0)
    assert prairielearn_reading(run.files["prairielearn"])[1] == Fraction(
        float(Fraction(score) / Fraction(worth))
    )
    assert score_in_text(summary_html(run.texts["markdown"])) == (score, worth)
    assert score_in_text(run.texts["html"]) == (score, worth)
    assert score_in_text(run.run.stdout) == (score, worth)


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
    assert lost["max_score"] == 3.33
    prairielearn = reference.files["prairielearn"]
    assert (prairielearn["gradable"], prairielearn["score"]) == (True, 1.0)
    classroom = reference.files["classroom"]
    assert (classroom["status"], classroom["max_score"]) == ("pass", 20)
    assert reference.step_result == reference.classroom_bytes
    assert "score 20/20" in reference.run.stdout
    assert reference.score == (Decimal(20), Decimal(20))
    assert_every_reader_records(reference)


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
    classroom = template.files["classroom"]
    assert classroom["status"] == "fail"
    assert {t["name"].split(":")[0] for t in classroom["tests"] if t["status"] == "pass"} == passed
    assert template.step_result == template.classroom_bytes
    assert 0 < template.score[0] < 20
    assert_every_reader_records(template)


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
    assert json.loads(run.step_result)["status"] == "error"
    # Not a grade, and not dropped: Classroom keeps the milestone's 20 points in its total.
    reading = run.classroom()
    assert reading.recorded == (Decimal(0), Decimal(20)) and reading.step == "Some tests errored."
    assert run.score == (Decimal(0), Decimal(20))


def test_a_hiding_course_shows_learners_on_gradescope_only_what_is_visible(tmp_path: Path) -> None:
    """The template with a hidden check: the learner's output neither names nor totals it."""
    repo = materialize(TEMPLATE, tmp_path / "repo")
    run = grade(tmp_path, repo, HIDING_COURSE, ("gradescope",), "--for-learners")
    assert run.run.returncode == 1, run.run.stdout
    document = run.files["gradescope"]
    hidden = next(
        t for t in document["tests"] if t["name"].startswith("m5.concurrent-double-submit")
    )
    assert hidden["visibility"] == "hidden"
    seen = document["output"] + "".join(
        t["name"] + t["output"] for t in document["tests"] if t["visibility"] == "visible"
    )
    assert "concurrent-double-submit" not in seen
    visible = [t for t in document["tests"] if t["visibility"] == "visible"]
    shown = (
        sum((Decimal(repr(t["score"])) for t in visible), Decimal(0)),
        sum((Decimal(repr(t["max_score"])) for t in visible), Decimal(0)),
    )
    assert score_in_text(document["output"]) == shown
    assert shown[1] < 20
    # --for-learners: the JSON, Markdown, HTML and terminal reports are a learner's view, and
    # total what Gradescope's visible tests do; Gradescope's own file keeps the hidden check.
    assert run.score == shown
    for text in (*run.texts.values(), run.run.stdout):
        assert "concurrent-double-submit" not in text
    assert score_in_text(run.texts["markdown"]) == shown
