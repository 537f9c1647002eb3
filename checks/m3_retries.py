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
    limit_for_table,
    noise_s,
    policy,
    skip_past_max_budget,
)
from checks.stats import Zone, charted, checkouts_per_instance, ended_at, zone
from checks.stats import declared_bounds as declared_bounds
from checks.stats import declared_mean as declared_mean
from grader.checkkit import (
    COURSE_RETRIES,
    Attempt,
    AttemptCounts,
    AttemptSpan,
    Budgets,
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
# m3.retries-fit-budget's slow failures: each ends at least READ_MARGIN_S before the read
# timeout would cut it (the stub's timer and the service's each wake tens of milliseconds late
# on a busy machine: checks/common.py), and max_attempts of them add up to the api budget plus
# OVERRUN_S at the least, when the read timeout leaves room: past the answer tolerance by
# 0.5 s, so a service with no deadline over its retries answers late beyond the noise.
READ_MARGIN_S = 0.5
OVERRUN_S = 1.0

# The hint when the provider saw no attempt: there was no failure to retry, or not to retry.
NO_ATTEMPT_HINT = (
    "The provider saw no attempt for this checkout: POST /checkout must call the provider's "
    "POST /charge (m2.healthy-checkout checks it) before anything can be retried."
)
# The hint when the attempts were right and the answer was not a fail-fast one.
ANSWER_HINT = (
    "Your service's attempts were what the table declares, but its answer was not: once it "
    "gives up, answer 502, 503 or 504 with a JSON body, within the api budget."
)


@check(
    "m3.transient-heals",
    "A transient 503 is retried and the checkout succeeds",
    why="Most provider failures are brief: a blip that one retry would have absorbed should not "
    "reach the customer as an error.",
    hint="Retry the provider call when it answers 5xx or 429 or the connection fails, up to the "
    "table's max_attempts, and return the retry's success.",
    timeout_s=limit_for_table(20),
)
async def transient_heals(ctx: Context) -> Passed:
    """Fail the first attempt of a checkout with 503; expect a retry, a 200 and one charge.

    The condition it claims: when the provider answers a checkout's first attempt 503 and is
    healthy after, the service retries, answers 200, and the provider commits exactly one
    charge for it.

    How it knows the condition holds while it measures: the stub answers 503 to the first
    attempt with the checkout's amount (a fresh one) and lets every later one through with a
    charge: the transient failure is the stub's rule, not a timing. Attempts and charges are
    read from the stub's journal and ledger once the checkout has answered and two attempts
    have ended (or the api budget + 0.5 s has passed).

    The hints' evidence: one attempt is a 503 not retried: the check's own hint. No attempt at
    all is a checkout that never reached the provider: the hint says so. A retry the provider
    answered 200 with a charge, and a checkout that did not answer 200, is a service that lost
    the retry's success: the hint says to return it. A 200 with more than one charge is a
    service that retried after a success: the hint says to stop at the first success.
    """
    amounts = ctx.amounts(1)
    await ctx.stack.stub.add_fault(ErrorStatus(503), amounts=amounts, first_n=1)
    result = await ctx.driver.checkout(amounts[0], timeout_s=answer_wait_s(ctx))
    attempts = (await attempts_by_checkout(ctx, amounts, 2)).get(amounts[0], [])
    charges = await ctx.stack.stub.ledger(amounts)
    return judge_transient_heals(result, attempts, len(charges))


def judge_transient_heals(
    result: CheckoutResult, attempts: Sequence[Attempt], charges: int
) -> Passed:
    """m3.transient-heals's verdict on the checkout, its attempts and the charges committed."""
    measured = (
        f"checkout {result.describe()}; the provider saw {len(attempts)} attempt(s) and "
        f"committed {charges} charge(s)"
    )
    expected = "200 after a second attempt, and exactly one charge"
    if result.status == 200 and len(attempts) >= 2 and charges == 1:
        return Passed("one retry absorbed the 503", measured=measured, expected=expected)
    summary, hint = f"checkout {result.describe()} despite the retry", None
    if not attempts:
        summary, hint = "the checkout never reached the provider", NO_ATTEMPT_HINT
    elif len(attempts) < 2:
        summary = "the failed attempt was not retried"  # the check's own hint: retry it
    elif result.status != 200 and any(a.status == 200 for a in attempts[1:]):
        hint = (
            f"Your service retried, and the provider answered the retry 200 with a charge, but "
            f"the checkout {result.describe()}: answer 200 with the retry's payment, as on the "
            f"happy path."
        )
    elif result.status == 200 and charges > 1:
        summary = f"checkout answered 200, but the provider committed {charges} charges"
        hint = (
            "Stop retrying once an attempt succeeds: each attempt the provider answers 200 is "
            "a charge, so a retry after a success charges the customer again."
        )
    raise CheckFailed(summary, measured=measured, expected=expected, hint=hint)


FEW_ATTEMPTS_HINT = (
    "A checkout made fewer than 2 attempts against a provider that answered 503 to every one: "
    "retry a 503 (and 429, timeouts, refused or reset connections) up to the table's "
    "max_attempts. A fresh instance's retry budget holds its declared burst, enough for every "
    "retry of this check; one that holds less would look the same."
)


@check(
    "m3.attempts-bounded",
    "Under a persistent failure, attempts stop at max_attempts",
    why="Retrying a provider that keeps failing only adds load where it hurts most; a bound on "
    "attempts is what keeps a retry from becoming a retry storm.",
    hint="Count attempts per checkout, first included, and give up (502/503/504 with a JSON body) "
    "when max_attempts have failed.",
    timeout_s=limit_for_table(40),
)
async def attempts_bounded(ctx: Context) -> Passed:
    """Fail every attempt with 503; expect 2 to max_attempts attempts and a quick 5xx.

    The condition it claims: against a provider that answers every attempt 503, each checkout
    makes at least 2 and at most max_attempts attempts (the table's, or the course's example
    policy), and answers 502/503/504 with a JSON body within the api budget (+0.5 s).

    How it knows the condition holds while it measures: the stub answers 503 at once to every
    attempt with the checkouts' amounts, from the first, so the failure persists for as long
    as the service retries. The checkouts (3, or fewer when the declared retry budget's burst
    cannot retry 3 in full) go at once to a fresh API instance, whose bucket is full; the
    journal is read once every attempt has ended, after the last answer.

    The hints' evidence: a checkout with more than max_attempts attempts is an unbounded count:
    the check's own hint. One with fewer than 2 made no retry (or no attempt at all): the
    hint says to retry a 503 (a retry budget holding less than its declared burst would
    look the same). Attempts within bounds with an answer late, not a 502/503/504 or not JSON:
    the hint names the answer.
    """
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
    problems, answers = Problems(), Problems()
    for result in results:
        seen = len(grouped.get(result.amount_cents, []))
        if not 2 <= seen <= retries.max_attempts:
            problems.append(f"a checkout made {seen} attempt(s)")
        answers.merge(fail_fast_problems(ctx, result))
    problems.merge(answers)  # after the counts: a FAIL's summary names the counts first
    counts = [len(grouped.get(r.amount_cents, [])) for r in results]
    measured = f"attempts per checkout: {counts}; " + "; ".join(r.describe() for r in results)
    expected = f"2 to {retries.max_attempts} attempts each ({source}); {expected_fail_fast(ctx)}"
    data = {"attempts": counts, "max_attempts": retries.max_attempts}
    chart = AttemptCounts(tuple(counts), retries.max_attempts)
    # The summary and hint follow the counts: too many (the check's own hint), too few, or
    # right, when what failed is the answer.
    failed, hint = "the attempts were not bounded", None
    if all(count <= retries.max_attempts for count in counts):
        if any(count < 2 for count in counts):
            failed, hint = "a persistent failure was not retried", FEW_ATTEMPTS_HINT
        else:
            failed, hint = "the attempts were bounded, but the answer was not", ANSWER_HINT
    with charted(chart):
        problems.judge(
            failed,
            measured=measured,
            expected=expected,
            data=data,
            hint=hint,
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
    timeout_s=limit_for_table(20),
)
async def no_retry_on_decline(ctx: Context) -> Passed:
    """Decline every attempt; expect one attempt per checkout and a 402 to the client.

    The condition it claims: when the provider declines a charge (402), the service makes
    exactly one attempt for that checkout and answers the client 402.

    How it knows the condition holds while it measures: the stub declines every attempt with
    the two checkouts' amounts, from the first, so every attempt the service makes is declined.
    The journal is read 0.3 s after both answers (a retry made after answering would land by
    then), once every attempt has ended.

    The hints' evidence: more than one attempt for a checkout is a retried decline: the
    check's own hint. No attempt is a checkout that never reached the provider, so there was no
    decline to retry: the hint says so. One attempt each and an answer other than 402 is a
    decline not passed on: the check's own hint, which says to pass it on as a 402.
    """
    amounts = ctx.amounts(2)
    await ctx.stack.stub.add_fault(Decline(), amounts=amounts)
    results = await asyncio.gather(
        *(ctx.driver.checkout(a, timeout_s=answer_wait_s(ctx)) for a in amounts)
    )
    await asyncio.sleep(0.3)  # a retry, if any, would arrive within its backoff: let it land
    grouped = await attempts_by_checkout(ctx, amounts, len(amounts))
    counts = [len(grouped.get(a, [])) for a in amounts]
    return judge_no_retry_on_decline(results, counts)


def judge_no_retry_on_decline(results: Sequence[CheckoutResult], counts: Sequence[int]) -> Passed:
    """m3.no-retry-on-decline's verdict on the checkouts and their attempts, in the same order."""
    measured = f"attempts per checkout: {list(counts)}; " + "; ".join(r.describe() for r in results)
    expected = "exactly 1 attempt each, and 402 to the client"
    if any(c > 1 for c in counts):
        raise CheckFailed(
            f"a declined charge was tried {max(counts)} times", measured=measured, expected=expected
        )
    if any(c == 0 for c in counts):
        raise CheckFailed(
            "a checkout never reached the provider, so nothing was declined",
            measured=measured,
            expected=expected,
            hint=NO_ATTEMPT_HINT,
        )
    if any(r.status != 402 for r in results):
        raise CheckFailed(
            "the decline did not reach the client as a 402", measured=measured, expected=expected
        )
    return Passed(
        "the decline was passed on after one attempt", measured=measured, expected=expected
    )


def _fit_limit_s(table: Budgets) -> float:
    """m3.retries-fit-budget's time limit: it waits max_attempts seconds more for the answer."""
    retries = table.retries or COURSE_RETRIES
    extra = max(0, retries.max_attempts - COURSE_RETRIES.max_attempts)
    return limit_for_table(30)(table) + extra


@check(
    "m3.retries-fit-budget",
    "Retries of a slow, failing provider stay within the api budget",
    why="max_attempts slow attempts add up: without a deadline over the whole checkout, retries "
    "turn a provider that takes 1.5 s to fail into a checkout that takes 4.5 s.",
    hint="Keep one deadline for the whole checkout (the api budget): cut the attempt in flight "
    "when it expires, and do not start a retry, or sleep, past it.",
    timeout_s=_fit_limit_s,
)
async def retries_fit_budget(ctx: Context) -> Passed:
    """Answer every attempt 503 just inside the read timeout; expect a 5xx within the budget.

    The condition it claims: against a provider whose every attempt fails slowly (503 after
    75 % of the read timeout, or later, up to 0.5 s before it, when max_attempts of those
    would fit the api budget: no read timeout cuts it), the checkout answers 502/503/504 with
    a JSON body within the api budget (+0.5 s), whatever max_attempts such attempts would add
    up to. Only when max_attempts of them exceed the
    budget (as for the course's table: 3 x 1.5 s against 3 s, and for any table whose read
    timeout leaves room for it) does a PASS show a deadline cutting the retries short; the
    summary says which.

    How it knows the condition holds while it measures: the stub holds every attempt with the
    checkout's amount for that long (the longer of 0.75 x the read timeout and (api budget +
    1 s) / max_attempts, the latter at most the read timeout - 0.5 s) and then answers 503,
    from the first attempt, so the provider is slow and failing for as long as the service
    retries. One checkout goes to a fresh API instance (its retry bucket full); the journal is
    read once every attempt has ended, after the answer. An api budget past 30 s is not graded
    (SKIP, saying why): a correct service may take all of it.

    The hints' evidence: an answer past the budget (or none), with the slow attempts in the
    journal, is retries and waits that add up without one deadline over the checkout: the
    check's own hint. An answer in time that is not a 502/503/504 with a JSON body: the hint
    names the answer.
    """
    skip_past_max_budget(ctx)
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
    """How long each failing attempt takes: past the api budget in sum, not one read timeout.

    0.75 x the read timeout (the course's table: 1.5 s, 3 of them against 3 s), longer when
    max_attempts of those would fit the api budget, as long as the read timeout allows.
    """
    layers = ctx.budgets.layers
    retries, _ = policy(ctx)
    overrun = (layers.api_s + OVERRUN_S) / retries.max_attempts
    return max(0.75 * layers.read_s, min(overrun, layers.read_s - READ_MARGIN_S))


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
    # Late beyond the noise, or no answer: the deadline's hint (the check's own); else the answer.
    late = result.status is None or (
        zone(result.elapsed_s, layers.api_s + ANSWER_TOLERANCE_S, noise_s(ctx)) is Zone.BEYOND
    )
    with charted(chart):
        problems.judge(
            "retries overran the api budget" if late else "the answer was not a fail-fast one",
            measured=measured,
            expected=expected,
            figure=row,
            data=data,
            hint=None if late else ANSWER_HINT,
        )
    # A PASS says a deadline cut the retries only where the journal shows one (an attempt given
    # up on): a table whose max_attempts slow failures fit the api budget needs none.
    if any(a.abandoned_after_s is not None for a in attempts):
        how = "the deadline cut the retries short"
    elif len(attempts) < retries.max_attempts:
        how = f"it stopped after {len(attempts)} of {retries.max_attempts} attempts"
    else:
        how = f"all {len(attempts)} attempts fit the api budget, with no deadline needed"
    return Passed(
        f"checkout {result.describe()}: {how}",
        measured=measured,
        expected=expected,
        figure=row,
        data=data,
        chart=chart,
    )
