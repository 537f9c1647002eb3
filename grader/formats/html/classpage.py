"""The class page: pass rate per check, the distribution of scores, and every submission.

``failfast grade`` writes it (``grader/course/batch.py``) from the submissions' JSON reports,
with a link to each submission's own page where that link is safe (:func:`safe_href`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote, urlsplit

from grader import __version__
from grader.formats.html.drawing import (
    BLUE,
    GREEN,
    MAX_ROWS,
    ORANGE,
    RED,
    WIDTH_IN,
    DrawnChart,
    drawing,
    integer_ticks,
    to_svg,
)
from grader.formats.html.page import STATUS_CLASS, VERDICT, environment, text_of
from grader.lines import neutralise, sanitize
from grader.model import ExitCode, Report, Status, fraction_of, percent_text, points_text

SCORE_BINS = 10  # the score histogram's bars: 0-10 %, ..., 90-100 %


@dataclass(frozen=True, slots=True)
class ClassEntry:
    """One submission on the class page: its name, its report, and a link to its own page."""

    submission: str
    report: Report
    href: str | None = None


def safe_href(href: str | None) -> str | None:
    """A link the class page may carry: relative, or http(s); never javascript: or data:.

    A C1 control or bidi override in it (a submission's folder name may hold one) is
    percent-encoded: the link still opens that folder, and the page holds no such character. A
    lone surrogate names no file the browser could open: no link.
    """
    if not href or any(ord(c) <= 0x20 or c in "\\\x7f" for c in href):
        return None
    try:
        href = "".join(quote(c) if neutralise(c) != c else c for c in href)
    except UnicodeEncodeError:
        return None
    return href if urlsplit(href).scheme.lower() in ("", "http", "https") else None


def _score(report: Report) -> float | None:
    """The share of the points earned, or None when nothing was graded."""
    if report.not_graded is not None or not report.results or report.max_score <= 0:
        return None
    return fraction_of(report.score, report.max_score)


def _median_percent(reports: Sequence[Report]) -> str:
    """The median share of the points, floored like every percent failfast shows."""
    shares = [
        r.score / r.max_score
        for r in reports
        if r.not_graded is None and r.results and r.max_score > 0
    ]
    if not shares:
        return "-"
    return percent_text(statistics.median(shares), Decimal(1))


def _pass_rates(entries: Sequence[ClassEntry]) -> list[tuple[str, float, int]]:
    """(check id, share of submissions that passed it, submissions that ran it), in order."""
    order: dict[str, list[bool]] = {}
    for entry in entries:
        for result in entry.report.results:
            order.setdefault(result.id, []).append(result.status is Status.PASS)
    return [(check, sum(passed) / len(passed), len(passed)) for check, passed in order.items()]


def _pass_rate_chart(rates: Sequence[tuple[str, float, int]]) -> DrawnChart | None:
    if not rates:
        return None
    rates = rates[: MAX_ROWS * 2]
    title = "Share of submissions that passed each check"
    with drawing(WIDTH_IN, 1.0 + 0.19 * len(rates)) as (figure, [axes]):
        shares = [100 * rate for _, rate, _ in rates]
        colours = [GREEN if s >= 80 else ORANGE if s >= 50 else RED for s in shares]
        axes.barh(range(len(rates)), shares, color=colours, height=0.7)
        axes.set_yticks(range(len(rates)), [sanitize(check, 60) for check, _, _ in rates])
        axes.set_ylim(len(rates) - 0.4, -0.6)
        axes.set_xlim(0, 100)
        axes.set_xlabel("submissions that passed the check (%)")
        axes.grid(axis="x", color="#e5e5e5", linewidth=0.6)
        svg = to_svg(figure, "class-pass-rate", title)
    return DrawnChart(
        svg,
        title,
        "Short bars are the checks most of the class fails: where teaching, or the hints, "
        "should help next.",
    )


def _score_chart(scores: Sequence[float]) -> DrawnChart | None:
    if not scores:
        return None
    title = "Distribution of scores"
    bins = [0] * SCORE_BINS
    for score in scores:
        bins[min(SCORE_BINS - 1, int(score * SCORE_BINS))] += 1
    with drawing(WIDTH_IN, 2.3) as (figure, [axes]):
        width = 100 / SCORE_BINS
        lefts = [n * width for n in range(SCORE_BINS)]
        axes.bar(lefts, bins, width=width * 0.9, align="edge", color=BLUE)
        axes.set_xticks([*lefts, 100])
        axes.set_xlim(0, 100)
        axes.set_xlabel("score: checks passed of checks graded (%)")
        axes.set_ylabel("submissions (count)")
        integer_ticks(axes)
        axes.grid(axis="y", color="#e5e5e5", linewidth=0.6)
        svg = to_svg(figure, "class-scores", title)
    return DrawnChart(
        svg,
        title,
        "How many submissions reached each share of passed checks; the bar on the right is "
        "90-100 %.",
    )


def render_class_page(entries: Sequence[ClassEntry], title: str) -> str:
    """The class page: pass rate per check, the distribution of scores, every submission."""
    scores = [s for s in (_score(e.report) for e in entries) if s is not None]
    rates = _pass_rates(entries)
    rows = []
    for entry in entries:
        report, score = entry.report, _score(entry.report)
        rows.append(
            {
                "submission": text_of(entry.submission, 300),
                "href": safe_href(entry.href),
                "milestone": report.milestone + (" --through" if report.through else ""),
                "passed": report.count(Status.PASS),
                "total": len(report.results),
                "score": "-"
                if score is None
                else f"{points_text(report.score)}/{points_text(report.max_score)} "
                f"({percent_text(report.score, report.max_score)})",
                "verdict": "could not grade"
                if report.not_graded
                else VERDICT[report.exit_code].split(":")[0],
                "css": "pass" if report.exit_code is ExitCode.PASSED else "fail",
                "problem": text_of(report.not_graded.message, 300) if report.not_graded else "",
                "statuses": [
                    (r.id, r.status.value, STATUS_CLASS[r.status]) for r in report.results
                ],
            }
        )
    page = {
        "title": text_of(title, 300),
        "submissions": len(entries),
        "graded": len(scores),
        "all_passed": sum(1 for e in entries if e.report.exit_code is ExitCode.PASSED),
        "median": _median_percent([e.report for e in entries]),
        "charts": [c for c in (_pass_rate_chart(rates), _score_chart(scores)) if c is not None],
        "rows": rows,
        "version": __version__,
    }
    return environment().get_template("class.html").render(page=page)
