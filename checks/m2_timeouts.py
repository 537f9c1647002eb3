"""Milestone 2: a budgeted client. Live checks against the learner's API and the stub.

Ids: m2.healthy-checkout, m2.read-timeout, m2.slow-body (m2.connect-timeout is in
m2_timeouts_connect.py, m2.healthz-under-load in m2_under_load.py). Each holds the service to
the learner's budget table, or to the course's (10 s, 3 s, 2 s) while it is not filled in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from checks.common import (
    ABANDON_TOLERANCE_S,
    ANSWER_TOLERANCE_S,
    Problems,
    answer_wait_s,
    expected_fail_fast,
    fail_fast_problems,
    hold_s,
    limit_for_table,
    noise_s,
    skip_past_max_budget,
)
from checks.held import ended_at
from checks.stats import Zone, charted, zone
from grader.checkkit import (
    Attempt,
    AttemptSpan,
    CheckFailed,
    CheckoutResult,
    CheckoutTimeline,
    Context,
    Delay,
    Dribble,
    Passed,
    check,
)


def _timeline(result: CheckoutResult, attempts: Sequence[Attempt]) -> str:
    """The provider attempts of one checkout, relative to when the grader sent it."""
    if not attempts:
        return "the provider saw no attempt"
    parts = []
    for n, attempt in enumerate(attempts, 1):
        start = attempt.arrived_at - result.started_at
        if attempt.abandoned_after_s is not None:
            end = f"abandoned after {attempt.abandoned_after_s:.2f} s"
        elif attempt.finished_at is not None:
            took = attempt.finished_at - attempt.arrived_at
            end = f"{attempt.outcome} ({attempt.status}) after {took:.2f} s"
        else:
            end = f"still open after {time.monotonic() - attempt.arrived_at:.2f} s"
        parts.append(f"attempt {n} at +{start:.2f} s, {end}")
    return "; ".join(parts)


def _spans(result: CheckoutResult, attempts: Sequence[Attempt]) -> tuple[AttemptSpan, ...]:
    """The attempts of one checkout, in seconds after the grader sent it, for the reports.

    ``ended_after_s`` (on the same clock as ``arrived_after_s``) is None while one is open; the
    HTML report draws each attempt as a bar between the two.
    """
    spans = []
    for a in attempts:
        ended = ended_at(a)
        spans.append(
            AttemptSpan(
                arrived_after_s=round(a.arrived_at - result.started_at, 3),
                ended_after_s=None if ended is None else round(ended - result.started_at, 3),
                outcome=a.outcome,
            )
        )
    return tuple(spans)


def _attempt_data(
    spans: Sequence[AttemptSpan], attempts: Sequence[Attempt]
) -> list[dict[str, object]]:
    """The attempts of one checkout as the reports' data: their spans, and when each was cut."""
    return [
        {
            "arrived_after_s": span.arrived_after_s,
            "outcome": span.outcome,
            "abandoned_after_s": None
            if a.abandoned_after_s is None
            else round(a.abandoned_after_s, 3),
            "ended_after_s": span.ended_after_s,
        }
        for span, a in zip(spans, attempts, strict=True)
    ]


def _verdict(
    ctx: Context,
    result: CheckoutResult,
    attempts: Sequence[Attempt],
    problems: Problems,
    expected: str,
    *,
    failed: str,
    passed: str,
    hint: str | None = None,
) -> Passed:
    """FAIL on the first of ``problems``, INCONCLUSIVE on a doubt, else PASS; with a timeline.

    ``hint`` goes with a FAIL (None: the check's own).
    """
    timeline = _timeline(result, attempts)
    layers = ctx.budgets.layers
    # The timeline, against the limits it is judged by, for the HTML report's chart.
    chart = CheckoutTimeline(
        elapsed_s=round(result.elapsed_s, 3),
        status=result.status,
        attempts=_spans(result, attempts),
        api_budget_s=layers.api_s,
        answer_tolerance_s=ANSWER_TOLERANCE_S,
        read_timeout_s=layers.read_s,
    )
    data = {
        "elapsed_s": chart.elapsed_s,
        "status": result.status,
        "attempts": _attempt_data(chart.attempts, attempts),
        "read_timeout_s": layers.read_s,
        "api_budget_s": layers.api_s,
        "answer_tolerance_s": ANSWER_TOLERANCE_S,
    }
    with charted(chart):
        problems.judge(
            failed,
            measured=f"{result.describe()}; {timeline}",
            expected=expected,
            data=data,
            hint=hint,
        )
    return Passed(
        f"checkout {result.describe()}; {passed}",
        measured=timeline,
        expected=expected,
        data=data,
        chart=chart,
    )


async def _attempts_once_over(ctx: Context, amounts: range, by: float) -> list[Attempt]:
    """The journal for ``amounts`` once every attempt has ended, or at monotonic time ``by``."""
    remaining = max(by - time.monotonic(), 0.0)
    return await ctx.stack.stub.wait_for_journal(
        amounts, arrived=1, ended=True, timeout_s=remaining
    )


@check(
    "m2.healthy-checkout",
    "Checkout succeeds when the provider is healthy",
    why="Fail-fast machinery is worthless if it breaks the happy path: every later check starts "
    "from a checkout that works.",
    hint="POST /checkout must forward amount_cents to the provider's POST /charge and answer 200 "
    'with {"status": "ok", "payment": <the provider\'s charge object>}.',
    timeout_s=limit_for_table(20),
)
async def healthy_checkout(ctx: Context) -> Passed:
    """Send one checkout to a healthy provider; expect 200, the payment, and one charge.

    The condition it claims: with the provider healthy, POST /checkout answers 200 with
    {"status": "ok", "payment": {...}} whose amount_cents is the checkout's and whose id is the
    one charge the provider's ledger holds for it.

    How it knows the condition holds while it measures: no fault rule matches the checkout's
    amount (a fresh one, no other checkout of the run uses it) and the grader's stub runs with
    no latency or failure rate, so the provider answers every attempt at once with a charge.
    The ledger is read once the checkout has answered.

    The hint's evidence: any of a status other than 200 (or no answer), a body without status
    ok and a payment object, a payment for another amount or with another id than the charge,
    or a ledger with other than one charge; the hint is the contract all of them break.
    """
    amounts = ctx.amounts(1)
    result = await ctx.driver.checkout(amounts[0], timeout_s=answer_wait_s(ctx))
    charges = await ctx.stack.stub.ledger(amounts)
    body = result.body if isinstance(result.body, dict) else {}
    payment = body.get("payment") if isinstance(body.get("payment"), dict) else None
    problems = []
    if result.status != 200:
        problems.append(f"checkout {result.describe()}")
    elif body.get("status") != "ok" or payment is None:
        problems.append(
            f"checkout answered 200 with {result.describe_body()}, not one with status ok and "
            f"a payment"
        )
    elif payment.get("amount_cents") != amounts[0]:
        problems.append(f"the payment is for {payment.get('amount_cents')}, not {amounts[0]} cents")
    if len(charges) != 1:
        problems.append(f"the provider's ledger holds {len(charges)} charges for this checkout")
    elif payment is not None and payment.get("id") != charges[0].id:
        problems.append(f"the payment id {payment.get('id')!r} is not the charge {charges[0].id!r}")
    expected = 'status 200, {"status": "ok", "payment": {...}} and exactly one charge'
    if problems:
        raise CheckFailed(
            "checkout does not work with a healthy provider",
            measured="; ".join(problems),
            expected=expected,
        )
    return Passed(
        f"checkout answered 200 with charge {charges[0].id} in {result.elapsed_s:.2f} s",
        measured=f"{result.describe()}, one charge of {amounts[0]} cents",
        expected=expected,
        data={"elapsed_s": round(result.elapsed_s, 3)},
    )


@check(
    "m2.read-timeout",
    "A provider that holds its headers is cut off at the read timeout",
    depends=("m2.healthy-checkout",),
    why="A provider that accepts the request and then says nothing is the classic hang: without "
    "a read timeout the checkout waits as long as the provider does, and so does the customer.",
    hint="Give the provider call an explicit read timeout equal to the table's "
    "payments.read_timeout_s (httpx.Timeout(connect=..., read=...)), cap the whole call with "
    "the api budget, and turn httpx.TimeoutException into a 504 with a JSON body.",
    timeout_s=limit_for_table(25),
)
async def read_timeout(ctx: Context) -> Passed:
    """Hold the provider's headers past the api budget; expect a quick 5xx and the attempt cut.

    The condition it claims: with a provider that accepts the request and holds its headers,
    the service gives up on the first attempt at the read timeout (or at the api budget, when
    that is shorter) within 0.3 s, and answers 502/503/504 with a JSON body within the api
    budget (+0.5 s).

    How it knows the condition holds while it measures: the stub holds every attempt with the
    checkout's amount before its headers for 10 s, or 1 s past the grader's wait for the answer
    (the api budget + 2.5 s) when that is longer, so the provider is holding whenever the
    service is waiting on it, retries included, whatever the table declares. When the service
    gave up, the stub saw the connection close (its journal's gave_up_at) while it was still
    holding: the cut is timed on the provider's side. An api budget past 30 s is not graded
    (SKIP, saying why): a correct service may take all of it.

    The hints' evidence: a first attempt never given up on, or given up on before or past the
    read timeout, is no read timeout of the declared length: the check's own hint. A first
    attempt cut in time followed by a late answer (or none) is not the read timeout's fault:
    the hint says what the service did after the cut (the attempts it made, held as well)
    and names one deadline over the whole checkout. A first attempt cut in time and an answer
    in time but not a 502/503/504 with a JSON body: the hint names that answer.
    """
    skip_past_max_budget(ctx)
    amounts = ctx.amounts(1)
    await ctx.stack.stub.add_fault(Delay(delay_ms=int(hold_s(ctx) * 1000)), amounts=amounts)
    result = await ctx.driver.checkout(amounts[0], timeout_s=answer_wait_s(ctx))
    cut_at = _read_cut_s(ctx)
    # Give the first attempt until just past its expected cut to end (it may still be open if
    # the grader stopped waiting for the answer first).
    attempts = await ctx.stack.stub.wait_for_journal(amounts, arrived=1, ended=False, timeout_s=1.0)
    if attempts:
        by = attempts[0].arrived_at + cut_at + ABANDON_TOLERANCE_S + 0.5
        attempts = await _attempts_once_over(ctx, amounts, by)
    return judge_read_timeout(ctx, result, attempts)


def _read_cut_s(ctx: Context) -> float:
    """When the held attempt must be cut: the read timeout, or the api budget if shorter."""
    return min(ctx.budgets.layers.read_s, ctx.budgets.layers.api_s)


def judge_read_timeout(ctx: Context, result: CheckoutResult, attempts: Sequence[Attempt]) -> Passed:
    """m2.read-timeout's verdict on the checkout and the provider attempts it measured."""
    cut_at = _read_cut_s(ctx)
    problems = fail_fast_problems(ctx, result)
    answered = len(problems), len(problems.doubts)  # the answer's problems come first
    first = attempts[0] if attempts else None
    if first is None:
        problems.append("the provider saw no attempt")
    elif first.abandoned_after_s is None:
        problems.append("the API did not give up on the held attempt")
    elif first.abandoned_after_s < cut_at - ABANDON_TOLERANCE_S:
        # Giving up early is never the machine's noise: noise only makes things late.
        problems.append(
            f"the API gave up on the first attempt after {first.abandoned_after_s:.2f} s, "
            f"before the read timeout of {cut_at:g} s"
        )
    else:
        problems.late(
            ctx,
            f"the API gave up on the first attempt (read timeout {cut_at:g} s)",
            first.abandoned_after_s,
            cut_at + ABANDON_TOLERANCE_S,
        )
    expected = (
        f"{expected_fail_fast(ctx)}; the first attempt abandoned after {cut_at:g} s "
        f"(±{ABANDON_TOLERANCE_S:g} s)"
    )
    # The cut added neither a problem nor a doubt: the read timeout worked, and whatever failed
    # the check is the answer, which the read timeout's hint would not fix.
    cut_in_time = (len(problems), len(problems.doubts)) == answered
    failed, hint = "the read timeout is not enforced", None
    if cut_in_time and answered[0] > 0:
        failed, hint = _after_the_cut(ctx, result, attempts)
    return _verdict(
        ctx,
        result,
        attempts,
        problems,
        expected,
        failed=failed,
        passed="the held attempt was cut at the read timeout",
        hint=hint,
    )


def _after_the_cut(
    ctx: Context, result: CheckoutResult, attempts: Sequence[Attempt]
) -> tuple[str, str]:
    """The summary and hint of a FAIL whose held attempt was cut in time: the answer failed."""
    api = ctx.budgets.layers.api_s
    # Late beyond the noise, as fail_fast_problems judged it (late within it is only a doubt).
    late = zone(result.elapsed_s, api + ANSWER_TOLERANCE_S, noise_s(ctx)) is Zone.BEYOND
    if result.status is None or late:
        more = len(attempts) - 1
        then = (
            f"then made {more} more attempt(s), which the provider held as well"
            if more > 0
            else "then did not answer in time"
        )
        return (
            "the read timeout cut the attempt, but the checkout overran its budget",
            f"Your service gave up on the held attempt at the read timeout, as it should, and "
            f"{then}: the read timeout bounds one attempt, not the checkout. Keep one deadline "
            f"for the whole checkout (the api budget, {api:g} s): cut the attempt in flight "
            f"when it expires, start no retry or wait past it, and answer 504 with a JSON body.",
        )
    return (
        "the read timeout cut the attempt, but the answer is not a fail-fast one",
        "Your service gave up on the held attempt at the read timeout, as it should, but did "
        "not answer 502, 503 or 504 with a JSON body: turn httpx.TimeoutException into a 504 "
        "whose body is JSON (labelled application/json).",
    )


@check(
    "m2.slow-body",
    "A provider that trickles its body cannot stretch the checkout",
    depends=("m2.healthy-checkout",),
    why="httpx's read timeout bounds each read, not the response: a provider that sends one "
    "byte every 100 ms never trips it, and holds the checkout for as long as it likes.",
    hint="Put an overall deadline around the whole provider call (e.g. `async with "
    "asyncio.timeout(remaining_budget):` around the request and reading its body), and answer "
    "504 when it expires.",
    timeout_s=limit_for_table(25),
)
async def slow_body(ctx: Context) -> Passed:
    """Send headers at once, then the body a byte every 100 ms; expect a 5xx within the budget.

    The condition it claims: with a provider that sends its 200 headers at once and then its
    body a byte every 100 ms (for 10 s, or 1 s past the grader's wait for the answer when that
    is longer), the service answers 502/503/504 with a JSON body within the api budget
    (+0.5 s), and no provider attempt is still open once the api budget and 1 s more have
    passed since the checkout was sent.

    How it knows the condition holds while it measures: the stub trickles every attempt with
    the checkout's amount from its headers for 10 s, or 1 s past the grader's wait for the
    answer (the api budget + 2.5 s) when that is longer, so the body is still trickling
    whenever the service reads it, retries included, whatever the table declares. The journal
    is read once every attempt has ended, or at that moment (the api budget + 1 s), whichever
    comes first: an attempt open then has been trickling all along. An api budget past 30 s is
    not graded (SKIP, saying why): a correct service may take all of it.

    The hints' evidence: a late answer (or none) is a service that waited on the trickle, with
    no deadline over the whole call: the check's own hint. An answer in time with an attempt
    still open is a service that answered but left the provider call running (a deadline that
    did not cancel it): the hint says to cancel the call, not only to answer. An answer in time
    but not a 502/503/504 with a JSON body: the hint names that answer.
    """
    skip_past_max_budget(ctx)
    amounts = ctx.amounts(1)
    interval_ms = 100
    fault = Dribble(interval_ms=interval_ms, body_bytes=math.ceil(hold_s(ctx) * 1000 / interval_ms))
    await ctx.stack.stub.add_fault(fault, amounts=amounts)
    result = await ctx.driver.checkout(amounts[0], timeout_s=answer_wait_s(ctx))
    by = result.started_at + ctx.budgets.layers.api_s + ANSWER_TOLERANCE_S + 0.5
    attempts = await _attempts_once_over(ctx, amounts, by)
    return judge_slow_body(ctx, result, attempts)


WRONG_ANSWER_HINT = (
    "Your service answered in time, but not 502, 503 or 504 with a JSON body: when its deadline "
    "expires, answer 504 with a JSON body (labelled application/json)."
)
LEFT_OPEN_HINT = (
    "Your service answered in time but left the provider call running: its deadline answered "
    "without cancelling the call (asyncio.wait_for on a thread, a shielded or background "
    "task). Put the deadline around the awaited call itself (`async with "
    "asyncio.timeout(remaining_budget):` around the request and reading its body), so that "
    "its expiry closes the connection to the provider."
)


def judge_slow_body(ctx: Context, result: CheckoutResult, attempts: Sequence[Attempt]) -> Passed:
    """m2.slow-body's verdict on the checkout and the provider attempts it measured."""
    problems = fail_fast_problems(ctx, result)
    # The hint follows what failed: no answer in time (the check's own, a deadline), else the
    # answer's status or body, else the call left running after an answer in time.
    late = result.status is None or (
        zone(result.elapsed_s, ctx.budgets.layers.api_s + ANSWER_TOLERANCE_S, noise_s(ctx))
        is Zone.BEYOND
    )
    open_ones = [a for a in attempts if not a.ended]
    wrong_answer = not late and bool(problems)  # before the open attempts join the problems
    hint = WRONG_ANSWER_HINT if wrong_answer else LEFT_OPEN_HINT if open_ones and not late else None
    if open_ones:
        problems.append(f"{len(open_ones)} provider attempt(s) still open past the api budget")
    expected = f"{expected_fail_fast(ctx)}, with no provider attempt left open"
    return _verdict(
        ctx,
        result,
        attempts,
        problems,
        expected,
        failed="the answer to a trickling response is not a fail-fast one"
        if wrong_answer
        else "a trickling response stretches the checkout",
        passed="the body was still trickling in",
        hint=hint,
    )
