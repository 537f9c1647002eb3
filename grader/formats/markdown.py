"""The Markdown report: what a GitHub Actions job summary shows on the run page.

Everything that may carry the learner's words is escaped: a response body or an output line can
neither add HTML, links or table cells, nor close the code block it is shown in.
"""

from __future__ import annotations

import html
import re

from grader.formats.base import COUNTED
from grader.formats.json import not_gradable_reason, points_text
from grader.lines import sanitize
from grader.model import CheckResult, NotGraded, Report, Status, milestone

ICON = {
    Status.PASS: "✅",
    Status.FAIL: "❌",
    Status.SKIP: "⏭️",
    Status.INCONCLUSIVE: "❔",
    Status.ERROR: "⚠️",
}
# Inline, Markdown acts on these (and on <, >, &, which become entities); a backslash makes each
# one literal. The text never starts a line, so block markers (#, -, 1.) need no escape.
_ACTIVE = re.compile(r"([\\`*_\[\]|~!])")
EVIDENCE_CHARS = 300  # per table cell; the details below the table carry the rest


def inline(text: str, limit: int = 2000) -> str:
    """Untrusted text as literal inline Markdown, on one line."""
    lines = [sanitize(line, limit) for line in text.split("\n")]
    escaped = [_ACTIVE.sub(r"\\\1", html.escape(line, quote=False)) for line in lines]
    return "<br>".join(escaped)


def code_block(lines: list[str] | tuple[str, ...]) -> str:
    """Lines in a fenced code block whose fence no line can close."""
    body = [sanitize(line, 500) for line in lines]
    longest = max((len(run) for line in body for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return "\n".join([fence + "text", *body, fence])


def _cell(result: CheckResult) -> str:
    text = result.summary
    if result.status is not Status.PASS and result.measured:
        text = f"{text}: {result.measured}"
    if len(text) > EVIDENCE_CHARS:
        text = text[: EVIDENCE_CHARS - 1] + "…"
    return inline(text)


class MarkdownFormat:
    """A table of checks with their evidence, then what to fix for each one that did not pass."""

    def render(self, report: Report) -> str:
        """The report as GitHub-flavoured Markdown."""
        if report.not_graded is not None:
            return self._not_graded(report, report.not_graded)
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
            f"## failfast {report.milestone}{' --through' if report.through else ''}: {verdict}"
            f" · {score}",
            "",
            *([f"**Not gradable**: {inline(reason)}: grade again.", ""] if reason else []),
            f"{', '.join(counts)} in {report.duration_s:.1f} s · repo {inline(report.repo)}"
            + (f" · budget: {inline(report.budgets.note)}" if report.budgets else ""),
            "",
        ]
        for key in report.milestones:
            results = report.results_of(key)
            if len(report.milestones) > 1:
                passed = sum(r.status is Status.PASS for r in results)
                found = milestone(key)
                title = found.title if found else ""
                out += [f"### {key}: {title} ({passed}/{len(results)} passed)", ""]
            out += ["| | Check | Status | Evidence |", "|---|---|---|---|"]
            out += [
                f"| {ICON[r.status]} | `{r.id}` {inline(r.title)} | {r.status.value} | {_cell(r)} |"
                for r in results
            ]
            out.append("")
        for result in report.results:
            if result.status.needs_action:
                out += self._details(result)
        if any(r.status is Status.FAIL for r in report.results):
            out.append("`failfast explain <check id>` says more about a check.")
        return "\n".join(out) + "\n"

    def _details(self, result: CheckResult) -> list[str]:
        out = [
            "<details open>",
            f"<summary>{ICON[result.status]} <code>{result.id}</code> {inline(result.title)}"
            "</summary>",
            "",
            f"**{result.status.value}**: {inline(result.summary)}",
            "",
        ]
        out += [f"- **{label}**: {inline(text)}" for label, text in result.evidence_parts()]
        out.append("")
        if result.figure:
            out += [code_block(result.figure), ""]
        if result.api_output:
            out += ["Your API's last output lines:", "", code_block(result.api_output), ""]
        out += ["</details>", ""]
        return out

    def _not_graded(self, report: Report, problem: NotGraded) -> str:
        """Why grading was impossible, as Markdown."""
        out = [
            f"## failfast {report.milestone}: ⚠️ could not grade",
            "",
            inline(problem.message),
            "",
        ]
        if problem.details:
            out += [code_block(problem.details), ""]
        out.append(f"Repo {inline(report.repo)} · exit code 2: the grader could not grade.")
        return "\n".join(out) + "\n"
