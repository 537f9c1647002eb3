"""Milestone 2: a budgeted client. Live checks against the learner's API and the stub.

Ids: m2.healthy-checkout, m2.read-timeout, m2.slow-body, m2.connect-timeout (m2.healthz-under-load
is in m2_under_load.py). Each holds the service to the learner's budget table, or to the course's
(10 s, 3 s, 2 s) while the table is not filled in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from checks.common import (
    ABANDON_TOLERANCE_S,
    ANSWER_TOLERANCE_S,
    CONNECT_TOLERANCE_S,
    HOLD_S,
    Problems,
    answer_wait_s,
    expected_fail_fast,
    fail_fast_problems,
    held_to,
)
from checks.connects import ConnectAttempt, ConnectWatch, diagnose
from checks.held import ended_at
from checks.stats import charted
from grader.checkkit import (
    COURSE_RETRIES,
    Attempt,
    AttemptSpan,
    CheckFailed,
    CheckoutResult,
    CheckoutTimeline,
    ConnectTimeline,
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
) -> Passed:
    """FAIL on the first of ``problems``, INCONCLUSIVE on a doubt, else PASS; with a timeline."""
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
            failed, measured=f"{result.describe()}; {timeline}", expected=expected, data=data
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
    timeout_s=20,
)
async def healthy_checkout(ctx: Context) -> Passed:
    """Send one checkout to a healthy provider; expect 200, the payment, and one charge."""
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
    timeout_s=25,
)
async def read_timeout(ctx: Context) -> Passed:
    """Hold the provider's headers 10 s; expect a quick 5xx and the attempt cut at the timeout."""
    amounts = ctx.amounts(1)
    await ctx.stack.stub.add_fault(Delay(delay_ms=int(HOLD_S * 1000)), amounts=amounts)
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
    return _verdict(
        ctx,
        result,
        attempts,
        problems,
        expected,
        failed="the read timeout is not enforced",
        passed="the held attempt was cut at the read timeout",
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
    timeout_s=25,
)
async def slow_body(ctx: Context) -> Passed:
    """Send headers at once, then the body a byte every 100 ms; expect a 5xx within the budget."""
    amounts = ctx.amounts(1)
    interval_ms = 100
    fault = Dribble(interval_ms=interval_ms, body_bytes=int(HOLD_S * 1000 / interval_ms))
    await ctx.stack.stub.add_fault(fault, amounts=amounts)
    result = await ctx.driver.checkout(amounts[0], timeout_s=answer_wait_s(ctx))
    by = result.started_at + ctx.budgets.layers.api_s + ANSWER_TOLERANCE_S + 0.5
    attempts = await _attempts_once_over(ctx, amounts, by)
    return judge_slow_body(ctx, result, attempts)


def judge_slow_body(ctx: Context, result: CheckoutResult, attempts: Sequence[Attempt]) -> Passed:
    """m2.slow-body's verdict on the checkout and the provider attempts it measured."""
    problems = fail_fast_problems(ctx, result)
    open_ones = [a for a in attempts if not a.ended]
    if open_ones:
        problems.append(f"{len(open_ones)} provider attempt(s) still open past the api budget")
    expected = f"{expected_fail_fast(ctx)}, with no provider attempt left open"
    return _verdict(
        ctx,
        result,
        attempts,
        problems,
        expected,
        failed="a trickling response stretches the checkout",
        passed="the body was still trickling in",
    )


@check(
    "m2.connect-timeout",
    "A provider whose connects hang is given up on quickly",
    depends=("m2.healthy-checkout",),
    why="When the provider's host is down or its accept queue is full, the TCP connect itself "
    "hangs; without a connect timeout each attempt waits for the operating system's, minutes.",
    hint="Set a connect timeout equal to the table's payments.connect_timeout_s "
    "(httpx.Timeout(..., connect=0.5)), count connect timeouts against retries.max_attempts "
    "like any failed attempt, and turn httpx.ConnectTimeout into a 503 or 504.",
    timeout_s=45,
)
async def connect_timeout(ctx: Context) -> Passed:
    """Start a second API instance whose provider never accepts; expect a quick 5xx.

    The condition it claims: a checkout whose every connect hangs answers 502/503/504 within
    max_attempts connect timeouts plus the declared waits (1.8 s for the course's table), or
    within the api budget when that is shorter.

    How it knows the condition holds while it measures: the second instance's provider URL is
    the stub's connect-hang port, a listener that never accepts with its accept queue full, so
    every connect of that instance hangs from the first; nothing else uses that port.

    The hints' evidence: the same late answer has two causes, told apart by the service's
    connection attempts, which the grader counts and times from the socket table while the
    checkout runs (checks/connects.py; the stub cannot see a dropped SYN). More attempts than
    max_attempts: retries beyond it. An attempt that waited past the connect timeout: no connect
    timeout. Where the grader cannot see the attempts (the docker backend), the hint names both.
    """
    api = await ctx.driver.start_api("api-connect-hang", payments_url=ctx.stack.connect_hang_url)
    amount = ctx.amounts(1)[0]
    watch = ConnectWatch.for_url(ctx.stack.connect_hang_url)
    watching = asyncio.create_task(watch.run()) if watch is not None else None
    try:
        result = await ctx.driver.checkout(amount, api=api, timeout_s=answer_wait_s(ctx))
    finally:
        if watching is not None:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    connects = watch.attempts() if watch is not None else None
    try:
        return judge_connect_timeout(ctx, result, connects)
    except CheckFailed:
        ctx.driver.raise_if_dead(api)  # an instance that died: that is the finding
        raise


def judge_connect_timeout(
    ctx: Context, result: CheckoutResult, connects: Sequence[ConnectAttempt] | None = None
) -> Passed:
    """m2.connect-timeout's verdict on the checkout it sent while connects hung.

    ``connects`` are the service's connection attempts the grader saw (None: it could not
    look); a late answer's hint names the cause they show.
    """
    problems = fail_fast_problems(ctx, result)
    connect, api_s = ctx.budgets.layers.connect_s, ctx.budgets.layers.api_s
    retries, source = held_to(ctx.budgets.retries, COURSE_RETRIES, "policy", "retries")
    # The longest the table allows when every connect hangs: each attempt given up at the
    # connect timeout, and the longest declared wait before each retry.
    worst = retries.max_attempts * connect + retries.longest_waits_s()
    held = worst + CONNECT_TOLERANCE_S < api_s  # else the api budget is the tighter bound
    if held and result.status is not None:
        problems.late(ctx, "checkout answered", result.elapsed_s, worst + CONNECT_TOLERANCE_S)
    expected = expected_fail_fast(ctx)
    if held:
        expected += (
            f", and within {worst:.2f} s (+{CONNECT_TOLERANCE_S:g} s): {retries.max_attempts} "
            f"attempts each given up at the {connect:g} s connect timeout, and the declared "
            f"waits ({source})"
        )
    chart = ConnectTimeline(
        elapsed_s=round(result.elapsed_s, 3),
        status=result.status,
        connect_timeout_s=connect,
        max_attempts=retries.max_attempts,
        api_budget_s=api_s,
        answer_tolerance_s=ANSWER_TOLERANCE_S,
        # The connect bound the answer was held to, when it was (else the api budget is).
        connect_bound_s=round(worst + CONNECT_TOLERANCE_S, 3) if held else None,
    )
    seen = None if connects is None else list(connects)
    diagnosis = diagnose(
        seen,
        max_attempts=retries.max_attempts,
        connect_s=connect,
        tolerance_s=CONNECT_TOLERANCE_S,
        elapsed_s=result.elapsed_s,
    )
    data = {
        "elapsed_s": chart.elapsed_s,
        "status": result.status,
        "connect_timeout_s": connect,
        "max_attempts": retries.max_attempts,
        "api_budget_s": api_s,
        "answer_tolerance_s": ANSWER_TOLERANCE_S,
        "connect_bound_s": chart.connect_bound_s,
        # The service's connection attempts as the grader saw them (None: it could not look).
        "connect_attempts": None if not seen else len(seen),
        "connect_attempts_seen": None
        if not seen
        else [
            {
                "started_after_s": round(a.first_seen - result.started_at, 3),
                "waited_s": round(a.waited_s, 3),
            }
            for a in seen
        ],
        "cause": diagnosis.cause,
    }
    # Late, or no answer: a hanging connect stretched it, and the attempts say how.
    late = result.status is None or result.elapsed_s > (
        worst + CONNECT_TOLERANCE_S if held else api_s + ANSWER_TOLERANCE_S
    )
    # Within the api budget but past the connect bound: an overall deadline answered.
    deadline_only = (
        held and result.status is not None and result.elapsed_s <= api_s + ANSWER_TOLERANCE_S
    )
    hint = diagnosis.hint if late else None
    if hint is not None and deadline_only and diagnosis.cause == "no-connect-timeout":
        hint = f"Your overall deadline answered, but the connect timeout did not. {hint}"
    measured = f"{result.describe()}; {diagnosis.measured}"
    with charted(chart):
        problems.judge(
            "a hanging connect stretches the checkout",
            measured=measured,
            expected=expected,
            data=data,
            hint=hint,
        )
    return Passed(
        f"checkout {result.describe()} while connects to the provider hung",
        measured=measured,
        expected=expected,
        data=data,
        chart=chart,
    )
