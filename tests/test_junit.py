"""The JUnit report as its strictest readers take it, on hand-built reports.

Every document is validated against both XSDs of tests/schemas/ (Jenkins' xUnit plugin and the
Ant JUnit schema) and read back with junitparser; the schemas are shown to reject what they
should. The learner's file and line are resolved the way GitHub Actions' JUnit annotator does,
by a transcription of its code run on our XML inside a workspace. tests/e2e/test_ci.py and
tests/e2e/test_reports_always.py validate the files real gradings write.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import socket
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from grader.cli.app import catalog
from grader.errors import ApiStartError, BudgetsError
from grader.formats.junit import NO_FILE, JUnitFormat, _xml, file_key
from grader.lines import neutralise
from grader.model import (
    MILESTONE_KEYS,
    CheckResult,
    Evidence,
    Location,
    Report,
    Status,
    milestone_of,
)
from tests.conftest import ROOT
from tests.junit_schemas import junit_schemas, validate_junit
from tests.test_formats import FORGED, NON_FINITE, REPORT, interrupted, result

# What a learner's output may hold that XML cannot, or that a careless writer would break on:
# C0 controls, an escape sequence, a CDATA end, markup, non-ASCII of every width, a lone
# surrogate (a str may hold one, e.g. from surrogateescape), the two non-characters, a CR.
HOSTILE = (
    "nul\x00 bell\x07 esc\x1b[31m vt\x0b ff\x0c us\x1f tab\t cr\r end ]]> <![CDATA[x]]> "
    "</failure><testcase name='x'/> & é 漢字 🙂 lone\ud800 \udfff nonchars\ufffe\uffff"
)

# As tests/test_platforms.py's NOT_GRADED (built here: that module imports every platform).
NOT_GRADED = Report(
    "milestone-2",
    "/r",
    "2026-11-26T10:00:00+00:00",
    not_graded=ApiStartError(
        "Your API exited before it answered GET /healthz" + FORGED,
        details=["Traceback: boom", "::error::forged", HOSTILE],
        location=Location("failfast.yaml", 2),
    ).not_graded(),
)
# A grading error pointing at no file, with no start time.
NOT_GRADED_NOWHERE = Report(
    "all",
    "/r",
    not_graded=BudgetsError("budgets.yaml cannot be used", details=["nothing to say"]).not_graded(),
)
INTERRUPTED = Report(
    "milestone-2",
    "/r",
    "2026-11-26T10:00:00Z",
    1.0,
    (result("m2.healthy-checkout", Status.PASS), interrupted(Status.SKIP)),
    interrupted=True,
)
FORGED_REPORT = Report(
    "milestone-2",
    "/repos/learner\x01 é",
    "2026-11-26T10:00:00+00:00",
    3.0,
    tuple(
        result(
            f"m2.hostile-{status.value.lower()}",
            status,
            summary=f"{status.value} {HOSTILE}",
            measured=HOSTILE,
            expected=HOSTILE,
            hint=HOSTILE,
            figure=(HOSTILE,),
            api_output=(HOSTILE, "]]>", "\x00"),
            location=Location("nginx/ngi\x02nx.conf", 3),
        )
        for status in Status
    ),
)
# Every milestone asked for, none with a result: empty suites, and a start time that is none.
EMPTY_ALL = Report("all", "/r", "yesterday", milestones=MILESTONE_KEYS)
REPORTS = {
    "every-status": REPORT,
    **{
        f"only-{s.value.lower()}": Report("milestone-2", "/r", "", 1.0, (result("m2.a", s),))
        for s in Status
    },
    "interrupted": INTERRUPTED,
    "not-graded": NOT_GRADED,
    "not-graded-nowhere": NOT_GRADED_NOWHERE,
    "hostile-text": FORGED_REPORT,
    "non-finite": NON_FINITE,
    "empty-all": EMPTY_ALL,
}


def render(report: Report) -> str:
    """The JUnit document of ``report``."""
    return JUnitFormat().render(report)


@pytest.mark.parametrize("report", REPORTS.values(), ids=REPORTS.keys())
def test_every_document_is_valid_for_jenkins_and_ant(report: Report) -> None:
    """Graded, not graded, interrupted, hostile: valid against both XSDs, and UTF-8 encodable."""
    text = render(report)
    validate_junit(text)
    assert text.encode("utf-8").decode("utf-8") == text


def _expected_counts(results: tuple[CheckResult, ...]) -> tuple[int, int, int, int]:
    statuses = Counter(r.status for r in results)
    errors = statuses[Status.ERROR] + statuses[Status.INCONCLUSIVE]
    return len(results), statuses[Status.FAIL], errors, statuses[Status.SKIP]


@pytest.mark.parametrize("report", REPORTS.values(), ids=REPORTS.keys())
def test_junitparser_reads_the_reports_counts_back(report: Report) -> None:
    """Per suite and in all, junitparser counts the report's tests, failures, errors, skips."""
    xml = JUnitXml.fromstring(render(report))
    suites = list(xml)
    if report.not_graded is not None:
        assert [s.name for s in suites] == [report.milestone]
        assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (1, 0, 1, 0)
        (case,) = list(suites[0])
        assert isinstance(case.result[0], Error)
        assert case.result[0].type == report.not_graded.kind
        return
    assert [s.name for s in suites] == list(report.milestones)
    kinds = {Failure: Status.FAIL, Error: Status.ERROR, Skipped: Status.SKIP}
    for suite in suites:
        results = report.results_of(suite.name)
        counts = (suite.tests, suite.failures, suite.errors, suite.skipped)
        assert counts == _expected_counts(results)
        read = {case.name: kinds[type(case.result[0])] if case.result else None for case in suite}
        assert read == {
            r.id: None if r.status is Status.PASS else kinds_of(r.status) for r in results
        }
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == _expected_counts(report.results)


def kinds_of(status: Status) -> Status:
    """The status a JUnit element stands for: INCONCLUSIVE is an error, as ERROR is."""
    return Status.ERROR if status is Status.INCONCLUSIVE else status


def test_xml_carries_every_code_point_as_an_xml_1_0_char() -> None:
    """Every code point comes out as an XML 1.0 Char: kept, made visible, or (U+FFFE/F) dropped."""

    def is_char(point: int) -> bool:
        return (
            point in (0x9, 0xA, 0xD)
            or 0x20 <= point <= 0xD7FF
            or 0xE000 <= point <= 0xFFFD
            or 0x10000 <= point <= 0x10FFFF
        )

    every = "".join(map(chr, range(0x110000)))
    expected = "".join(neutralise(c, keep_cr=False) for c in every if c not in "\ufffe\uffff")
    assert _xml(every) == expected
    assert all(is_char(ord(c)) for c in expected)
    assert (
        _xml("tab\t lf\n cr\r nul\x00 rlo\u202e csi\x9b")
        == "tab\t lf\n cr␍ nul␀ rlo\ufffd csi\ufffd"
    )


def test_hostile_learner_text_reads_back_intact_but_for_what_xml_cannot_carry() -> None:
    """Markup, a CDATA end and non-ASCII come back as text; controls and surrogates visible."""
    xml = JUnitXml.fromstring(render(FORGED_REPORT))
    case = next(c for s in xml for c in s if c.name == "m2.hostile-fail")
    text = case.result[0].text
    assert "]]> <![CDATA[x]]> </failure><testcase name='x'/> & é 漢字 🙂" in text
    assert "nul␀ bell␇ esc␛[31m vt␋ ff␌ us␟ tab\t cr␍ end" in text
    assert "lone\ufffd \ufffd nonchars\n" in text
    assert not re.search("[\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]", text)
    repo = xml._elem.find("testsuite/properties/property[@name='repo']")
    assert repo is not None and repo.get("value") == "/repos/learner␁ é"


def test_a_passing_case_has_no_child_and_its_evidence_is_the_suites_output() -> None:
    """Ant allows a case one child, a verdict: a PASS has none, its evidence is in system-out."""
    root = ET.fromstring(render(REPORT))
    passing = root.find("testsuite/testcase[@name='m2.healthy-checkout']")
    assert passing is not None and len(passing) == 0
    suite = root.find("testsuite[@name='milestone-2']")
    assert suite is not None
    assert [child.tag for child in suite][:1] == ["properties"]
    assert [child.tag for child in suite][-2:] == ["system-out", "system-err"]
    out = suite.findtext("system-out")
    assert out == "PASS m2.healthy-checkout: m2.healthy-checkout pass (measured: 200 in 0.03 s)"


@pytest.mark.parametrize(
    ("started_at", "expected"),
    [
        ("2026-11-26T12:00:00.250+02:00", "2026-11-26T10:00:00"),
        ("2026-11-26T10:00:00Z", "2026-11-26T10:00:00"),
        ("2026-11-26T10:00:00", "2026-11-26T10:00:00"),  # the runner's: UTC without a zone
        ("2026-11-26T23:30:00-01:00", "2026-11-27T00:30:00"),
    ],
)
def test_the_timestamp_is_the_start_in_utc_without_zone(started_at: str, expected: str) -> None:
    """The report's start, converted to UTC and written to the second with no zone, as Ant says."""
    report = Report("milestone-2", "/r", started_at, results=(result("m2.a", Status.PASS),))
    stamps = {s.get("timestamp") for s in ET.fromstring(render(report)).iter("testsuite")}
    assert stamps == {expected}


@pytest.mark.parametrize("started_at", ["", "yesterday", "2026-13-45T99:00:00"])
def test_a_missing_or_bad_start_time_is_now(started_at: str) -> None:
    """With no usable start time, every suite (graded or not) is stamped with the current UTC."""
    before = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    graded = Report("milestone-2", "/r", started_at, results=(result("m2.a", Status.PASS),))
    not_graded = Report("milestone-2", "/r", started_at, not_graded=NOT_GRADED.not_graded)
    for report in (graded, not_graded):
        (suite,) = ET.fromstring(render(report)).iter("testsuite")
        stamp = datetime.fromisoformat(suite.get("timestamp", ""))
        assert before <= stamp <= datetime.now(UTC).replace(tzinfo=None)


@pytest.mark.parametrize("failing", ["", "   ", OSError("no name")], ids=["empty", "blank", "err"])
def test_a_nameless_host_is_localhost(monkeypatch: pytest.MonkeyPatch, failing: object) -> None:
    """Ant requires a hostname: 'localhost' when the machine has none to give."""

    def gethostname() -> str:
        if isinstance(failing, OSError):
            raise failing
        return str(failing)

    monkeypatch.setattr(socket, "gethostname", gethostname)
    for report in (REPORT, NOT_GRADED):
        root = validate_junit(render(report))
        assert {s.get("hostname") for s in root.iter("testsuite")} == {"localhost"}


# --- the schemas reject what their readers reject ---------------------------------------------

VALID = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="milestone-1" package="failfast.milestone-1" id="0"
      timestamp="2026-11-26T10:00:00" hostname="ci" tests="2" failures="1" errors="0"
      skipped="0" time="1.500">
    <properties><property name="repo" value="/r"/></properties>
    <testcase name="m1.a" classname="failfast.milestone-1.budgets" time="0.5"><failure
        type="FAIL" message="m">text</failure></testcase>
    <testcase name="m1.b" classname="failfast.milestone-1.(no file)" time="1.0"/>
    <system-out>out</system-out>
    <system-err/>
  </testsuite>
</testsuites>
"""
FAILURE = '<failure\n        type="FAIL" message="m">text</failure>'
PASSING = 'time="1.0"/>'
NO_SKIPPED = 'skipped="0" time="1.500"'
# (which schema, what is wrong, the text of VALID replaced, its replacement)
INVALID = [
    ("jenkins", "skipped on testsuites", "<testsuites>", '<testsuites skipped="0">'),
    ("jenkins", "file on a testcase", 'time="0.5">', 'time="0.5" file="budgets.yaml">'),
    ("jenkins", "line on a testcase", 'time="0.5">', 'time="0.5" line="14">'),
    ("jenkins", "file on a failure", 'type="FAIL"', 'type="FAIL" file="budgets.yaml"'),
    ("jenkins", "a suite without errors", ' errors="0"', ""),
    ("jenkins", "a time with an exponent", 'time="1.500"', 'time="1.5e0"'),
    ("jenkins", "a property without a value", ' value="/r"', ""),
    ("jenkins", "properties outside a suite", "<testsuites>", "<testsuites><properties/>"),
    ("ant", "any attribute on testsuites", "<testsuites>", '<testsuites name="failfast">'),
    ("ant", "skipped on testsuites", "<testsuites>", '<testsuites skipped="0">'),
    ("ant", "a suite without package", ' package="failfast.milestone-1"', ""),
    ("ant", "a suite without id", ' id="0"', ""),
    ("ant", "a suite without timestamp", ' timestamp="2026-11-26T10:00:00"', ""),
    ("ant", "a timestamp with a zone", "T10:00:00", "T10:00:00Z"),
    ("ant", "a timestamp with a fraction", "T10:00:00", "T10:00:00.5"),
    ("ant", "a timestamp that is no date", "2026-11-26T", "2026-13-26T"),
    ("ant", "an empty hostname", 'hostname="ci"', 'hostname=""'),
    ("ant", "a suite without time", ' skipped="0" time="1.500"', ""),
    ("ant", "a file on a testcase", 'time="0.5">', 'time="0.5" file="budgets.yaml">'),
    ("ant", "a case without classname", ' classname="failfast.milestone-1.budgets"', ""),
    ("ant", "a case without time", ' time="0.5"', ""),
    ("ant", "a case with two children", "text</failure>", "text</failure><system-out/>"),
    (
        "ant",
        "a passing case with output",
        PASSING,
        'time="1.0"><system-out>ok</system-out></testcase>',
    ),
    ("ant", "a failure without type", '\n        type="FAIL"', ""),
    ("ant", "no properties", '<properties><property name="repo" value="/r"/></properties>', ""),
    ("ant", "an empty property name", 'name="repo"', 'name=""'),
    ("ant", "no system-err", "<system-err/>", ""),
    (
        "ant",
        "system-out before a case",
        '    <testcase name="m1.a"',
        '<system-out/><testcase name="m1.a"',
    ),
]


def test_the_valid_example_is_valid_for_both() -> None:
    """The document every rejection below edits once is itself valid for both readers."""
    for name, schema in junit_schemas().items():
        assert schema.is_valid(VALID), (name, list(schema.iter_errors(VALID)))


@pytest.mark.parametrize(
    ("reader", "old", "new"),
    [(reader, old, new) for reader, _, old, new in INVALID],
    ids=[f"{reader}: {what}" for reader, what, _, _ in INVALID],
)
def test_each_schema_rejects_what_its_reader_rejects(reader: str, old: str, new: str) -> None:
    """One edit of a valid document that the reader's rules forbid makes it invalid."""
    assert VALID.count(old) == 1, old
    assert not junit_schemas()[reader].is_valid(VALID.replace(old, new))


# --- where GitHub Actions annotates ---------------------------------------------------------
#
# A transcription of mikepenz/action-junit-report, src/testParser.ts (v5/v6 line): the call in
# createTestCaseAnnotation, resolveFileAndLine, safeParseInt and resolvePath, with node's glob
# v13 as it calls it (dot: false: `**` enters no dot-directory), run in a GitHub Actions step
# whose working directory is the workspace. JS's `.` matches no line break; nor does JS_DOT.

JS_DOT = "[^\n\r\u2028\u2029]"
EXCLUDE_SOURCES = ("/build/", "/__pycache__/")  # main.ts's default


def safe_parse_int(line: str | None) -> int | None:
    """safeParseInt: JS parseInt, None for no number."""
    found = re.match(r"\s*([+-]?\d+)", line or "")
    return int(found[1]) if found else None


def resolve_file_and_line(
    file: str | None, line: str | None, class_name: str, output: str
) -> tuple[str, int]:
    """As resolveFileAndLine: the file from @file, else the classname's last segment.

    The line from @line, else the last `` <path>...:<digits>`` of the stack trace, else 1.
    """
    file_name = file if file else class_name.split(".")[-1]
    line_number = safe_parse_int(line)
    if file_name and line_number:
        return file_name, line_number
    escaped = re.sub(r"[.*+?^${}()|[\]\\]", lambda m: "\\" + m[0], file_name)
    escaped = escaped.replace("::", "/", 1)
    matches = re.findall(f" [^ ]*{escaped}{JS_DOT}*?:\\d+", output)
    if not matches:
        return file_name, line_number or 1
    tokens = matches[-1].split(":")
    line = tokens.pop() or "0"
    prefix = tokens.pop() if tokens else ""
    if prefix.endswith(".rs"):
        file_name = prefix.split(" ")[-1]
    return file_name, safe_parse_int(line) or -1


def glob_names(workspace: str, name: str) -> list[Path]:
    """glob(`${workspace}**/${name}.*`) as node's glob v13 (dot: false) matches it."""
    pattern = f"{name}.*".split("/")
    found = []
    for path in sorted(Path(workspace or ".").rglob("*")):
        parts = path.relative_to(workspace or ".").parts
        if len(parts) < len(pattern):
            continue
        dirs, tail = parts[: len(parts) - len(pattern)], parts[len(parts) - len(pattern) :]
        if any(part.startswith(".") for part in dirs):
            continue
        if all(
            fnmatch.fnmatchcase(part, glob) and (glob.startswith(".") or not part.startswith("."))
            for part, glob in zip(tail, pattern, strict=True)
        ):
            found.append(path)
    return found


def resolve_path(workspace: str, file_name: str) -> str:
    """resolvePath: the first file the glob finds, relative to the workspace; else the name."""
    if workspace and file_name.startswith(workspace):
        file_name = file_name[len(workspace) :]
    workspace_path = workspace if not workspace or workspace.endswith("/") else f"{workspace}/"
    normalized = re.sub(r"^\./", "", file_name)
    for match in glob_names(workspace_path, normalized):
        absolute = str(match.resolve())
        if not any(v in absolute for v in EXCLUDE_SOURCES):
            return os.path.relpath(absolute, Path(workspace_path or ".").resolve())
    return normalized


def annotation_position(
    suite: ET.Element, case: ET.Element, issue: ET.Element, workspace: Path
) -> tuple[str, int]:
    """The file and line createTestCaseAnnotation sends GitHub for a failure or an error."""
    stack_trace = (issue.text or "").strip()
    class_name = case.get("classname") or case.get("name") or ""
    file_name, line = resolve_file_and_line(
        case.get("file") or issue.get("file") or suite.get("file"),
        case.get("line") or issue.get("line") or suite.get("line"),
        class_name,
        stack_trace,
    )
    ws = str(workspace)
    if file_name and (workspace / file_name).exists():  # fs.existsSync, from the workspace
        resolved = file_name
    elif Path(f"{ws}{file_name}").exists():
        resolved = f"{ws}{file_name}"
    else:
        resolved = resolve_path(ws, file_name)
    return resolved.replace(f"{ws}/", "", 1), line


def junit_positions(path_or_text: Path | str, workspace: Path) -> dict[str, tuple[str, int]]:
    """Case name -> the file and line action-junit-report annotates, for each failure or error.

    As it would in a GitHub Actions step whose workspace (and working directory) is
    ``workspace``; tests/e2e/test_ci.py runs it on the JUnit files of real gradings.
    """
    text = path_or_text.read_text("utf-8") if isinstance(path_or_text, Path) else path_or_text
    found = {}
    for suite in ET.fromstring(text).iter("testsuite"):
        for case in suite.iter("testcase"):
            for issue in [*case.findall("failure"), *case.findall("error")]:
                found[case.get("name", "")] = annotation_position(suite, case, issue, workspace)
    return found


def positions(report: Report, workspace: Path) -> dict[str, tuple[str, int]]:
    """Check id -> the file and line action-junit-report annotates, for each FAIL or ERROR."""
    return junit_positions(render(report), workspace)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A GitHub workspace holding a learner's repo, with files named after what is no file.

    Files named after each milestone and after each check (its last segment, its id with
    dashes), so that a classname naming any of them would be caught resolving to them.
    """
    root = (tmp_path / "ws").resolve()
    shutil.copytree(ROOT / "learner_template", root)
    (root / "nginx" / "conf.d").mkdir()
    (root / "nginx" / "conf.d" / "api.conf").write_text("location / {}\n")
    for milestone in MILESTONE_KEYS:
        (root / f"{milestone}.md").write_text("notes\n")
        (root / "notes").mkdir(exist_ok=True)
        (root / "notes" / f"{milestone}.txt").write_text("notes\n")
    for spec in catalog().specs:
        (root / f"{spec.id.split('.')[-1]}.md").write_text("notes\n")
        (root / f"{spec.id.replace('.', '-')}.txt").write_text("notes\n")
    return root


def located(check_id: str, where: Location, **evidence: object) -> CheckResult:
    """A FAIL of ``check_id`` pointing at ``where``, whose API printed decoy locations."""
    decoys = (" budgets.yaml:99", " nginx/nginx.conf:98", " loadtest/checkout.js:97 at 10:30")
    return result(check_id, Status.FAIL, location=where, api_output=decoys, **evidence)


def test_a_located_failure_is_annotated_on_the_learners_file_and_line(workspace: Path) -> None:
    """budgets.yaml:14 is annotated there, though the measured text and the API name others."""
    results = (
        located("m1.budgets-valid", Location("budgets.yaml", 14), measured="budgets.yaml:3: x"),
        located("m2.via-nginx", Location("nginx/nginx.conf", 31)),
        located("m2.included", Location("nginx/conf.d/api.conf", 7)),
        located("m1.k6-thresholds", Location("loadtest/checkout.js")),
    )
    report = Report("milestone-2", "/r", milestones=("milestone-1", "milestone-2"), results=results)
    assert positions(report, workspace) == {
        "m1.budgets-valid": ("budgets.yaml", 14),
        "m2.via-nginx": ("nginx/nginx.conf", 31),
        "m2.included": ("nginx/conf.d/api.conf", 7),
        "m1.k6-thresholds": ("loadtest/checkout.js", 1),  # the whole file
    }


def test_an_unlocated_check_is_annotated_on_no_file(workspace: Path) -> None:
    """No check without a location lands on a file named after its milestone, or on any file."""
    results = []
    for index, spec in enumerate(catalog().specs):
        milestone = milestone_of(spec.id)
        assert milestone is not None
        key = milestone.key
        evidence = Evidence(f"{key}.md:5 failed", measured=f"{key}.md:5 and budgets.yaml:3")
        results.append(
            CheckResult(
                spec.id,
                spec.title,
                key,
                (Status.FAIL, Status.ERROR, Status.INCONCLUSIVE)[index % 3],
                evidence,
                api_output=(f" {key}:7", f" notes/{key}.txt:8", f" {spec.id}:9"),
            )
        )
    report = Report("all", "/r", milestones=MILESTONE_KEYS, results=tuple(results))
    found = positions(report, workspace)
    assert set(found) == {spec.id for spec in catalog().specs}
    for check_id, (path, _) in found.items():
        assert not (workspace / path).exists(), (check_id, path)
        assert not any(m in path for m in MILESTONE_KEYS), (check_id, path)
        assert path == NO_FILE


def test_a_grading_error_is_annotated_on_its_file_or_on_none(workspace: Path) -> None:
    """The not-graded document points at failfast.yaml:2 when the error does, else at no file."""
    assert positions(NOT_GRADED, workspace) == {"grading": ("failfast.yaml", 2)}
    ((path, _),) = positions(NOT_GRADED_NOWHERE, workspace).values()
    assert path == NO_FILE and not (workspace / path).exists()


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("budgets.yaml", "budgets"),
        ("nginx/nginx.conf", "nginx/nginx"),
        ("nginx/conf.d/api.conf", "api"),
        ("loadtest/checkout.js", "loadtest/checkout"),
        ("compose.override.yml", "compose"),
        ("Dockerfile", "Dockerfile"),
        (".gitignore", None),
    ],
)
def test_a_files_key_is_its_path_without_extension(path: str, key: str | None) -> None:
    """A classname segment holds no dot: the path without extension, or what of it has none."""
    assert file_key(path) == key
    classnames = {
        case.get("classname")
        for case in ET.fromstring(
            render(
                Report(
                    "milestone-1",
                    "/r",
                    results=(result("m1.x", Status.FAIL, location=Location(path, 1)),),
                )
            )
        ).iter("testcase")
    }
    assert classnames == {f"failfast.milestone-1.{key or NO_FILE}"}
