"""Milestone 4's warm-up: the bucket behind every counted connection spent before counting.

One checkout at a time on each connection until one makes a single attempt: that proves the
bucket behind it (one per process, or per connection) is spent. Drained connections are kept
open meanwhile, so a server that closes idle ones cannot hand the count a fresh process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from checks.common import answer_wait_s, held_to
from grader.checkkit import (
    COURSE_RETRY_BUDGET,
    ApiInstance,
    Context,
    RetryBudget,
)

# Attempts per checkout may exceed 1 + ratio by this much: tokens left over from the warm-up
# (under one per bucket, so 1 / 200 = 0.005 each) and the deposits of checkouts still in flight
# when it ends. The token arithmetic is exact, so there is no false FAIL to speak of: a correct
# bucket gives 1 + ratio or less; buckets that are missing or per request give max_attempts
# (3.0 here). Counts, not times: a busy machine changes when attempts come, not how many a
# bucket that deposits per first attempt lets through, so these checks need no noise band.
CAP_SLACK = 0.05
# The reports keep at most this many warm-up checkouts' attempt counts (a burst of 1000 would
# need over a thousand).
MAX_WARMUP_KEPT = 200
# The warm-up drains the bucket behind each counted connection in turn: a bucket per process
# is behind every connection that process accepted, so only the first connection to reach each
# process spends a burst. Every warm-up together may drain this many whole bursts (worker
# processes) and take a few checkouts on each other connection; past that it stops, and says so.
WARMUP_BURSTS = 4
WARMUP_PER_CONNECTION = 3
# How often the warm-up touches each drained connection, to keep it open (see _keep_open).
KEEP_OPEN_S = 0.5


def bucket(ctx: Context) -> tuple[RetryBudget, str]:
    """The retry budget held to, and where it comes from."""
    return held_to(ctx.budgets.retry_budget, COURSE_RETRY_BUDGET, "budget", "retry_budget")


def cap_of(declared: RetryBudget) -> float:
    """The most attempts per checkout a spent bucket may let through, slack included."""
    return 1 + declared.ratio + CAP_SLACK


def per_connection_cap(declared: RetryBudget) -> int:
    """Warm-up checkouts one connection may take: enough to drain a full bucket, and two more.

    Each failing checkout spends at least 1 - ratio tokens net while any are left.
    """
    return math.ceil(declared.burst / max(1 - declared.ratio, 0.5)) + 2


def own_at(declared: RetryBudget) -> int:
    """Retries in one connection's warm-up that show a bucket nothing had spent before it.

    Sent alone, a checkout on a spent bucket (under one token) is retried at most once, as ratio
    < 1; a full bucket of 2 tokens or more gives 2 retries. With a burst of 1, one retry: the
    warm-up's deposits pay for a retry every 1 / ratio checkouts, a few in all, against one for
    every connection that has a bucket of its own.
    """
    return max(1, min(2, declared.burst))


@dataclass(frozen=True, slots=True)
class Warmup:
    """How the warm-up drained the bucket behind each counted connection."""

    # Provider attempts of each warm-up checkout, in the order sent.
    counts: tuple[int, ...]
    # Connections drained (one of their checkouts made a single attempt), of those sent on.
    drained: int
    # Connections whose warm-up made own_at retries or more: a bucket nothing had spent yet.
    own_buckets: int
    # Why the warm-up stopped before every connection was drained, or "" when it did not.
    cut_short: str = ""


async def warm_up(
    ctx: Context, api: ApiInstance, clients: Sequence[httpx.AsyncClient], amounts: range
) -> Warmup:
    """Drain the bucket behind each of ``clients``' connections, one checkout at a time.

    A connection is drained once one of its failing checkouts made a single attempt: sent alone,
    it found less than a token after its deposit. That is exact whatever the number of buckets
    (one per process, or per connection) and whatever max_attempts is. Drained connections are
    kept open until the count (see _keep_open).
    """
    drained_clients: list[httpx.AsyncClient] = []
    keeper = asyncio.create_task(_keep_open(ctx, api, drained_clients))
    try:
        return await _drain(ctx, api, clients, amounts, drained_clients)
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper


async def _keep_open(ctx: Context, api: ApiInstance, clients: list[httpx.AsyncClient]) -> None:
    """GET /healthz on each of ``clients`` every KEEP_OPEN_S, so that none sits idle.

    A server closes a connection idle past its keep-alive timeout (gunicorn: 2 s), and the
    client's next checkout opens another, which may reach a worker process the warm-up never
    drained: its full burst would count against the service.
    """

    async def ping(client: httpx.AsyncClient) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await client.get(f"{api.base_url}/healthz", timeout=answer_wait_s(ctx))

    while True:
        await asyncio.sleep(KEEP_OPEN_S)
        await asyncio.gather(*(ping(client) for client in list(clients)))


async def _drain(
    ctx: Context,
    api: ApiInstance,
    clients: Sequence[httpx.AsyncClient],
    amounts: range,
    drained_clients: list[httpx.AsyncClient],
) -> Warmup:
    """The warm-up itself: ``drained_clients`` gets each client once its bucket is spent."""
    declared, _ = bucket(ctx)
    cap = per_connection_cap(declared)
    pending = iter(amounts)
    counts: list[int] = []
    drained = own = 0
    for client in clients:
        retries = 0
        for _ in range(cap):
            amount = next(pending, None)
            if amount is None:
                return Warmup(
                    tuple(counts),
                    drained,
                    own,
                    f"all {len(amounts)} warm-up checkouts were sent before every connection "
                    "was drained",
                )
            result = await ctx.driver.checkout(
                amount, api=api, timeout_s=answer_wait_s(ctx), http=client
            )
            # An answered checkout's attempts all arrived before its answer: one journal read.
            # One not answered may still be tried: its attempts get the answer's wait.
            wait = answer_wait_s(ctx) if result.status is None else 0.0
            attempts = len(
                await ctx.stack.stub.wait_for_journal(
                    range(amount, amount + 1), arrived=1, ended=True, timeout_s=wait
                )
            )
            counts.append(attempts)
            retries += max(0, attempts - 1)
            if attempts == 1:
                break
        else:
            # The bucket behind this connection never ran out: the count shows what it lets
            # through, and draining further connections would only take longer.
            return Warmup(
                tuple(counts),
                drained,
                own + (retries >= own_at(declared)),
                f"a connection's {cap} warm-up checkouts were all retried or never tried: "
                "its bucket never ran dry",
            )
        drained += 1
        drained_clients.append(client)
        own += retries >= own_at(declared)
    return Warmup(tuple(counts), drained, own)
