"""What the load test's k6 summary says, as the reports' chart and data (lt.* checks).

Latency percentiles per phase, and the upper thresholds k6 held them to, read from k6's own
summary of the grader's loadtest/checkout.js.
"""

from __future__ import annotations

import math
from typing import Any

from grader.checkkit import LatencyByPhase, Percentile, PhaseLatency, Threshold, k6

# The latency metrics of the run, per phase, and the percentiles the reports' data keeps of
# each (k6's summary names; checkout.js's summaryTrendStats asks for all of them).
PHASES = (
    ("slow", "http_req_duration{scenario:slow}"),
    ("recovery", "http_req_duration{scenario:recovery}"),
    ("healthz", "http_req_duration{scenario:health}"),
)
PERCENTILES: tuple[tuple[Percentile, str], ...] = (
    ("p50", "med"),
    ("p90", "p(90)"),
    ("p95", "p(95)"),
    ("p99", "p(99)"),
)


def latency_chart(run: k6.Run) -> LatencyByPhase:
    """Latency percentiles per phase, and the upper thresholds k6 held them to, in ms.

    As k6's own summary says, for the HTML report's chart.
    """
    phases = []
    names = {stat: name for name, stat in PERCENTILES}
    for phase, metric in PHASES:
        found = run.summary.metrics.get(metric)
        if found is None:
            continue
        values = {
            name: round(found.values[stat], 1)
            for name, stat in PERCENTILES
            if stat in found.values and math.isfinite(found.values[stat])
        }
        limits: dict[Percentile, float] = {}
        for threshold in found.thresholds:
            try:
                expression = k6.Expression.parse(threshold.expression)
            except ValueError:
                continue  # not one the grader wrote: judge() says so
            if expression.aggregate in names and expression.operator in ("<", "<="):
                limits[names[expression.aggregate]] = expression.limit
        phases.append(
            PhaseLatency(
                phase,
                p50_ms=values.get("p50"),
                p90_ms=values.get("p90"),
                p95_ms=values.get("p95"),
                p99_ms=values.get("p99"),
                thresholds=tuple(Threshold(name, limit) for name, limit in limits.items()),
            )
        )
    return LatencyByPhase(tuple(phases))


def latency_data(chart: LatencyByPhase) -> dict[str, Any]:
    """The chart as the reports' data, in ms.

    ``phase_latency_ms`` is {phase: {"p95": ms, ...}} and ``phase_thresholds_ms`` {phase:
    {"p95": limit}}.
    """
    return {
        "phase_latency_ms": {
            p.phase: {name: value for name, value in p.percentiles() if value is not None}
            for p in chart.phases
        },
        "phase_thresholds_ms": {
            p.phase: {t.percentile: t.limit_ms for t in p.thresholds}
            for p in chart.phases
            if p.thresholds
        },
    }
