"""How much load a check held at each of its measurements, read from the stub's journal.

A check that claims a condition ("while 20 checkouts are stuck") must measure while that
condition holds, and say how much of it held at each measurement. The stub journals when each
provider attempt arrived and when it ended (answered, or given up on by the client), on the
grader's own clock (CLOCK_MONOTONIC), so how many checkouts the provider held at any instant is
known exactly once the journal is read: no poll has to land at the right moment.

A service may never hold all N: a gunicorn worker with 16 threads takes 16 of 20 checkouts and
queues the rest. The most it holds at once (its plateau) is then the condition a measurement can
be taken under; that the count plateaus below N is itself what starves a request queued behind.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grader.checkkit import Attempt, CheckoutResult, Context, k6

# The count has stopped rising once it has not risen for this long: 20 checkouts sent at once
# all reach the provider within ~0.1 s on a quiet machine (the reference: 20 in 0.04-0.09 s),
# and a thread-limited service takes what it can in that time too.
SETTLE_S = 0.3
# However the count moves, probing starts this long after the checkouts were sent: a service
# that lets checkouts in one at a time (a blocking call in an async handler) never settles.
SETTLE_CAP_S = 1.5
POLL_S = 0.05


def ended_at(attempt: Attempt) -> float | None:
    """When an attempt ended, however it did: given up on by the client, or answered."""
    if attempt.gave_up_at is not None:
        return attempt.gave_up_at
    return attempt.finished_at if attempt.ended else None


def held_at(attempts: Sequence[Attempt], at: float) -> int:
    """How many checkouts (distinct amounts) had an attempt open at the provider at ``at``."""
    open_ones = set()
    for attempt in attempts:
        end = ended_at(attempt)
        if attempt.arrived_at <= at and (end is None or end > at):
            open_ones.add(attempt.amount_cents)
    return len(open_ones)


def plateau(attempts: Sequence[Attempt], since: float, until: float) -> int:
    """The most checkouts held at once between ``since`` and ``until``: the service's plateau.

    The count rises only when an attempt arrives, so its maximum is at ``since`` or at an
    arrival inside the window.
    """
    instants = [since, *(a.arrived_at for a in attempts if since <= a.arrived_at <= until)]
    return max(held_at(attempts, at) for at in instants)


@dataclass(frozen=True, slots=True)
class Probe:
    """One request a check sent while it held load, and what came of it."""

    sent_at: float  # time.monotonic() when it was sent
    latency_s: float  # until it was answered, or given up on at its timeout
    status: int | None  # None: no answer
    failure: str | None  # None: answered 200; else what went wrong, in words
    timed_out: bool = False
    # The check's own requests not yet answered when it was sent: stuck in the service, whether
    # or not they have reached the provider yet (a blocked event loop lets none through).
    outstanding: int = 0


@dataclass(frozen=True, slots=True)
class HeldProbe:
    """A probe with the load the provider held when it was sent."""

    probe: Probe
    held: int  # checkouts the provider held when the probe was sent

    @property
    def under_load(self) -> bool:
        """Whether it was sent while any checkout was stuck: held, or not yet answered."""
        return self.held > 0 or self.probe.outstanding > 0

    def to_data(self, since: float) -> dict[str, object]:
        """The probe as the report's data: when (after ``since``), how long, under what load."""
        return {
            "sent_after_s": round(self.probe.sent_at - since, 3),
            "latency_ms": round(self.probe.latency_s * 1000, 1),
            "held": self.held,
            "outstanding": self.probe.outstanding,
            "status": self.probe.status,
            "failure": self.probe.failure,
        }


def with_load(attempts: Sequence[Attempt], probes: Sequence[Probe]) -> list[HeldProbe]:
    """Each probe with the checkouts the provider held at the instant it was sent."""
    return [HeldProbe(p, held_at(attempts, p.sent_at)) for p in probes]


async def until_settled(ctx: Context, amounts: range, since: float) -> list[Attempt]:
    """Poll the journal until all of ``amounts`` are held, or the count stopped rising.

    Returns the journal at that moment; at most SETTLE_CAP_S after ``since``.
    """
    best, rose_at = -1, since
    while True:
        attempts = await ctx.stack.stub.journal(amounts)
        now = time.monotonic()
        count = held_at(attempts, now)
        if count > best:
            best, rose_at = count, now
        settled = best > 0 and now - rose_at >= SETTLE_S
        if count >= len(amounts) or settled or now - since >= SETTLE_CAP_S:
            return attempts
        await asyncio.sleep(POLL_S)


def refused(
    answered: Sequence[CheckoutResult], attempts: Sequence[Attempt]
) -> list[CheckoutResult]:
    """The checkouts answered without reaching the provider: the service refused them itself.

    ``answered`` are the check's checkouts that came back (any status, or no complete answer);
    ``attempts`` the stub's journal of their amounts. One with no attempt there was turned away
    before any provider call: a concurrency limit, a bulkhead, an open circuit breaker, or a
    deadline spent before the call was made (a blocked event loop: 504s).
    """
    reached = {a.amount_cents for a in attempts}
    return [r for r in answered if r.amount_cents not in reached]


def status_counts(results: Sequence[CheckoutResult]) -> dict[str, int]:
    """How many of ``results`` came back with each status (``"none"``: no complete answer)."""
    counts: dict[str, int] = {}
    for result in results:
        key = "none" if result.status is None else str(result.status)
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def refused_after(reached: frozenset[int], sent: int) -> int:
    """Of iterations 0..``sent``-1, how many never reached the provider after the first that did.

    ``reached`` are the iterations (in the order k6 started them) whose checkout reached the
    provider. A circuit breaker that closes late refuses a run of early ones and then lets
    every later one through (0 here); a full concurrency limit keeps refusing some among those
    it lets through. None reached at all: 0 (nothing got through to be after).
    """
    if not reached:
        return 0
    return sum(1 for n in range(min(reached) + 1, sent) if n not in reached)


# k6 had far more VUs busy than the provider held checkouts when the provider held fewer than
# this share of them: see queued().
QUEUED_SHARE = 0.5


def queued(held_most: int, vus_max: int | None) -> bool:
    """Whether the service queued the slow phase's checkouts rather than holding them.

    Every busy k6 VU is a request the service has not answered. A service that bounds its
    provider calls but starts every checkout holds at the provider about as many as k6 has busy
    (the reference: within a few, the rest /healthz probes and checkouts on their way in or
    out); one with no bound on the provider call holds even more. A service out of threads or
    workers, or with a blocked event loop, starts only some: the rest wait inside it, k6's VUs
    pile up on them, and the provider holds fewer than half of them (sync-handlers with 8
    threads: 8 held, 103 VUs busy). Half leaves the reference's handful of /healthz probes and
    in-between requests far inside the line.
    """
    return vus_max is not None and vus_max > 0 and held_most < vus_max * QUEUED_SHARE


def most_at_once(spans: Sequence[tuple[float, float]]) -> int:
    """The most of ``spans`` (start, end) open at one instant; one ending as another starts: 1."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    now = most = 0
    for _, step in events:  # at equal times -1 sorts first: an end before a start
        now += step
        most = max(most, now)
    return most


def checkout_spans(grouped: dict[int, list[Attempt]]) -> list[tuple[float, float]]:
    """Each checkout's time at the provider: its first attempt's arrival to its last's end.

    An attempt still open counts as ending at its arrival: the span is a lower bound.
    """
    spans = []
    for attempts in grouped.values():
        if attempts:
            start = min(a.arrived_at for a in attempts)
            ends = [ended_at(a) or a.arrived_at for a in attempts]
            spans.append((start, max(ends)))
    return spans


def firsts_spread(grouped: dict[int, list[Attempt]], group_of: dict[int, int]) -> float:
    """How far apart the first attempts of one group's checkouts came, for the widest group.

    "Checkouts that fail together" holds when, in each group (an instance of the service),
    every first attempt reached the provider within a few ms of the others.
    """
    firsts: dict[int, list[float]] = {}
    for amount, attempts in grouped.items():
        if attempts:
            firsts.setdefault(group_of.get(amount, -1), []).append(attempts[0].arrived_at)
    return max((max(f) - min(f) for f in firsts.values()), default=0.0)


def answered_at(attempt: Attempt) -> float | None:
    """When the provider began its answer to an attempt, or else when the attempt ended."""
    if attempt.response_started_at is not None:
        return attempt.response_started_at
    return ended_at(attempt)


def overlap_s(first: tuple[float, float], second: tuple[float, float]) -> float:
    """How long two spans (start, end) were open together: 0 when one ended before the other."""
    return max(0.0, min(first[1], second[1]) - max(first[0], second[0]))


def held_samples(
    attempts: Sequence[Attempt], since: float, until: float, step_s: float
) -> list[int]:
    """The checkouts held at ``since``, every ``step_s`` after it, up to ``until``.

    Evenly spaced instants, so the median says how much was held for most of the window, where
    the plateau says only the most at any one instant.
    """
    count = max(0, int((until - since) / step_s)) + 1
    return [held_at(attempts, since + n * step_s) for n in range(count)]


# The load test's held load (lt.* checks): how often the slow phase's held count is sampled.
HELD_STEP_S = 0.1


@dataclass(frozen=True, slots=True)
class HeldLoad:
    """How much load the run held: at the provider in the slow phase, and in k6's VUs.

    The slow phase claims "while the provider holds every charge": ``held_most`` and
    ``held_median`` say how many slow checkouts the provider held at once over it (from the
    stub's journal), so a service that queued them (k6 waiting on it, iterations dropped) shows.
    """

    slow_checkouts: int  # slow checkouts that reached the provider
    held_most: int  # the most the provider held at once in the slow phase
    held_median: float  # the median of the held count, sampled every HELD_STEP_S over it
    vus_max: int | None  # the most VUs k6 had busy at once (both phases, and /healthz)
    vus_allocated: int | None  # the most VUs k6 had allocated
    dropped_iterations: int  # arrival-rate iterations k6 could not start: no free VU
    recovery_requests: int | None  # recovery checkouts k6 completed
    recovery_rate: float | None  # per second, over the recovery phase

    def to_data(self) -> dict[str, Any]:
        """For the reports' data."""
        return {
            "slow_checkouts_at_provider": self.slow_checkouts,
            "slow_held_most": self.held_most,
            "slow_held_median": self.held_median,
            "k6_vus_max": self.vus_max,
            "k6_vus_allocated": self.vus_allocated,
            "k6_dropped_iterations": self.dropped_iterations,
            "recovery_requests": self.recovery_requests,
            "recovery_rate_per_s": self.recovery_rate,
        }

    def describe(self) -> str:
        """In words, for ``measured``."""
        vus = "" if self.vus_max is None else f", k6 had up to {self.vus_max} VUs busy"
        dropped = (
            f", {self.dropped_iterations} iterations dropped (no free VU)"
            if self.dropped_iterations
            else ""
        )
        recovery = (
            ""
            if self.recovery_rate is None
            else f"; recovery ran at {self.recovery_rate:.1f} checkouts/s"
        )
        return (
            f"slow phase: the provider held up to {self.held_most} checkouts at once (median "
            f"{self.held_median:g}){vus}{dropped}{recovery}"
        )


def _gauge_max(run: k6.Run, name: str) -> int | None:
    """A gauge's highest value in the run (k6 summarises a gauge as value, min and max)."""
    metric = run.summary.metrics.get(name)
    found = None if metric is None else metric.values.get("max", metric.values.get("value"))
    return None if found is None else round(found)


def held_load(
    run: k6.Run, slow: Sequence[Attempt], *, slow_s: float, recovery_s: float
) -> HeldLoad:
    """What a k6 run held, from its summary and the stub's journal of the slow checkouts.

    The slow phase is taken as ``slow_s`` from the first slow checkout's arrival at the
    provider; the recovery phase's rate is its requests over ``recovery_s``.
    """
    most, median = 0, 0.0
    if slow:
        since = min(a.arrived_at for a in slow)
        until = since + slow_s
        most = plateau(slow, since, until)
        median = float(statistics.median(held_samples(slow, since, until, HELD_STEP_S)))
    dropped = run.summary.metrics.get("dropped_iterations")
    recovery = run.summary.metrics.get("http_req_duration{scenario:recovery}")
    requests = None if recovery is None or recovery.samples is None else round(recovery.samples)
    return HeldLoad(
        slow_checkouts=len({a.amount_cents for a in slow}),
        held_most=most,
        held_median=median,
        vus_max=_gauge_max(run, "vus"),
        vus_allocated=_gauge_max(run, "vus_max"),
        dropped_iterations=0 if dropped is None else round(dropped.values.get("count", 0.0)),
        recovery_requests=requests,
        recovery_rate=None if requests is None else round(requests / recovery_s, 2),
    )
