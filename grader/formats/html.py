"""The HTML report: one self-contained page per run, and one per class, for people to look at.

A page is a single file: its CSS and its charts (SVG) are inline, it runs no script and fetches
nothing (a Content-Security-Policy says so too), so it opens offline from a CI artifact. Jinja2
builds the page with autoescaping on; matplotlib's SVG backend draws the charts, each from its
check's own ``data`` and nothing else (:func:`chart_for`).

Everything that may carry the learner's words (summaries, evidence, API output, the repo's path,
a submission's name) reaches the page only through Jinja2's escaping, after
:func:`grader.lines.sanitize`. The charts hold numbers and the grader's own labels; even so,
matplotlib escapes its text, and :func:`_inline_svg` admits only the SVG elements and attributes
a chart needs (no script, no event handler, no reference out of the chart), or drops the chart.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
import statistics
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from grader import __version__
from grader.formats.base import COUNTED, WITHHELD_NOTE
from grader.formats.json import not_gradable_reason
from grader.lines import sanitize
from grader.model import (
    CheckResult,
    ExitCode,
    Report,
    Status,
    fraction_of,
    milestone,
    percent_text,
    points_text,
)

if TYPE_CHECKING:  # imported when a chart is drawn: `failfast` starts without matplotlib
    import jinja2
    from markupsafe import Markup
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

# --- What the page shows ----------------------------------------------------------------------

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

# --- The charts -------------------------------------------------------------------------------

# Colours: the status colours of the page, and one per attempt of a checkout.
RED, GREEN, BLUE, GREY, ORANGE = "#cf222e", "#1a7f37", "#0969da", "#57606a", "#bc4c00"
ATTEMPT_COLOURS = ("#57606a", "#0969da", "#8250df", "#1a7f37", "#bf8700", "#cf222e")
WIDTH_IN = 7.2  # inches; at matplotlib's 72 points an inch, 518 pt, scaled to the page's width
# At most this many rows (checkouts, attempts, probes) in one chart, whatever the data holds.
MAX_ROWS = 40
# matplotlib's settings for every chart: text as SVG <text> (small, selectable, and escaped by
# matplotlib's writer) rather than glyph outlines; no TeX-like $math$ in labels; ids from a
# fixed salt so the same report gives the same page.
RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "failfast",
    "text.parse_math": False,
    "font.size": 8,
    "font.sans-serif": ["DejaVu Sans"],
    "axes.titlesize": 9,
    "legend.fontsize": 7,
    "legend.frameon": False,
}
SVG_NS, XLINK_NS = "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"
# What matplotlib's SVG backend writes for the charts drawn here; anything else drops the chart.
SVG_TAGS = frozenset(
    {
        "svg",
        "title",
        "g",
        "defs",
        "style",
        "path",
        "use",
        "clipPath",
        "pattern",
        "rect",
        "text",
        "tspan",
    }
)
SVG_ATTRIBUTES = frozenset(
    {
        "id",
        "d",
        "x",
        "y",
        "width",
        "height",
        "viewBox",
        "version",
        "style",
        "transform",
        "clip-path",
        "fill",
        "patternUnits",
        "href",
        "type",
        "role",
        "aria-label",
        "class",
    }
)
_URL = re.compile(r"url\(\s*#([^)\s]*)\s*\)")


class UnsafeSvg(ValueError):
    """A chart's SVG holds something a report page must not carry: it is left out."""


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart of a check: the inline SVG, a title, and what a learner should see in it."""

    svg: Markup
    title: str
    caption: str


@dataclass(frozen=True, slots=True)
class ClassEntry:
    """One submission on the class page: its name, its report, and a link to its own page."""

    submission: str
    report: Report
    href: str | None = None


def _num(value: object) -> float | None:
    """A finite number from a check's data, or None (the data of an old or odd report)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _nums(value: object) -> list[float] | None:
    """A list of finite numbers, or None if it is not one."""
    if not isinstance(value, list | tuple):
        return None
    found = [_num(v) for v in value]
    return None if any(v is None for v in found) else [v for v in found if v is not None]


@contextlib.contextmanager
def _drawing(width: float, height: float, panels: int = 1) -> Iterator[tuple[Figure, list[Axes]]]:
    """A figure of ``panels`` plots, one above the other on one x axis.

    Under the charts' settings, which apply as text is created: the drawing happens inside.
    """
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(width, height), layout="constrained")
        plots = [figure.add_subplot(panels, 1, 1)]
        plots += [figure.add_subplot(panels, 1, n, sharex=plots[0]) for n in range(2, panels + 1)]
        for axes in plots:
            axes.spines[["top", "right"]].set_visible(False)
            axes.set_axisbelow(True)
        yield figure, plots


def _svg(figure: Figure, key: str, title: str) -> Markup:
    """The figure as SVG for inlining, under ids of its own (``key``), titled for screen readers."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(RC):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return _inline_svg(buffer.getvalue(), key, title)


def _inline_svg(text: str, key: str, title: str) -> Markup:
    """An SVG document as an element to inline in a page, admitting only what charts use.

    Drops the metadata, prefixes every id with ``key`` (several charts share one page, and
    matplotlib names its groups alike in each), and raises :class:`UnsafeSvg` on any element
    or attribute outside the lists above, an event handler, or a reference out of the chart.
    """
    from markupsafe import Markup

    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", XLINK_NS)
    start = text.find("<svg")
    if start < 0:
        raise UnsafeSvg("no <svg> element")
    root = ET.fromstring(text[start:])
    for parent in list(root.iter()):
        for child in list(parent):
            if _local(child.tag) == "metadata":
                parent.remove(child)
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", key)
    for element in root.iter():
        if _local(element.tag) not in SVG_TAGS:
            raise UnsafeSvg(f"<{_local(element.tag)}> is not drawn by a chart")
        for name, value in list(element.attrib.items()):
            local = _local(name)
            if local not in SVG_ATTRIBUTES or local.lower().startswith("on"):
                raise UnsafeSvg(f"attribute {local!r} is not drawn by a chart")
            if local == "href":
                if not value.startswith("#"):
                    raise UnsafeSvg("a reference out of the chart")
                element.set(name, f"#{prefix}-{value[1:]}")
            elif local == "id":
                element.set(name, f"{prefix}-{value}")
            else:
                element.set(name, _local_urls(value, prefix))
        if _local(element.tag) == "style" and element.text:
            element.text = _local_urls(element.text, prefix)
            if "@" in element.text or "\\" in element.text:
                raise UnsafeSvg("a style sheet with at-rules or escapes")
    label = ET.Element(f"{{{SVG_NS}}}title")
    label.text = title
    root.insert(0, label)
    root.set("role", "img")
    root.set("class", "chart-svg")
    return Markup(ET.tostring(root, encoding="unicode"))


def _local(name: str) -> str:
    """An element's or attribute's name without its namespace."""
    return name.rsplit("}", 1)[-1]


def _local_urls(value: str, prefix: str) -> str:
    """``url(#id)`` references renamed to the prefixed ids; any other ``url(`` is refused."""
    renamed = _URL.sub(lambda m: f"url(#{prefix}-{m.group(1)})", value)
    if "url(" in _URL.sub("", renamed).replace(" ", ""):
        raise UnsafeSvg("a url() out of the chart")
    return renamed


class _Once:
    """Legend labels, each given once however many marks draw it (the rest get none)."""

    def __init__(self) -> None:
        self.shown: set[str] = set()

    def __call__(self, label: str) -> str:
        if label in self.shown:
            return "_nolegend_"  # matplotlib's "not in the legend"
        self.shown.add(label)
        return label


def _legend_below(figure: Figure, axes: Axes, columns: int = 3) -> None:
    """The legend under the plot, where it covers nothing."""
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=columns)


def _integer_ticks(axes: Axes) -> None:
    """Counts on the y axis: no 1.5 attempts."""
    from matplotlib.ticker import MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def _plain_log_ticks(axes: Axes) -> None:
    """A log axis labelled 1, 10, 100, 1,000: matplotlib's own labels are TeX-like math."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.{_decimals(value)}f}"))
    axes.yaxis.set_minor_formatter(NullFormatter())


def _decimals(value: float) -> int:
    """Decimals to show a tick of a log axis exactly: 0.1 has one, 10 none."""
    return 0 if value >= 1 else min(3, math.ceil(-math.log10(value)))


def _seconds_axis(axes: Axes, what: str) -> None:
    axes.set_xlabel(f"{what} (s)")
    axes.grid(axis="x", color="#e5e5e5", linewidth=0.6)


# Each drawer reads one shape of data and returns the figure, or None when the data lacks it.
Drawer = Callable[[Mapping[str, Any]], "Figure | None"]


def _attempt_rows(data: Mapping[str, Any]) -> list[tuple[float, float | None, str]] | None:
    """(arrival, end or None while open, outcome) of each attempt, in seconds, or None."""
    attempts = data.get("attempts")
    if not isinstance(attempts, list) or not all(isinstance(a, Mapping) for a in attempts):
        return None
    rows = []
    for attempt in attempts[:MAX_ROWS]:
        start = _num(attempt.get("arrived_after_s"))
        if start is None:
            return None
        end = _num(attempt.get("ended_after_s"))
        abandoned = _num(attempt.get("abandoned_after_s"))
        if end is None and abandoned is not None:
            end = start + abandoned  # reports from before ended_after_s existed
        rows.append((start, end, str(attempt.get("outcome", ""))))
    return rows


def _checkout_timeline(data: Mapping[str, Any]) -> Figure | None:
    """The checkout's answer and each provider attempt, against the read timeout and budget."""
    rows = _attempt_rows(data)
    api = _num(data.get("api_budget_s"))
    elapsed = _num(data.get("elapsed_s"))
    if rows is None or api is None or elapsed is None:
        return None
    read = _num(data.get("read_timeout_s"))
    tolerance = _num(data.get("answer_tolerance_s")) or 0.0
    status = data.get("status")
    ends = [end for _, end, _ in rows if end is not None]
    marks = [start + read for start, _, _ in rows] if read is not None else []
    horizon = 1.08 * max([api + tolerance, elapsed, *ends, *marks])
    with _drawing(WIDTH_IN, 1.5 + 0.32 * (len(rows) + 1)) as (figure, [axes]):
        once = _Once()
        answered = isinstance(status, int) and not isinstance(status, bool)
        answer = f"{'answered ' + str(status) if answered else 'no answer'} after {elapsed:.2f} s"
        axes.barh(
            0,
            elapsed,
            height=0.6,
            color="#24292f" if answered else "none",
            edgecolor="#24292f",
            hatch=None if answered else "////",
            label=f"the checkout: {answer}",
        )
        labels = {
            "client_gave_up": ("attempt, until your API gave up on it", ORANGE),
            "in_progress": ("attempt, still open when the grader stopped looking", RED),
        }
        for row, (start, end, outcome) in enumerate(rows, 1):
            label, colour = labels.get(outcome, ("attempt, until the provider answered", GREY))
            open_ = end is None
            axes.barh(
                row,
                (horizon if end is None else end) - start,
                left=start,
                height=0.6,
                color="none" if open_ else colour,
                edgecolor=colour,
                hatch="////" if open_ else None,
                label=once(label),
            )
            if read is not None:
                axes.vlines(
                    start + read,
                    row - 0.45,
                    row + 0.45,
                    colors=BLUE,
                    linestyles="dashed",
                    linewidth=1.5,
                    label=once(f"read timeout: {read:g} s after the attempt arrived"),
                )
        axes.axvline(api, color=RED, linewidth=1.5, label=f"api budget: {api:g} s")
        if tolerance:
            axes.axvspan(
                api, api + tolerance, color=RED, alpha=0.08, label=f"tolerance: +{tolerance:g} s"
            )
        axes.set_yticks(
            range(len(rows) + 1), ["checkout", *(f"attempt {n}" for n in range(1, len(rows) + 1))]
        )
        axes.set_ylim(len(rows) + 0.6, -0.6)
        axes.set_xlim(0, horizon)
        _seconds_axis(axes, "time since the grader sent the checkout")
        _legend_below(figure, axes, 2)
        return figure


def _connect_timeline(data: Mapping[str, Any]) -> Figure | None:
    """How long the checkout took while connects hung, against the connect bound and budget."""
    api, elapsed = _num(data.get("api_budget_s")), _num(data.get("elapsed_s"))
    connect = _num(data.get("connect_timeout_s"))
    if api is None or elapsed is None or connect is None:
        return None
    bound = _num(data.get("connect_bound_s"))
    tolerance = _num(data.get("answer_tolerance_s")) or 0.0
    status = data.get("status")
    answered = isinstance(status, int) and not isinstance(status, bool)
    horizon = 1.08 * max(api + tolerance, elapsed, bound or 0.0)
    with _drawing(WIDTH_IN, 1.9) as (figure, [axes]):
        axes.barh(
            0,
            elapsed,
            height=0.5,
            color="#24292f" if answered else "none",
            edgecolor="#24292f",
            hatch=None if answered else "////",
            label=f"the checkout: answered {status} after {elapsed:.2f} s"
            if answered
            else f"the checkout: no answer after {elapsed:.2f} s",
        )
        attempts = _num(data.get("max_attempts"))
        if bound is not None:
            axes.axvline(
                bound,
                color=BLUE,
                linestyle="dashed",
                linewidth=1.5,
                label=f"{attempts or 1:g} attempts given up at the {connect:g} s connect "
                f"timeout, plus the declared waits: {bound:g} s",
            )
        axes.axvline(api, color=RED, linewidth=1.5, label=f"api budget: {api:g} s")
        axes.set_yticks([0], ["checkout"])
        axes.set_ylim(0.6, -0.6)
        axes.set_xlim(0, horizon)
        _seconds_axis(axes, "time since the grader sent the checkout")
        _legend_below(figure, axes, 1)
        return figure


def _probes(data: Mapping[str, Any]) -> Figure | None:
    """Each /healthz probe's latency while checkouts were stuck, against the limit."""
    latencies, limit = _nums(data.get("latencies_ms")), _num(data.get("limit_ms"))
    if not latencies or limit is None:
        return None
    latencies = latencies[:MAX_ROWS]
    with _drawing(WIDTH_IN, 2.4) as (figure, [axes]):
        probes = range(1, len(latencies) + 1)
        colours = [GREEN if v <= limit else RED for v in latencies]
        axes.bar(probes, latencies, color=colours, label="one /healthz probe")
        axes.axhline(limit, color=RED, linewidth=1.5, label=f"limit: {limit:g} ms")
        axes.set_xticks(list(probes))
        axes.set_xlabel("probe, one every 50 ms while checkouts were stuck")
        axes.set_ylabel("latency (ms)")
        axes.set_ylim(0, 1.15 * max(limit, *latencies))
        axes.grid(axis="y", color="#e5e5e5", linewidth=0.6)
        _legend_below(figure, axes, 2)
        return figure


def _attempt_counts(data: Mapping[str, Any]) -> Figure | None:
    """Provider attempts of each persistently failing checkout, against 2 to max_attempts."""
    counts, most = _nums(data.get("attempts")), _num(data.get("max_attempts"))
    if not counts or most is None:
        return None
    counts = counts[:MAX_ROWS]
    with _drawing(WIDTH_IN, 2.3) as (figure, [axes]):
        checkouts = range(1, len(counts) + 1)
        axes.axhspan(1.5, most + 0.5, color=GREEN, alpha=0.12, label=f"2 to {most:g} attempts")
        colours = [GREEN if 2 <= c <= most else RED for c in counts]
        axes.bar(checkouts, counts, width=0.5, color=colours, label="one checkout's attempts")
        axes.set_xticks(list(checkouts), [f"#{n}" for n in checkouts])
        axes.set_xlabel("checkout (the provider failed every attempt)")
        axes.set_ylabel("provider attempts (count)")
        axes.set_ylim(0, max(most, *counts) + 1)
        _integer_ticks(axes)
        _legend_below(figure, axes, 2)
        return figure


def _storm(data: Mapping[str, Any]) -> Figure | None:
    """The storm: each checkout's attempts on one time axis, over the declared windows."""
    rows, bounds = data.get("storm_attempts_ms"), data.get("declared_bounds_ms")
    if not isinstance(rows, list) or not rows or not isinstance(bounds, list):
        return None
    windows = [_nums(b) for b in bounds]
    if any(w is None or len(w) != 2 for w in windows):
        return None
    spans: list[list[tuple[float, float]]] = []
    for row in rows[:MAX_ROWS]:
        pairs = [_nums(p) for p in row] if isinstance(row, list) else [None]
        if any(p is None or len(p) != 2 for p in pairs):
            return None
        spans.append([(p[0], p[1]) for p in pairs if p is not None])
    with _drawing(WIDTH_IN, 1.4 + 0.2 * len(spans)) as (figure, [axes]):
        # A thin line joins each checkout's attempts; then, attempt by attempt (one call
        # for every row, so the SVG stays small): where that retry was declared to come,
        # shaded from the end of the attempt before it, and when it came.
        joined = [(y, a[0][0], a[-1][0]) for y, a in enumerate(spans) if len(a) > 1]
        if joined:
            ys, starts, ends = zip(*joined, strict=True)
            axes.hlines(ys, starts, ends, colors="#d0d7de", linewidth=0.8, zorder=1)
        for n in range(max(len(a) for a in spans)):
            colour = ATTEMPT_COLOURS[n % len(ATTEMPT_COLOURS)]
            made = [(y, a) for y, a in enumerate(spans) if len(a) > n]
            ys = tuple(y for y, _ in made)
            if 0 < n <= len(windows):
                low, high = windows[n - 1] or (0.0, 0.0)
                axes.barh(
                    ys,
                    [high - low] * len(made),
                    left=[a[n - 1][1] + low for _, a in made],
                    height=0.7,
                    color=colour,
                    alpha=0.16,
                    label=f"retry {n}'s declared window: {low:g}-{high:g} ms after attempt {n}",
                )
            arrivals = [a[n][0] for _, a in made]
            axes.hlines(
                ys, arrivals, [max(a[n]) for _, a in made], colors=colour, linewidth=2, zorder=2
            )
            axes.scatter(
                arrivals,
                ys,
                s=14,
                color=colour,
                zorder=3,
                label="first attempt (failed)" if n == 0 else f"retry {n}",
            )
        axes.set_yticks(range(len(spans)), [f"#{n}" for n in range(1, len(spans) + 1)])
        axes.set_ylim(len(spans) - 0.4, -0.6)
        axes.set_ylabel("checkout")
        axes.set_xlabel("time since the storm's first attempt (ms)")
        axes.grid(axis="x", color="#e5e5e5", linewidth=0.6)
        _legend_below(figure, axes, 2)
        return figure


def _outage(data: Mapping[str, Any]) -> Figure | None:
    """Provider attempts of each checkout over the outage, and their mean, against 1 + ratio.

    Above, each checkout; below, the mean so far, on a scale where 1.1 and 1.15 part.
    """
    counts, ratio = _nums(data.get("attempts_per_checkout")), _num(data.get("ratio"))
    limit = _num(data.get("limit"))
    if not counts or ratio is None or limit is None:
        return None
    warmup = _nums(data.get("warmup_attempts")) or []
    burst = _num(data.get("burst"))
    first = len(warmup) + 1
    xs = range(first, first + len(counts))
    running = [sum(counts[: n + 1]) / (n + 1) for n in range(len(counts))]
    with _drawing(WIDTH_IN, 3.9, panels=2) as (figure, [each, mean]):
        if warmup:
            for axes in (each, mean):
                axes.axvspan(
                    0.5,
                    len(warmup) + 0.5,
                    color=GREY,
                    alpha=0.12,
                    label="_nolegend_"
                    if axes is mean
                    else "warm-up: spends the burst"
                    + (f" of {burst:g} tokens" if burst is not None else ""),
                )
            each.scatter(range(1, first), warmup, s=6, color=GREY)
        each.scatter(xs, counts, s=6, color=BLUE, label="one checkout's provider attempts")
        each.set_ylim(0, max(limit, *counts, *warmup) + 0.5)
        each.set_ylabel("attempts (count)")
        _integer_ticks(each)
        mean.plot(xs, running, color="#24292f", linewidth=1.5, label="mean attempts so far")
        mean.axhline(
            1 + ratio,
            color=GREEN,
            linestyle="dashed",
            linewidth=1.2,
            label=f"1 + ratio = {1 + ratio:g}",
        )
        mean.axhline(limit, color=RED, linewidth=1.2, label=f"limit, with slack: {limit:g}")
        top = max(limit, *running)
        mean.set_ylim(min(1.0, *running) - 0.05, top + 0.1 * max(top - 1, 0.5))
        mean.set_ylabel("mean so far (count)")
        mean.set_xlim(0, first + len(counts))
        mean.set_xlabel("checkout, in the order the provider saw them during the outage")
        for axes in (each, mean):
            axes.grid(axis="y", color="#e5e5e5", linewidth=0.6)
        handles, labels = each.get_legend_handles_labels()
        more, more_labels = mean.get_legend_handles_labels()
        figure.legend(handles + more, labels + more_labels, loc="outside lower center", ncols=3)
        return figure


PHASE_LABELS = {
    "slow": "checkout, slow provider",
    "recovery": "checkout, recovered",
    "healthz": "/healthz, both phases",
}


def _latency(data: Mapping[str, Any]) -> Figure | None:
    """Latency percentiles per phase of the load test, against the thresholds."""
    phases, thresholds = data.get("phase_latency_ms"), data.get("phase_thresholds_ms")
    if not isinstance(phases, Mapping) or not phases:
        return None
    thresholds = thresholds if isinstance(thresholds, Mapping) else {}
    names = ("p50", "p90", "p95", "p99")
    shades = ("#a5d6ff", "#54aeff", "#0969da", "#0a3069")
    with _drawing(WIDTH_IN, 2.9) as (figure, [axes]):
        groups = [p for p in phases if isinstance(phases[p], Mapping)][:MAX_ROWS]
        values: list[float] = []
        for x, phase in enumerate(groups):
            for n, name in enumerate(names):
                value = _num(phases[phase].get(name))
                if value is None:
                    continue
                values.append(value)
                axes.bar(
                    x + (n - 1.5) * 0.2,
                    max(value, 0.1),  # a log axis has no 0; 0.1 ms draws as nothing
                    width=0.19,
                    color=shades[n],
                    label=name if x == 0 else "_nolegend_",
                )
            limits = thresholds.get(phase)
            for name, limit in limits.items() if isinstance(limits, Mapping) else ():
                bound = _num(limit)
                if bound is None:
                    continue
                values.append(bound)
                axes.hlines(bound, x - 0.45, x + 0.45, colors=RED, linewidth=2)
                axes.annotate(
                    f"{name} < {bound:,.0f} ms",
                    (x, bound),
                    textcoords="offset points",
                    xytext=(0, 3),
                    ha="center",
                    color=RED,
                )
        if not values:
            return None
        axes.plot([], [], color=RED, linewidth=2, label="threshold")
        axes.set_yscale("log")
        _plain_log_ticks(axes)
        axes.set_ylim(max(0.5, min(values) / 3), max(values) * 4)
        axes.set_xticks(range(len(groups)), [PHASE_LABELS.get(str(p), str(p)) for p in groups])
        axes.set_ylabel("latency (ms, log scale)")
        axes.grid(axis="y", color="#e5e5e5", linewidth=0.6)
        _legend_below(figure, axes, 5)
        return figure


# In order: the first drawer whose data a check has draws its chart. (title, default caption).
DRAWERS: tuple[tuple[Drawer, str, str], ...] = (
    (
        _storm,
        "Attempts of each checkout of the storm, on one time axis",
        "Each row is one checkout of a storm that failed all at once: the retry dots should "
        "scatter inside their shaded declared windows, not line up in one column.",
    ),
    (
        _latency,
        "Latency percentiles per phase of the load test, against the thresholds",
        "Each phase's thresholded percentile should stay under its red mark: while the provider "
        "hangs, checkout fails fast within the api budget.",
    ),
    (
        _outage,
        "Provider attempts per checkout over a sustained outage",
        "Once the warm-up has spent the burst, most checkouts should get one attempt, and the "
        "running mean should stay under the 1 + ratio line.",
    ),
    (
        _checkout_timeline,
        "The checkout and its provider attempts, against the api budget",
        "Each bar is a provider attempt of the checkout; the checkout's answer should come "
        "before the red api-budget line.",
    ),
    (
        _connect_timeline,
        "The checkout while every connect hung",
        "The checkout's bar should end before the dashed line (each attempt given up at the "
        "connect timeout) and well before the red api budget.",
    ),
    (
        _probes,
        "/healthz latency while checkouts were stuck",
        "Each bar is one /healthz probe sent while checkouts were stuck on the slow provider: "
        "all should stay far below the limit line.",
    ),
    (
        _attempt_counts,
        "Provider attempts per checkout under a persistent failure",
        "Each bar is one checkout whose provider kept failing: it should end in the green band, "
        "retried at least once and never past max_attempts.",
    ),
)
# Where a check's chart says more than its kind's default caption.
CAPTIONS = {
    "m2.read-timeout": "The first attempt should end at its dashed read-timeout mark, and the "
    "checkout's answer come before the red api-budget line.",
    "m2.slow-body": "A byte every 100 ms never trips the dashed read timeout: only an overall "
    "deadline cuts the attempt, and the checkout should answer before the red api-budget line.",
    "m3.retries-fit-budget": "Every attempt failed slowly: retrying should stop in time for the "
    "checkout to answer before the red api-budget line.",
    "m3.backoff-grows": "Each shaded window is where a retry was declared to come: the second "
    "retries' windows reach further, and their dots should sit further right on average.",
}


def chart_for(result: CheckResult, key: str | None = None) -> Chart | None:
    """The chart of a check, drawn from its ``data`` alone; None when it has nothing to draw.

    A report must always be written: data a drawer cannot read draws no chart, and neither
    does SVG that :func:`_inline_svg` refuses.
    """
    for drawer, title, caption in DRAWERS:
        try:
            figure = drawer(result.data)
            if figure is None:
                continue
            svg = _svg(figure, key or result.id, title)
        except (TypeError, ValueError, KeyError, ET.ParseError):
            return None
        return Chart(svg, title, CAPTIONS.get(result.id, caption))
    return None


# --- The pages --------------------------------------------------------------------------------


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates of grader/formats/templates, HTML-escaping every value they print."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("grader.formats", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _text(text: str, limit: int = TEXT_LIMIT) -> str:
    """Untrusted text, line by line without control characters, bounded; escaped by Jinja2."""
    lines = [sanitize(line, LINE_LIMIT * 4) for line in text.split("\n")]
    joined = "\n".join(lines)
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def _check_view(result: CheckResult) -> dict[str, Any]:
    chart = chart_for(result)
    return {
        "id": result.id,
        "anchor": "check-" + re.sub(r"[^a-z0-9-]", "-", result.id),
        "title": _text(result.title),
        "status": result.status.value,
        "css": STATUS_CLASS[result.status],
        "summary": _text(result.summary),
        "evidence": [(label, _text(text)) for label, text in result.evidence_parts()],
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


class HtmlFormat:
    """One self-contained HTML page: a section per milestone, every check with its chart."""

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
            "repo": _text(report.repo),
            "started_at": report.started_at,
            "duration": f"{report.duration_s:.1f} s",
            "backend": report.backend,
            "budget": _text(report.budgets.note) if report.budgets else "",
            "notes": [_text(n) for n in report.notes],
            "interrupted": report.interrupted,
            "sections": sections if problem is None else [],
            "problem": None
            if problem is None
            else {
                "message": _text(problem.message),
                "details": [sanitize(line, LINE_LIMIT) for line in problem.details],
            },
            "version": __version__,
        }
        return _environment().get_template("report.html").render(page=page)


# --- The class page ---------------------------------------------------------------------------

SCORE_BINS = 10  # the score histogram's bars: 0-10 %, ..., 90-100 %


def safe_href(href: str | None) -> str | None:
    """A link the class page may carry: relative, or http(s); never javascript: or data:."""
    if not href or any(ord(c) <= 0x20 or c in "\\\x7f" for c in href):
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


def _pass_rate_chart(rates: Sequence[tuple[str, float, int]]) -> Chart | None:
    if not rates:
        return None
    rates = rates[: MAX_ROWS * 2]
    title = "Share of submissions that passed each check"
    with _drawing(WIDTH_IN, 1.0 + 0.19 * len(rates)) as (figure, [axes]):
        shares = [100 * rate for _, rate, _ in rates]
        colours = [GREEN if s >= 80 else ORANGE if s >= 50 else RED for s in shares]
        axes.barh(range(len(rates)), shares, color=colours, height=0.7)
        axes.set_yticks(range(len(rates)), [sanitize(check, 60) for check, _, _ in rates])
        axes.set_ylim(len(rates) - 0.4, -0.6)
        axes.set_xlim(0, 100)
        axes.set_xlabel("submissions that passed the check (%)")
        axes.grid(axis="x", color="#e5e5e5", linewidth=0.6)
        svg = _svg(figure, "class-pass-rate", title)
    return Chart(
        svg,
        title,
        "Short bars are the checks most of the class fails: where teaching, or the hints, "
        "should help next.",
    )


def _score_chart(scores: Sequence[float]) -> Chart | None:
    if not scores:
        return None
    title = "Distribution of scores"
    bins = [0] * SCORE_BINS
    for score in scores:
        bins[min(SCORE_BINS - 1, int(score * SCORE_BINS))] += 1
    with _drawing(WIDTH_IN, 2.3) as (figure, [axes]):
        width = 100 / SCORE_BINS
        lefts = [n * width for n in range(SCORE_BINS)]
        axes.bar(lefts, bins, width=width * 0.9, align="edge", color=BLUE)
        axes.set_xticks([*lefts, 100])
        axes.set_xlim(0, 100)
        axes.set_xlabel("score: checks passed of checks graded (%)")
        axes.set_ylabel("submissions (count)")
        _integer_ticks(axes)
        axes.grid(axis="y", color="#e5e5e5", linewidth=0.6)
        svg = _svg(figure, "class-scores", title)
    return Chart(
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
                "submission": _text(entry.submission, 300),
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
                "problem": _text(report.not_graded.message, 300) if report.not_graded else "",
                "statuses": [
                    (r.id, r.status.value, STATUS_CLASS[r.status]) for r in report.results
                ],
            }
        )
    page = {
        "title": _text(title, 300),
        "submissions": len(entries),
        "graded": len(scores),
        "all_passed": sum(1 for e in entries if e.report.exit_code is ExitCode.PASSED),
        "median": _median_percent([e.report for e in entries]),
        "charts": [c for c in (_pass_rate_chart(rates), _score_chart(scores)) if c is not None],
        "rows": rows,
        "version": __version__,
    }
    return _environment().get_template("class.html").render(page=page)
