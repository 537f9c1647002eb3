"""The Markdown report: what a GitHub Actions job summary shows on the run page.

Everything that may carry the learner's words is escaped: a response body or an output line can
neither add HTML, links, images or table cells, nor close the code block it is shown in, and
reads as it was written. The report keeps under GitHub's size limit for a step's summary: what
matters least goes first (API output, figures, evidence details), and a note says so.
"""

from __future__ import annotations

import enum
import html
import re

from grader.formats.base import COUNTED, WITHHELD_NOTE
from grader.formats.github import SUMMARY_BYTES
from grader.formats.json import not_gradable_reason
from grader.lines import neutralise, sanitize
from grader.model import CheckResult, NotGraded, Report, Status, milestone, points_text

ICON = {
    Status.PASS: "✅",
    Status.FAIL: "❌",
    Status.SKIP: "⏭️",
    Status.INCONCLUSIVE: "❔",
    Status.ERROR: "⚠️",
}
# Inline, Markdown acts on \ ` * _ [ ] | ~ ! (and on <, >, &, which become entities): a backslash
# makes each one literal. GitHub's autolink extension (cmark-gfm's, as cmarkgfm runs it) makes
# links of bare URLs too: at parse time, on the ":" of "http://", "https://" and "ftp://" and on
# a "www." (a backslash before that ":" or that "." stops it); and afterwards, on whole runs of
# text, on e-mail addresses, "mailto:" and "xmpp:" ones included, which no backslash or entity
# stops (the text around an escape is joined again first). An empty HTML comment after "@" does:
# it splits the run, GitHub's sanitiser drops it, and the page reads the same.
_INLINE = re.compile(r"[\\`*_\[\]|~!]|:(?=//)|(?<=www)\.|@", re.IGNORECASE)
_AFTER_AT = "<!-- -->"
# Where a line starts, Markdown reads block markers too: a heading's #, a list item's -, + or 1.
# (1), a rule's - or a setext underline's =; leading blanks would make code. (> is &gt; by then.)
_BLOCK_START = re.compile(r"^(?:[#+=-]|\d{1,9}(?=[.)]))")
EVIDENCE_CHARS = 300  # per table cell; the details below the table carry the rest
STATUS_CHARS = 500  # a check's status line, once its details are cut for size
# What the report may take of the step's summary: GitHub's limit, less room for anything else the
# step writes (the summary collects all of it).
SUMMARY_BUDGET = SUMMARY_BYTES - 64 * 1024


def _literal(match: re.Match[str]) -> str:
    char = match.group()
    return char + _AFTER_AT if char == "@" else "\\" + char


def inline(text: str, limit: int = 2000) -> str:
    """Untrusted text as literal inline Markdown, on one line: no markup, HTML or link.

    It reads as written wherever it goes: in a table cell, after a label, or at the start of a
    paragraph, where its first character cannot start a block either.
    """
    lines = [sanitize(line, limit) for line in text.split("\n")]
    shown = "<br>".join(_INLINE.sub(_literal, html.escape(line, quote=False)) for line in lines)
    return _BLOCK_START.sub(_unblock, shown.lstrip(" "), count=1)


def _unblock(match: re.Match[str]) -> str:
    start = match.group()
    return start + "\\" if start[0].isdigit() else "\\" + start  # 1\. 2\) \# \- \+ \=


def html_text(text: str, limit: int = 2000) -> str:
    """Untrusted text inside raw HTML (a ``<summary>``), where Markdown is not read: entities."""
    return html.escape(sanitize(" ".join(text.split("\n")), limit), quote=False)


def code_block(lines: list[str] | tuple[str, ...]) -> str:
    """Lines in a fenced code block whose fence no line can close."""
    body = [sanitize(line, 500) for line in lines]
    longest = max((len(run) for line in body for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return "\n".join([fence + "text", *body, fence])


def cell_code(text: str) -> str:
    """Untrusted text as inline code in a table cell: no backtick or pipe in it ends either.

    In a code span nothing is Markdown and no entity is decoded; GitHub's tables split cells on
    a pipe even there, unless it is escaped.
    """
    shown = sanitize(text, 500).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", shown)), default=0) + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(result: CheckResult) -> str:
    text = result.summary
    if result.status is not Status.PASS and result.measured:
        text = f"{text}: {result.measured}"
    return inline(_shorten(text, EVIDENCE_CHARS))


class Cut(enum.IntEnum):
    """What a report too big for the job summary leaves out, least important first."""

    NOTHING = 0
    API_OUTPUT = 1
    FIGURES = 2  # and the API output
    EVIDENCE = 3  # and the most of each piece of evidence: EVIDENCE_CHARS of it stay
    DETAILS = 4  # and all the evidence under each status line, which is shortened
    END = 5  # and the end of the report: only a report of thousands of checks gets here


_CUT_WORDS = {
    Cut.API_OUTPUT: "the API output of each check",
    Cut.FIGURES: "the API output and figures of each check",
    Cut.EVIDENCE: "the API output and figures of each check, and shortens its evidence",
    Cut.DETAILS: "the API output, figures and evidence of each check (its status line is kept)",
    Cut.END: "the API output, figures and evidence of each check, and the end of the report",
}


def _size(text: str) -> int:
    return len(text.encode("utf-8", errors="replace"))


def _cut_note(cut: Cut, words: str = "") -> list[str]:
    """What a shortened report says at its top: what it left out, and where the rest is."""
    if cut is Cut.NOTHING:
        return []
    return [
        f"> ✂️ **Shortened**: this summary leaves out {words or _CUT_WORDS[cut]}, to stay under "
        "GitHub's "
        "1 MiB limit for a step's job summary. The whole report is in the `failfast check` "
        "output in the job's log, and in its report files (`--json`, `--junit`) among the "
        "job's artifacts.",
        "",
    ]


class MarkdownFormat:
    """A table of checks with their evidence, then what to fix for each one that did not pass.

    At most ``max_bytes`` of UTF-8 (None: no limit): by default what GitHub lets a step's job
    summary hold, less some room. A bigger report leaves out, in this order until it fits, the
    API output of each check, its figure, then most and at last all of the evidence under its
    status line; the table and every check's status line stay, and a note at the top says what
    was left out and where the whole report is.
    """

    def __init__(self, max_bytes: int | None = SUMMARY_BUDGET) -> None:
        self.max_bytes = max_bytes

    def render(self, report: Report) -> str:
        """The report as GitHub-flavoured Markdown, within ``max_bytes``."""
        text = ""
        for cut in Cut:
            if report.not_graded is not None:
                text = self._not_graded(report, report.not_graded, cut)
            else:
                text = self._graded(report, cut)
            # The learner's words went through inline() or code_block(); whatever else the
            # report holds cannot carry a control or bidi override to the page either.
            text = neutralise(text, keep_cr=False)  # a CR would end a Markdown line
            if self.max_bytes is None or _size(text) <= self.max_bytes:
                return text
        return _cut_end(text, self.max_bytes or 0)

    def _graded(self, report: Report, cut: Cut) -> str:
        counts = [
            f"{report.count(status)} {word}"
            for status, word in COUNTED
            if report.count(status) or status in (Status.PASS, Status.FAIL)
        ]
        verdict = "✅ passed" if report.exit_code == 0 else "❌ not passed"
        if report.interrupted:
            verdict = "⏹️ interrupted, the checks not run are SKIP"
        score = f"score {points_text(report.score)}/{points_text(report.max_score)}"
        reason = not_gradable_reason(report)
        out = [
            f"## failfast {inline(report.milestone)}{' --through' if report.through else ''}: "
            f"{verdict}"
            f" · {score}",
            "",
            *([f"**Not gradable**: {inline(reason)}: grade again.", ""] if reason else []),
            *([WITHHELD_NOTE, ""] if report.withheld else []),
            f"{', '.join(counts)} in {report.duration_s:.1f} s · repo {inline(report.repo)}"
            + (f" · budget: {inline(report.budgets.note)}" if report.budgets else ""),
            "",
            *_cut_note(cut),
        ]
        for key in report.milestones:
            results = report.results_of(key)
            if len(report.milestones) > 1:
                passed = sum(r.status is Status.PASS for r in results)
                found = milestone(key)
                title = found.title if found else ""
                out += [f"### {inline(key)}: {inline(title)} ({passed}/{len(results)} passed)", ""]
            out += ["| | Check | Status | Evidence |", "|---|---|---|---|"]
            out += [
                f"| {ICON[r.status]} | {cell_code(r.id)} {inline(r.title)} | {r.status.value} "
                f"| {_cell(r)} |"
                for r in results
            ]
            out.append("")
        for result in report.results:
            if result.status.needs_action:
                out += self._details(result, cut)
        printed = report.api_output
        if printed is not None and printed.loud and cut < Cut.API_OUTPUT:
            out += [f"Your API printed {inline(printed.describe())}; its first lines:", ""]
            out += [code_block(printed.head), "", "and its last lines:", ""]
            out += [code_block(printed.tail or ("(none after the first)",)), ""]
        if any(r.status is Status.FAIL for r in report.results):
            out.append("`failfast explain <check id>` says more about a check.")
        return "\n".join(out) + "\n"

    def _details(self, result: CheckResult, cut: Cut) -> list[str]:
        summary = _shorten(result.summary, STATUS_CHARS) if cut >= Cut.DETAILS else result.summary
        out = [
            "<details open>",
            f"<summary>{ICON[result.status]} <code>{html_text(result.id)}</code> "
            f"{html_text(result.title)}"
            "</summary>",
            "",
            f"**{result.status.value}**: {inline(summary)}",
            "",
        ]
        if cut < Cut.DETAILS:
            parts = result.evidence_parts()
            if cut >= Cut.EVIDENCE:
                parts = [(label, _shorten(text, EVIDENCE_CHARS)) for label, text in parts]
            out += [f"- **{label}**: {inline(text)}" for label, text in parts]
            out.append("")
        if result.figure and cut < Cut.FIGURES:
            out += [code_block(result.figure), ""]
        if result.api_output and cut < Cut.API_OUTPUT:
            out += ["Your API's last output lines:", "", code_block(result.api_output), ""]
        out += ["</details>", ""]
        return out

    def _not_graded(self, report: Report, problem: NotGraded, cut: Cut) -> str:
        """Why grading was impossible, as Markdown."""
        message = _shorten(problem.message, STATUS_CHARS) if cut >= Cut.DETAILS else problem.message
        out = [
            f"## failfast {inline(report.milestone)}: ⚠️ could not grade",
            "",
            *_cut_note(cut, "the lines that back this message up"),
            inline(message),
            "",
        ]
        if problem.details and cut < Cut.API_OUTPUT:
            out += [code_block(problem.details), ""]
        out.append(f"Repo {inline(report.repo)} · exit code 2: the grader could not grade.")
        return "\n".join(out) + "\n"


def _cut_end(text: str, limit: int) -> str:
    """``text`` cut at a line to fit ``limit`` bytes with what closes it: the last resort."""
    ending = "\n> ✂️ The rest of this report did not fit in the job summary.\n"
    room = limit - _size(ending) - _size("</details>\n\n")
    kept = text.encode("utf-8", errors="replace")[: max(room, 0)].decode("utf-8", errors="ignore")
    kept = kept[: kept.rfind("\n") + 1]
    if kept.count("<details open>") > kept.count("</details>"):
        kept += "</details>\n\n"
    return kept + ending
