"""Milestone 3: bounded retries with exponential backoff and jitter, seen from the provider.

Ids: m3.transient-heals, m3.attempts-bounded, m3.no-retry-on-decline, m3.retries-fit-budget, one
checkout at a time; then m3.jitter-spread and m3.backoff-grows, on storms of checkouts, in
checks/m3_storm.py (which sorts after this module, so milestone 3's checks register in that
order). The policy held to is the learner's `retries` section, or the course's example policy
while the table declares none.

A retry budget (milestone 4) may stand between a failure and its retry, and its state carries
over from check to check: m3.attempts-bounded and m3.retries-fit-budget each start a fresh API
instance, and size their failures to the declared budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from checks.common import (
    ANSWER_TOLERANCE_S,
    Problems,
    answer_wait_s,
    attempts_by_checkout,
    expected_fail_fast,
    fail_fast_problems,
    policy,
)
from checks.stats import charted, checkouts_per_instance, ended_at
from checks.stats import declared_bounds as declared_bounds
from checks.stats import declared_mean as declared_mean
from grader.checkkit import (
    Attempt,
    AttemptCounts,
    AttemptSpan,
    CheckFailed,
    CheckoutResult,
    CheckoutTimeline,
    Context,
    Decline,
    ErrorStatus,
    Passed,
    check,
    timeline,
)

# At most this many attempts of a checkout are kept for the reports' chart.
CHART_ATTEMPTS = 10


@check(
    "m3.transient-heals",
    "A transient 503 is retried and the checkout succeeds",
    why="Most provider failures are brief: a blip that one retry would have absorbed should not "
    "reach the customer as an error.",
    hint="Retry the provider call when it answers 5xx or 429 or the connection fails, up to the "
    "table's max_attempts, and return the retry's success.",
    timeout_s=20,
)
async def transient_heals(ctx: Context) -> Passed:
    """Fail the first attempt of a checkout with 503; expect a retry, a 200 and one charge."""
    amounts = ctx.amounts(1)
    await ctx.stack.stub.add_fault(ErrorStatus(503), amounts=amounts, first_n=1)
    result = await ctx.driver.checkout(amounts[0], timeout_s=answer_wait_s(ctx))
    attempts = (await attempts_by_checkout(ctx, amounts, 2)).get(amounts[0], [])
    charges = await ctx.stack.stub.ledger(amounts)
    measured = (
        f"checkout {result.describe()}; the provider saw {len(attempts)} attempt(s) and "
        f"committed {len(charges)} charge(s)"
    )
    expected = "200 after a second attempt, and exactly one charge"
    if result.status != 200 or len(attempts) < 2 or len(charges) != 1:
        summary = (
            "the failed attempt was not retried"
            if len(attempts) < 2
            else f"checkout {result.describe()} despite the retry"
        )
        raise CheckFailed(summary, measured=measured, expected=expected)
    return Passed("one retry absorbed the 503", measured=measured, expected=expected)


@check(
    "m3.attempts-bounded",
    "Under a persistent failure, attempts stop at max_attempts",
    why="Retrying a provider that keeps failing only adds load where it hurts most; a bound on "
    "attempts is what keeps a retry from becoming a retry storm.",
    hint="Count attempts per checkout, first included, and give up (502/503/504 with a JSON body) "
    "when max_attempts have failed.",
    timeout_s=40,
)
async def attempts_bounded(ctx: Context) -> Passed:
    """Fail every attempt with 503; expect 2 to max_attempts attempts and a quick 5xx."""
    retries, _ = policy(ctx)
    count = checkouts_per_instance(ctx.budgets.retry_budget, retries.max_attempts - 1, 3)
    api = await ctx.driver.start_api("api-attempts")
    amounts = ctx.amounts(count)
    await ctx.stack.stub.add_fault(ErrorStatus(503), amounts=amounts)
    results = await asyncio.gather(
        *(ctx.driver.checkout(a, api=api, timeout_s=answer_wait_s(ctx)) for a in amounts)
    )
    grouped = await attempts_by_checkout(ctx, amounts, count)
    return judge_attempts_bounded(ctx, results, grouped)


def judge_attempts_bounded(
    ctx: Context, results: Sequence[CheckoutResult], grouped: Mapping[int, Sequence[Attempt]]
) -> Passed:
    """m3.attempts-bounded's verdict on the checkouts and their attempts, by amount."""
    retries, source = policy(ctx)
    problems = Problems()
    for result in results:
        seen = len(grouped.get(result.amount_cents, []))
        if not 2 <= seen <= retries.max_attempts:
            problems.append(f"a checkout made {seen} attempt(s)")
        problems.merge(fail_fast_problems(ctx, result))
    counts = [len(grouped.get(r.amount_cents, [])) for r in results]
    measured = f"attempts per checkout: {counts}; " + "; ".join(r.describe() for r in results)
    expected = f"2 to {retries.max_attempts} attempts each ({source}); {expected_fail_fast(ctx)}"
    data = {"attempts": counts, "max_attempts": retries.max_attempts}
    chart = AttemptCounts(tuple(counts), retries.max_attempts)
    with charted(chart):
        problems.judge(
            "the attempts were not bounded", measured=measured, expected=expected, data=data
        )
    return Passed(
        f"each checkout stopped after {max(counts, default=0)} attempts",
        measured=measured,
        expected=expected,
        data=data,
        chart=chart,
    )


@check(
    "m3.no-retry-on-decline",
    "A decline (402) is never retried",
    why="A declined card will be declined again: retrying it wastes the provider's capacity, "
    "and some providers flag repeated declines as fraud.",
    hint="Retry only what a retry can fix (5xx, 429, timeouts, refused or reset connections); "
    "pass a 4xx from the provider back to the client (402 for a decline) after one attempt.",
    timeout_s=20,
)
async def no_retry_on_decline(ctx: Context) -> Passed:
    """Decline every attempt; expect one attempt per checkout and a 402 to the client."""
    amounts = ctx.amounts(2)
    await ctx.stack.stub.add_fault(Decline(), amounts=amounts)
    results = await asyncio.gather(
        *(ctx.driver.checkout(a, timeout_s=answer_wait_s(ctx)) for a in amounts)
    )
    await asyncio.sleep(0.3)  # a retry, if any, would arrive within its backoff: let it land
    grouped = await attempts_by_checkout(ctx, amounts, len(amounts))
    counts = [len(grouped.get(a, [])) for a in amounts]
    measured = f"attempts per checkout: {counts}; " + "; ".join(r.describe() for r in results)
    expected = "exactly 1 attempt each, and 402 to the client"
    if any(c != 1 for c in counts):
        raise CheckFailed(
            f"a declined charge was tried {max(counts)} times", measured=measured, expected=expected
        )
    if any(r.status != 402 for r in results):
        raise CheckFailed(
            "the decline did not reach the client as a 402", measured=measured, expected=expected
        )
    return Passed(
        "the decline was passed on after one attempt", measured=measured, expected=expected
    )


@check(
    "m3.retries-fit-budget",
    "Retries of a slow, failing provider stay within the api budget",
    why="max_attempts slow attempts add up: without a deadline over the whole checkout, retries "
    "turn a provider that takes 1.5 s to fail into a checkout that takes 4.5 s.",
    hint="Keep one deadline for the whole checkout (the api budget): cut the attempt in flight "
    "when it expires, and do not start a retry, or sleep, past it.",
    timeout_s=30,
)
async def retries_fit_budget(ctx: Context) -> Passed:
    """Answer every attempt 503 after 75 % of the read timeout; expect a 5xx within the budget."""
    retries, _ = policy(ctx)
    delay_s = _slow_failure_s(ctx)
    api = await ctx.driver.start_api("api-slow-failures")
    amounts = ctx.amounts(1)
    fault = ErrorStatus(503, delay_ms=int(delay_s * 1000))
    await ctx.stack.stub.add_fault(fault, amounts=amounts)
    result = await ctx.driver.checkout(
        amounts[0], api=api, timeout_s=answer_wait_s(ctx) + retries.max_attempts
    )
    attempts = (await attempts_by_checkout(ctx, amounts, 1)).get(amounts[0], [])
    return judge_retries_fit_budget(ctx, result, attempts)


def _slow_failure_s(ctx: Context) -> float:
    """How long each failing attempt takes: past the api budget in sum, not one read timeout."""
    return 0.75 * ctx.budgets.layers.read_s


def judge_retries_fit_budget(
    ctx: Context, result: CheckoutResult, attempts: Sequence[Attempt]
) -> Passed:
    """m3.retries-fit-budget's verdict on the checkout and its provider attempts."""
    retries, source = policy(ctx)
    layers = ctx.budgets.layers
    delay_s = _slow_failure_s(ctx)
    problems = fail_fast_problems(ctx, result)
    row = timeline([[a.arrived_at for a in attempts]]) if attempts else ()
    worst = retries.max_attempts * delay_s
    measured = f"checkout {result.describe()} after {len(attempts)} attempt(s) of {delay_s:g} s"
    expected = (
        expected_fail_fast(ctx) + f", although {retries.max_attempts} attempts could take "
        f"{worst:g} s ({source})"
    )
    # The attempts in seconds after the grader sent the checkout, for the HTML report's chart.
    chart = CheckoutTimeline(
        elapsed_s=round(result.elapsed_s, 3),
        status=result.status,
        attempts=tuple(
            AttemptSpan(
                round(a.arrived_at - result.started_at, 3),
                round(ended_at(a) - result.started_at, 3) if a.ended else None,
                a.outcome,
            )
            for a in attempts[:CHART_ATTEMPTS]
        ),
        api_budget_s=layers.api_s,
        answer_tolerance_s=ANSWER_TOLERANCE_S,
    )
    data = {
        "elapsed_s": chart.elapsed_s,
        "status": result.status,
        "attempts": [
            {
                "arrived_after_s": span.arrived_after_s,
                "ended_after_s": span.ended_after_s,
                "outcome": span.outcome,
            }
            for span in chart.attempts
        ],
        "attempt_delay_s": round(delay_s, 3),
        "max_attempts": retries.max_attempts,
        "api_budget_s": layers.api_s,
        "answer_tolerance_s": ANSWER_TOLERANCE_S,
    }
    with charted(chart):
        problems.judge(
            "retries overran the api budget",
            measured=measured,
            expected=expected,
            figure=row,
            data=data,
        )
    return Passed(
        f"checkout {result.describe()}: the deadline cut the retries short",
        measured=measured,
        expected=expected,
        figure=row,
        data=data,
        chart=chart,
    )
