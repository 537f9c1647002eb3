"""The job summary as GitHub reads it: cmark-gfm with GitHub's extensions, and its 1 MiB limit.

GitHub renders a job summary with cmark-gfm and the autolink, table, strikethrough, tagfilter
and tasklist extensions; ``cmarkgfm.github_flavored_markdown_to_html`` runs the same library
with the same extensions. Raw HTML is let through here (CMARK_OPT_UNSAFE), as GitHub lets
``<details>`` through: any tag the learner's words could add would show. Whatever the learner
wrote, the page holds no link, image or tag of theirs, and still reads what they wrote.

Then the size: GitHub uploads no summary of a step over 1 MiB; the report keeps under it,
cutting the least important first.
"""

from __future__ import annotations

import dataclasses
import html
import re
from html.parser import HTMLParser
from pathlib import Path

import cmarkgfm  # type: ignore[import-untyped]
import pytest
from cmarkgfm.cmark import Options  # type: ignore[import-untyped]

from grader.cli.app import catalog
from grader.formats.github import SUMMARY_BYTES, GitHubActions
from grader.formats.gradescope import GradescopeFormat
from grader.formats.markdown import (
    EVIDENCE_CHARS,
    SUMMARY_BUDGET,
    Cut,
    MarkdownFormat,
    inline,
)
from grader.model import (
    BudgetSource,
    CheckResult,
    Evidence,
    Location,
    NotGraded,
    Report,
    Status,
    milestone_of,
)

# What the learner may write, and what a person must still read on the page.
NASTY = (
    "http://evil.example/x",
    "https://evil.example/login?next=/",
    "HTTPS://EVIL.EXAMPLE",
    "ftp://evil.example/f",
    "www.evil.example",
    "(www.evil.example/path)",
    "user@example.com",
    "mailto:user@example.com",
    "xmpp:user@example.com/resource",
    "@octocat",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="http://evil.example">click</a>',
    "![x](http://y)",
    "[x](javascript:alert(1))",
    "[ref]: http://evil.example",
    "<http://evil.example/angle>",
    "a | b | c",
    "`code` and ```fence```",
    "**bold** _em_ ~~strike~~",
    "&amp; &#64; &lt;b&gt;",
    "- [ ] task",
)
LEARNER = " ".join(NASTY)
LEARNER_LINES = "\n".join(NASTY)
# The tags the report itself writes; anything else on the page came from the learner.
OURS = {
    "h2", "h3", "p", "br", "strong", "code", "pre", "table", "thead", "tbody", "tr", "th",
    "td", "details", "summary", "ul", "li", "blockquote",
}  # fmt: skip


def github_html(markdown: str) -> str:
    """The page GitHub renders from Markdown (its raw HTML let through, as <details> is)."""
    return str(
        cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    )


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_page(page: str) -> tuple[list[tuple[str, list[tuple[str, str | None]]]], str]:
    """The tags on a page, and its text as a person reads it (comments are not shown)."""
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser.tags, "".join(parser.text)


def assert_nothing_of_theirs_is_live(page: str) -> str:
    """No link, image or tag of the learner's on the page; its visible text, returned."""
    assert "<a " not in page and "<a>" not in page and "<img" not in page
    tags, text = read_page(page)
    assert {tag for tag, _ in tags} <= OURS, {tag for tag, _ in tags} - OURS
    for tag, attrs in tags:
        assert all(name in ("open", "lang", "align") for name, _ in attrs), (tag, attrs)
    return text


def nasty_result(check_id: str, status: Status) -> CheckResult:
    """A result whose every text field is the learner's."""
    found = milestone_of(check_id)
    return CheckResult(
        id=check_id,
        title=f"title of {check_id}",
        milestone=found.key if found else "milestone-2",
        status=status,
        evidence=Evidence(
            summary=f"answered {LEARNER}",
            measured=LEARNER_LINES,
            expected=f"not {LEARNER}",
            hint=LEARNER,
            location=Location("www.evil.example/user@example.com.yaml", 3),
            figure=NASTY,
        ),
        api_output=NASTY,
    )


NASTY_REPORT = Report(
    milestone="milestone-2",
    repo="/home/user@example.com/www.evil.example/http://evil.example/repo",
    results=(
        nasty_result("m1.budgets-valid", Status.FAIL),
        nasty_result("m2.read-timeout", Status.FAIL),
        nasty_result("m2.slow-body", Status.ERROR),
        nasty_result("m2.connect-timeout", Status.INCONCLUSIVE),
        nasty_result("m2.healthy-checkout", Status.PASS),
    ),
    budgets=BudgetSource("learner", f"your budgets.yaml says {LEARNER}", {}),
    milestones=("milestone-1", "milestone-2"),
    through=True,
)


def test_the_learners_words_are_text_on_githubs_page() -> None:
    """Links, e-mail addresses, HTML, images, tables: all read as written, none of it live."""
    markdown = MarkdownFormat().render(NASTY_REPORT)
    text = assert_nothing_of_theirs_is_live(github_html(markdown))
    for nasty in NASTY:
        assert nasty in text, nasty
    assert "user@example.com" in text and NASTY_REPORT.repo in text


def test_the_table_keeps_a_row_per_check_and_four_cells_each() -> None:
    """Pipes in the learner's words make no cell: every row has its four."""
    page = github_html(MarkdownFormat().render(NASTY_REPORT))
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)
    assert len(rows) == len(NASTY_REPORT.results) + 2  # + a header row per milestone
    assert all(row.count("<td") + row.count("<th") == 4 for row in rows)


def test_not_graded_is_text_too() -> None:
    """Why nothing was graded, the learner's words in it, starting even with a block marker."""
    for start in ("# ", "1. ", "- ", "> ", "    ", "---", "=== ", "+ "):
        problem = NotGraded("ApiStartError", start + LEARNER, details=NASTY)
        report = dataclasses.replace(NASTY_REPORT, results=(), not_graded=problem)
        page = github_html(MarkdownFormat().render(report))
        text = assert_nothing_of_theirs_is_live(page)
        assert "<h1" not in page and "<ol" not in page and "<hr" not in page
        assert all(nasty in text for nasty in NASTY)


@pytest.mark.parametrize("text", NASTY)
def test_inline_alone(text: str) -> None:
    """Each piece on its own, in a table cell, a list item, a line and a paragraph's start."""
    for markdown in (
        f"| a |\n|---|\n| {inline(text)} |",
        f"- **measured**: {inline(text)}",
        f"x {inline(text)} y",
        inline(text),
    ):
        shown = assert_nothing_of_theirs_is_live(github_html(markdown))
        assert text in shown


def test_gradescope_outputs_are_text_too() -> None:
    """Gradescope's outputs escape through the same functions: no link there either."""
    document = GradescopeFormat().to_dict(NASTY_REPORT)
    for output in [document["output"], *(t["output"] for t in document["tests"])]:
        assert_nothing_of_theirs_is_live(github_html(output))
    failed = next(t for t in document["tests"] if t["name"].startswith("m2.read-timeout"))
    shown = read_page(github_html(failed["output"]))[1]
    assert "http://evil.example/x" in shown and "user@example.com" in shown


# -------------------------------------------------------------------------------- the size ---
# Learner output in every UTF-8 width: 2 bytes (é), 3 (日, the "…" of a cut), 4 (😀).
WIDE = "é日😀 résumé 日本語 😀🚀 "


def huge_result(check_id: str, status: Status) -> CheckResult:
    """A check whose evidence and API output are as big as the grader lets them be, and more."""
    found = milestone_of(check_id)
    line = (WIDE * 40)[:600]
    return CheckResult(
        id=check_id,
        title=f"title of {check_id}",
        milestone=found.key if found else "milestone-2",
        status=status,
        evidence=Evidence(
            summary=f"answered http://evil.example/{check_id} {line}",
            measured="\n".join([line] * 40),
            expected=line,
            hint=line,
            figure=tuple(f"{n:3} {line[:80]}" for n in range(30)),
            location=Location("budgets.yaml", 14),
        ),
        api_output=tuple(f"{n} {line}" for n in range(200)),
    )


def biggest_report() -> Report:
    """Every check of the course failing, each with 200 lines of wide API output."""
    specs = catalog().specs
    results = tuple(
        huge_result(spec.id, (Status.FAIL, Status.ERROR, Status.INCONCLUSIVE)[n % 3])
        for n, spec in enumerate(specs)
    )
    milestones = tuple(dict.fromkeys(r.milestone for r in results))
    return Report("all", "/repos/learner", results=results, milestones=milestones)


def utf8(text: str) -> int:
    """Bytes, as the runner measures the summary file."""
    return len(text.encode("utf-8"))


def test_the_biggest_report_stays_under_one_mebibyte() -> None:
    """Cut from the least important: every row, and every check's status line, are kept."""
    report = biggest_report()
    assert utf8(MarkdownFormat(max_bytes=None).render(report)) > 4 * SUMMARY_BYTES
    markdown = MarkdownFormat().render(report)
    assert utf8(markdown) <= SUMMARY_BUDGET < SUMMARY_BYTES == 1024 * 1024
    assert "**Shortened**" in markdown and "`failfast check` output" in markdown
    page = github_html(markdown)
    text = assert_nothing_of_theirs_is_live(page)
    for result in report.results:
        assert f"`{result.id}`" in markdown  # a row in the table
        assert f"<code>{result.id}</code>" in markdown  # and its section
        assert f"http://evil.example/{result.id}" in text  # its status line, as written
    statuses = re.findall(r"<strong>(FAIL|ERROR|INCONCLUSIVE)</strong>: answered", page)
    assert len(statuses) == len(report.results)


def test_api_output_goes_first_then_figures_then_evidence() -> None:
    """Between two cuts' sizes, a report keeps all that the next cut would take."""
    report = biggest_report()
    unbounded = MarkdownFormat(max_bytes=None)
    shapes = {cut: unbounded._graded(report, cut) for cut in Cut if cut is not Cut.END}
    sizes = [utf8(shape) for shape in shapes.values()]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    for cut, shape in shapes.items():
        assert MarkdownFormat(max_bytes=utf8(shape)).render(report) == shape, cut
    api, figure, evidence = "Your API's last output lines", "\n  0 ", "- **measured**: "
    full, no_api, no_figures, short, no_evidence = shapes.values()
    assert api in full and figure in full and "**Shortened**" not in full
    assert api not in no_api and figure in no_api and "API output of each check" in no_api
    assert figure not in no_figures and evidence in no_figures
    longest = max(len(line) for line in short.splitlines() if line.startswith(evidence))
    assert evidence in short and longest < 2 * EVIDENCE_CHARS
    assert evidence not in no_evidence and "evidence of each check" in no_evidence
    assert utf8(short) <= SUMMARY_BUDGET  # what the biggest report comes to


def test_at_the_limit_exactly() -> None:
    """A report of exactly the limit is whole; one byte less, and the API output goes."""
    report = biggest_report()
    whole = MarkdownFormat(max_bytes=None).render(report)
    assert MarkdownFormat(max_bytes=utf8(whole)).render(report) == whole
    cut = MarkdownFormat(max_bytes=utf8(whole) - 1).render(report)
    assert "**Shortened**" in cut and "Your API's last output lines" not in cut


def test_thousands_of_checks_are_cut_at_a_line_with_every_section_closed() -> None:
    """The last resort: the end goes, at a line, and says so; every <details> it opened closes."""
    one = CheckResult("m2.x", "t", "milestone-2", Status.FAIL, Evidence(WIDE * 30))
    results = tuple(dataclasses.replace(one, id=f"m2.check-{n}") for n in range(2500))
    report = Report("milestone-2", "/r", results=results)
    markdown = MarkdownFormat().render(report)
    assert utf8(markdown) <= SUMMARY_BUDGET
    assert markdown.count("<details open>") == markdown.count("</details>")
    assert markdown.endswith("did not fit in the job summary.\n")
    assert "the end of the report" in markdown
    assert_nothing_of_theirs_is_live(github_html(markdown))


def test_not_graded_with_huge_details_stays_under_the_limit() -> None:
    """The supporting lines go first there too."""
    problem = NotGraded("ApiStartError", WIDE * 100, details=tuple(WIDE * 30 for _ in range(5000)))
    report = Report("milestone-2", "/r", not_graded=problem)
    markdown = MarkdownFormat().render(report)
    assert utf8(markdown) <= SUMMARY_BUDGET and "**Shortened**" in markdown


def test_the_summary_file_never_goes_over_the_limit(tmp_path: Path) -> None:
    """What the step wrote before leaves no room: a note instead, and the file stays readable."""
    summary = tmp_path / "summary.md"
    github = GitHubActions(workspace=tmp_path, summary=summary)
    report = MarkdownFormat().render(biggest_report())
    github.add_summary(report)
    assert summary.read_text("utf-8") == report
    summary.write_bytes(b"x" * (SUMMARY_BYTES - utf8(report)))
    github.add_summary(report)
    assert summary.stat().st_size == SUMMARY_BYTES  # just fits: appended whole
    summary.write_bytes(b"x" * (SUMMARY_BYTES - utf8(report) + 1))
    github.add_summary(report)
    assert summary.stat().st_size <= SUMMARY_BYTES
    assert "past GitHub's 1 MiB limit" in summary.read_text("utf-8")
    summary.write_bytes(b"x" * (SUMMARY_BYTES - 10))
    github.add_summary(report)
    assert summary.stat().st_size == SUMMARY_BYTES - 10


def test_a_lone_surrogate_cannot_break_the_summary(tmp_path: Path) -> None:
    """Text that is not Unicode (a lone surrogate) still makes a UTF-8 summary file."""
    result = dataclasses.replace(
        nasty_result("m2.read-timeout", Status.FAIL), api_output=("bad \udcff byte",)
    )
    summary = tmp_path / "summary.md"
    report = Report("milestone-2", "/r", results=(result,))
    GitHubActions(workspace=tmp_path, summary=summary).add_summary(MarkdownFormat().render(report))
    assert "bad \ufffd byte" in html.unescape(summary.read_text("utf-8"))
