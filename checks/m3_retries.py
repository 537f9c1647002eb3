"""Milestone 3: bounded retries with exponential backoff and jitter, seen from the provider.

Ids: m3.transient-heals, m3.attempts-bounded, m3.no-retry-on-decline, m3.retries-fit-budget,
m3.jitter-spread, m3.backoff-grows. The policy held to is the learner's `retries` section, or the
course's example policy while the table declares none.

A retry budget (milestone 4) may stand between a failure and its retry, and its state carries
over from check to check. So checks that need many retries each start a fresh API instance, and
size their bursts of failures to the declared budget: a fresh bucket holds `burst` tokens.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from checks.common import (
    answer_wait_s,
    attempt_rows,
    attempts_by_checkout,
    expected_fail_fast,
    fail_fast_problems,
    held_to,
)
from grader.budgets import COURSE_RETRIES, Retries
from grader.context import Context
from grader.errors import CheckFailed, CheckInconclusive
from grader.figures import timeline
from grader.model import Passed
from grader.registry import check
from grader.stubclient import Attempt, Decline, Status

# --- The statistics, with their error rates -------------------------------------------------
#
# Figures from `python benchmarks/simulate_retry_stats.py` (20,000 runs per policy, the course's
# example policy, 5 ms of timing noise), which imports these thresholds.
#
# Spread of first retries: S = IQR / median of the first-retry waits of STORM_CHECKOUTS
# checkouts whose first attempts fail at the same instant. Population S: full jitter (AWS,
# tenacity's wait_random_exponential) 1.0, equal jitter 0.33, decorrelated 0.5, stamina's
# defaults 0.83; no jitter ~0.05 (measured here: 0.04-0.07 on the no-jitter mutant).
#   False FAIL at SPREAD_MIN = 0.12, 20 checkouts: equal jitter 0.08 %, decorrelated 0.005 %,
#   full jitter and stamina < 0.005 %. With 12 checkouts (a small declared burst): equal 0.4 %.
#   A policy without jitter FAILs 99.5 % of the time (10 ms of jitter: 97.9 %); in the rest the
#   noise test below makes it INCONCLUSIVE, not PASS, as its spread is the machine's own.
# Noise only widens the spread, so a narrow spread is never noise's fault: it is a FAIL. A wide
# one is a PASS only when it is at least NOISE_FACTOR times the spread of lockstep retries the
# grader sends itself in the same run; otherwise noise could explain it: INCONCLUSIVE.
SPREAD_MIN = 0.12
NOISE_FACTOR = 2.0
# Delays are compared with the declared bounds with this much slack, plus the calibration's IQR:
# the API learns of a failure a little after the stub sent it, and wakes a little late.
BOUND_TOLERANCE_S = 0.03
# At most this share of delays may fall outside the declared bounds (one stray sample of 20
# on a busy machine is noise; a policy with other bounds puts most of them outside).
OUTSIDE_ALLOWED = 0.10
# Growth: FAIL when no second wait exceeds the first wait's cap plus the tolerance. A constant
# cap never does (it FAILs 100 % of the time); exponential full jitter does with probability
# ~0.3 per checkout, so it falsely FAILs 0.045 % of the time with 20 checkouts, 1.1 % with 12;
# equal and decorrelated jitter, stamina: < 0.005 %. Three points cannot tell exponential from
# linear growth, and this check does not pretend to.
GROWTH_OBSERVABLE = 1.3  # declared cap ratio below which growth is not asserted
STORM_CHECKOUTS = 20
MAX_STORM_INSTANCES = 4
FIGURE_ROWS = 12


def policy(ctx: Context) -> tuple[Retries, str]:
    """The retry policy held to, and where it comes from."""
    return held_to(ctx.budgets.retries, COURSE_RETRIES, "policy", "retries")


def describe(retries: Retries) -> str:
    """A policy in words."""
    return (
        f"{retries.max_attempts} attempts, {retries.jitter} jitter, "
        f"base {retries.base_delay_s:g} s, cap {retries.max_delay_s:g} s"
    )


def checkouts_per_instance(ctx: Context, retries_each: int, wanted: int) -> int:
    """How many failing checkouts a fresh instance's retry budget can retry in full."""
    bucket = ctx.budgets.retry_budget
    if bucket is None or retries_each == 0:
        return wanted
    return max(1, min(wanted, bucket.burst // retries_each))


def waits(attempts: Sequence[Attempt]) -> list[float]:
    """The waits between consecutive attempts: from the end of one to the next's arrival."""
    gaps = []
    for previous, following in itertools.pairwise(attempts):
        ended = previous.finished_at or previous.gave_up_at or previous.arrived_at
        gaps.append(following.arrived_at - ended)
    return gaps


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(IQR / median, IQR) of ``values``; the ratio is infinite for a zero median."""
    quartiles = statistics.quantiles(values, n=4)
    iqr = quartiles[2] - quartiles[0]
    median = statistics.median(values)
    return (iqr / median if median > 0 else math.inf), iqr


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
    await ctx.stack.stub.add_fault(Status(503), amounts=amounts, first_n=1)
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
    retries, source = policy(ctx)
    count = checkouts_per_instance(ctx, retries.max_attempts - 1, 3)
    api = await ctx.driver.start_api("api-attempts")
    amounts = ctx.amounts(count)
    await ctx.stack.stub.add_fault(Status(503), amounts=amounts)
    results = await asyncio.gather(
        *(ctx.driver.checkout(a, api=api, timeout_s=answer_wait_s(ctx)) for a in amounts)
    )
    grouped = await attempts_by_checkout(ctx, amounts, count)
    problems = []
    for result in results:
        seen = len(grouped.get(result.amount_cents, []))
        if not 2 <= seen <= retries.max_attempts:
            problems.append(f"a checkout made {seen} attempt(s)")
        problems += fail_fast_problems(ctx, result)
    counts = [len(grouped.get(a, [])) for a in amounts]
    measured = f"attempts per checkout: {counts}; " + "; ".join(r.describe() for r in results)
    expected = f"2 to {retries.max_attempts} attempts each ({source}); {expected_fail_fast(ctx)}"
    if problems:
        raise CheckFailed(
            problems[0], measured=measured, expected=expected, data={"attempts": counts}
        )
    return Passed(
        f"each checkout stopped after {max(counts)} attempts",
        measured=measured,
        expected=expected,
        data={"attempts": counts},
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
    retries, source = policy(ctx)
    layers = ctx.budgets.layers
    # Slow enough to add up past the api budget, fast enough not to trip the read timeout.
    delay_s = 0.75 * layers.read_s
    api = await ctx.driver.start_api("api-slow-failures")
    amounts = ctx.amounts(1)
    fault = Status(503, delay_ms=int(delay_s * 1000))
    await ctx.stack.stub.add_fault(fault, amounts=amounts)
    result = await ctx.driver.checkout(
        amounts[0], api=api, timeout_s=answer_wait_s(ctx) + retries.max_attempts
    )
    attempts = (await attempts_by_checkout(ctx, amounts, 1)).get(amounts[0], [])
    problems = fail_fast_problems(ctx, result)
    row = timeline([[a.arrived_at for a in attempts]]) if attempts else ()
    worst = retries.max_attempts * delay_s
    measured = f"checkout {result.describe()} after {len(attempts)} attempt(s) of {delay_s:g} s"
    expected = (
        expected_fail_fast(ctx) + f", although {retries.max_attempts} attempts could take "
        f"{worst:g} s ({source})"
    )
    if problems:
        raise CheckFailed(
            "retries overran the api budget: " + problems[0],
            measured=measured,
            expected=expected,
            figure=row,
        )
    return Passed(
        f"checkout {result.describe()}: the deadline cut the retries short",
        measured=measured,
        expected=expected,
        figure=row,
    )


@dataclass(frozen=True, slots=True)
class Storm:
    """Checkouts whose first attempts all failed at once, and the machine's own lockstep noise."""

    checkouts: int
    instances: int
    grouped: dict[int, list[Attempt]]
    noise_spread: float  # IQR / median of the grader's own lockstep retries
    noise_iqr_s: float

    @property
    def figure(self) -> tuple[str, ...]:
        """The storm's attempts per checkout, as a timeline."""
        return timeline(attempt_rows(self.grouped)[:FIGURE_ROWS])


async def _lockstep_noise(ctx: Context, count: int, delay_s: float) -> tuple[float, float]:
    """Spread of retries the grader itself sends in lockstep: all fail at once, all wait delay_s.

    This is what a policy without jitter looks like on this machine, right now.
    """
    amounts = ctx.amounts(count)
    await ctx.stack.stub.add_fault(Status(503), amounts=amounts, first_n=1)
    url = f"{ctx.stack.payments_url}/charge"

    async def retry_once(amount: int) -> None:
        await ctx.driver.http.post(url, json={"amount_cents": amount}, timeout=5.0)
        await asyncio.sleep(delay_s)
        await ctx.driver.http.post(url, json={"amount_cents": amount}, timeout=5.0)

    await asyncio.gather(*(retry_once(a) for a in amounts))
    grouped = await attempts_by_checkout(ctx, amounts, 2 * count)
    gaps = [waits(attempts)[0] for attempts in grouped.values() if len(attempts) >= 2]
    return spread(gaps)


async def _storm(ctx: Context) -> Storm:
    retries, _ = policy(ctx)
    per = checkouts_per_instance(ctx, retries.max_attempts - 1, STORM_CHECKOUTS)
    instances = min(MAX_STORM_INSTANCES, math.ceil(STORM_CHECKOUTS / per))
    apis = await asyncio.gather(*(ctx.driver.start_api(f"api-storm-{n}") for n in range(instances)))
    # As many lockstep retries at once as one instance gets: the same load on one event loop.
    noise_spread, noise_iqr = await _lockstep_noise(ctx, per, retries.max_delay_before(1))
    amounts = ctx.amounts(per * instances)
    fault = Status(503)
    await ctx.stack.stub.add_fault(fault, amounts=amounts, first_n=retries.max_attempts - 1)
    await asyncio.gather(
        *(
            ctx.driver.checkout(a, api=apis[n % instances], timeout_s=answer_wait_s(ctx))
            for n, a in enumerate(amounts)
        )
    )
    grouped = await attempts_by_checkout(ctx, amounts, len(amounts))
    return Storm(len(amounts), instances, grouped, noise_spread, noise_iqr)


def _bounds(retries: Retries, retry: int) -> tuple[float, float]:
    """The declared range of the wait before retry ``retry`` (1 = the first retry)."""
    cap = retries.max_delay_before(retry)
    if retries.jitter == "equal":
        return cap / 2, cap
    if retries.jitter == "decorrelated":
        return min(retries.base_delay_s, cap), cap
    return 0.0, cap


@check(
    "m3.jitter-spread",
    "Checkouts that fail together do not retry in lockstep",
    depends=("m3.transient-heals",),
    why="When a blip fails many requests at once, retries without jitter all come back at the "
    "same instant and knock the recovering provider over again: the thundering herd.",
    hint="Randomise each wait as declared: full jitter waits uniform(0, cap), equal jitter "
    "cap/2 + uniform(0, cap/2), decorrelated min(max_delay, uniform(base, 3 * previous)).",
    timeout_s=60,
    exclusive=True,
)
async def jitter_spread(ctx: Context) -> Passed:
    """Fail 20 first attempts at once; expect first-retry waits spread out, within the bounds."""
    retries, source = policy(ctx)
    storm = await ctx.once(_storm)
    firsts = [waits(a)[0] for a in storm.grouped.values() if len(a) >= 2]
    figure = storm.figure
    lo, hi = _bounds(retries, 1)
    expected = (
        f"IQR/median of first-retry waits >= {SPREAD_MIN} and >= {NOISE_FACTOR:g} x the "
        f"machine's lockstep spread; waits within {lo * 1000:.0f}-{hi * 1000:.0f} ms "
        f"({describe(retries)}, {source})"
    )
    if len(firsts) < max(3, storm.checkouts // 2):
        raise CheckFailed(
            f"only {len(firsts)} of {storm.checkouts} failed checkouts were retried",
            measured=f"{len(firsts)} retries from {storm.instances} fresh instance(s)",
            expected=expected,
            figure=figure,
        )
    observed, iqr = spread(firsts)
    tolerance = BOUND_TOLERANCE_S + storm.noise_iqr_s
    outside = [w for w in firsts if not lo - tolerance <= w <= hi + tolerance]
    data = {
        "first_retry_waits_ms": [round(w * 1000, 1) for w in firsts],
        "spread": round(observed, 3),
        "noise_spread": round(storm.noise_spread, 3),
    }
    measured = (
        f"{len(firsts)} first-retry waits: median {statistics.median(firsts) * 1000:.0f} ms, IQR "
        f"{iqr * 1000:.0f} ms, IQR/median {observed:.2f} (the grader's own lockstep retries: "
        f"{storm.noise_spread:.2f}); {len(outside)} outside the declared bounds"
    )
    evidence: dict[str, Any] = {
        "measured": measured,
        "expected": expected,
        "data": data,
        "figure": figure,
    }
    if len(outside) > OUTSIDE_ALLOWED * len(firsts):
        raise CheckFailed(
            f"{len(outside)} of {len(firsts)} first-retry waits lie outside the declared "
            f"{retries.jitter} jitter bounds",
            hint="Make the code's waits match budgets.yaml's retries section (or the table "
            "match the code): the grader holds the service to what the table declares.",
            **evidence,
        )
    if observed < SPREAD_MIN:
        raise CheckFailed("retries came back in lockstep", **evidence)
    if observed < NOISE_FACTOR * storm.noise_spread:
        raise CheckInconclusive(
            "this machine is too noisy right now to tell jitter from timing noise",
            hint="Nothing to fix yet: grade again on a quieter machine.",
            **evidence,
        )
    return Passed(f"first retries spread over {iqr * 1000:.0f} ms (IQR)", **evidence)


@check(
    "m3.backoff-grows",
    "The waits between attempts grow as declared",
    depends=("m3.transient-heals",),
    why="A provider that failed twice needs longer to recover than one that failed once: a "
    "constant wait keeps hammering it at the same rate for as long as the outage lasts.",
    hint="Wait min(max_delay_s, base_delay_s * 2 ** (n - 1)) before retry n (then apply the "
    "jitter): the cap doubles with each retry until max_delay_s.",
    timeout_s=60,
    exclusive=True,
)
async def backoff_grows(ctx: Context) -> Passed:
    """Fail all but the last attempt of 20 checkouts; expect later waits past earlier caps."""
    retries, source = policy(ctx)
    storm = await ctx.once(_storm)
    figure = storm.figure
    all_waits = [waits(a) for a in storm.grouped.values()]
    tolerance = BOUND_TOLERANCE_S + storm.noise_iqr_s
    caps = [retries.max_delay_before(n) for n in range(1, retries.max_attempts)]
    expected = (
        "waits within " + ", ".join(f"{c * 1000:.0f}" for c in caps) + " ms for retries "
        f"1-{len(caps)}, and some second waits longer than the first's cap "
        f"({describe(retries)}, {source})"
    )
    outside = [
        (n + 1, w)
        for ws in all_waits
        for n, w in enumerate(ws[: len(caps)])
        if not _bounds(retries, n + 1)[0] - tolerance <= w <= caps[n] + tolerance
    ]
    seconds = [ws[1] for ws in all_waits if len(ws) >= 2]
    past_first_cap = [w for w in seconds if w > caps[0] + tolerance]
    by_retry = [[ws[n] for ws in all_waits if len(ws) > n] for n in range(len(caps))]
    measured = (
        "; ".join(
            f"wait {n + 1}: median {statistics.median(ws) * 1000:.0f} ms, "
            f"max {max(ws) * 1000:.0f} ms (n={len(ws)})"
            for n, ws in enumerate(by_retry)
            if ws
        )
        + f"; {len(past_first_cap)} second waits past the first cap"
    )
    data = {"waits_ms": [[round(w * 1000, 1) for w in ws] for ws in all_waits]}
    total = sum(len(ws) for ws in by_retry)
    if outside and len(outside) > OUTSIDE_ALLOWED * total:
        raise CheckFailed(
            f"{len(outside)} of {total} waits lie outside the declared backoff",
            measured=measured,
            expected=expected,
            data=data,
            figure=figure,
            hint="Make the code's waits match budgets.yaml's retries section: retry n waits at "
            "most min(max_delay_s, base_delay_s * 2 ** (n - 1)).",
        )
    if len(caps) < 2 or caps[1] < GROWTH_OBSERVABLE * caps[0]:
        return Passed(
            "the declared policy has no growth to observe (one wait, or a cap reached at once); "
            "the waits stay within it",
            measured=measured,
            expected=expected,
            data=data,
            figure=figure,
        )
    if len(seconds) < 3:
        raise CheckFailed(
            f"only {len(seconds)} checkouts reached a second retry",
            measured=measured,
            expected=expected,
            data=data,
            figure=figure,
        )
    if not past_first_cap:
        raise CheckFailed(
            "the second waits never exceeded the first wait's cap: the backoff does not grow",
            measured=measured,
            expected=expected,
            data=data,
            figure=figure,
        )
    return Passed(
        f"{len(past_first_cap)} of {len(seconds)} second waits went past the first cap",
        measured=measured,
        expected=expected,
        data=data,
        figure=figure,
    )
