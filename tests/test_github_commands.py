"""failfast's annotations as GitHub's own writer writes them and as GitHub's runner reads them.

The writer: @actions/core (tests/js, installed by ``scripts/setup.sh js``), which GitHub's own
actions print their annotations with. For every nasty message and property below, failfast's
``command()`` line must be byte for byte the line ``core.error()`` prints for the same values,
once neutralised as failfast neutralises them (:func:`message_text`, :func:`property_text`).

The reader: :func:`parse_line`, a transcription of the runner's parser. The message and the
properties must come back exactly: nothing lost but the control characters failfast makes
visible and what is past the limits.

Then the limits: at most 10 errors and 10 warnings a step, the most important first, the last
one saying how many more there are.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grader.formats.github import (
    ANNOTATIONS_PER_JOB,
    ERRORS_PER_STEP,
    MESSAGE_CHARS,
    TITLE_CHARS,
    WARNINGS_PER_STEP,
    AnnotationsFormat,
    command,
    message_text,
    property_text,
)
from grader.lines import neutralise
from grader.model import CheckResult, Evidence, Location, Report, Status

JS = Path(__file__).parent / "js"

# ------------------------------------------------------------------------------ the reader ---
# actions/runner, src/Runner.Common/ActionCommand.cs (TryParseV2, UnescapeProperty,
# UnescapeData) as src/Runner.Worker/ActionCommandManager.cs (TryProcessCommand) calls it on each
# line of a step's output; read at commit 258d6c857db3519913f7deb6004b60172f8043ae. The escape
# tables are undone in their order, "%25" last. The runner reads output with .NET's
# TextReader.ReadLine, which ends a line at CR, LF or CRLF, and nothing else. Python stands in
# for .NET where they agree on the text failfast writes: str.strip for Char.IsWhiteSpace trims
# (the neutralised text has no C0 or C1 control left for them to differ on), ordinal find for
# IndexOf("::") (the properties hold no ":" of their own: it is escaped).
_UNESCAPE_DATA = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))
_UNESCAPE_PROPERTY = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))
# The issue commands among what the runner registers (command names are case-insensitive).
_REGISTERED = frozenset({"error", "warning", "notice", "debug", "stop-commands"})


@dataclass(frozen=True)
class RunnerCommand:
    """What the runner makes of one workflow command line."""

    name: str
    data: str
    properties: dict[str, str] = field(default_factory=dict)


def _unescape(text: str, table: tuple[tuple[str, str], ...]) -> str:
    for escaped, raw in table:
        text = text.replace(escaped, raw)
    return text


def _split_pair(text: str) -> list[str]:
    """``text.Split('=', count: 2, StringSplitOptions.RemoveEmptyEntries)``, as .NET does it.

    Empty entries are skipped and do not count; once the first entry is found, the empty
    entries after it are skipped too, and the rest of the string is the second.
    """
    found: list[str] = []
    position = 0
    while (index := text.find("=", position)) >= 0:
        entry, position = text[position:index], index + 1
        if entry:
            found.append(entry)
            while text.startswith("=", position):
                position += 1
            break
    if text[position:]:
        found.append(text[position:])
    return found


def parse_line(line: str) -> RunnerCommand | None:
    """``ActionCommand.TryParseV2`` on one output line: the command, or None for plain output."""
    message = line.lstrip()
    if not message.startswith("::"):
        return None
    end = message.find("::", 2)
    if end < 0:
        return None
    info = message[2:end]
    space = info.find(" ")
    name = info if space < 0 else info[:space]
    if name.lower() not in _REGISTERED:
        return None
    properties: dict[str, str] = {}
    if space > 0:
        for pair in filter(None, info[space + 1 :].strip().split(",")):
            key_value = _split_pair(pair)
            if len(key_value) == 2:
                properties[key_value[0]] = _unescape(key_value[1], _UNESCAPE_PROPERTY)
    return RunnerCommand(name, _unescape(message[end + 2 :], _UNESCAPE_DATA), properties)


def runner_lines(output: str) -> list[str]:
    """A step's output as the runner reads it: lines end at CR, LF or CRLF."""
    return re.split(r"\r\n|\r|\n", output.removesuffix("\n"))


# ---------------------------------------------------------------------------- the writer ---
NODE = """
import {readFileSync} from 'node:fs';
import * as core from '@actions/core';
for (const c of JSON.parse(readFileSync(0, 'utf8'))) {
  if (Object.keys(c.properties).length) core.error(c.message, c.properties);
  else core.error(c.message);
}
"""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def actions_core(cases: list[dict[str, object]]) -> list[bytes]:
    """What @actions/core's ``core.error`` prints for each case, line by line, as bytes."""
    if not (JS / "node_modules" / "@actions" / "core").is_dir():
        missing = (
            "tests/js/node_modules is missing: run `bash scripts/setup.sh js` "
            "(npm ci --prefix tests/js) to compare with @actions/core"
        )
        if _in_ci():
            pytest.fail(f"{missing}. Under CI this comparison must run, never skip.")
        pytest.skip(missing)
    node = shutil.which("node")
    assert node is not None, "node is not on PATH, yet tests/js/node_modules is installed"
    done = subprocess.run(
        [node, "--input-type=module", "-e", NODE],
        cwd=JS,
        input=json.dumps(cases).encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.split(b"\n")[:-1]


# ------------------------------------------------------------------------- the nasty set ---
MESSAGES = {
    "cr": "before\rafter",
    "lf": "line one\nline two",
    "crlf": "a body\r\nwith CRLF\r\n",
    "percent": "100% done",
    "escaped-percent": "literal %25 and %0A and %0D and %3A and %2C",
    "colon": "a: b",
    "comma": "a, b, c",
    "double-colon": "x ::error::forged\n::set-output name=grade::100",
    "legacy": "##[error]forged ##[set-output name=grade]100",
    "unicode": "é ü 日本語 😀 🇫🇷 \u2028 next",
    "bidi": "evil\u202eexe.txt\u202c and \u2066isolated\u2069 \u202a\u202b\u202d",
    "controls": "nul\x00 esc\x1b[31mred\x1b[0m del\x7f nel\x85 csi\x9b bell\x07 tab\tend",
    "long": "x" * (MESSAGE_CHARS + 500),
    "long-astral": "😀" * MESSAGE_CHARS,
    "blanks": "   leading and trailing   ",
    "newline-only": "\n",
    "empty": "",
}
TITLES = {
    "colon-comma": "m1.budgets-valid failed: a, b: c",
    "percent": "100% %25 %2C %3A",
    "newlines": "one\ntwo\r\nthree\r",
    "double-colon": "title ::error::x",
    "equals": "=starts with equals, a=b",
    "trailing": "ends in blanks   ",
    "unicode": "é 😀 \u202eflip",
    "long": "t" * (TITLE_CHARS + 50),
    "blank": "   ",
}
FILES = {
    "plain": "repo/budgets.yaml",
    "comma-colon": "repo/we,ird:name.yaml",
    "percent": "repo/%41%2C.yaml",
    "unicode": "repo/ü 😀/budgets.yaml",
    "none": None,
}


Case = tuple[str, str, str | None, str | None, int | None]  # id, message, title, file, line


def _cases() -> list[Case]:
    titles, files = list(TITLES.items()), list(FILES.items())
    found: list[Case] = []
    for n, (key, message) in enumerate(MESSAGES.items()):
        title_key, title = titles[n % len(titles)]
        file_key, file = files[n % len(files)]
        line = None if file is None else n + 1
        found.append((f"{key}/{title_key}/{file_key}", message, title, file, line))
    found += [(f"title-{key}", "m", title, None, None) for key, title in TITLES.items()]
    found += [(f"file-{key}", "m", None, file, 7) for key, file in FILES.items()]
    return found


CASES = _cases()


def ours(message: str, title: str | None, file: str | None, line: int | None) -> str:
    """The line failfast writes for one case."""
    return command("error", message, file=file, line=line, title=title)


def sent(title: str | None, file: str | None, line: int | None) -> dict[str, object]:
    """The properties failfast sends for a case, as @actions/core's AnnotationProperties."""
    properties: dict[str, object] = {}
    if title and property_text(title, TITLE_CHARS):
        properties["title"] = property_text(title, TITLE_CHARS)
    if file and property_text(file):
        properties["file"] = property_text(file)
    if line:
        properties["startLine"] = line
    return properties


@pytest.fixture(scope="module")
def written_by_actions_core() -> dict[str, bytes]:
    """Case id -> the line @actions/core prints for it (one node run for them all)."""
    inputs: list[dict[str, object]] = [
        {"message": message_text(message), "properties": sent(title, file, line)}
        for _, message, title, file, line in CASES
    ]
    lines = actions_core(inputs)
    assert len(lines) == len(CASES)
    return {case[0]: line for case, line in zip(CASES, lines, strict=True)}


@pytest.mark.parametrize(
    ("message", "title", "file", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_command_is_byte_for_byte_what_actions_core_writes(
    written_by_actions_core: dict[str, bytes],
    request: pytest.FixtureRequest,
    message: str,
    title: str | None,
    file: str | None,
    line: int | None,
) -> None:
    """The same escapes, the same property order, the same empties left out: the same bytes."""
    case_id = request.node.callspec.id
    assert ours(message, title, file, line).encode("utf-8") == written_by_actions_core[case_id]


@pytest.mark.parametrize(
    ("message", "title", "file", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_the_runner_reads_back_everything_sent(
    message: str, title: str | None, file: str | None, line: int | None
) -> None:
    """One line, one command, and exactly the message and properties failfast meant."""
    output = ours(message, title, file, line) + "\n"
    (only,) = runner_lines(output)
    parsed = parse_line(only)
    assert parsed is not None and parsed.name == "error"
    assert parsed.data == message_text(message)
    expected = {
        "title": property_text(title, TITLE_CHARS) if title else "",
        "file": property_text(file) if file else "",
        "line": str(line) if line else "",
    }
    assert parsed.properties == {key: value for key, value in expected.items() if value}


def test_nothing_github_can_carry_is_lost() -> None:
    """CR, LF, %, :, , and any Unicode come back as they were; controls come back visible."""
    for key in ("cr", "lf", "crlf", "percent", "escaped-percent", "colon", "comma", "unicode"):
        message = MESSAGES[key]
        parsed = parse_line(command("error", message, title=message, file=message))
        assert parsed is not None
        assert parsed.data == message, key
        assert parsed.properties["title"] == parsed.properties["file"] == message.rstrip(), key
    parsed = parse_line(command("warning", MESSAGES["controls"]))
    assert parsed is not None
    assert parsed.data == "nul␀ esc␛[31mred␛[0m del␡ nel\ufffd csi\ufffd bell␇ tab\tend"
    assert parsed.data == neutralise(MESSAGES["controls"])
    bidi = parse_line(command("error", MESSAGES["bidi"]))
    assert bidi is not None
    assert not set(bidi.data) & {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


def test_what_cannot_be_carried_is_said() -> None:
    """A message over the limit ends in "…" within the runner's count; a long title too."""
    for key in ("long", "long-astral"):
        parsed = parse_line(command("error", MESSAGES[key]))
        assert parsed is not None and parsed.data.endswith("…")
        assert len(parsed.data.encode("utf-16-le")) // 2 <= MESSAGE_CHARS < 4096
    parsed = parse_line(command("error", "m", title=TITLES["long"]))
    assert parsed is not None
    assert len(parsed.properties["title"]) == TITLE_CHARS
    assert parsed.properties["title"].endswith("…")


def test_learner_text_cannot_start_a_command_of_its_own() -> None:
    """Whatever the message and title hold, the runner sees one line and one command: ours."""
    forged = MESSAGES["double-colon"] + "\r::warning::cr\n  ::add-mask::x " + MESSAGES["legacy"]
    output = command("error", forged, title=forged, file=forged, line=3) + "\n"
    lines = runner_lines(output)
    assert len(lines) == 1
    parsed = parse_line(lines[0])
    assert parsed is not None and parsed.name == "error"
    assert parsed.data == forged and set(parsed.properties) == {"title", "file", "line"}


# ------------------------------------------------------------------------------ the limits ---
def _result(check_id: str, milestone: str, status: Status) -> CheckResult:
    return CheckResult(
        id=check_id,
        title=f"title of {check_id}",
        milestone=milestone,
        status=status,
        evidence=Evidence(
            f"{check_id} {status.value.lower()}",
            measured="a: b, c\r\nd",
            hint="fix it",
            location=Location("budgets.yaml", 3),
        ),
    )


MILESTONES = ("milestone-1", "milestone-2", "milestone-3")


def _many(fails: int, errors: int, inconclusive: int) -> Report:
    """A report whose results come in no helpful order: milestones and statuses interleaved."""
    results = []
    for n in range(max(fails, errors, inconclusive)):
        milestone = MILESTONES[(2 * n) % 3]  # 1, 3, 2, 1, 3, 2, ...
        prefix = f"m{MILESTONES.index(milestone) + 1}"
        if n < inconclusive:
            results.append(_result(f"{prefix}.unsure-{n}", milestone, Status.INCONCLUSIVE))
        if n < errors:
            results.append(_result(f"{prefix}.broken-{n}", milestone, Status.ERROR))
        if n < fails:
            results.append(_result(f"{prefix}.fail-{n}", milestone, Status.FAIL))
        results.append(_result(f"{prefix}.pass-{n}", milestone, Status.PASS))
    return Report("milestone-3", "/r", results=tuple(results), milestones=MILESTONES, through=True)


def _annotations(report: Report, tmp_path: Path) -> list[RunnerCommand]:
    output = AnnotationsFormat(tmp_path / "repo", tmp_path).render(report)
    found = [parse_line(line) for line in runner_lines(output)]
    assert None not in found
    return [c for c in found if c is not None]


def _rank(check_id: str, report: Report) -> tuple[int, int]:
    result = next(r for r in report.results if r.id == check_id)
    return MILESTONES.index(result.milestone), report.results.index(result)


def test_thirty_fails_and_fifteen_inconclusive_make_ten_errors_and_ten_warnings(
    tmp_path: Path,
) -> None:
    """GitHub keeps 10 of each a step; the 10th says how many more, and where they are."""
    report = _many(fails=30, errors=0, inconclusive=15)
    found = _annotations(report, tmp_path)
    assert [c.name for c in found] == ["error"] * ERRORS_PER_STEP + ["warning"] * WARNINGS_PER_STEP
    errors, warnings = found[:ERRORS_PER_STEP], found[ERRORS_PER_STEP:]
    assert "20 more checks failed or could not be graded" in errors[-1].data
    assert "5 more checks were inconclusive" in warnings[-1].data
    for last in (errors[-1], warnings[-1]):
        assert "job summary lists every check" in last.data
        assert "hint: fix it" in last.data  # the annotation's own message is still there
    assert all("more check" not in c.data for c in errors[:-1] + warnings[:-1])
    # Milestone order within a kind, the report's order within a milestone.
    for kind in (errors, warnings):
        ids = [c.properties["title"].split()[0] for c in kind]
        assert ids == sorted(ids, key=lambda i: _rank(i, report))
    first = [c.properties["title"].split()[0] for c in errors]
    assert all(i.startswith("m1.") for i in first)  # 10 of milestone-1's 10 FAILs
    assert errors[0].properties["file"] == "repo/budgets.yaml"
    assert errors[0].properties["line"] == "3"
    assert len(found) <= ANNOTATIONS_PER_JOB  # room left for the job's other steps


def test_fail_comes_before_error_and_nothing_is_cut_under_the_limit(tmp_path: Path) -> None:
    """FAILs first, then ERRORs, each in milestone order; ten or fewer: no note."""
    report = _many(fails=4, errors=6, inconclusive=10)
    found = _annotations(report, tmp_path)
    titles = [c.properties["title"] for c in found]
    assert [t.split()[1].rstrip(":") for t in titles[:10]] == ["failed"] * 4 + ["could"] * 6
    assert [c.name for c in found] == ["error"] * 10 + ["warning"] * 10
    assert all("more check" not in c.data for c in found)
    fails = [t.split()[0] for t in titles[:4]]
    assert fails == sorted(fails, key=lambda i: _rank(i, report))


def test_one_more_is_said_in_the_singular(tmp_path: Path) -> None:
    """Eleven ERRORs: the tenth says one more check is left out."""
    found = _annotations(_many(fails=0, errors=11, inconclusive=11), tmp_path)
    assert "1 more check failed or could not be graded" in found[9].data
    assert "1 more check was inconclusive" in found[19].data


def test_the_note_survives_a_message_at_the_limit(tmp_path: Path) -> None:
    """A huge message is cut to leave room for the note, all within the runner's 4096."""
    big = tuple(
        CheckResult(
            f"m2.fail-{n}",
            "t",
            "milestone-2",
            Status.FAIL,
            Evidence("😀" * 5000, measured="é" * 5000),
        )
        for n in range(12)
    )
    found = _annotations(Report("milestone-2", "/r", results=big), tmp_path)
    assert len(found) == ERRORS_PER_STEP
    last = found[-1].data
    assert last.endswith("The job summary lists every check.")
    assert "2 more checks failed" in last
    assert len(last.encode("utf-16-le")) // 2 <= MESSAGE_CHARS
