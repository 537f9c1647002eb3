"""The chart of a check: one drawer per kind of :mod:`grader.series`, a title, and a caption.

A check's chart is drawn from its evidence's typed series (:attr:`grader.model.Evidence.chart`)
and nothing else: never from its ``data``, whose keys no type holds to. A series with a number
that is not finite, or too little to draw, draws no chart; the page is written all the same.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from grader.formats.html.drawing import (
    ATTEMPT_COLOURS,
    BLUE,
    GREEN,
    GREY,
    MAX_ROWS,
    ORANGE,
    RED,
    WIDTH_IN,
    DrawnChart,
    Once,
    drawing,
    integer_ticks,
    legend_below,
    plain_log_ticks,
    seconds_axis,
    to_svg,
)
from grader.model import CheckResult
from grader.series import (
    AttemptCounts,
    CheckoutTimeline,
    ConnectTimeline,
    LatencyByPhase,
    OutageAttempts,
    ProbeLatencies,
    RetryStorm,
    is_finite,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

S = TypeVar("S")


def _checkout_timeline(chart: CheckoutTimeline) -> Figure | None:
    """The checkout's answer and each provider attempt, against the read timeout and budget."""
    rows = [(a.arrived_after_s, a.ended_after_s, a.outcome) for a in chart.attempts[:MAX_ROWS]]
    api, elapsed, read = chart.api_budget_s, chart.elapsed_s, chart.read_timeout_s
    tolerance, status = chart.answer_tolerance_s, chart.status
    ends = [end for _, end, _ in rows if end is not None]
    marks = [start + read for start, _, _ in rows] if read is not None else []
    horizon = 1.08 * max([api + tolerance, elapsed, *ends, *marks])
    with drawing(WIDTH_IN, 1.5 + 0.32 * (len(rows) + 1)) as (figure, [axes]):
        once = Once()
        answered = status is not None
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
        seconds_axis(axes, "time since the grader sent the checkout")
        legend_below(figure, axes, 2)
        return figure


def _connect_timeline(chart: ConnectTimeline) -> Figure | None:
    """How long the checkout took while connects hung, against the connect bound and budget."""
    api, elapsed, connect = chart.api_budget_s, chart.elapsed_s, chart.connect_timeout_s
    bound, tolerance, status = chart.connect_bound_s, chart.answer_tolerance_s, chart.status
    answered = status is not None
    horizon = 1.08 * max(api + tolerance, elapsed, bound or 0.0)
    with drawing(WIDTH_IN, 1.9) as (figure, [axes]):
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
        if bound is not None:
            axes.axvline(
                bound,
                color=BLUE,
                linestyle="dashed",
                linewidth=1.5,
                label=f"{chart.max_attempts or 1:g} attempts given up at the {connect:g} s "
                f"connect timeout, plus the declared waits: {bound:g} s",
            )
        axes.axvline(api, color=RED, linewidth=1.5, label=f"api budget: {api:g} s")
        axes.set_yticks([0], ["checkout"])
        axes.set_ylim(0.6, -0.6)
        axes.set_xlim(0, horizon)
        seconds_axis(axes, "time since the grader sent the checkout")
        legend_below(figure, axes, 1)
        return figure


def _probes(chart: ProbeLatencies) -> Figure | None:
    """Each /healthz probe's latency while checkouts were stuck, against the limit."""
    latencies, limit = list(chart.latencies_ms[:MAX_ROWS]), chart.limit_ms
    if not latencies:
        return None
    with drawing(WIDTH_IN, 2.4) as (figure, [axes]):
        probes = range(1, len(latencies) + 1)
        colours = [GREEN if v <= limit else RED for v in latencies]
        axes.bar(probes, latencies, color=colours, label="one /healthz probe")
        axes.axhline(limit, color=RED, linewidth=1.5, label=f"limit: {limit:g} ms")
        axes.set_xticks(list(probes))
        axes.set_xlabel("probe, one every 50 ms while checkouts were stuck")
        axes.set_ylabel("latency (ms)")
        axes.set_ylim(0, 1.15 * max(limit, *latencies))
        axes.grid(axis="y", color="#e5e5e5", linewidth=0.6)
        legend_below(figure, axes, 2)
        return figure


def _attempt_counts(chart: AttemptCounts) -> Figure | None:
    """Provider attempts of each persistently failing checkout, against 2 to max_attempts."""
    counts, most = list(chart.attempts[:MAX_ROWS]), chart.max_attempts
    if not counts:
        return None
    with drawing(WIDTH_IN, 2.3) as (figure, [axes]):
        checkouts = range(1, len(counts) + 1)
        axes.axhspan(1.5, most + 0.5, color=GREEN, alpha=0.12, label=f"2 to {most:g} attempts")
        colours = [GREEN if 2 <= c <= most else RED for c in counts]
        axes.bar(checkouts, counts, width=0.5, color=colours, label="one checkout's attempts")
        axes.set_xticks(list(checkouts), [f"#{n}" for n in checkouts])
        axes.set_xlabel("checkout (the provider failed every attempt)")
        axes.set_ylabel("provider attempts (count)")
        axes.set_ylim(0, max(most, *counts) + 1)
        integer_ticks(axes)
        legend_below(figure, axes, 2)
        return figure


def _storm(chart: RetryStorm) -> Figure | None:
    """The storm: each checkout's attempts on one time axis, over the declared windows."""
    windows = chart.windows_ms
    spans = [list(checkout) for checkout in chart.checkouts[:MAX_ROWS]]
    if not spans or not any(spans):
        return None
    with drawing(WIDTH_IN, 1.4 + 0.2 * len(spans)) as (figure, [axes]):
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
            rows = tuple(y for y, _ in made)
            if 0 < n <= len(windows):
                low, high = windows[n - 1]
                axes.barh(
                    rows,
                    [high - low] * len(made),
                    left=[a[n - 1][1] + low for _, a in made],
                    height=0.7,
                    color=colour,
                    alpha=0.16,
                    label=f"retry {n}'s declared window: {low:g}-{high:g} ms after attempt {n}",
                )
            arrivals = [a[n][0] for _, a in made]
            axes.hlines(
                rows, arrivals, [max(a[n]) for _, a in made], colors=colour, linewidth=2, zorder=2
            )
            axes.scatter(
                arrivals,
                rows,
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
        legend_below(figure, axes, 2)
        return figure


def _outage(chart: OutageAttempts) -> Figure | None:
    """Provider attempts of each checkout over the outage, and their mean, against 1 + ratio.

    Above, each checkout; below, the mean so far, on a scale where 1.1 and 1.15 part.
    """
    counts, ratio, limit = list(chart.attempts), chart.ratio, chart.limit
    if not counts:
        return None
    warmup, burst = list(chart.warmup), chart.burst
    first = len(warmup) + 1
    xs = range(first, first + len(counts))
    running = [sum(counts[: n + 1]) / (n + 1) for n in range(len(counts))]
    with drawing(WIDTH_IN, 3.9, panels=2) as (figure, [each, mean]):
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
        integer_ticks(each)
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


def _latency(chart: LatencyByPhase) -> Figure | None:
    """Latency percentiles per phase of the load test, against the thresholds."""
    groups = chart.phases[:MAX_ROWS]
    if not groups:
        return None
    shades = ("#a5d6ff", "#54aeff", "#0969da", "#0a3069")
    with drawing(WIDTH_IN, 2.9) as (figure, [axes]):
        values: list[float] = []
        for x, phase in enumerate(groups):
            for n, (name, value) in enumerate(phase.percentiles()):
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
            for threshold in phase.thresholds:
                bound = threshold.limit_ms
                values.append(bound)
                axes.hlines(bound, x - 0.45, x + 0.45, colors=RED, linewidth=2)
                axes.annotate(
                    f"{threshold.percentile} < {bound:,.0f} ms",
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
        plain_log_ticks(axes)
        axes.set_ylim(max(0.5, min(values) / 3), max(values) * 4)
        axes.set_xticks(range(len(groups)), [PHASE_LABELS.get(p.phase, p.phase) for p in groups])
        axes.set_ylabel("latency (ms, log scale)")
        axes.grid(axis="y", color="#e5e5e5", linewidth=0.6)
        legend_below(figure, axes, 5)
        return figure


@dataclass(frozen=True, slots=True)
class Kind(Generic[S]):
    """How one kind of series is drawn: its drawer, the chart's title and default caption."""

    series: type[S]
    draw: Callable[[S], Figure | None]
    title: str
    caption: str


# One per class of grader.series (tests/test_series.py holds them to it).
KINDS: tuple[Kind[Any], ...] = (
    Kind(
        RetryStorm,
        _storm,
        "Attempts of each checkout of the storm, on one time axis",
        "Each row is one checkout of a storm that failed all at once: the retry dots should "
        "scatter inside their shaded declared windows, not line up in one column.",
    ),
    Kind(
        LatencyByPhase,
        _latency,
        "Latency percentiles per phase of the load test, against the thresholds",
        "Each phase's thresholded percentile should stay under its red mark: while the provider "
        "hangs, checkout fails fast within the api budget.",
    ),
    Kind(
        OutageAttempts,
        _outage,
        "Provider attempts per checkout over a sustained outage",
        "Once the warm-up has spent the burst, most checkouts should get one attempt, and the "
        "running mean should stay under the 1 + ratio line.",
    ),
    Kind(
        CheckoutTimeline,
        _checkout_timeline,
        "The checkout and its provider attempts, against the api budget",
        "Each bar is a provider attempt of the checkout; the checkout's answer should come "
        "before the red api-budget line.",
    ),
    Kind(
        ConnectTimeline,
        _connect_timeline,
        "The checkout while every connect hung",
        "The checkout's bar should end before the dashed line (each attempt given up at the "
        "connect timeout) and well before the red api budget.",
    ),
    Kind(
        ProbeLatencies,
        _probes,
        "/healthz latency while checkouts were stuck",
        "Each bar is one /healthz probe sent while checkouts were stuck on the slow provider: "
        "all should stay far below the limit line.",
    ),
    Kind(
        AttemptCounts,
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


def chart_for(result: CheckResult, key: str | None = None) -> DrawnChart | None:
    """The chart of a check, drawn from its typed series alone; None when it has none to draw.

    A report must always be written: a series with a number that is not finite, or too little
    to draw, draws no chart, and neither does SVG that :func:`inline_svg` refuses.
    """
    series = result.chart
    kind = next((k for k in KINDS if isinstance(series, k.series)), None)
    if series is None or kind is None or not is_finite(series):
        return None
    try:
        figure = kind.draw(series)
        if figure is None:
            return None
        svg = to_svg(figure, key or result.id, kind.title)
    except (TypeError, ValueError, KeyError, ET.ParseError):
        return None
    return DrawnChart(svg, kind.title, CAPTIONS.get(result.id, kind.caption))
