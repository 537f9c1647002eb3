"""Milestone 4: a token-bucket retry budget, seen from how many attempts reach the provider.

Ids: m4.blip-heals, m4.outage-capped, m4.budget-shared, m4.recovers. The bucket held to is the
learner's `retry_budget` section, or the course's (ratio 0.1, burst 10) while the table
declares none. Each first attempt deposits `ratio` tokens and a retry spends one, so once the
burst is spent a sustained outage lets through at most 1 + ratio attempts per checkout.

A bucket's state outlives a check, so each check that spends one starts its own instance, except
m4.blip-heals, which needs the full bucket of an instance nothing has used yet: the main one.
A service may run several worker processes, each with its bucket: the outage checks drain the
bucket behind every connection they count on before counting (see m4.outage-capped).
"""

from __future__ import annotations

import asyncio
import math

from checks.common import answer_wait_s, attempt_rows, attempts_by_checkout
from checks.outage import (
    BLIP_CHECKOUTS,
    MAX_REFILL,
    OUTAGE_CONCURRENCY,
    OWN_BUCKETS_SHARE,
    REFILL_MARGIN,
    SHARED_CLIENTS,
    Outage,
    judge,
    run_checkouts,
    run_outage,
)
from checks.warmup import bucket
from grader.checkkit import (
    CheckFailed,
    Context,
    ErrorStatus,
    Passed,
    check,
    timeline,
)

RETRIED_NOT_HEALED_HINT = (
    "The budget let the retry through (the provider saw a second attempt), but the checkout "
    "did not answer 200: answer with the retry's outcome, as m3.transient-heals expects."
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
    return await run_outage(ctx, "api-outage", OUTAGE_CONCURRENCY)


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
    """Fail every attempt; drain each client's bucket, then count 200 checkouts from 4 clients.

    The condition it claims: once the burst is spent, a sustained outage lets through at most
    1 + ratio provider attempts per checkout that reached the provider (+0.05 slack), and every
    checkout reaches it at least once.

    How it knows the condition holds while it measures: every attempt of the outage's amounts
    fails (503) from the start, on a fresh instance. The 4 clients keep one connection each.
    A warm-up sends checkouts on each connection in turn, one at a time, until one of them
    makes a single attempt: alone in flight, it found less than a token after its deposit, so
    the bucket behind that connection is spent, whether the service keeps one bucket or one
    per worker process (the first connection to reach each process drains it; at most
    burst / (1 - ratio) + 2 checkouts a connection, and 4 bursts' worth in all, else the
    report says where it stopped). Drained connections get a /healthz every 0.5 s until the
    count, so that no server closes one as idle and the next opens on a process not drained.
    The 200 counted checkouts then go over the same connections, 4 at once; the report says
    how many overlapped at the provider. Checkouts the provider never saw are counted apart
    (data "untried", with every checkout's outcome in "statuses"): past 5 % of them the count
    is not evidence. Counts, not times: a busy machine changes neither, and a correct service
    tries every checkout at least once.

    The hints' evidence: more attempts per checkout than 1 + ratio once the buckets were drained
    is a missing budget, one that does not charge retries, or one that refills without
    successes: the check's own hint. Checkouts answered within half the api budget without an
    attempt were refused before any try (a server concurrency limit such as uvicorn
    --limit-concurrency, or a bulkhead); answered later or not at all, the service did not get
    to them (a blocked event loop, too few threads or workers). Each hint is shown when at
    least a quarter of the untried checkouts are its evidence, the larger first: a blocked loop
    also times out a connect to the provider now and then, which answers at once.
    """
    outage = await ctx.once(_capped_outage)
    return judge(ctx, outage, f"{OUTAGE_CONCURRENCY} clients", own_buckets_limit=None)


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
    """Like m4.outage-capped, with 20 clients on their own connections; counts their buckets.

    The condition it claims: the 1 + ratio cap holds across 20 concurrent clients, each on its
    own connection, and they share the service's buckets: no more than 15 of the 20 find a
    bucket of their own, so a budget kept per request, connection or client cannot pass, while
    one per worker process (DESIGN.md: shared by all requests of one process) can.

    How it knows the condition holds while it measures: as m4.outage-capped, on another fresh
    instance, with 20 connections drained in turn. A connection whose warm-up made 2 retries or
    more (1 with a burst of 1) found a bucket nothing had spent: sent alone, a checkout on a
    spent bucket gets at most one retry, as ratio < 1. With a bucket per process only the first
    connection to reach each process does (the reference: 1 of 20; gunicorn with 4 workers: 3
    or 4); with one per connection or client all 20 do. The report says how many, and how many
    checkouts overlapped at the provider (a failing one lasts milliseconds, so fewer than 20; a
    shared bucket's count does not depend on it). A service run with more than 15 worker
    processes that 16 of the 20 connections reach would be told FAIL; none of the course's
    setups comes near.

    The hints' evidence: more than 15 of 20 connections each draining a full bucket, or the
    attempts per checkout past 1 + ratio, is a bucket not shared by every request of a
    process: the check's own hint. Checkouts that never reached the provider: as
    m4.outage-capped.
    """
    outage = await run_outage(ctx, "api-shared", SHARED_CLIENTS)
    limit = math.floor(OWN_BUCKETS_SHARE * SHARED_CLIENTS)
    return judge(ctx, outage, f"{SHARED_CLIENTS} separate clients", own_buckets_limit=limit)


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
    results = await run_checkouts(ctx, outage.api, successes, [ctx.driver.http] * 10)
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
