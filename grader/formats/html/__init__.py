"""The HTML report: one self-contained page per run, and one per class, for people to look at.

A page is a single file: its CSS and its charts (SVG) are inline, it runs no script and fetches
nothing (a Content-Security-Policy says so too), so it opens offline from a CI artifact. Jinja2
builds the page from ``grader/formats/templates`` with autoescaping on; matplotlib's SVG backend
draws the charts, each from its check's typed series (:mod:`grader.series`) and nothing else.

Modules: ``page`` (a run's page: :class:`HtmlFormat`), ``classpage`` (the class page of
``failfast grade``), ``charts`` (the chart of each kind of series, its title and caption),
``progress`` (a run page's progress section, from the grading history's
:class:`grader.series.ProgressSeries`) and ``drawing`` (matplotlib's settings, and the filter
that admits only the SVG a chart needs).

Everything that may carry the learner's words (summaries, evidence, API output, the repo's path,
a submission's name) reaches the page only through Jinja2's escaping, after
:func:`grader.lines.sanitize`. The charts hold numbers and the grader's own labels; even so,
matplotlib escapes its text, and :func:`grader.formats.html.drawing.inline_svg` admits only the
SVG elements and attributes a chart needs (no script, no event handler, no reference out of the
chart), or drops the chart.
"""

from __future__ import annotations

from grader.formats.html.charts import CAPTIONS, chart_for
from grader.formats.html.classpage import ClassEntry, render_class_page, safe_href
from grader.formats.html.drawing import DrawnChart, UnsafeSvg
from grader.formats.html.page import HtmlFormat

__all__ = [
    "CAPTIONS",
    "ClassEntry",
    "DrawnChart",
    "HtmlFormat",
    "UnsafeSvg",
    "chart_for",
    "render_class_page",
    "safe_href",
]
