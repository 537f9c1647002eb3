"""Milestone 4's outage, measured: warm-up, the counted checkouts, and the verdict on them.

Shared by m4.outage-capped and m4.budget-shared (checks/m4_retry_budget.py). Every attempt of
the outage's amounts fails (503); the warm-up drains the bucket behind every connection that is
then counted (checks/warmup.py), so one bucket per process passes whatever the workers; attempts
per checkout are counted only over checkouts the provider saw, and a service that never tried
most of them is told which cause its answers show.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from checks.common import answer_wait_s, per_checkout
from checks.held import checkout_spans, most_at_once
from checks.stats import charted
from checks.warmup import (
    CAP_SLACK,
    MAX_WARMUP_KEPT,
    WARMUP_BURSTS,
    WARMUP_PER_CONNECTION,
    Warmup,
    bucket,
    cap_of,
    own_at,
    per_connection_cap,
    warm_up,
)
from grader.checkkit import (
    ApiInstance,
    CheckFailed,
    CheckoutResult,
    Context,
    ErrorStatus,
    OutageAttempts,
    Passed,
    RetryBudget,
)

OUTAGE_CHECKOUTS = 200
SHARED_CLIENTS = 20
OUTAGE_CONCURRENCY = 4
BLIP_CHECKOUTS = 5
# m4.budget-shared: more than this share of its connections each draining a bucket of its own
# (see own_at) is a bucket per connection or per client. A bucket per process gives
# one per process the connections reached: a learner would need more worker processes than
# this share of 20 connections (15) and the connections spread over 16 of them to be told FAIL.
OWN_BUCKETS_SHARE = 0.75
# Checkouts that never reached the provider say nothing about a budget: past this share of the
# counted checkouts, the count is not evidence and the check FAILs on that instead. A correct
# service tries every checkout at least once.
UNTRIED_SHARE = 0.05
# Successful checkouts that refill even a bucket that allows retries only when more than half
# full (gRFC A6's throttling): burst / ratio, plus a margin.
REFILL_MARGIN = 10
MAX_REFILL = 400
# How often the outage's attempts are counted while checkouts are sent (a journal read each).
STOP_POLL_S = 0.25
# Checkouts answered without a provider attempt: refused before any try.
REFUSED_HINT = (
    "Checkouts were answered without a single provider attempt: something refuses requests "
    "before the handler tries the provider, such as a server concurrency limit (uvicorn "
    "--limit-concurrency, a small backlog) or a bulkhead that refuses when busy. Let every "
    "checkout try the provider once; the retry budget only decides about retries."
)
# Checkouts answered late or not at all, and never tried: the service did not get to them.
STARVED_HINT = (
    "Checkouts never reached the provider and were answered late or not at all: the service "
    "did not get to them while the clients waited (its own deadline may have run out first), "
    "as when a blocking call (time.sleep, a synchronous client) holds the event loop, or too "
    "few threads or worker processes serve the requests."
)


async def run_checkouts(
    ctx: Context,
    api: ApiInstance,
    amounts: Sequence[int],
    clients: Sequence[httpx.AsyncClient],
    *,
    stop: asyncio.Event | None = None,
    results: list[CheckoutResult] | None = None,
) -> list[CheckoutResult]:
    """Send checkouts from ``clients``, each one after another, until ``stop`` is set.

    Amounts go from the last one down, so the checkouts sent are always the top of ``amounts``.
    Answers are appended to ``results`` as they come (a new list if None), which is returned.
    """
    queue = list(amounts)
    results = [] if results is None else results

    async def worker(own: httpx.AsyncClient) -> None:
        while queue and (stop is None or not stop.is_set()):
            amount = queue.pop()
            results.append(
                await ctx.driver.checkout(amount, api=api, timeout_s=answer_wait_s(ctx), http=own)
            )

    await asyncio.gather(*(worker(client) for client in clients))
    return results


@dataclass(frozen=True, slots=True)
class Outage:
    """What a sustained outage did to one fresh instance, after a warm-up spent its buckets."""

    api: ApiInstance
    checkouts: int
    attempts: int
    warmup: Warmup
    # Why sending stopped before OUTAGE_CHECKOUTS, "" if it did not: the attempts already
    # exceeded what all of them may make, or too many were answered untried, so the verdict was
    # FAIL whatever the rest would have done.
    stopped: str = ""
    # Provider attempts of each measured checkout, in the order their first attempts arrived.
    # For the HTML report's chart (the warm-up's are in ``warmup``).
    counts: tuple[int, ...] = ()
    # The load held while it was measured: the clients sending, and the most checkouts the
    # provider saw in flight at once (first attempt to last; checks/held.py).
    clients: int = 0
    concurrent: int = 0
    # Measured checkouts the provider never saw, by what they got: "answered 503 within 1.5 s",
    # "no answer within 5.5 s", "connection failed (ConnectError)".
    untried: tuple[tuple[str, int], ...] = ()
    # Every measured checkout by what it got, tried or not.
    outcomes: tuple[tuple[str, int], ...] = ()

    @property
    def stopped_early(self) -> bool:
        """Whether sending stopped before OUTAGE_CHECKOUTS."""
        return bool(self.stopped)

    @property
    def untried_count(self) -> int:
        """Measured checkouts that made no provider attempt."""
        return sum(n for _, n in self.untried)

    @property
    def reached(self) -> int:
        """Measured checkouts that made at least one provider attempt."""
        return self.checkouts - self.untried_count

    @property
    def per_checkout(self) -> float:
        """Provider attempts per checkout that reached the provider, once the burst was spent."""
        return self.attempts / max(self.reached, 1)


def _outcome(ctx: Context, result: CheckoutResult, *, timed: bool = False) -> str:
    """What one checkout got, as a key to count by; ``timed`` also says if it came at once.

    An answer that came within half the api budget is "at once": refused before any wait. A
    later one waited for something, as for an event loop or a thread that was not free.
    """
    if result.status is not None:
        if not timed:
            return f"answered {result.status}"
        half = ctx.budgets.layers.api_s / 2
        when = f"within {half:g} s" if result.elapsed_s < half else f"after {half:g} s or more"
        return f"answered {result.status} {when}"
    if result.error == "no answer":
        return f"no answer within {answer_wait_s(ctx):g} s"
    return result.error or "no answer"


def _refused(outcome: str) -> bool:
    """Whether an untried checkout's outcome (from ``_outcome``) is an answer that came at once."""
    return outcome.startswith("answered") and " within " in outcome


def _tally(keys: Sequence[str]) -> tuple[tuple[str, int], ...]:
    """How many of each key, most first."""
    counted = Counter(keys)
    return tuple(sorted(counted.items(), key=lambda kv: (-kv[1], kv[0])))


async def run_outage(ctx: Context, name: str, count: int) -> Outage:
    """A fresh instance, its buckets drained, then ``OUTAGE_CHECKOUTS`` from ``count`` clients."""
    declared, _ = bucket(ctx)
    api = await ctx.driver.start_api(name)
    # One connection per client, kept: the warm-up drains the bucket behind each, and the
    # count then goes over the same connections.
    clients = [httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) for _ in range(count)]
    try:
        return await _outage_on(ctx, api, clients, declared)
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


async def _outage_on(
    ctx: Context, api: ApiInstance, clients: Sequence[httpx.AsyncClient], declared: RetryBudget
) -> Outage:
    warmup_size = WARMUP_BURSTS * per_connection_cap(declared)
    warmup_size += WARMUP_PER_CONNECTION * len(clients)
    warm_amounts = ctx.amounts(warmup_size)
    measured = ctx.amounts(OUTAGE_CHECKOUTS)
    await ctx.stack.stub.add_fault(ErrorStatus(503), amounts=warm_amounts)
    await ctx.stack.stub.add_fault(ErrorStatus(503), amounts=measured)
    warmup = await warm_up(ctx, api, clients, warm_amounts)
    # Attempts only add up: past cap x OUTAGE_CHECKOUTS the verdict is FAIL, so sending stops
    # there (a service without a budget fails in a third of the time, and is told sooner). So
    # do answers without an attempt: past the untried share of all of them, FAIL is certain.
    stop = asyncio.Event()
    results: list[CheckoutResult] = []
    allowed = cap_of(declared) * len(measured)
    watcher = asyncio.create_task(_stop_past(ctx, measured, allowed, results, stop))
    try:
        await run_checkouts(ctx, api, measured, clients, stop=stop, results=results)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    stopped = watcher.result() if watcher.done() and not watcher.cancelled() else ""
    sent = measured[len(measured) - len(results) :]  # those sent: the top of the range
    journal = await ctx.stack.stub.wait_for_journal(
        sent, arrived=len(sent), ended=True, timeout_s=answer_wait_s(ctx)
    )
    grouped = per_checkout(journal)
    return Outage(
        api,
        len(sent),
        len(journal),
        warmup,
        stopped=stopped,
        counts=tuple(len(a) for a in grouped.values()),
        clients=len(clients),
        concurrent=most_at_once(checkout_spans(grouped)),
        untried=_tally(
            [_outcome(ctx, r, timed=True) for r in results if r.amount_cents not in grouped]
        ),
        outcomes=_tally([_outcome(ctx, r) for r in results]),
    )


async def _stop_past(
    ctx: Context,
    amounts: range,
    allowed: float,
    results: Sequence[CheckoutResult],
    stop: asyncio.Event,
) -> str:
    """Set ``stop`` once the verdict is FAIL whatever comes next; returns why, in words.

    That is when the attempts of ``amounts`` number more than ``allowed``, or when more of
    ``results`` than UNTRIED_SHARE of ``amounts`` were answered without an attempt (an answered
    checkout's attempts all arrived before its answer, and its answer before this read).
    """
    untried_allowed = UNTRIED_SHARE * len(amounts)
    while True:
        await asyncio.sleep(STOP_POLL_S)
        answered = [r.amount_cents for r in results if r.status is not None]
        journal = await ctx.stack.stub.journal(amounts)
        if len(journal) > allowed:
            stop.set()
            return f"{len(amounts)} checkouts may make no more than {allowed:.0f} attempts"
        tried = {a.amount_cents for a in journal}
        refused = sum(amount not in tried for amount in answered)
        if refused > untried_allowed:
            stop.set()
            return (
                f"{refused} checkouts were answered without a provider attempt, more than "
                f"{UNTRIED_SHARE:.0%} of {len(amounts)}"
            )


def _words(tally: Sequence[tuple[str, int]]) -> str:
    """``150 answered 503, 30 no answer within 5.5 s``."""
    return ", ".join(f"{n} {what}" for what, n in tally)


def judge(ctx: Context, outage: Outage, clients: str, *, own_buckets_limit: int | None) -> Passed:
    """The verdict on one outage; ``own_buckets_limit`` also bounds the buckets it drained."""
    declared, source = bucket(ctx)
    limit = cap_of(declared)
    warmup = outage.warmup
    measured = (
        f"{outage.checkouts} checkouts from {clients} made {outage.attempts} provider attempts: "
        f"{outage.per_checkout:.3f} per checkout that reached the provider"
    )
    if outage.untried:
        measured += f" ({outage.untried_count} never did: {_words(outage.untried)})"
    measured += (
        f"; before that, {len(warmup.counts)} warm-up checkouts drained the bucket behind "
        f"{warmup.drained} of the {outage.clients} connections, {warmup.own_buckets} of which "
        f"found a bucket nothing had spent ({own_at(declared)} retries or more)"
    )
    if warmup.cut_short:
        measured += f"; the warm-up stopped there: {warmup.cut_short}"
    measured += (
        f"; sent by {outage.clients} clients at once, up to {outage.concurrent} checkouts "
        "overlapped at the provider"
    )
    if outage.stopped_early:
        measured += f"; stopped there: {outage.stopped}"
    expected = (
        f"at most 1 + ratio {declared.ratio:g} + {CAP_SLACK:g} slack = {limit:.3f} attempts per "
        f"checkout (burst {declared.burst}, {source}), every checkout tried at least once"
    )
    if own_buckets_limit is not None:
        expected += (
            f", and no more than {own_buckets_limit} of {outage.clients} connections finding a "
            "bucket of their own"
        )
    # For the HTML report's chart: attempts of each checkout over the outage (at most
    # OUTAGE_CHECKOUTS, and the warm-up's), against 1 + ratio.
    chart = OutageAttempts(
        attempts=outage.counts[:OUTAGE_CHECKOUTS],
        ratio=declared.ratio,
        limit=round(limit, 4),
        warmup=warmup.counts[:MAX_WARMUP_KEPT],
        burst=declared.burst,
    )
    data = {
        "per_checkout": round(outage.per_checkout, 4),
        "checkouts": outage.checkouts,
        "reached_provider": outage.reached,
        "stopped_early": outage.stopped_early,
        "stopped_because": outage.stopped,
        # What the counted checkouts got (e.g. {"answered 502": 200}), and, of them, those that
        # never reached the provider.
        "statuses": dict(outage.outcomes),
        "untried": dict(outage.untried),
        # The load held during the count: clients sending, and checkouts in flight at once.
        "clients": outage.clients,
        "concurrent_checkouts": outage.concurrent,
        "warmup_checkouts": len(warmup.counts),
        "warmup_drained_connections": warmup.drained,
        "warmup_own_buckets": warmup.own_buckets,
        "warmup_cut_short": warmup.cut_short,
        "limit": chart.limit,
        "ratio": declared.ratio,
        "burst": declared.burst,
        "cap_slack": CAP_SLACK,
        "warmup_attempts": list(chart.warmup),
        "attempts_per_checkout": list(chart.attempts),
    }
    evidence: dict[str, Any] = {"measured": measured, "expected": expected, "data": data}
    if outage.per_checkout > limit:
        with charted(chart):
            raise CheckFailed(
                f"retries multiplied the outage: {outage.per_checkout:.2f} attempts per checkout",
                **evidence,
            )
    if outage.untried_count > UNTRIED_SHARE * outage.checkouts:
        # Answered at once without a try: refused. Answered late or not at all: not served.
        # Each cause whose evidence is at least a quarter of the untried checkouts, the larger
        # first: a blocked loop also makes a connect to the provider time out at once, now and
        # then, which is no concurrency limit.
        refused = sum(n for what, n in outage.untried if _refused(what))
        causes = sorted(
            ((refused, REFUSED_HINT), (outage.untried_count - refused, STARVED_HINT)),
            key=lambda cause: -cause[0],
        )
        hint = " ".join(text for n, text in causes if 4 * n >= outage.untried_count)
        with charted(chart):
            raise CheckFailed(
                f"{outage.untried_count} of {outage.checkouts} checkouts never reached the "
                f"provider ({_words(outage.untried)}): the budget could not be measured",
                hint=hint,
                **evidence,
            )
    if own_buckets_limit is not None and warmup.own_buckets > own_buckets_limit:
        with charted(chart):
            raise CheckFailed(
                f"{warmup.own_buckets} of {outage.clients} connections each found a full bucket "
                "of their own",
                **evidence,
            )
    return Passed(
        f"the outage got {outage.per_checkout:.3f} attempts per checkout",
        chart=chart,
        **evidence,
    )
