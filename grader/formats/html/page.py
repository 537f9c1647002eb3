"""The page of one run: a section per milestone, every check with its evidence and chart.

Jinja2 renders ``grader/formats/templates/report.html`` with autoescaping on. Everything that may
carry the learner's words (summaries, evidence, API output, the repo's path) reaches the page
only through that escaping, after :func:`grader.lines.sanitize`; every value any template
prints is neutralised too (:func:`_shown`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from grader import __version__
from grader.formats.base import COUNTED, WITHHELD_NOTE
from grader.formats.html.charts import chart_for
from grader.formats.html.progress import progress_view
from grader.formats.json import not_gradable_reason
from grader.lines import neutralise, sanitize
from grader.model import CheckResult, ExitCode, Report, Status, milestone, points_text
from grader.series import ProgressSeries

if TYPE_CHECKING:  # imported when a page is written: `failfast` starts without jinja2
    import jinja2

STATUS_CLASS = {
    Status.PASS: "pass",
    Status.FAIL: "fail",
    Status.SKIP: "skip",
    Status.INCONCLUSIVE: "inconclusive",
    Status.ERROR: "error",
}
VERDICT = {
    ExitCode.PASSED: "every check passed",
    ExitCode.FAILED: "not passed: a check failed",
    ExitCode.NOT_GRADED: "not graded: the grader could not grade, or could not tell",
    ExitCode.INTERRUPTED: "interrupted: the checks not run are SKIP",
}
TEXT_LIMIT = 4000  # characters of one evidence field; a learner's body can be any length
LINE_LIMIT = 500  # characters of one line of API output


def _shown(value: object) -> object:
    """What a template prints of a value: text neutralised, then escaped by Jinja2 (markup too).

    Every ``{{ }}`` of every template passes here, so no string reaches a page, in its text or
    an attribute, with a control or bidi override in it, whatever built the page's values.
    """
    from markupsafe import Markup

    if isinstance(value, Markup):  # a chart's checked SVG: still markup, neutralised
        return Markup(neutralise(str(value), keep_cr=False))
    return neutralise(value, keep_cr=False) if isinstance(value, str) else value


@functools.cache
def environment() -> jinja2.Environment:
    """The templates of grader/formats/templates, HTML-escaping every value they print."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("grader.formats", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_shown,
    )


def text_of(text: str, limit: int = TEXT_LIMIT) -> str:
    """Untrusted text, line by line without control characters, bounded; escaped by Jinja2."""
    lines = [sanitize(line, LINE_LIMIT * 4) for line in text.split("\n")]
    joined = "\n".join(lines)
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def _check_view(result: CheckResult) -> dict[str, Any]:
    chart = chart_for(result)
    return {
        "id": result.id,
        "anchor": "check-" + re.sub(r"[^a-z0-9-]", "-", result.id),
        "title": text_of(result.title),
        "status": result.status.value,
        "css": STATUS_CLASS[result.status],
        "summary": text_of(result.summary),
        "evidence": [(label, text_of(text)) for label, text in result.evidence_parts()],
        "chart": chart,
        # The monospace chart, where there is no drawn one to show the same.
        "figure": [sanitize(line, LINE_LIMIT) for line in result.figure] if not chart else [],
        "api_output": [sanitize(line, LINE_LIMIT) for line in result.api_output],
        "duration": f"{result.duration_s:.1f} s",
    }


def _counts(report: Report) -> list[tuple[str, int, str]]:
    return [
        (word, report.count(status), STATUS_CLASS[status])
        for status, word in COUNTED
        if report.count(status) or status in (Status.PASS, Status.FAIL)
    ]


@dataclass(frozen=True, slots=True)
class HtmlFormat:
    """One self-contained HTML page: a section per milestone, every check with its chart.

    ``progress``: the repo's score over its gradings, which `failfast check` passes when the
    history holds an earlier grading to compare with; the page then opens with a progress
    section. Without it (``--no-history``, a class's submission, a first grading) there is none.
    """

    progress: ProgressSeries | None = None

    def render(self, report: Report) -> str:
        """The report as an HTML page."""
        sections = []
        for key in report.milestones:
            results = report.results_of(key)
            found = milestone(key)
            sections.append(
                {
                    "key": key,
                    "title": found.title if found else key,
                    "passed": sum(r.status is Status.PASS for r in results),
                    "total": len(results),
                    "checks": [_check_view(r) for r in results],
                }
            )
        problem = report.not_graded
        page = {
            "title": f"failfast {report.milestone}" + (" --through" if report.through else ""),
            "what": report.title,
            "verdict": "could not grade" if problem else VERDICT[report.exit_code],
            "verdict_css": "pass" if report.exit_code is ExitCode.PASSED else "fail",
            "exit_code": int(report.exit_code),
            "counts": _counts(report),
            "score": f"{points_text(report.score)}/{points_text(report.max_score)}",
            "not_gradable": not_gradable_reason(report),
            "withheld": WITHHELD_NOTE if report.withheld else "",
            "repo": text_of(report.repo),
            "started_at": report.started_at,
            "duration": f"{report.duration_s:.1f} s",
            "backend": report.backend,
            "budget": text_of(report.budgets.note) if report.budgets else "",
            "notes": [text_of(n) for n in report.notes],
            "interrupted": report.interrupted,
            "sections": sections if problem is None else [],
            "progress": progress_view(self.progress) if problem is None else None,
            "problem": None
            if problem is None
            else {
                "message": text_of(problem.message),
                "details": [sanitize(line, LINE_LIMIT) for line in problem.details],
            },
            "version": __version__,
        }
        return environment().get_template("report.html").render(page=page)


# --- The class page ---------------------------------------------------------------------------
