"""Control characters and bidi overrides in the learner's words reach no output (issue #22, 7).

A report built from the model, every string field of which (found by walking the model's
dataclasses, so a new field is covered by itself) holds a right-to-left override, C1 controls
(the one-byte CSI U+009B, NEL U+0085), an ANSI colour code, BEL, NUL, an isolate, the bidi marks,
a lone surrogate and a CR. Every format of :class:`OutputFormat` renders it (a new format is
covered by itself), and none of those code points is in what it writes, nor in what its own
reader makes of it: JSON parsed, XML read by a real XML parser, HTML by the stdlib's, Markdown
rendered by cmark-gfm (GitHub's renderer) and then read as HTML, entities decoded.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import cmarkgfm  # type: ignore[import-untyped]
import pytest
from cmarkgfm.cmark import Options  # type: ignore[import-untyped]
from junitparser import JUnitXml
from rich.console import Console

import grader.model
from grader.course.gradebook import Row, gradebook_csv, summary_markdown
from grader.formats import OutputFormat
from grader.formats.github import AnnotationsFormat
from grader.formats.html import ClassEntry, render_class_page, safe_href
from grader.formats.terminal import TerminalFormat
from grader.lines import neutralise, sanitize
from grader.model import CheckResult, Evidence, NotGraded, Report, Status

# The learner's words at their worst. The "&#x202e;" is text: a writer that forgot to escape its
# "&" would hand a reader the override by its entity.
HOSTILE = (
    "rlo\u202eevil csi\x9b31mred nel\x85 esc\x1b[31mred bell\x07 nul\x00 lri\u2066in\u2069 "
    "rlm\u200f alm\u061c lre\u202a del\x7f osc\x1b]8;;http://x\x07link\x1b]8;;\x07 st\x9c "
    "vt\x0b cr\rover lone\ud800 entity&#x202e;&#155; end"
)
# What no output may hold: C0 controls but tab and LF, DEL, C1 controls, bidi embeddings,
# overrides, isolates and marks, and surrogates.
FORBIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
PLAIN_INT = 10_000_000  # every int field: a line number, a byte count loud enough to be shown


def _hostile_value(annotation: str, name: str) -> Any:
    """A value full of HOSTILE for a field of this annotation; None: leave the default."""
    bare = annotation.removesuffix(" | None")
    nested = getattr(grader.model, bare, None)
    if bare == "str":
        return f"{name} {HOSTILE}"
    if bare.startswith("tuple[str"):
        return (f"{name} {HOSTILE}", HOSTILE)
    if bare.startswith("Mapping[str"):
        return {HOSTILE: HOSTILE, "layers": {HOSTILE: HOSTILE, "api_s": HOSTILE}}
    if bare == "int":
        return PLAIN_INT
    inner = getattr(grader.model, bare.removeprefix("tuple[").removesuffix(", ...]"), None)
    if bare.startswith("tuple[") and dataclasses.is_dataclass(inner) and isinstance(inner, type):
        return (hostile(inner), hostile(inner))
    if dataclasses.is_dataclass(nested) and isinstance(nested, type):
        return hostile(nested)
    return None


def hostile(cls: type[Any], **given: Any) -> Any:
    """An instance of a model dataclass with HOSTILE in every string it holds, but ``given``."""
    values = dict(given)
    for field in dataclasses.fields(cls):
        if field.name not in values:
            value = _hostile_value(str(field.type), field.name)
            if value is not None:
                values[field.name] = value
    return cls(**values)


KEYS = (f"milestone-1 {HOSTILE}", f"milestone-2 {HOSTILE}")
RESULTS = tuple(
    hostile(
        CheckResult,
        id=f"m{n % 2 + 1}.hostile-{status.value.lower()} {HOSTILE}",
        milestone=KEYS[n % 2],
        status=status,
        evidence=hostile(Evidence),
    )
    for n, status in enumerate(Status)
)
GRADED = hostile(Report, milestones=KEYS, results=RESULTS, not_graded=None)
NOT_GRADED = hostile(Report, results=(), not_graded=hostile(NotGraded))
REPORTS = {"graded": GRADED, "not-graded": NOT_GRADED}


def test_the_report_holds_the_hostile_text_in_every_string_it_has() -> None:
    """The fixture is what it claims: each string field of each dataclass in it is hostile."""
    seen: set[str] = set()

    def walk(value: Any, where: str) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for field in dataclasses.fields(value):
                texts = str(field.type).removesuffix(" | None")
                name = f"{type(value).__name__}.{field.name}"
                walk(getattr(value, field.name), name if "str" in texts else "")
        elif isinstance(value, str) and where:  # a str field, not a status or a visibility
            seen.add(where)
            assert "\u202e" in value, where
        elif isinstance(value, tuple):
            for item in value:
                walk(item, where)

    for report in REPORTS.values():
        walk(report, "Report")
    assert {"CheckResult.api_output", "Evidence.summary", "NotGraded.message"} <= seen
    assert {"Location.path", "BudgetSource.note", "Report.repo", "CheckResult.id"} <= seen


class _Html(HTMLParser):
    """A page as a browser reads it: text and attribute values, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.read: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.read += [f"{name}={value or ''}" for name, value in attrs]

    def handle_data(self, data: str) -> None:
        self.read.append(data)

    def handle_comment(self, data: str) -> None:
        self.read.append(data)


def html_read(page: str) -> str:
    """Everything of a page a person or a program could be shown, entities decoded."""
    parser = _Html()
    parser.feed(page)
    parser.close()
    return "\n".join(parser.read)


def markdown_read(markdown: str) -> str:
    """Markdown as GitHub shows it: cmark-gfm's HTML (raw HTML let through), read as HTML."""
    rendered = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    return html_read(str(rendered))


def json_strings(value: Any) -> list[str]:
    """Every string of a parsed JSON document, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *json_strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in json_strings(item)]
    return []


def xml_strings(text: str) -> list[str]:
    """Every text, tail, attribute name and value of an XML document, as a parser reads them."""
    root = ET.fromstring(text.encode("utf-8"))
    found = []
    for element in root.iter():
        found += [element.text or "", element.tail or ""]
        found += [s for pair in element.attrib.items() for s in pair]
    return found


def assert_clean(text: str, what: str) -> None:
    """No forbidden code point in ``text``; the offending ones named when there is one."""
    bad = sorted({f"U+{ord(c):04X}" for c in FORBIDDEN.findall(text)})
    assert not bad, f"{what}: {bad}"


def read_back(form: OutputFormat, text: str) -> list[str]:
    """What the format's own reader makes of the text: the strings a consumer may show."""
    if form in (OutputFormat.JSON, OutputFormat.PRAIRIELEARN, OutputFormat.CLASSROOM):
        return json_strings(json.loads(text))
    if form is OutputFormat.GRADESCOPE:  # its outputs are Markdown, which Gradescope renders
        document = json.loads(text)
        outputs = [document["output"], *(test["output"] for test in document["tests"])]
        return [*json_strings(document), *(markdown_read(o) for o in outputs)]
    if form is OutputFormat.JUNIT:
        JUnitXml.fromstring(text)  # the reader CI tools use takes it
        return xml_strings(text)
    if form is OutputFormat.HTML:
        return [html_read(text)]
    if form is OutputFormat.MARKDOWN:
        return [markdown_read(text)]
    return [text]  # the text report: what it writes is what is read


@pytest.mark.parametrize("which", REPORTS)
@pytest.mark.parametrize("form", list(OutputFormat))
def test_no_format_writes_a_control_or_bidi_character(form: OutputFormat, which: str) -> None:
    """Every format, graded or not: nothing forbidden in the text, nor in what its reader reads."""
    report = REPORTS[which]
    text = form.to_format().render(report)
    assert_clean(text, f"{form.value} as written")
    for n, read in enumerate(read_back(form, text)):
        assert_clean(read, f"{form.value} as read ({n})")
    assert "evil" in text, "the learner's words are shown, not dropped"


def test_the_learners_view_is_as_clean() -> None:
    """Report.for_learners (what CI and the job summary show) goes through the same escaping."""
    hidden = dataclasses.replace(RESULTS[0], visibility="hidden")
    view = dataclasses.replace(GRADED, results=(hidden, *RESULTS[1:])).for_learners()
    assert view.withheld and hidden not in view.results
    for form in OutputFormat:
        assert_clean(form.to_format().render(view), form.value)


@pytest.mark.parametrize("which", REPORTS)
def test_the_live_terminal_writes_only_its_own_colour_codes(which: str) -> None:
    """In a colour terminal, rich's own SGR codes are the only escapes; nothing else is raw."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="truecolor", width=120)
    TerminalFormat(console).print(REPORTS[which])
    written = out.getvalue()
    assert "\x1b[" in written  # it is a colour terminal
    assert_clean(re.sub(r"\x1b\[[0-9;]*m", "", written), "terminal")


@pytest.mark.parametrize("which", REPORTS)
def test_github_annotations_are_clean(tmp_path: Path, which: str) -> None:
    """Workflow commands: no control or override reaches GitHub's annotation (CR is %0D)."""
    annotations = AnnotationsFormat(tmp_path, tmp_path).render(REPORTS[which])
    assert annotations.startswith("::")
    assert_clean(annotations.replace("\n", " "), "annotations")


# The pass-rate chart labels each bar with its check id, here with control pictures in it.
@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")
def test_the_class_page_gradebook_and_summary_are_clean() -> None:
    """Submission names and their reports: the class page, the CSV and the class summary."""
    name = f"sub {HOSTILE}"
    entries = [
        ClassEntry(name, GRADED, f"{name}/report.html"),
        ClassEntry("rlo\u202e\x9bx", NOT_GRADED, "rlo\u202e\x9bx/report.html"),
    ]
    page = render_class_page(entries, f"class {HOSTILE}")
    assert_clean(page, "class page")
    assert_clean(html_read(page), "class page as read")
    assert 'href="rlo%E2%80%AE%C2%9Bx/report.html"' in page  # the link still opens the folder
    rows = [Row(name, GRADED), Row("ok", NOT_GRADED), Row("gone", None)]
    table = gradebook_csv(rows)
    assert_clean(table, "gradebook")
    assert [r[0] for r in csv.reader(io.StringIO(table))][1:] == [
        neutralise(name, keep_cr=False),
        "ok",
        "gone",
    ]
    summary = summary_markdown(rows, f"class {HOSTILE}")
    assert_clean(summary, "class summary")
    assert_clean(markdown_read(summary), "class summary as read")


def test_a_link_is_kept_only_where_it_is_safe() -> None:
    """Percent-encoded past a C1 control or an override; none for a surrogate or a C0 control."""
    assert safe_href("a\u202eb/report.html") == "a%E2%80%AEb/report.html"
    assert safe_href("a\u2066\x85/r.html") == "a%E2%81%A6%C2%85/r.html"
    assert safe_href("a\ud800/r.html") is None
    assert safe_href("a\x1b/r.html") is None
    assert safe_href("plain-é/report.html") == "plain-é/report.html"


# ----------------------------------------------------------------------- at capture ---
def test_sanitize_strips_ansi_sequences_and_shows_every_other_control() -> None:
    """7- and 8-bit CSI and OSC go; ESC alone, C1, bidi, CR and surrogates become visible."""
    line = (
        "a\x1b[1;31mb\x1b[0m c\x9b2Jd e\x1b]8;;http://x\x07f\x1b]8;;\x1b\\ g\x9d0;title\x9ch "
        "\x1bc i\u202ej\x85k\u200fl\x00m\rn\to\ud800p\n"
    )
    assert sanitize(line) == "ab cd ef gh ␛c i\ufffdj\ufffdk\ufffdl␀m␍n    o\ufffdp"


def test_sanitize_reads_a_bounded_part_of_a_huge_line() -> None:
    """A 50 MB line, of text or of escape codes, is sanitized at once and said to be cut."""
    for line in ("x" * 50_000_000, "\x1b[" + "1" * 50_000_000, "\x1b]" * 25_000_000):
        started = time.perf_counter()
        shown = sanitize(line, 300)
        assert time.perf_counter() - started < 0.05
        assert len(shown) <= 300 and shown.endswith("...")
    assert sanitize("y" * 400, 300) == "y" * 297 + "..."
    assert sanitize("y" * 300, 300) == "y" * 300


def test_sanitize_cuts_a_sequence_at_the_end_of_what_it_reads() -> None:
    """An escape sequence cut by the bound is stripped, not half shown."""
    line = "z" * 2000 + "\x1b[" + "1" * 10_000 + "m tail"
    assert sanitize(line, 300) == "z" * 297 + "..."
    assert sanitize("ok \x1b[31", 300) == "ok "


def test_a_bidi_mark_is_shown_as_it_would_reorder_numbers() -> None:
    """RLM, LRM and ALM become visible: a mark before "10 20" would show it as "20 10"."""
    assert neutralise("\u200f10 20 \u200e\u061c") == "\ufffd10 20 \ufffd\ufffd"
    assert neutralise("a\u2028b\u200dc") == "a\u2028b\u200dc"  # reorders nothing: kept
    assert neutralise("a\rb") == "a\rb" and neutralise("a\rb", keep_cr=False) == "a␍b"


def test_the_learners_entities_stay_text() -> None:
    """A learner's "&#x202e;" is shown as those characters in the HTML and Markdown reports."""
    for form in (OutputFormat.HTML, OutputFormat.MARKDOWN):
        text = form.to_format().render(GRADED)
        read = html_read(text) if form is OutputFormat.HTML else markdown_read(text)
        assert "entity&#x202e;&#155; end" in read, form
