"""Milestone 2: a provider whose connects hang (m2.connect-timeout).

The second API instance it starts points at the stub's connect-hang port; the service's own
connection attempts are counted from the socket table (checks/connects.py). Its siblings are in
m2_timeouts.py, which registers m2.healthy-checkout before this module's check needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from checks.common import (
    ANSWER_TOLERANCE_S,
    CONNECT_TOLERANCE_S,
    answer_wait_s,
    expected_fail_fast,
    fail_fast_problems,
    held_to,
    limit_for_table,
    skip_past_max_budget,
)
from checks.connects import ConnectAttempt, ConnectWatch, diagnose
from checks.stats import charted
from grader.checkkit import (
    COURSE_RETRIES,
    CheckFailed,
    CheckoutResult,
    ConnectTimeline,
    Context,
    Passed,
    check,
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
    timeout_s=limit_for_table(45),
)
async def connect_timeout(ctx: Context) -> Passed:
    """Start a second API instance whose provider never accepts; expect a quick 5xx.

    The condition it claims: a checkout whose every connect hangs answers 502/503/504 within
    max_attempts connect timeouts plus the declared waits (1.8 s for the course's table), or
    within the api budget when that is shorter.

    How it knows the condition holds while it measures: the second instance's provider URL is
    the stub's connect-hang port, a listener that never accepts with its accept queue full, so
    every connect of that instance hangs from the first, for as long as the grader waits (the
    api budget + 2.5 s), whatever the table declares; nothing else uses that port. An api
    budget past 30 s is not graded (SKIP, saying why): a correct service may take all of it.

    The hints' evidence: the same late answer has two causes, told apart by the service's
    connection attempts, which the grader counts and times from the socket table while the
    checkout runs (checks/connects.py; the stub cannot see a dropped SYN). More attempts than
    max_attempts: retries beyond it. An attempt that waited past the connect timeout: no connect
    timeout. Where the grader cannot see the attempts (the docker backend), the hint names both.
    """
    skip_past_max_budget(ctx)  # before the second instance starts: nothing to stop
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
