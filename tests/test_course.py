"""The course file: points per check and per milestone, visibility, and errors that name the line.

Loaded against the real catalog of checks, as `failfast check --course` loads it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from grader.cli.app import catalog
from grader.course.file import Course, Rule
from grader.engine.registry import Catalog
from grader.errors import CourseError, GradingError
from grader.formats.json import JsonFormat
from grader.learner.yamlfile import schema
from grader.model import MILESTONE_KEYS, CheckResult, Evidence, Report, Status
from tests.conftest import run_failfast

GOOD = """\
version: 1
milestones:                # points per milestone
  milestone-2: {points: 20}
  milestone-3: {visibility: hidden}
checks:
  m2.read-timeout: {points: 5}
  m3.jitter-spread: {visibility: after_due_date}
default_visibility: after_published
"""


@pytest.fixture(scope="module")
def checks() -> Catalog:
    """The grader's own checks."""
    return catalog()


def write(tmp_path: Path, text: str, name: str = "course.yaml") -> Path:
    """A course file with this text."""
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def ids(checks: Catalog, milestone: str) -> list[str]:
    """The check ids of one milestone, in order."""
    return [spec.id for spec in checks.for_milestone(milestone)]


def report_of(checks: Catalog, *milestones: str, status: Status = Status.PASS) -> Report:
    """A report of every check of these milestones, each with this status."""
    results = tuple(
        CheckResult(spec.id, spec.title, key, status, Evidence("done"))
        for key in milestones
        for spec in checks.for_milestone(key)
    )
    return Report(milestones[-1], "/r", results=results, milestones=milestones)


CHECKS = "version: 1\nchecks:\n"
MILESTONES = "version: 1\nmilestones:\n"


def test_the_schema_knows_every_milestone_and_no_other() -> None:
    """The milestone keys the course file allows are the model's, one for one."""
    allowed = schema("course")["properties"]["milestones"]["properties"]
    assert list(allowed) == list(MILESTONE_KEYS)


def test_a_good_file_spreads_milestone_points_over_checks_without_their_own(
    tmp_path: Path, checks: Catalog
) -> None:
    """Milestone 2's 20 points: 5 to m2.read-timeout, the other 15 evenly over the rest."""
    course = Course.load(write(tmp_path, GOOD), checks)
    two = ids(checks, "milestone-2")
    worth = course.points("milestone-2", two)
    assert worth["m2.read-timeout"] == 5.0
    others = [worth[i] for i in two if i != "m2.read-timeout"]
    assert others == [15 / len(others)] * len(others)
    assert sum(worth.values()) == 20
    # A milestone without points: 1 per check, as without a course file.
    assert set(course.points("milestone-1", ids(checks, "milestone-1")).values()) == {1.0}


def test_visibility_is_the_checks_then_the_milestones_then_the_default(
    tmp_path: Path, checks: Catalog
) -> None:
    """A check's own visibility wins, then its milestone's, then default_visibility."""
    course = Course.load(write(tmp_path, GOOD), checks)
    assert course.visibility("m3.jitter-spread", "milestone-3") == "after_due_date"
    assert course.visibility("m3.decline-not-retried", "milestone-3") == "hidden"
    assert course.visibility("m2.read-timeout", "milestone-2") == "after_published"
    assert Course.DEFAULT.visibility("m2.read-timeout", "milestone-2") == "visible"


def test_points_are_spread_in_hundredths_that_add_up(tmp_path: Path) -> None:
    """20 points over 3 checks are 6.67, 6.67 and 6.66: each prints as it is, and they make 20."""
    course = Course(milestones=(("milestone-2", Rule(points=Decimal(20))),))
    worth = course.points("milestone-2", ["m2.a", "m2.b", "m2.c"])
    assert list(worth.values()) == [Decimal("6.67"), Decimal("6.67"), Decimal("6.66")]
    assert sum(worth.values(), Decimal(0)) == 20


def test_apply_sets_points_and_visibility_and_the_report_adds_them_up(
    tmp_path: Path, checks: Catalog
) -> None:
    """The applied report's score per milestone and in all is the course's, in the JSON too."""
    course = Course.load(write(tmp_path, GOOD), checks)
    report = course.apply(report_of(checks, "milestone-1", "milestone-2"))
    assert report.max_score == len(ids(checks, "milestone-1")) + 20
    assert report.score == report.max_score
    timeout = next(r for r in report.results if r.id == "m2.read-timeout")
    assert (timeout.max_score, timeout.visibility) == (Decimal(5), "after_published")
    document = json.loads(JsonFormat().render(report))
    jsonschema.validate(document, schema("report"))
    assert document["scores"]["milestone-2"] == {"score": 20.0, "max_score": 20.0}
    assert document["max_score"] == report.max_score and document["gradable"] is True


def test_the_default_course_is_one_point_per_check_visible(checks: Catalog) -> None:
    """Without a course file nothing changes: 1 point and visible per check."""
    report = report_of(checks, "milestone-2", status=Status.FAIL)
    assert Course.DEFAULT.apply(report) == report
    assert report.max_score == len(ids(checks, "milestone-2")) and report.score == 0


def test_a_milestone_whose_checks_all_have_points_must_agree(
    tmp_path: Path, checks: Catalog
) -> None:
    """Every check with points of its own adding up exactly to the milestone's is fine."""
    one = ids(checks, "milestone-1")
    lines = "".join(f"  {i}: {{points: 2}}\n" for i in one)
    text = f"{MILESTONES}  milestone-1: {{points: {2 * len(one)}}}\nchecks:\n{lines}"
    course = Course.load(write(tmp_path, text), checks)
    assert set(course.points("milestone-1", one).values()) == {2.0}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (CHECKS + "  m2.read-timout: {points: 5}\n", 3, "did you mean m2.read-timeout"),
        (
            MILESTONES + "  milestone-9: {points: 5}\n",
            3,
            "unexpected key 'milestone-9'",
        ),
        (
            CHECKS + "  m2.read-timeout: {points: five}\n",
            3,
            "must be a number of points",
        ),
        (CHECKS + "\n  m2.slow-body: {points: -1}\n", 4, "must be at least 0"),
        (
            CHECKS + "  m2.slow-body: {visibility: secret}\n",
            3,
            "must be one of visible",
        ),
        ("version: 1\ndefault_visibility: public\n", 2, "default_visibility must be one of"),
        ("version: 2\n", 1, "version must be one of 1, not 2"),
        ("checks: {}\n", 1, "version is missing"),
        (CHECKS + "  m2.slow-body: {point: 3}\n", 3, "unexpected key 'point'"),
        (CHECKS + "  m2.slow-body: {points: .nan}\n", 3, "must be a finite number"),
        (CHECKS + "  m2.slow-body: {points: .inf}\n", 3, "at most 1000, not .inf"),
        ("version: 1\nversion: 1\n", 2, "given twice"),
        ("version: 1\nchecks: [m2.slow-body]\n", 2, "checks must be of type object"),
        ("version: 1\nchecks: {m2.slow-body: {points: 1}\n", 3, "is not valid YAML"),
        (
            MILESTONES + "  milestone-2: {points: 4}\nchecks:\n  m2.read-timeout: {points: 5}\n",
            3,
            "its checks' own points add up to 5",
        ),
    ],
)
def test_each_error_names_the_file_and_line(
    tmp_path: Path, checks: Catalog, text: str, line: int, words: str
) -> None:
    """A bad course file is a CourseError (exit 2) whose paragraph says file:line and what."""
    path = write(tmp_path, text)
    with pytest.raises(CourseError) as raised:
        Course.load(path, checks)
    assert isinstance(raised.value, GradingError)
    assert f"{path}:{line}: " in raised.value.message, raised.value.message
    assert words in raised.value.message, raised.value.message


def test_every_problem_is_listed_not_only_the_first(tmp_path: Path, checks: Catalog) -> None:
    """Two unknown ids: the first in the paragraph, the second in the details, both with lines."""
    path = write(tmp_path, "version: 1\nchecks:\n  m2.nope: {}\n  m9.nope: {}\n")
    with pytest.raises(CourseError) as raised:
        Course.load(path, checks)
    assert f"{path}:3: checks.m2.nope is not a check" in raised.value.message
    assert raised.value.details == (
        f"{path}:4: checks.m9.nope is not a check of failfast (`failfast list` names every one)",
    )


def test_all_own_points_that_miss_the_milestone_are_an_error(
    tmp_path: Path, checks: Catalog
) -> None:
    """When no check is left to take the rest, the checks must add up to the milestone."""
    lines = "".join(f"  {i}: {{points: 1}}\n" for i in ids(checks, "milestone-1"))
    text = f"{MILESTONES}  milestone-1: {{points: 50}}\nchecks:\n{lines}"
    with pytest.raises(CourseError, match=r"course.yaml:3: .*every check of milestone-1"):
        Course.load(write(tmp_path, text), checks)


def test_without_a_catalog_ids_are_held_to_a_milestone_prefix(tmp_path: Path) -> None:
    """`failfast grade` may load it alone: an id of no milestone is still refused, on its line."""
    path = write(tmp_path, CHECKS + "  m2.anything: {}\n  x9.nope: {}\n")
    with pytest.raises(CourseError, match=r"course.yaml:4: checks.x9.nope is not a check id"):
        Course.load(path)


def test_a_missing_file_and_an_empty_one(tmp_path: Path) -> None:
    """No file says where it looked; an empty one says what it needs."""
    with pytest.raises(CourseError, match="There is no course file at"):
        Course.load(tmp_path / "nope.yaml")
    with pytest.raises(CourseError, match="is empty: it needs `version:`"):
        Course.load(write(tmp_path, "# nothing yet\n"))


def test_the_cli_reports_a_bad_course_file_before_grading(tmp_path: Path) -> None:
    """`check --course` with an unknown id: exit 2, file:line on the terminal, reports written."""
    path = write(tmp_path, CHECKS + "  m2.read-timout: {points: 5}\n")
    gradescope = tmp_path / "results.json"
    run = run_failfast(
        "check",
        "milestone-2",
        "--course",
        str(path),
        "--report",
        f"gradescope={gradescope}",
        "--repo",
        str(tmp_path / "never-graded"),
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"{path}:3: checks.m2.read-timout is not a check" in " ".join(run.stdout.split())
    document = json.loads(gradescope.read_text("utf-8"))
    assert document["score"] == 0 and document["extra_data"]["error"]["type"] == "CourseError"
