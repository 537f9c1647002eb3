"""One score everywhere: what each platform's reader records equals failfast's score, exactly.

Reports are built here from the real catalog's checks and courses with equal, unequal, zero and
fractional points; every file is then read by the platform's own reader (or its rule, named in
tests/platform_readers.py) and compared as exact decimals or fractions. tests/e2e/test_platforms.py
does the same on the files of real gradings.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from junitparser import JUnitXml

from grader.cli.app import catalog
from grader.course.file import Course, Rule
from grader.errors import ApiStartError
from grader.formats import OutputFormat
from grader.formats.classroom import MAX_DOCUMENT_BYTES, ClassroomFormat, js_sum, scores_for
from grader.formats.gradescope import MAX_BYTES as GRADESCOPE_MAX_BYTES
from grader.formats.gradescope import GradescopeFormat
from grader.formats.json import JsonFormat
from grader.formats.prairielearn import PrairieLearnFormat
from grader.model import (
    CheckResult,
    Evidence,
    ExitCode,
    Report,
    Status,
    fraction_of,
    percent_text,
    points_float,
    points_text,
)
from tests.conftest import run_failfast
from tests.mutants import TEMPLATE
from tests.platform_readers import (
    classroom_reporter,
    gradescope_score,
    json_scores,
    prairielearn_reading,
    score_in_text,
    summary_html,
)

SPECS = catalog().specs
MILESTONES = ("milestone-1", "milestone-2", "milestone-3", "milestone-4", "milestone-5")


def course(
    milestones: dict[str, str] | None = None, checks: dict[str, str] | None = None
) -> Course:
    """A course giving these points (as the YAML would write them) to milestones and checks."""
    return Course(
        milestones=tuple((k, Rule(points=Decimal(v))) for k, v in (milestones or {}).items()),
        checks=tuple((k, Rule(points=Decimal(v))) for k, v in (checks or {}).items()),
    )


COURSES = {
    "one-point-each": Course.DEFAULT,
    # The case: 20 points over unequal checks (14 + 1.2 × 5, and 3.34/3.33 shares).
    "unequal": course({"milestone-2": "20", "milestone-3": "20"}, {"m2.read-timeout": "14"}),
    # Zero-point and fractional checks, and a large total (:g once dropped its digits).
    "fractional": course(
        {"milestone-1": "0.3", "milestone-4": "100000.01", "milestone-5": "33.33"},
        {"m5.double-submit": "0", "m3.jitter-spread": "0.01", "m3.backoff-grows": "0.1"},
    ),
    # The autograder's own course file, for `check all`.
    "autograder": course(
        {
            "milestone-1": "10",
            "milestone-2": "20",
            "milestone-3": "20",
            "milestone-4": "20",
            "milestone-5": "20",
            "loadtest": "10",
        }
    ),
}

Pattern = Callable[[int], Status]
PATTERNS: dict[str, Pattern] = {
    "all-pass": lambda n: Status.PASS,
    "all-fail": lambda n: Status.FAIL,
    "alternate": lambda n: Status.PASS if n % 2 else Status.FAIL,
    "one-skip": lambda n: Status.SKIP if n == 1 else Status.PASS,
    "one-error": lambda n: Status.ERROR if n == 2 else Status.PASS,
    "one-inconclusive": lambda n: Status.INCONCLUSIVE if n == 0 else Status.PASS,
    "first-only": lambda n: Status.PASS if n == 0 else Status.FAIL,
}


def planned(milestones: tuple[str, ...]) -> list[tuple[str, str]]:
    """(milestone, check id) of every check of these milestones, in catalog order."""
    return [(s.milestone, s.id) for s in SPECS if s.milestone in milestones]


def graded(
    the_course: Course, pattern: Pattern, milestones: tuple[str, ...] = MILESTONES
) -> Report:
    """A run of these milestones whose n-th check has the pattern's status, with the course."""
    results = tuple(
        CheckResult(s.id, s.title, s.milestone, pattern(n), Evidence(f"{s.id} é ünïcode"))
        for n, s in enumerate(s for s in SPECS if s.milestone in milestones)
    )
    name = "all" if len(milestones) > 1 else milestones[0]
    report = Report(name, "/r", "2026-12-07T10:00:00+00:00", results=results, milestones=milestones)
    return the_course.apply(report, planned(milestones))


def not_graded(the_course: Course, milestones: tuple[str, ...] = ("milestone-2",)) -> Report:
    """A run that could not grade: no results, what it was to be worth kept."""
    problem = ApiStartError("Your API exited before it answered GET /healthz").not_graded()
    report = Report(milestones[0], "/r", milestones=milestones, not_graded=problem)
    return the_course.apply(report, planned(milestones))


CASES = [
    pytest.param(course_name, pattern_name, id=f"{course_name}-{pattern_name}")
    for course_name in COURSES
    for pattern_name in PATTERNS
]


def report_of(course_name: str, pattern_name: str) -> Report:
    """The case's report: `check all` for the autograder course, milestones 1-5 otherwise."""
    milestones = (*MILESTONES, "loadtest") if course_name == "autograder" else MILESTONES
    return graded(COURSES[course_name], PATTERNS[pattern_name], milestones)


@pytest.mark.parametrize(("course_name", "pattern_name"), CASES)
def test_every_platform_records_failfasts_score(course_name: str, pattern_name: str) -> None:
    """Classroom, Gradescope, PrairieLearn and the JSON report, read back: the same decimal."""
    report = report_of(course_name, pattern_name)
    classroom = classroom_reporter(failfast=ClassroomFormat().render(report).encode())
    assert classroom.recorded == (report.score, report.max_score)
    expected_step = (
        "passed"
        if pattern_name == "all-pass"
        else "Some tests errored."
        if not report.gradable
        else "Some tests failed."
    )
    assert classroom.step == expected_step

    gradescope = json.loads(GradescopeFormat().render(report))
    assert gradescope_score(gradescope) == (report.score if report.gradable else 0)

    gradable, share = prairielearn_reading(json.loads(PrairieLearnFormat().render(report)))
    assert gradable is report.gradable
    exact = Fraction(report.score) / Fraction(report.max_score)
    assert share == Fraction(float(exact))  # the double nearest the exact share
    assert (share == 1) is (report.score == report.max_score)
    assert (share == 0) is (report.score == 0)

    assert json_scores(JsonFormat().render(report)) == (report.score, report.max_score)
    for fmt in (OutputFormat.TEXT, OutputFormat.MARKDOWN, OutputFormat.HTML):
        text = fmt.to_format().render(report)
        text = summary_html(text) if fmt is OutputFormat.MARKDOWN else text
        assert score_in_text(text) == (report.score, report.max_score), fmt


@pytest.mark.parametrize("course_name", list(COURSES))
def test_a_run_that_could_not_grade_keeps_its_maximum_everywhere(course_name: str) -> None:
    """Not graded: Classroom error with the planned maximum, PrairieLearn not gradable, score 0."""
    report = not_graded(COURSES[course_name])
    worth = sum(
        COURSES[course_name]
        .points("milestone-2", [i for m, i in planned(("milestone-2",)) if m == "milestone-2"])
        .values(),
        Decimal(0),
    )
    assert report.max_score == worth > 0
    classroom = classroom_reporter(failfast=ClassroomFormat().render(report).encode())
    assert classroom.recorded == (Decimal(0), worth)  # it stays in the denominator, not dropped out
    assert classroom.step == "Some tests errored."
    document = json.loads(ClassroomFormat().render(report))
    assert document["status"] == "error" and document["tests"][0]["status"] == "error"
    assert gradescope_score(json.loads(GradescopeFormat().render(report))) == 0
    assert prairielearn_reading(json.loads(PrairieLearnFormat().render(report)))[0] is False
    assert json_scores(JsonFormat().render(report)) == (Decimal(0), worth)


def test_classroom_adds_up_exactly_for_random_points_and_statuses() -> None:
    """5000 random runs in hundredths: the reporter's float sum prints failfast's decimal."""
    rng = random.Random(20261207)
    for _ in range(5000):
        count = rng.randint(1, 40)
        points = [
            Decimal(rng.choice([0, 1, 5, 667, 666, 3333, rng.randint(0, 10**7)])) / 100
            for _ in range(count)
        ]
        passed = [rng.random() < 0.6 for _ in range(count)]
        earned = sum((p for p, ok in zip(points, passed, strict=True) if ok), Decimal(0))
        shares = scores_for(
            [points_float(p) if ok else 0.0 for p, ok in zip(points, passed, strict=True)],
            points_float(earned),
        )
        total = js_sum(shares)
        assert Decimal(repr(total)) == earned, (points, passed, total)
        # A nudge is a few units in the last place: no test shows another number of points.
        for share, p, ok in zip(shares, points, passed, strict=True):
            assert abs(share - (points_float(p) if ok else 0.0)) <= 1e-9 * max(1.0, float(earned))


def test_no_share_rounds_to_full_marks_or_to_nothing() -> None:
    """199.99 of 200 is not 1.0, 0.01 of 10^7 is not 0.0, and percents floor."""
    assert fraction_of(Decimal("199.99"), Decimal(200)) < 1.0
    assert fraction_of(Decimal("0.01"), Decimal(10**7)) > 0.0
    assert fraction_of(Decimal(200), Decimal(200)) == 1.0
    assert fraction_of(Decimal(0), Decimal(200)) == 0.0
    assert percent_text(Decimal("199.99"), Decimal(200)) == "99.9 %"
    assert percent_text(Decimal("0.01"), Decimal(200)) == "<0.1 %"
    assert percent_text(Decimal(200), Decimal(200)) == "100 %"
    assert points_text(Decimal("1000000")) == "1000000" and points_text(Decimal("6.670")) == "6.67"


def huge_report() -> Report:
    """`check all` at its largest: every check FAIL with pages of non-ASCII evidence and output."""
    output = tuple(f"ligne {n}: réponse « {'é' * 180} » 支付失败" for n in range(200))
    results = tuple(
        CheckResult(
            s.id,
            s.title,
            s.milestone,
            Status.FAIL,
            Evidence("échec " * 300, measured="mesuré " * 500, hint="indice " * 300),
            api_output=output,
        )
        for s in SPECS
    )
    report = Report("all", "/r", results=results, milestones=(*MILESTONES, "loadtest"))
    return COURSES["autograder"].apply(report, planned(report.milestones))


def test_the_largest_report_reaches_the_classroom_reporter_with_a_note() -> None:
    """Uncut, it cannot pass through an environment variable; cut, it arrives and says so."""
    report = huge_report()
    uncut = json.dumps(ClassroomFormat().to_dict(report)).encode()
    with pytest.raises(OSError):  # E2BIG: the runner could not even start the reporter
        classroom_reporter(failfast=uncut)
    text = ClassroomFormat().render(report).encode()
    assert len(text) <= MAX_DOCUMENT_BYTES
    reading = classroom_reporter(failfast=text)
    assert reading.recorded == (Decimal(0), Decimal(100))
    assert all(m and "characters cut: the full report is in" in m for m in reading.messages)
    assert "支付失败" in "".join(m or "" for m in reading.messages)  # UTF-8 kept, not \\u-escaped


def test_prairielearn_and_gradescope_stay_under_their_limits_with_the_largest_report() -> None:
    """PrairieLearn's 1 MB: cut to fit and valid; Gradescope's outputs cut per test."""
    report = huge_report()
    from grader.formats.prairielearn import MAX_BYTES

    text = PrairieLearnFormat().render(report)
    assert len(text.encode()) < MAX_BYTES
    assert prairielearn_reading(json.loads(text)) == (True, Fraction(0))
    text = GradescopeFormat().render(report)
    assert len(text.encode()) <= GRADESCOPE_MAX_BYTES
    gradescope = json.loads(text)
    assert gradescope_score(gradescope) == 0
    assert all("characters cut" in t["output"] for t in gradescope["tests"])


HIDDEN = dataclasses.replace(
    COURSES["unequal"],
    checks=(
        *COURSES["unequal"].checks,
        ("m2.slow-body", Rule(visibility="hidden")),
        ("m3.jitter-spread", Rule(points=Decimal("0.01"), visibility="after_due_date")),
    ),
)


@pytest.mark.parametrize("pattern_name", list(PATTERNS))
def test_gradescope_shows_learners_nothing_of_a_hidden_check(pattern_name: str) -> None:
    """The top-level output and the visible tests name no hidden check and total only the rest."""
    report = graded(HIDDEN, PATTERNS[pattern_name])
    document = json.loads(GradescopeFormat().render(report))
    hidden = {"m2.slow-body", "m3.jitter-spread"}
    seen_by_learner = document["output"] + "".join(
        t["name"] + t["output"] for t in document["tests"] if t["visibility"] == "visible"
    )
    assert not any(check in seen_by_learner for check in hidden)
    visible = [r for r in report.results if r.visibility == "visible"]
    shown = (
        sum((r.score for r in visible), Decimal(0)),
        sum((r.max_score for r in visible), Decimal(0)),
    )
    assert score_in_text(document["output"]) == shown
    assert {
        t["name"].split(":")[0] for t in document["tests"] if t["visibility"] != "visible"
    } == hidden
    assert "hidden by the course" in document["output"]


HIDING_COURSE = """\
version: 1
checks:
  m2.slow-body: {visibility: hidden}
  m2.read-timeout: {visibility: after_published}
"""


@pytest.mark.parametrize("platform", ["classroom", "prairielearn"])
def test_a_platform_that_cannot_hide_is_refused_before_grading(
    tmp_path: Path, platform: str
) -> None:
    """Classroom and PrairieLearn show every test: a hiding course is exit 2, nothing graded."""
    course_file = tmp_path / "course.yaml"
    course_file.write_text(HIDING_COURSE, "utf-8")
    started = time.monotonic()
    run = run_failfast(
        "check",
        "milestone-2",
        "--course",
        str(course_file),
        f"--report={platform}={tmp_path / 'results.json'}",
        repo=TEMPLATE,
    )
    assert run.returncode == 2 and time.monotonic() - started < 20  # no API was started
    said = " ".join((run.stdout + run.stderr).split())
    assert "hides 2 checks from learners" in said
    assert f"but {platform} show the learner every check" in said
    written = (tmp_path / "results.json").read_text("utf-8")
    assert "slow-body" not in written and "read-timeout" not in written  # names no check
    (tmp_path / "class" / "alice").mkdir(parents=True)
    graded = run_failfast(
        "grade", str(tmp_path / "class"), "--course", str(course_file), "--platform", platform
    )
    assert graded.returncode == 2 and "hides 2 checks" in " ".join(graded.stderr.split())


@pytest.mark.parametrize("pattern_name", list(PATTERNS))
def test_a_learners_view_names_counts_and_totals_no_hidden_check(pattern_name: str) -> None:
    """--for-learners: terminal, JSON, Markdown, HTML, JUnit and annotations leave them out."""
    report = graded(HIDDEN, PATTERNS[pattern_name])
    view = report.for_learners()
    visible = [r for r in report.results if r.visibility == "visible"]
    assert view.results == tuple(visible) and view.withheld
    assert (view.score, view.max_score) == (
        sum((r.score for r in visible), Decimal(0)),
        sum((r.max_score for r in visible), Decimal(0)),
    )
    hidden_ungradable = any(not r.gradable for r in report.results if r not in visible)
    assert view.gradable is (report.gradable and not hidden_ungradable)
    texts = {fmt: fmt.to_format().render(view) for fmt in OutputFormat if not fmt.is_platform}
    texts[OutputFormat.TEXT] = OutputFormat.TEXT.to_format().render(view)
    for fmt, text in texts.items():
        assert "slow-body" not in text and "jitter-spread" not in text, fmt
    for fmt in (OutputFormat.TEXT, OutputFormat.MARKDOWN, OutputFormat.HTML):
        assert score_in_text(texts[fmt]) == (view.score, view.max_score), fmt
    assert json_scores(texts[OutputFormat.JSON]) == (view.score, view.max_score)
    # A hidden FAIL never shows in the exit code a learner's CI reports; a hidden check that
    # could not be graded does (exit 2: the learner's score is not the whole story yet).
    if all(r.status is Status.PASS for r in visible):
        assert view.exit_code == (0 if view.gradable else ExitCode.NOT_GRADED)


@pytest.mark.parametrize(("course_name", "pattern_name"), CASES)
def test_junit_properties_carry_the_exact_score(course_name: str, pattern_name: str) -> None:
    """Read by junitparser, each suite's score and the run's are failfast's decimals, exactly."""
    report = report_of(course_name, pattern_name)
    xml = JUnitXml.fromstring(OutputFormat.JUNIT.to_format().render(report).encode())
    for suite, key in zip(xml, report.milestones, strict=True):
        found = {p.name: p.value for p in suite.properties()}  # type: ignore[no-untyped-call]
        assert (Decimal(found["score"]), Decimal(found["max_score"])) == report.score_of(key)
        assert (Decimal(found["run_score"]), Decimal(found["run_max_score"])) == (
            report.score,
            report.max_score,
        )
        assert found["gradable"] == str(report.gradable).lower()
