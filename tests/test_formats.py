"""The report formats on hand-built reports: JUnit, Markdown, GitHub annotations and fencing.

Pure rendering logic, so the reports are built here; the real CLI renders them in tests/e2e.
Each format is read back with a real consumer: junitparser, markdown-it, the runner's rules.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from junitparser import Error, Failure, JUnitXml, Skipped
from markdown_it import MarkdownIt

from grader.errors import BudgetsError
from grader.formats import OutputFormat
from grader.formats.github import AnnotationsFormat, GitHubActions, command
from grader.formats.json import JsonFormat
from grader.formats.junit import JUnitFormat
from grader.formats.markdown import MarkdownFormat, code_block
from grader.learner.yamlfile import schema
from grader.model import BudgetSource, CheckResult, Evidence, Location, Report, Status
from tests.gha import commands
from tests.junit_schemas import validate_junit

FORGED = "\n::error::forged\n::set-output name=grade::100"


def result(id_: str, status: Status, **kwargs: object) -> CheckResult:
    """A result of milestone 1 or 2 (from the id's prefix) with this status."""
    milestone = "milestone-1" if id_.startswith("m1.") else "milestone-2"
    fields: dict[str, object] = {"summary": f"{id_} {status.value.lower()}", "hint": "fix it"}
    api_output: tuple[str, ...] = kwargs.pop("api_output", ())  # type: ignore[assignment]
    return CheckResult(
        id=id_,
        title=f"title of {id_}",
        milestone=milestone,
        status=status,
        evidence=Evidence(**(fields | kwargs)),  # type: ignore[arg-type]
        api_output=api_output,
    )


REPORT = Report(
    milestone="milestone-2",
    repo="/repos/learner",
    started_at="2026-11-26T10:00:00+00:00",
    duration_s=12.5,
    milestones=("milestone-1", "milestone-2"),
    through=True,
    results=(
        result(
            "m1.budgets-valid",
            Status.FAIL,
            measured="budgets.yaml:14: layers.nginx.timeout_s must be a number",
            location=Location("budgets.yaml", 14),
        ),
        result("m1.layers-ordered", Status.SKIP),
        result("m2.healthy-checkout", Status.PASS, measured="200 in 0.03 s"),
        result(
            "m2.read-timeout",
            Status.FAIL,
            measured="answered 500 | <b>bold</b> [link](http://evil.example)" + FORGED,
            api_output=("ok", "```", "::error::from the app\x00\x1b[31m"),
            figure=("  #1 1··2",),
        ),
        result("m2.slow-body", Status.ERROR),
        result("m2.connect-timeout", Status.INCONCLUSIVE),
    ),
)


def test_junit_has_a_suite_per_milestone_and_a_case_per_check(tmp_path: Path) -> None:
    """The junitparser library reads one suite per milestone, with the right counts per status."""
    file = tmp_path / "junit.xml"
    file.write_text(JUnitFormat().render(REPORT), "utf-8")
    validate_junit(file)
    xml = JUnitXml.fromfile(str(file))
    suites = {suite.name: suite for suite in xml}
    assert list(suites) == ["milestone-1", "milestone-2"]
    assert (suites["milestone-1"].tests, suites["milestone-1"].failures) == (2, 1)
    assert suites["milestone-1"].skipped == 1
    two = suites["milestone-2"]
    assert (two.tests, two.failures, two.errors) == (4, 1, 2)
    cases = {case.name: case for suite in xml for case in suite}
    assert set(cases) == {r.id for r in REPORT.results}
    assert cases["m2.healthy-checkout"].is_passed
    assert isinstance(cases["m1.layers-ordered"].result[0], Skipped)
    assert isinstance(cases["m2.slow-body"].result[0], Error)
    assert isinstance(cases["m2.connect-timeout"].result[0], Error)
    failure = cases["m1.budgets-valid"].result[0]
    assert isinstance(failure, Failure)
    assert failure.message == "title of m1.budgets-valid: m1.budgets-valid fail"
    assert "hint: fix it" in failure.text and "budgets.yaml:14" in failure.text
    # No file attribute (neither schema allows one): the classname names budgets.yaml, and the
    # text's last line its line, as GitHub's JUnit annotators read them (tests/test_junit.py).
    assert cases["m1.budgets-valid"].classname == "failfast.milestone-1.budgets"
    assert failure.text.endswith("\nwhere: budgets.yaml:14")
    assert cases["m2.healthy-checkout"]._elem.get("file") is None


def test_junit_shows_characters_xml_cannot_carry(tmp_path: Path) -> None:
    """A NUL or an escape the learner printed cannot make the XML unreadable: it shows visibly."""
    file = tmp_path / "junit.xml"
    file.write_text(JUnitFormat().render(REPORT), "utf-8")
    case = next(c for s in JUnitXml.fromfile(str(file)) for c in s if c.name == "m2.read-timeout")
    text = case.result[0].text
    assert "::error::from the app␀␛[31m" in text and "\x00" not in text


def test_junit_of_a_grading_error_is_one_errored_case(tmp_path: Path) -> None:
    """When nothing could be graded, CI still shows why: one case in error."""
    file = tmp_path / "junit.xml"
    error = BudgetsError("budgets.yaml cannot be used", details=["budgets.yaml:3: bad"])
    report = Report("milestone-2", "/r", not_graded=error.not_graded())
    file.write_text(JUnitFormat().render(report), "utf-8")
    validate_junit(file)
    cases = [case for suite in JUnitXml.fromfile(str(file)) for case in suite]
    assert len(cases) == 1 and isinstance(cases[0].result[0], Error)
    assert cases[0].result[0].type == "BudgetsError"
    assert "budgets.yaml:3: bad" in cases[0].result[0].text


def gfm() -> MarkdownIt:
    """A CommonMark parser with GitHub's tables (bare-URL linking left out: it needs linkify)."""
    return MarkdownIt("commonmark").enable("table")


def _tokens(markdown: str) -> list[tuple[str, str]]:
    parsed = gfm().parse(markdown)
    flat = []
    for token in parsed:
        flat.append((token.type, token.content))
        flat += [(child.type, child.content) for child in token.children or ()]
    return flat


def test_markdown_table_has_a_row_per_check() -> None:
    """The job summary's table lists every check with its status, under a heading per milestone."""
    markdown = MarkdownFormat().render(REPORT)
    tokens = _tokens(markdown)
    headings = [c for t, c in tokens if t == "inline" and c.startswith("milestone-")]
    assert [h.split(":")[0] for h in headings] == ["milestone-1", "milestone-2"]
    rows = gfm().parse(markdown)
    assert sum(t.type == "tr_open" for t in rows) == len(REPORT.results) + 2  # + 2 header rows
    cells = [c for t, c in tokens if t == "inline"]
    for r in REPORT.results:
        assert any(f"`{r.id}`" in c for c in cells)


def test_markdown_escapes_the_learners_words() -> None:
    """A body with HTML, a link or a pipe renders as text: no tag, no link, no extra cell."""
    html = gfm().render(MarkdownFormat().render(REPORT))
    assert "<b>" not in html and "&lt;b&gt;" in html
    assert 'href="http://evil.example"' not in html
    rows = [
        line for line in MarkdownFormat().render(REPORT).splitlines() if "m2.read-timeout" in line
    ]
    table_row = next(line for line in rows if line.startswith("|"))
    assert table_row.count("|") - table_row.count("\\|") == 5  # four cells


def test_code_block_cannot_be_closed_by_its_lines() -> None:
    """Output with a ``` line stays inside the block drawn around it."""
    block = code_block(["before", "```", "````", "after"])
    tokens = MarkdownIt("commonmark").parse(block)
    assert [t.type for t in tokens] == ["fence"]
    assert tokens[0].content.splitlines() == ["before", "```", "````", "after"]


def test_annotations_point_at_the_learners_file(tmp_path: Path) -> None:
    """One error per FAIL and ERROR, a warning per INCONCLUSIVE; a located FAIL names its line."""
    workspace = tmp_path
    fmt = AnnotationsFormat(workspace / "course" / "repo", workspace)
    found = commands(fmt.render(REPORT))
    assert [(c.name, c.properties["title"].split()[0]) for c in found] == [
        ("error", "m1.budgets-valid"),
        ("error", "m2.read-timeout"),
        ("error", "m2.slow-body"),
        ("warning", "m2.connect-timeout"),
    ]
    budgets = found[0]
    assert budgets.properties["file"] == "course/repo/budgets.yaml"
    assert budgets.properties["line"] == "14"
    assert "file" not in found[1].properties
    # The learner's words are the message's data: they cannot start a command of their own.
    assert "::error::forged" in found[1].data and "::set-output" in found[1].data


def test_annotations_outside_the_workspace_name_no_file(tmp_path: Path) -> None:
    """A repo outside the workspace cannot be linked: the annotation goes on the run instead."""
    fmt = AnnotationsFormat(tmp_path / "elsewhere", tmp_path / "workspace")
    first = commands(fmt.render(REPORT))[0]
    assert "file" not in first.properties and "line" not in first.properties


def test_command_escapes_properties_and_data() -> None:
    """Colons and commas in a title, CR and LF in a message: escaped, and none of it lost.

    tests/test_github_commands.py holds the line to what @actions/core writes, byte for byte.
    """
    line = command("error", "a\r\nb %\rc", title="x: y, z", line=3)
    assert "\n" not in line and "\r" not in line
    assert line == "::error title=x%3A y%2C z,line=3::a%0D%0Ab %25%0Dc"
    (parsed,) = commands(line)
    assert parsed.properties == {"title": "x: y, z", "line": "3"}
    assert parsed.data == "a\r\nb %\rc"


def test_fence_makes_commands_inert() -> None:
    """Between stop-commands and its token, no line is a command, however it is indented."""
    out = io.StringIO()
    with GitHubActions.fenced(out):
        out.write("::error::forged\n   ::set-output name=a::b\n::add-mask::x\n")
    out.write("::error::ours\n")
    assert [(c.name, c.data) for c in commands(out.getvalue())] == [("error", "ours")]


@pytest.mark.parametrize(
    ("environ", "detected"),
    [
        ({}, False),
        ({"GITHUB_ACTIONS": "false"}, False),
        ({"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": "/tmp/s.md"}, True),
    ],
)
def test_github_actions_detection(environ: dict[str, str], detected: bool) -> None:
    """GitHub mode only when GITHUB_ACTIONS says so."""
    found = GitHubActions.detect(environ)
    assert (found is not None) is detected
    if found is not None:
        assert found.summary == Path("/tmp/s.md")


NAN, INF = float("nan"), float("inf")
NON_FINITE_DATA: dict[Any, Any] = {
    "p95_s": NAN,
    "limit_s": INF,
    "floor_s": -INF,
    "waits": [1.0, NAN, {"deep": (INF, 2)}],
    (1, 2): "a key JSON has no word for",
    NAN: "a key that is NaN",
}
# Numbers no JSON can carry, where a check's data, a duration or the budget may hold them.
NON_FINITE = Report(
    milestone="milestone-2",
    repo="/repos/learner",
    started_at="2026-11-26T10:00:00+00:00",
    duration_s=NAN,
    budgets=BudgetSource("learner", "your budgets.yaml", {"layers": {"api_s": INF}}),
    results=(
        CheckResult(
            id="m2.read-timeout",
            title="title",
            milestone="milestone-2",
            status=Status.FAIL,
            evidence=Evidence("cut late", data=NON_FINITE_DATA),
            duration_s=INF,
        ),
    ),
)


def _no_constants(name: str) -> Any:
    raise AssertionError(f"the report holds {name}, which is not JSON")


def test_json_report_never_holds_nan_or_infinity() -> None:
    """NaN and Infinity become null (as JSON.stringify does), durations 0: valid strict JSON."""
    document = json.loads(JsonFormat().render(NON_FINITE), parse_constant=_no_constants)
    jsonschema.validate(document, schema("report"))
    data = document["checks"][0]["data"]
    assert (data["p95_s"], data["limit_s"], data["floor_s"]) == (None, None, None)
    assert data["waits"] == [1.0, None, {"deep": [None, 2]}]
    assert data["(1, 2)"] == "a key JSON has no word for" and data["nan"] == "a key that is NaN"
    assert document["duration_s"] == 0.0 and document["checks"][0]["duration_s"] == 0.0
    assert document["budgets"]["values"]["layers"]["api_s"] is None


def test_junit_times_are_decimals_even_for_nan(tmp_path: Path) -> None:
    """A non-finite duration never reaches a time attribute, which JUnit's readers parse."""
    file = tmp_path / "junit.xml"
    file.write_text(JUnitFormat().render(NON_FINITE), "utf-8")
    validate_junit(file)
    xml = JUnitXml.fromfile(str(file))
    times = [e.get("time") for tag in ("testsuite", "testcase") for e in xml._elem.iter(tag)]
    assert len(times) == 2 and all(math.isfinite(float(t or "nan")) for t in times), times


@pytest.mark.parametrize("fmt", list(OutputFormat), ids=lambda f: f.value)
def test_every_format_renders_a_non_finite_report(fmt: OutputFormat) -> None:
    """No format crashes on NaN or Infinity: each report file is still written."""
    assert fmt.to_format().render(NON_FINITE)


def interrupted(status: Status) -> CheckResult:
    """A check that grading was interrupted before it ended."""
    evidence = Evidence("not run: grading was interrupted", data={"interrupted": True})
    return CheckResult("m2.slow-body", "t", "milestone-2", status, evidence)


def test_an_interrupted_report_says_so_in_every_format(tmp_path: Path) -> None:
    """Exit code 130 in the JSON (valid against the schema), the Markdown and the text report."""
    done = result("m2.healthy-checkout", Status.PASS)
    results = (done, interrupted(Status.SKIP))
    report = Report("milestone-2", "/r", "2026-11-26T10:00:00Z", 1.0, results, interrupted=True)
    document = json.loads(JsonFormat().render(report))
    jsonschema.validate(document, schema("report"))
    assert document["exit_code"] == 130
    assert document["checks"][1]["data"] == {"interrupted": True}
    assert "interrupted" in MarkdownFormat().render(report).splitlines()[0]
    text = OutputFormat.TEXT.to_format().render(report)
    assert "exit code 130: grading was interrupted" in text
