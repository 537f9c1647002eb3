"""Gradescope, PrairieLearn and GitHub Classroom results, and scores in every report.

Reports are built here; each platform file is validated against the JSON Schema written from
the platform's specification (grader/schemas/platforms/) and read back.
tests/e2e/test_platforms.py renders them from real grading runs.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from markdown_it import MarkdownIt
from rich.console import Console

from grader.cli.output import Delivery, ReportFile
from grader.course.file import Course, Rule
from grader.errors import ApiStartError
from grader.formats import OutputFormat
from grader.formats.classroom import ClassroomFormat, step_output
from grader.formats.gradescope import GradescopeFormat
from grader.formats.json import JsonFormat
from grader.formats.markdown import MarkdownFormat
from grader.formats.prairielearn import MAX_BYTES, PrairieLearnFormat
from grader.learner.yamlfile import schema
from grader.model import CheckResult, Evidence, Location, Report, Status
from tests.test_formats import FORGED, REPORT, result

PLATFORMS = (OutputFormat.GRADESCOPE, OutputFormat.PRAIRIELEARN, OutputFormat.CLASSROOM)
NOT_GRADED = Report(
    "milestone-2",
    "/r",
    "2026-11-26T10:00:00+00:00",
    not_graded=ApiStartError(
        "Your API exited before it answered GET /healthz" + FORGED,
        details=["Traceback: boom", "::error::forged"],
        location=Location("failfast.yaml", 2),
    ).not_graded(),
)
# Points and visibility from a course: milestone 2 worth 10, 4 of them on m2.read-timeout.
COURSE = Course(
    milestones=(("milestone-2", Rule(points=Decimal(10))),),
    checks=(
        ("m2.read-timeout", Rule(points=Decimal(4))),
        ("m2.slow-body", Rule(visibility="hidden")),
    ),
)
GRADED = COURSE.apply(REPORT)
PASSED = COURSE.apply(
    Report(
        "milestone-2",
        "/r",
        results=tuple(
            result(i, Status.PASS)
            for i in ("m2.healthy-checkout", "m2.read-timeout", "m2.slow-body")
        ),
    )
)


def render(fmt: OutputFormat, report: Report) -> dict[str, Any]:
    """The platform file of a report, validated against the platform's schema."""
    document: dict[str, Any] = json.loads(fmt.to_format().render(report))
    jsonschema.validate(document, schema(f"platforms/{fmt.value}"))
    return document


@pytest.mark.parametrize("fmt", PLATFORMS, ids=lambda f: f.value)
@pytest.mark.parametrize(
    "report", [REPORT, GRADED, PASSED, NOT_GRADED], ids=["report", "course", "passed", "none"]
)
def test_every_platform_file_matches_its_specification(fmt: OutputFormat, report: Report) -> None:
    """Graded, passed, or not graded at all: each file is one its platform accepts."""
    render(fmt, report)


def test_the_json_report_carries_scores_per_check_milestone_and_run() -> None:
    """Additive keys, schema version 1: score, max_score, gradable, and the scores per milestone."""
    document = json.loads(JsonFormat().render(GRADED))
    jsonschema.validate(document, schema("report"))
    assert document["schema_version"] == 1
    assert (document["score"], document["max_score"], document["gradable"]) == (2.0, 12.0, False)
    assert document["scores"] == {
        "milestone-1": {"score": 0.0, "max_score": 2.0},
        "milestone-2": {"score": 2.0, "max_score": 10.0},
    }
    by_id = {c["id"]: c for c in document["checks"]}
    assert by_id["m2.read-timeout"]["max_score"] == 4.0
    assert by_id["m2.healthy-checkout"] == by_id["m2.healthy-checkout"] | {
        "score": 2.0,
        "max_score": 2.0,
        "visibility": "visible",
    }
    assert by_id["m2.slow-body"]["visibility"] == "hidden"
    error = json.loads(JsonFormat().render(NOT_GRADED))
    jsonschema.validate(error, schema("report"))
    assert error["gradable"] is False


def test_the_terminal_and_markdown_show_the_score_and_say_not_gradable() -> None:
    """`score 2/12` on the summary and in the Markdown heading, and why it is not gradable."""
    text = OutputFormat.TEXT.to_format().render(GRADED)
    assert "score 2/12  not gradable: 2 checks ERROR or INCONCLUSIVE, not your fault" in text
    assert all(len(line) <= 100 for line in text.splitlines())
    markdown = MarkdownFormat().render(GRADED)
    assert markdown.splitlines()[0].endswith("· score 2/12")
    assert "**Not gradable**: 2 checks ERROR or INCONCLUSIVE, not your fault" in markdown
    passed = OutputFormat.TEXT.to_format().render(PASSED)
    assert "score 10/10\n" in passed and "not gradable" not in passed


def test_gradescope_tests_have_points_numbers_and_the_real_status() -> None:
    """Only passed/failed; extra_data keeps SKIP, ERROR and INCONCLUSIVE; numbers are N.n."""
    document = render(OutputFormat.GRADESCOPE, GRADED)
    tests = {t["name"].split(":")[0]: t for t in document["tests"]}
    assert [t["number"] for t in document["tests"]] == ["1.1", "1.2", "2.1", "2.2", "2.3", "2.4"]
    assert {t["status"] for t in document["tests"]} == {"passed", "failed"}
    assert tests["m2.healthy-checkout"]["status"] == "passed"
    assert (tests["m2.healthy-checkout"]["score"], tests["m2.read-timeout"]["max_score"]) == (2, 4)
    for check_id, status in [
        ("m1.layers-ordered", "SKIP"),
        ("m2.slow-body", "ERROR"),
        ("m2.connect-timeout", "INCONCLUSIVE"),
    ]:
        assert tests[check_id]["status"] == "failed" and tests[check_id]["score"] == 0
        assert tests[check_id]["extra_data"]["status"] == status
    assert tests["m2.slow-body"]["output"].startswith("**Not graded**")
    assert tests["m2.slow-body"]["visibility"] == "hidden"
    assert "not-graded" in tests["m2.connect-timeout"]["tags"]
    # Not gradable: Gradescope records 0 (the tests still show what passed), and says why.
    assert document["score"] == 0.0 and sum(t["score"] for t in document["tests"]) == 2.0
    assert document["extra_data"]["score"] == 2.0 and document["extra_data"]["gradable"] is False
    assert document["output"].startswith("⚠️ **This is not a grade**")
    assert document["output_format"] == "md" and document["visibility"] == "visible"


def test_gradescope_numbers_the_load_test_as_milestone_six() -> None:
    """The load test is the course's sixth milestone: its checks are 6.1, 6.2 and so on."""
    results = tuple(
        CheckResult(f"lt.check-{n}", "t", "loadtest", Status.PASS, Evidence("ok")) for n in (1, 2)
    )
    document = render(OutputFormat.GRADESCOPE, Report("loadtest", "/r", results=results))
    assert [t["number"] for t in document["tests"]] == ["6.1", "6.2"]


def test_gradescope_escapes_the_learners_words() -> None:
    """A body with HTML or a link is text in Gradescope's Markdown, not markup."""
    document = render(OutputFormat.GRADESCOPE, GRADED)
    read_timeout = next(t for t in document["tests"] if t["name"].startswith("m2.read-timeout"))
    html = MarkdownIt("commonmark").render(read_timeout["output"])
    assert "<b>" not in html and "&lt;b&gt;" in html
    assert 'href="http://evil.example"' not in html


def test_gradescope_still_gets_a_results_file_when_nothing_was_graded() -> None:
    """Score 0, no tests, and an output that says it is not a grade, and why."""
    document = render(OutputFormat.GRADESCOPE, NOT_GRADED)
    assert (document["score"], document["tests"]) == (0.0, [])
    assert document["output"].startswith("**This is not a grade**")
    assert "Your API exited before it answered GET /healthz" in document["output"]
    assert document["extra_data"]["gradable"] is False


def test_prairielearn_keeps_the_attempt_when_not_gradable() -> None:
    """ERROR, INCONCLUSIVE, an interrupted run, or no grading at all: gradable false, and why."""
    graded = render(OutputFormat.PRAIRIELEARN, GRADED)
    assert graded["gradable"] is False
    assert graded["score"] == 2 / 12
    assert [e.split(":")[0] for e in graded["format_errors"]] == [
        "m2.slow-body",
        "m2.connect-timeout",
    ]
    assert "not used up" in graded["message"]
    nothing = render(OutputFormat.PRAIRIELEARN, NOT_GRADED)
    assert (nothing["gradable"], nothing["tests"]) == (False, [])
    assert "Your API exited" in nothing["format_errors"][0]
    cut_short = render(OutputFormat.PRAIRIELEARN, dataclasses.replace(PASSED, interrupted=True))
    assert cut_short["gradable"] is False


def test_prairielearn_scores_from_zero_to_one_with_points_per_test() -> None:
    """A gradable run: score = points / max points; each test its points and description."""
    document = render(OutputFormat.PRAIRIELEARN, PASSED)
    assert (document["gradable"], document["score"]) == (True, 1.0)
    assert "format_errors" not in document
    points = {t["name"]: (t["points"], t["max_points"]) for t in document["tests"]}
    assert points == {
        "m2.healthy-checkout": (3.0, 3.0),
        "m2.read-timeout": (4.0, 4.0),
        "m2.slow-body": (3.0, 3.0),
    }


def test_prairielearn_stays_under_one_megabyte_however_much_the_api_printed() -> None:
    """Forty checks with 600 KB of output each: the file is cut to fit, and still valid."""
    huge = tuple("x" * 296 + f"{n:04}" for n in range(2000))
    results = tuple(
        CheckResult(
            f"m2.check-{n}",
            "t",
            "milestone-2",
            Status.FAIL,
            Evidence("failed", measured="é" * 9000),
            api_output=huge,
        )
        for n in range(40)
    )
    report = Report("milestone-2", "/r", results=results)
    text = PrairieLearnFormat().render(report)
    assert len(text.encode("utf-8")) < MAX_BYTES
    document = json.loads(text)
    jsonschema.validate(document, schema("platforms/prairielearn"))
    output = document["tests"][0]["output"]
    assert "characters cut" in output and output.endswith("x1999")  # the last lines are kept


CLASSROOM_STATUS = {
    Status.PASS: "pass",
    Status.FAIL: "fail",
    Status.SKIP: "fail",
    Status.ERROR: "error",
    Status.INCONCLUSIVE: "error",
}


def test_classroom_maps_statuses_and_says_error_when_not_gradable() -> None:
    """Each test is pass, fail or error; the run is error when it is not gradable."""
    document = render(OutputFormat.CLASSROOM, GRADED)
    assert document["status"] == "error" and document["max_score"] == 12.0
    assert [t["status"] for t in document["tests"]] == [
        CLASSROOM_STATUS[r.status] for r in GRADED.results
    ]
    budgets = document["tests"][0]
    assert (budgets["filename"], budgets["line_no"]) == ("budgets.yaml", 14)
    assert render(OutputFormat.CLASSROOM, PASSED)["status"] == "pass"
    fail_only = Report("milestone-2", "/r", results=(result("m2.read-timeout", Status.FAIL),))
    assert render(OutputFormat.CLASSROOM, fail_only)["status"] == "fail"
    nothing = render(OutputFormat.CLASSROOM, NOT_GRADED)
    assert (nothing["status"], len(nothing["tests"])) == ("error", 1)
    planned = [("milestone-2", "m2.read-timeout"), ("milestone-2", "m2.healthy-checkout")]
    worth = COURSE.apply(NOT_GRADED, planned)
    assert render(OutputFormat.CLASSROOM, worth)["max_score"] == 10.0  # kept, not dropped
    assert (nothing["tests"][0]["filename"], nothing["tests"][0]["line_no"]) == ("failfast.yaml", 2)


def test_classroom_step_output_decodes_to_the_file(tmp_path: Path) -> None:
    """$GITHUB_OUTPUT gets one line, result=<base64>, that decodes to the file's JSON exactly."""
    outputs = tmp_path / "github_output"
    outputs.write_text("earlier=1", "utf-8")  # a previous writer left no newline
    file = tmp_path / "classroom.json"
    delivery = Delivery(
        Console(file=None), files=[ReportFile(OutputFormat.CLASSROOM, file)], step_outputs=outputs
    )
    assert delivery.write_files(GRADED) == []
    lines = outputs.read_text("utf-8").splitlines()
    assert lines[0] == "earlier=1" and len(lines) == 2
    key, _, value = lines[1].partition("=")
    assert key == "result"
    assert base64.b64decode(value, validate=True) == file.read_bytes()
    assert json.loads(base64.b64decode(value))["status"] == "error"


def test_the_learners_words_cannot_forge_a_step_output() -> None:
    """Output lines like `result=100` or a heredoc delimiter stay inside the base64."""
    forged = result(
        "m2.read-timeout",
        Status.FAIL,
        api_output=("result=forged", "ghadelimiter_1<<EOF", "EOF", "score=100"),
    )
    document = ClassroomFormat().render(Report("milestone-2", "/r", results=(forged,)))
    line = step_output(document)
    assert line.count("\n") == 1 and line.endswith("\n")
    assert line.startswith("result=") and set(line[7:-1]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
    )


def test_no_step_output_without_a_classroom_report(tmp_path: Path) -> None:
    """Only a classroom report sets `result`: other formats leave $GITHUB_OUTPUT alone."""
    outputs = tmp_path / "github_output"
    file = tmp_path / "results.json"
    delivery = Delivery(
        Console(file=None), files=[ReportFile(OutputFormat.GRADESCOPE, file)], step_outputs=outputs
    )
    assert delivery.write_files(GRADED) == []
    assert file.exists() and not outputs.exists()


def test_an_unwritable_step_output_is_named(tmp_path: Path) -> None:
    """$GITHUB_OUTPUT in a directory that is a file: one line says so, the file is still written."""
    (tmp_path / "a-file").write_text("", "utf-8")
    file = tmp_path / "classroom.json"
    delivery = Delivery(
        Console(file=None),
        files=[ReportFile(OutputFormat.CLASSROOM, file)],
        step_outputs=tmp_path / "a-file" / "output",
    )
    (problem,) = delivery.write_files(GRADED)
    assert "could not set the step output `result`" in problem and "is a file" in problem
    assert file.exists()


def test_gradescope_output_is_read_by_a_gradescope_consumer() -> None:
    """Round trip: the test scores add up to the top-level score, as Gradescope totals them."""
    document = GradescopeFormat().to_dict(PASSED)
    assert document["score"] == sum(t["score"] for t in document["tests"]) == 10.0
    assert sum(t["max_score"] for t in document["tests"]) == 10.0
