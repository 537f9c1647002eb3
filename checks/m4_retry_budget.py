"""Milestone 4: a token-bucket retry budget, seen from how many attempts reach the provider.

Ids: m4.blip-heals, m4.outage-capped, m4.budget-shared, m4.recovers. The bucket held to is the
learner's `retry_budget` section, or the course's (ratio 0.1, burst 10) while the table
declares none. Each first attempt deposits `ratio` tokens and a retry spends one, so once the
burst is spent a sustained outage lets through at most 1 + ratio attempts per checkout.

A bucket's state outlives a check, so each check that spends one starts its own instance, except
m4.blip-heals, which needs the full bucket of an instance nothing has used yet: the main one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from checks.common import answer_wait_s, attempt_rows, attempts_by_checkout, held_to, per_checkout
from checks.held import checkout_spans, most_at_once
from checks.stats import charted
from grader.checkkit import (
    COURSE_RETRY_BUDGET,
    ApiInstance,
    CheckFailed,
    CheckoutResult,
    Context,
    ErrorStatus,
    OutageAttempts,
    Passed,
    RetryBudget,
    check,
    timeline,
)

OUTAGE_CHECKOUTS = 200
# Attempts per checkout may exceed 1 + ratio by this much: tokens left over from the warm-up
# (under one, so 1 / 200 = 0.005) and the deposits of checkouts still in flight when it ends.
# The token arithmetic is exact, so there is no false FAIL to speak of: a correct bucket gives
# 1 + ratio or less; buckets that are missing or per request give max_attempts (3.0 here).
# Counts, not times: a busy machine changes when attempts come, not how many a bucket that
# deposits per first attempt lets through, so these checks need no noise band.
CAP_SLACK = 0.05
SHARED_CLIENTS = 20
OUTAGE_CONCURRENCY = 4
BLIP_CHECKOUTS = 5
# The reports keep at most this many warm-up checkouts' attempt counts (a burst of 1000 would
# need over a thousand).
MAX_WARMUP_KEPT = 200
# Successful checkouts that refill even a bucket that allows retries only when more than half
# full (gRFC A6's throttling): burst / ratio, plus a margin.
REFILL_MARGIN = 10
MAX_REFILL = 400
# How often the outage's attempts are counted while checkouts are sent (a journal read each).
STOP_POLL_S = 0.25
# A checkout the bucket let retry that still failed: the bucket did its part.
RETRIED_NOT_HEALED_HINT = (
    "The budget let the retry through (the provider saw a second attempt), but the checkout "
    "did not answer 200: answer with the retry's outcome, as m3.transient-heals expects."
)


def bucket(ctx: Context) -> tuple[RetryBudget, str]:
    """The retry budget held to, and where it comes from."""
    return held_to(ctx.budgets.retry_budget, COURSE_RETRY_BUDGET, "budget", "retry_budget")


def cap_of(declared: RetryBudget) -> float:
    """The most attempts per checkout a spent bucket may let through, slack included."""
    return 1 + declared.ratio + CAP_SLACK


async def _run(
    ctx: Context,
    api: ApiInstance,
    amounts: Sequence[int],
    workers: int,
    *,
    separate: bool = False,
    stop: asyncio.Event | None = None,
) -> list[CheckoutResult]:
    """Send checkouts from ``workers`` clients, each one after another, until ``stop`` is set.

    With ``separate``, every worker has its own connection pool: a budget kept per connection
    or per client cannot pass for a shared one. Amounts go from the last one down, so the
    checkouts sent are always the top of ``amounts``.
    """
    queue = list(amounts)
    results: list[CheckoutResult] = []

    async def worker(own: httpx.AsyncClient | None) -> None:
        while queue and (stop is None or not stop.is_set()):
            amount = queue.pop()
            results.append(
                await ctx.driver.checkout(amount, api=api, timeout_s=answer_wait_s(ctx), http=own)
            )

    if not separate:
        await asyncio.gather(*(worker(None) for _ in range(workers)))
        return results
    clients = [httpx.AsyncClient() for _ in range(workers)]
    try:
        await asyncio.gather(*(worker(client) for client in clients))
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    return results


@dataclass(frozen=True, slots=True)
class Outage:
    """What a sustained outage did to one fresh instance, after a warm-up spent its burst."""

    api: ApiInstance
    checkouts: int
    attempts: int
    warmup: int
    # Sending stopped before OUTAGE_CHECKOUTS: the attempts already exceeded what all of them
    # may make, so the verdict was FAIL whatever the rest would have done.
    stopped_early: bool = False
    # Provider attempts of each checkout, in the order their first attempts arrived: of the
    # warm-up (spending the burst), then of the measured outage. For the HTML report's chart.
    warmup_counts: tuple[int, ...] = ()
    counts: tuple[int, ...] = ()
    # The load held while it was measured: the clients sending, and the most checkouts the
    # provider saw in flight at once (first attempt to last; checks/held.py).
    clients: int = 0
    concurrent: int = 0

    @property
    def per_checkout(self) -> float:
        """Provider attempts per checkout once the burst was spent."""
        return self.attempts / self.checkouts


async def _outage(ctx: Context, name: str, workers: int, separate: bool) -> Outage:
    declared, _ = bucket(ctx)
    api = await ctx.driver.start_api(name)
    # Each failing checkout spends at least 1 - ratio tokens net while any are left.
    warmup = math.ceil(declared.burst / max(1 - declared.ratio, 0.5)) + 2
    amounts = ctx.amounts(warmup + OUTAGE_CHECKOUTS)
    await ctx.stack.stub.add_fault(ErrorStatus(503), amounts=amounts)
    await _run(ctx, api, amounts[:warmup], 1)
    measured = amounts[warmup:]
    # Attempts only add up: past cap x OUTAGE_CHECKOUTS the verdict is FAIL, so sending stops
    # there (a service without a budget fails in a third of the time, and is told sooner).
    stop = asyncio.Event()
    watcher = asyncio.create_task(_stop_past(ctx, measured, cap_of(declared) * len(measured), stop))
    try:
        results = await _run(ctx, api, measured, workers, separate=separate, stop=stop)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    measured = measured[len(measured) - len(results) :]  # those sent: the top of the range
    journal = await ctx.stack.stub.wait_for_journal(
        measured, arrived=len(measured), ended=True, timeout_s=answer_wait_s(ctx)
    )
    # The warm-up ran one checkout after another, so its attempts have all ended by now.
    warmed = await ctx.stack.stub.journal(amounts[:warmup])
    return Outage(
        api,
        len(measured),
        len(journal),
        warmup,
        stopped_early=stop.is_set(),
        warmup_counts=tuple(len(a) for a in per_checkout(warmed).values()),
        counts=tuple(len(a) for a in per_checkout(journal).values()),
        clients=workers,
        concurrent=most_at_once(checkout_spans(per_checkout(journal))),
    )


async def _stop_past(ctx: Context, amounts: range, allowed: float, stop: asyncio.Event) -> None:
    """Set ``stop`` once the attempts of ``amounts`` number more than ``allowed``."""
    while True:
        await asyncio.sleep(STOP_POLL_S)
        if len(await ctx.stack.stub.journal(amounts)) > allowed:
            stop.set()
            return


def _judge(ctx: Context, outage: Outage, clients: str) -> Passed:
    declared, source = bucket(ctx)
    limit = cap_of(declared)
    measured = (
        f"{outage.checkouts} checkouts from {clients} made {outage.attempts} provider attempts: "
        f"{outage.per_checkout:.3f} per checkout, after {outage.warmup} checkouts spent the burst"
    )
    measured += (
        f"; sent by {outage.clients} clients at once, up to {outage.concurrent} checkouts "
        "overlapped at the provider"
    )
    if outage.stopped_early:
        measured += (
            f"; stopped there: {OUTAGE_CHECKOUTS} checkouts may make no more than "
            f"{cap_of(declared) * OUTAGE_CHECKOUTS:.0f} attempts"
        )
    expected = (
        f"at most 1 + ratio {declared.ratio:g} + {CAP_SLACK:g} slack = {limit:.3f} attempts per "
        f"checkout (burst {declared.burst}, {source})"
    )
    # For the HTML report's chart: attempts of each checkout over the outage (at most
    # OUTAGE_CHECKOUTS, and a warm-up of about burst / (1 - ratio)), against 1 + ratio.
    chart = OutageAttempts(
        attempts=outage.counts[:OUTAGE_CHECKOUTS],
        ratio=declared.ratio,
        limit=round(limit, 4),
        warmup=outage.warmup_counts[:MAX_WARMUP_KEPT],
        burst=declared.burst,
    )
    data = {
        "per_checkout": round(outage.per_checkout, 4),
        "checkouts": outage.checkouts,
        "stopped_early": outage.stopped_early,
        # The load held during the count: clients sending, and checkouts in flight at once.
        "clients": outage.clients,
        "concurrent_checkouts": outage.concurrent,
        "limit": chart.limit,
        "ratio": declared.ratio,
        "burst": declared.burst,
        "cap_slack": CAP_SLACK,
        "warmup_attempts": list(chart.warmup),
        "attempts_per_checkout": list(chart.attempts),
    }
    if outage.per_checkout > limit:
        with charted(chart):
            raise CheckFailed(
                f"retries multiplied the outage: {outage.per_checkout:.2f} attempts per checkout",
                measured=measured,
                expected=expected,
                data=data,
            )
    return Passed(
        f"the outage got {outage.per_checkout:.3f} attempts per checkout",
        measured=measured,
        expected=expected,
        data=data,
        chart=chart,
    )


@check(
    "m4.blip-heals",
    "On a fresh instance, a brief burst of failures is retried",
    why="A retry budget must throttle retries during an outage, not forbid them: a fresh "
    "service with a full bucket should still absorb a blip.",
    hint="Start the bucket full (burst tokens) and allow a retry whenever a whole token is left. "
    "If m3.transient-heals fails too, the service does not retry at all yet: milestone 3 first.",
    timeout_s=30,
)
async def blip_heals(ctx: Context) -> Passed:
    """Fail the first attempt of a few checkouts at once; expect every one to succeed.

    The condition it claims: a service whose bucket nothing has spent yet retries a brief burst
    of failures: min(burst, 5) checkouts sent at once, each failing its first attempt with 503,
    all answer 200 after one retry each.

    How it knows the condition holds while it measures: it uses the main instance, which the
    runner starts fresh for each live milestone and which no other milestone-4 check sends to
    (they start their own), so nothing has spent its bucket; taking at most burst checkouts
    leaves a token for every retry of a bucket that starts full. The stub fails only the first
    attempt of each checkout, so one retry heals it. That the checkouts overlapped is not
    measured: a bucket counts tokens, not time.

    The hints' evidence: a checkout the provider saw only once was not retried: a bucket that
    starts empty, or a service that does not retry at all (m3.transient-heals fails too): the
    check's own hint. A checkout the provider saw twice that still did not answer 200 was
    retried: the bucket let it through, and the answer after the retry is what went wrong.
    """
    declared, source = bucket(ctx)
    count = max(1, min(BLIP_CHECKOUTS, declared.burst))
    amounts = ctx.amounts(count)
    await ctx.stack.stub.add_fault(ErrorStatus(503), amounts=amounts, first_n=1)
    results = await asyncio.gather(
        *(ctx.driver.checkout(a, timeout_s=answer_wait_s(ctx)) for a in amounts)
    )
    grouped = await attempts_by_checkout(ctx, amounts, 2 * count, timeout_s=answer_wait_s(ctx))
    healed = [r for r in results if r.status == 200]
    measured = (
        f"{len(healed)} of {count} checkouts answered 200; attempts per checkout: "
        f"{[len(grouped.get(a, [])) for a in amounts]}"
    )
    expected = f"all {count} answer 200 after one retry each (burst {declared.burst}, {source})"
    figure = timeline(attempt_rows(grouped))
    if len(healed) < count:
        # Only a checkout the provider saw once is evidence about the bucket: one it saw twice
        # was retried, and failed for another reason.
        unretried = sum(len(grouped.get(a, [])) < 2 for a in amounts)
        if unretried:
            raise CheckFailed(
                f"{unretried} of {count} checkouts were not retried on a fresh instance",
                measured=measured,
                expected=expected,
                figure=figure,
            )
        raise CheckFailed(
            f"{count - len(healed)} of {count} checkouts were retried but did not answer 200",
            measured=measured,
            expected=expected,
            figure=figure,
            hint=RETRIED_NOT_HEALED_HINT,
        )
    return Passed("a fresh bucket absorbed the blip", measured=measured, expected=expected)


async def _capped_outage(ctx: Context) -> Outage:
    """The outage m4.outage-capped judges and m4.recovers then refills: one per run."""
    return await _outage(ctx, "api-outage", OUTAGE_CONCURRENCY, separate=False)


@check(
    "m4.outage-capped",
    "A sustained outage gets at most 1 + ratio attempts per checkout",
    why="During an outage every retry is load on a provider that is already down: without a "
    "budget, max_attempts multiplies the traffic that keeps it down.",
    hint="Keep one token bucket for the whole process: each first attempt deposits `ratio` "
    "tokens (up to `burst`), each retry spends one, and no token means no retry.",
    timeout_s=60,
)
async def outage_capped(ctx: Context) -> Passed:
    """Fail every attempt; after a warm-up, count attempts of 200 checkouts from a few clients.

    The condition it claims: once the burst is spent, a sustained outage lets through at most
    1 + ratio provider attempts per checkout (+0.05 slack).

    How it knows the condition holds while it measures: every attempt of the outage's amounts
    fails (503) from the start, on a fresh instance. A warm-up of burst / (1 - ratio) + 2
    checkouts, sent one at a time, spends the declared burst before anything is counted (the
    report keeps their attempts per checkout, so a bucket that was not spent shows there). The
    200 counted checkouts come from 4 clients at once; the report says how many overlapped at
    the provider (first attempt to last). Counts, not times: a busy machine changes neither.

    The hint's evidence: more attempts per checkout than 1 + ratio once the burst was spent is
    a missing budget, one that does not charge retries, or one that refills without successes.
    """
    outage = await ctx.once(_capped_outage)
    return _judge(ctx, outage, f"{OUTAGE_CONCURRENCY} clients")


@check(
    "m4.budget-shared",
    "The budget holds across 20 concurrent clients",
    why="A counter per request, per connection or per client is not a budget: twenty clients "
    "would each get a full bucket, and the outage twenty times the retries.",
    hint="Keep the bucket at process level (a module-level object, or app.state), shared by "
    "every request, never created per request or per connection.",
    timeout_s=60,
)
async def budget_shared(ctx: Context) -> Passed:
    """Like m4.outage-capped, with 200 checkouts from 20 clients on their own connections.

    The condition it claims: the 1 + ratio cap holds across 20 concurrent clients, each on its
    own connection pool, so a budget kept per request, connection or client cannot pass.

    How it knows the condition holds while it measures: as m4.outage-capped, on another fresh
    instance; the report says how many checkouts overlapped at the provider (a failing one
    lasts milliseconds, so fewer than 20; a shared bucket's count does not depend on it).

    The hint's evidence: 20 clients that each got a burst's worth of retries push the attempts
    per checkout past 1 + ratio: the bucket is not shared by every request.
    """
    outage = await _outage(ctx, "api-shared", SHARED_CLIENTS, separate=True)
    return _judge(ctx, outage, f"{SHARED_CLIENTS} separate clients")


@check(
    "m4.recovers",
    "After the outage, successes refill the budget and retries resume",
    depends=("m4.outage-capped",),
    why="A budget that never refills turns one outage into a service that never retries again: "
    "the next blip reaches customers although the provider is healthy.",
    hint="Deposit `ratio` tokens for every first attempt (up to `burst`), successes included. "
    "If m4.blip-heals fails too, the service may not retry at all yet: milestone 3 first.",
    timeout_s=60,
)
async def recovers(ctx: Context) -> Passed:
    """Reuse the spent instance of m4.outage-capped: send successes, then one transient failure.

    The condition it claims: once the provider is healthy again, successful checkouts refill a
    bucket the outage spent, and the next transient failure is retried to a 200.

    How it knows the condition holds while it measures: it runs on the instance m4.outage-capped
    used, after that check's outage ended (every attempt answered), and only if it passed. The
    bucket is spent by construction, not measured: a bucket that spends a token whenever one is
    whole ends the outage with less than one. Then burst / ratio + 10 checkouts (at most 400)
    go to a healthy provider from 10 clients, enough first attempts to refill the burst; the
    report says how many answered 200. Last, one checkout whose first attempt fails with 503.

    The hints' evidence: that checkout seen once by the provider was not retried: a bucket that
    did not refill from the first attempts sent after the outage, or a service that does not
    retry at all (m4.blip-heals fails too): the check's own hint. Seen twice and still not
    answered 200, it was retried: the bucket refilled, and the answer after the retry is what
    went wrong.
    """
    declared, source = bucket(ctx)
    outage = await ctx.once(_capped_outage)
    refill = min(MAX_REFILL, math.ceil(declared.burst / max(declared.ratio, 0.01)) + REFILL_MARGIN)
    successes = ctx.amounts(refill)
    results = await _run(ctx, outage.api, successes, 10)
    ok = sum(r.status == 200 for r in results)
    probe = ctx.amounts(1)
    await ctx.stack.stub.add_fault(ErrorStatus(503), amounts=probe, first_n=1)
    result = await ctx.driver.checkout(probe[0], api=outage.api, timeout_s=answer_wait_s(ctx))
    journal = await ctx.stack.stub.wait_for_journal(
        probe, arrived=1, ended=True, timeout_s=answer_wait_s(ctx)
    )
    measured = (
        f"after {ok} of {refill} successful checkouts, a checkout whose first attempt failed "
        f"{result.describe()} after {len(journal)} attempt(s)"
    )
    expected = f"200 after a retry, once successes refilled the bucket ({source})"
    if len(journal) < 2:
        raise CheckFailed(
            "no retry after the outage ended: the budget did not refill, or nothing retries",
            measured=measured,
            expected=expected,
        )
    if result.status != 200:
        raise CheckFailed(
            "the checkout was retried after the outage but did not answer 200",
            measured=measured,
            expected=expected,
            hint=RETRIED_NOT_HEALED_HINT,
        )
    return Passed("retries resumed after the outage", measured=measured, expected=expected)
