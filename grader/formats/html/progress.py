"""The run page's progress section: the repo's score per milestone over its gradings.

Drawn from a :class:`grader.series.ProgressSeries` alone, which `failfast check` builds from the
grading history and hands to the HTML report only: a chart (each milestone's score as a share of
its points, grading by grading, this run last) and a table of the same numbers. The dates and
commits come from the history, which a shared database could let anyone write: they are
sanitized here and escaped by Jinja2 in the table, and matplotlib escapes its text in the chart.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from grader.formats.html.drawing import (
    ATTEMPT_COLOURS,
    GREY,
    WIDTH_IN,
    DrawnChart,
    drawing,
    legend_below,
    to_svg,
)
from grader.lines import sanitize
from grader.series import MilestoneScore, ProgressSeries, ProgressStep, is_finite

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TITLE = "Your score per milestone, grading by grading"
CAPTION = (
    "Each line is one milestone's score as a share of its points, over your gradings of this "
    "repo (oldest first, this run last); a gap is a grading that did not run all of that "
    "milestone's checks."
)
MARKERS = ("o", "s", "^", "D", "v")
LABEL_LIMIT = 40  # characters of a date or commit from the history


def _when(step: ProgressStep) -> str:
    """``2026-12-07 15:54`` of an ISO time (UTC, as recorded)."""
    return sanitize(step.recorded_at[:16].replace("T", " "), LABEL_LIMIT)


def _points(value: float) -> str:
    """Points as the reports show them: ``6``, ``2.5``, ``6.67``."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _cell(score: MilestoneScore | None) -> str:
    """One milestone's score in the table: ``4/6 (67 %)``, or a dash where it is not comparable."""
    if score is None:
        return "–"
    return f"{_points(score.score)}/{_points(score.max_score)} ({100 * score.fraction:.0f} %)"


def _percent(score: MilestoneScore | None) -> float:
    """A point of the chart: the share of the points, in %; NaN (a gap) where not comparable."""
    return math.nan if score is None else 100 * score.fraction


def _draw(series: ProgressSeries) -> Figure | None:
    """One line per milestone: its score (% of its points) at each grading, this run last."""
    steps = series.steps
    if len(steps) < 2 or not series.milestones:
        return None
    xs = list(range(len(steps)))
    rotate = len(steps) > 6  # a dozen labels of two lines need the room
    with drawing(WIDTH_IN, 3.0 if rotate else 2.7) as (figure, [axes]):
        for n, key in enumerate(series.milestones):
            axes.plot(
                xs,
                [_percent(s.scores[n]) for s in steps],
                color=ATTEMPT_COLOURS[(n + 1) % len(ATTEMPT_COLOURS)],
                # Each later line draws smaller markers of another shape on top: lines that
                # overlap (two milestones at full marks) still show every milestone.
                marker=MARKERS[n % len(MARKERS)],
                markersize=max(7.0 - 1.5 * n, 4.0),
                linewidth=1.5,
                label=key,
            )
        axes.axvline(xs[-1], color=GREY, linewidth=0.8, linestyle="dotted", label="this run")
        labels = [f"{_when(s)}\n{sanitize(s.commit, LABEL_LIMIT)}" for s in steps]
        axes.set_xticks(xs, labels, rotation=30 * rotate, ha="right" if rotate else "center")
        axes.set_xlim(-0.4, len(steps) - 0.6)
        axes.set_ylim(-5, 105)
        axes.set_yticks([0, 25, 50, 75, 100], ["0 %", "25 %", "50 %", "75 %", "100 %"])
        axes.set_ylabel("score (% of the points)")
        axes.set_xlabel("grading of this repo, oldest first (date UTC, commit)")
        axes.grid(axis="y", color="#e5e5e5", linewidth=0.6)
        legend_below(figure, axes, min(len(series.milestones) + 1, 6))
        return figure


def progress_chart(series: ProgressSeries) -> DrawnChart | None:
    """The progress chart; None when there is too little to draw or the SVG is refused."""
    if not is_finite(series):
        return None
    try:
        figure = _draw(series)
        if figure is None:
            return None
        svg = to_svg(figure, "progress", TITLE)
    except (TypeError, ValueError, KeyError, IndexError, ET.ParseError):
        return None
    return DrawnChart(svg, TITLE, CAPTION)


def progress_view(series: ProgressSeries | None) -> dict[str, Any] | None:
    """What report.html shows of the repo's progress: a chart and a table; None without one.

    A series of fewer than two gradings, or with no milestone, is nothing to compare.
    """
    if series is None or len(series.steps) < 2 or not series.milestones:
        return None
    last = len(series.steps) - 1
    return {
        "chart": progress_chart(series),
        "gradings": len(series.steps),
        "milestones": [sanitize(m, LABEL_LIMIT) for m in series.milestones],
        "rows": [
            {
                "when": _when(step),
                "commit": sanitize(step.commit, LABEL_LIMIT),
                "current": n == last,
                "cells": [_cell(score) for score in step.scores],
            }
            for n, step in enumerate(series.steps)
        ],
    }
