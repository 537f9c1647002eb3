"""Milestone 3, storms: checkouts that fail together retry with jitter, and back off as declared.

Ids: m3.jitter-spread, m3.backoff-grows, judged on storms of checkouts whose first attempts all
fail at once, with the thresholds of checks/stats.py; milestone 3's checks of one checkout at a
time are in checks/m3_retries.py, which sorts, and so registers, first (these depend on
m3.transient-heals). The policy held to is the learner's `retries` section, or the course's
example policy while the table declares none.

A retry budget (milestone 4) may stand between a failure and its retry, and its state carries
over from check to check. So each storm runs on fresh API instances, and sizes its bursts of
failures to the declared budget: a fresh bucket holds `burst` tokens.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from dataclasses import dataclass
from typing import Any

from checks.common import NOISE_HINT, answer_wait_s, attempt_rows, attempts_by_checkout, policy
from checks.held import firsts_spread
from checks.stats import (
    BOUND_SLACK_S,
    GROWTH_OBSERVABLE,
    LATENESS_FACTOR,
    LATENESS_FLOOR_S,
    MAX_STORMS,
    NOISE_FACTOR,
    OUTSIDE_ALLOWED,
    SPREAD_LOCKSTEP,
    SPREAD_PASS,
    Z_FLAT,
    Z_GROWS,
    Growth,
    GrowthTest,
    Spread,
    Zone,
    charted,
    checkouts_per_instance,
    count_bounds,
    declared_bounds,
    declared_mean,
    ended_at,
    growth,
    lateness_noise,
    spread_test,
    waits,
)
from grader.checkkit import (
    Attempt,
    CheckFailed,
    CheckInconclusive,
    Context,
    ErrorStatus,
    Passed,
    Retries,
    RetryStorm,
    check,
    timeline,
)

STORM_CHECKOUTS = 20
MAX_STORM_INSTANCES = 4
FIGURE_ROWS = 12
# What the reports' data keeps of a storm for a chart: every checkout of the first wave (20),
# and at most this many attempts of each (and of declared bounds), so a policy with a hundred
# attempts cannot bloat the report.
CHART_CHECKOUTS = 40
CHART_ATTEMPTS = 10


def describe(retries: Retries) -> str:
    """A policy in words."""
    return (
        f"{retries.max_attempts} attempts, {retries.jitter} jitter, "
        f"base {retries.base_delay_s:g} s, cap {retries.max_delay_s:g} s"
    )


@dataclass(frozen=True, slots=True)
class Wave:
    """Checkouts on fresh instances whose first attempts all failed at once, and the noise."""

    grouped: dict[int, list[Attempt]]
    instance_of: dict[int, int]  # the instance each checkout (by amount) was sent to
    noise_groups: tuple[tuple[float, ...], ...]  # the grader's own lockstep waits, per group
    late_s: tuple[float, ...]  # how late each of those came, past the time it slept

    @property
    def instances(self) -> int:
        """How many fresh instances the wave ran on."""
        return len(set(self.instance_of.values()))

    @property
    def waits(self) -> list[list[float]]:
        """The waits of each checkout, in order."""
        return [waits(attempts) for attempts in self.grouped.values()]

    @property
    def together_s(self) -> float:
        """The load held: how far apart one instance's first attempts came (the widest)."""
        return firsts_spread(self.grouped, self.instance_of)

    @property
    def firsts_by_instance(self) -> list[list[float]]:
        """The first-retry waits, grouped by the instance that made them."""
        groups: dict[int, list[float]] = {}
        for amount, attempts in self.grouped.items():
            gaps = waits(attempts)
            if gaps:
                groups.setdefault(self.instance_of.get(amount, -1), []).append(gaps[0])
        return list(groups.values())


@dataclass(slots=True)
class Storm:
    """One or more waves: m3.jitter-spread judges the first, m3.backoff-grows may add more."""

    waves: list[Wave]

    @property
    def first(self) -> Wave:
        """The first wave."""
        return self.waves[0]

    @property
    def noise_s(self) -> float:
        """Seconds of doubt a wait gets past its bound, from the lateness measured meanwhile."""
        late = [x for wave in self.waves for x in wave.late_s]
        return lateness_noise(late, LATENESS_FACTOR, LATENESS_FLOOR_S)

    @property
    def figure(self) -> tuple[str, ...]:
        """The first wave's attempts per checkout, as a timeline."""
        return timeline(attempt_rows(self.first.grouped)[:FIGURE_ROWS])

    def chart(self, retries: Retries) -> RetryStorm:
        """The first wave on one time axis, for the chart of the storm (ms after it began).

        Each checkout (in order of its first attempt) with the (arrival, end) of each attempt,
        and the declared range of each retry's wait: a chart shades where each retry was
        declared to come, from the end of the attempt before it.
        """
        rows = list(self.first.grouped.values())[:CHART_CHECKOUTS]
        origin = min((a.arrived_at for attempts in rows for a in attempts), default=0.0)

        def ms(t: float) -> float:
            return round((t - origin) * 1000, 1)

        retries_made = min(retries.max_attempts - 1, CHART_ATTEMPTS)
        windows = (declared_bounds(retries, n) for n in range(1, retries_made + 1))
        return RetryStorm(
            checkouts=tuple(
                tuple((ms(a.arrived_at), ms(ended_at(a))) for a in attempts[:CHART_ATTEMPTS])
                for attempts in rows
            ),
            windows_ms=tuple((round(lo * 1000, 1), round(hi * 1000, 1)) for lo, hi in windows),
        )

    def chart_data(self, chart: RetryStorm) -> dict[str, Any]:
        """The storm's chart as the reports' data, and the instance each checkout ran on."""
        amounts = list(self.first.grouped)[:CHART_CHECKOUTS]
        return {
            "storm_attempts_ms": [[list(span) for span in row] for row in chart.checkouts],
            "storm_instances": [self.first.instance_of.get(amount, -1) for amount in amounts],
            "declared_bounds_ms": [list(window) for window in chart.windows_ms],
        }

    async def add_wave(self, ctx: Context) -> None:
        """Measure another wave on fresh instances."""
        self.waves.append(await _wave(ctx, len(self.waves)))


async def _lockstep_noise(
    ctx: Context, per: int, groups: int, delay_s: float
) -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]:
    """Retries the grader itself sends in lockstep: all fail at once, all sleep ``delay_s``.

    This is what a policy without jitter looks like on this machine, right now: their waits,
    per group, and how late each came past ``delay_s``. Sent in ``groups`` groups of ``per``
    at once, one after another: one instance's share of the storm at a time on one event loop,
    as each instance of the learner's API has its own.
    """
    url = f"{ctx.stack.provider_url}/charge"

    async def retry_once(amount: int) -> None:
        await ctx.driver.http.post(url, json={"amount_cents": amount}, timeout=5.0)
        await asyncio.sleep(delay_s)
        await ctx.driver.http.post(url, json={"amount_cents": amount}, timeout=5.0)

    amounts = ctx.amounts(per * groups)
    await ctx.stack.stub.add_fault(ErrorStatus(503), amounts=amounts, first_n=1)
    for group in range(groups):
        await asyncio.gather(*(retry_once(a) for a in amounts[group * per : (group + 1) * per]))
    grouped = await attempts_by_checkout(ctx, amounts, 2 * len(amounts))
    gaps = {
        amount: waits(attempts)[0] for amount, attempts in grouped.items() if len(attempts) >= 2
    }
    in_groups = tuple(
        tuple(gaps[a] for a in amounts[group * per : (group + 1) * per] if a in gaps)
        for group in range(groups)
    )
    return in_groups, tuple(max(0.0, gap - delay_s) for gap in gaps.values())


async def _wave(ctx: Context, number: int) -> Wave:
    retries, _ = policy(ctx)
    per = checkouts_per_instance(
        ctx.budgets.retry_budget, retries.max_attempts - 1, STORM_CHECKOUTS
    )
    instances = min(MAX_STORM_INSTANCES, math.ceil(STORM_CHECKOUTS / per))
    apis = await asyncio.gather(
        *(ctx.driver.start_api(f"api-storm-{number}-{n}") for n in range(instances))
    )
    noise_groups, late = await _lockstep_noise(ctx, per, instances, retries.max_delay_before(1))
    amounts = ctx.amounts(per * instances)
    instance_of = {a: n % instances for n, a in enumerate(amounts)}
    fault = ErrorStatus(503)
    await ctx.stack.stub.add_fault(fault, amounts=amounts, first_n=retries.max_attempts - 1)
    await asyncio.gather(
        *(
            ctx.driver.checkout(a, api=apis[instance_of[a]], timeout_s=answer_wait_s(ctx))
            for a in amounts
        )
    )
    grouped = await attempts_by_checkout(ctx, amounts, len(amounts))
    return Wave(grouped, instance_of, noise_groups, late)


async def _storm(ctx: Context) -> Storm:
    return Storm([await _wave(ctx, 0)])


def _bounds_verdict(
    storm: Storm, triples: list[tuple[float, float, float]], what: str, evidence: dict[str, Any]
) -> None:
    """FAIL when waits lie beyond their declared bounds; INCONCLUSIVE when noise may explain."""
    counted = count_bounds(triples, BOUND_SLACK_S, storm.noise_s)
    found = counted.zone(OUTSIDE_ALLOWED)
    if found is Zone.BEYOND:
        raise CheckFailed(
            f"{counted.beyond} of {counted.total} {what} lie outside the declared bounds, by "
            f"more than this machine's timing noise ({storm.noise_s * 1000:.0f} ms) explains",
            hint="Make the code's waits match budgets.yaml's retries section (or the table "
            "match the code): retry n waits within the declared jitter of "
            "min(max_delay_s, base_delay_s * 2 ** (n - 1)).",
            **evidence,
        )
    if found is Zone.NOISY:
        raise CheckInconclusive(
            f"{counted.beyond + counted.noisy} of {counted.total} {what} came later than the "
            f"declared bounds allow, by no more than this machine's timing noise "
            f"({storm.noise_s * 1000:.0f} ms) could explain",
            hint=f"{NOISE_HINT} If it repeats, check that your waits stay within the declared "
            "bounds.",
            **evidence,
        )


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
    """Fail 20 first attempts at once; expect first-retry waits spread out, within the bounds.

    The condition it claims: checkouts whose first attempts fail together retry at spread-out
    times (jitter), within the declared bounds of the first wait.

    How it knows the condition holds while it measures: the checkouts are sent at once to fresh
    instances (as many each as a fresh bucket retries in full), every first attempt fails, and
    the report says how close together each instance's first attempts came. Waits run from an
    attempt's end to the next one's arrival, so a service that lets fewer in at a time is
    judged on the same waits; the grader's own lockstep retries measure the machine's noise.

    The hints' evidence: waits of one instance no further apart than the grader's own lockstep
    ones are retries without jitter; waits beyond the declared bounds by more than the noise
    are a policy other than the table's.
    """
    return judge_jitter_spread(ctx, await ctx.once(_storm))


def judge_jitter_spread(ctx: Context, storm: Storm) -> Passed:
    """m3.jitter-spread's verdict on the storm's first wave."""
    retries, source = policy(ctx)
    wave = storm.first
    firsts = [ws[0] for ws in wave.waits if ws]
    figure = storm.figure
    lo, hi = declared_bounds(retries, 1)
    expected = (
        f"two first-retry waits of the same instance >= {SPREAD_PASS:g} x the declared range's "
        f"width apart on average (a uniform draw: 1/3), and >= {NOISE_FACTOR:g} x the grader's "
        f"own lockstep retries; waits within {lo * 1000:.0f}-{hi * 1000:.0f} ms "
        f"({describe(retries)}, {source})"
    )
    checkouts = len(wave.grouped)
    if len(firsts) < max(3, checkouts // 2):
        raise CheckFailed(
            f"only {len(firsts)} of {checkouts} failed checkouts were retried",
            measured=f"{len(firsts)} retries from {wave.instances} fresh instance(s)",
            expected=expected,
            figure=figure,
        )
    groups = wave.firsts_by_instance
    test = spread_test(
        groups,
        hi - lo,
        wave.noise_groups,
        lockstep_below=SPREAD_LOCKSTEP,
        spread_from=SPREAD_PASS,
        noise_factor=NOISE_FACTOR,
    )
    noise = test.noise_difference_s
    noise_ms = f"{noise * 1000:.1f}" if math.isfinite(noise) else "-"
    chart = storm.chart(retries)
    data = {
        "first_retry_waits_ms": [round(w * 1000, 1) for w in firsts],
        "first_retry_waits_by_instance_ms": [[round(w * 1000, 1) for w in g] for g in groups],
        "mean_difference_ms": round(test.difference_s * 1000, 1),
        "spread": round(test.ratio, 3) if math.isfinite(test.ratio) else None,
        "noise_mean_difference_ms": (
            round(test.noise_difference_s * 1000, 1)
            if math.isfinite(test.noise_difference_s)
            else None
        ),
        "lateness_ms": [round(x * 1000, 1) for x in wave.late_s],
        "lockstep_waits_by_group_ms": [[round(w * 1000, 1) for w in g] for g in wave.noise_groups],
        "noise_ms": round(storm.noise_s * 1000, 1),
        "first_attempts_within_ms": round(wave.together_s * 1000, 1),  # the load held
        **storm.chart_data(chart),
    }
    measured = (
        f"{checkouts} checkouts whose first attempts failed together (each instance's within "
        f"{wave.together_s * 1000:.0f} ms); "
        f"{len(firsts)} first-retry waits from {len(groups)} instance(s), median "
        f"{statistics.median(firsts) * 1000:.0f} ms; two of the same instance came "
        f"{test.difference_s * 1000:.1f} ms apart on average, {test.ratio:.2f} of the declared "
        f"{(hi - lo) * 1000:.0f} ms range (the grader's own lockstep retries: {noise_ms} ms "
        f"apart, up to {max(wave.late_s, default=0) * 1000:.0f} ms late)"
    )
    evidence: dict[str, Any] = {
        "measured": measured,
        "expected": expected,
        "data": data,
        "figure": figure,
    }
    with charted(chart):
        if test.verdict is Spread.LOCKSTEP:
            raise CheckFailed("retries came back in lockstep", **evidence)
        _bounds_verdict(storm, [(w, lo, hi) for w in firsts], "first-retry waits", evidence)
        if test.verdict is Spread.UNSURE:
            raise CheckInconclusive(
                "this machine is too noisy right now to tell jitter from timing noise",
                hint=f"{NOISE_HINT} If it repeats, check that each wait is drawn at random over "
                "the declared range.",
                **evidence,
            )
    return Passed(
        f"first retries of one instance came {test.difference_s * 1000:.0f} ms apart on average",
        chart=chart,
        **evidence,
    )


@check(
    "m3.backoff-grows",
    "The waits between attempts grow as declared",
    depends=("m3.transient-heals",),
    why="A provider that failed twice needs longer to recover than one that failed once: a "
    "constant wait keeps hammering it at the same rate for as long as the outage lasts.",
    hint="Wait min(max_delay_s, base_delay_s * 2 ** (n - 1)) before retry n (then apply the "
    "jitter): the cap doubles with each retry until max_delay_s.",
    timeout_s=90,
    exclusive=True,
)
async def backoff_grows(ctx: Context) -> Passed:
    """Fail all but the last attempt of 20 checkouts; expect second waits longer than first.

    The condition it claims: the wait before retry 2 is longer than before retry 1, as the
    declared caps grow, and every wait is within its declared bounds.

    How it knows the condition holds while it measures: m3.jitter-spread's storm (its first
    attempts' spread reported per storm), max_attempts - 1 failures each, so every retried
    checkout makes each wait; storms are added while the growth test is unsure.

    The hints' evidence: second waits no longer than first ones (beyond doubt) are a constant
    wait; waits beyond their bounds by more than the noise, another policy.
    """
    retries, _ = policy(ctx)
    storm = await ctx.once(_storm)
    gain, observable = _declared_growth(retries)
    while (
        observable
        and _growth(storm, gain).verdict is Growth.UNSURE
        and len(storm.waves) < MAX_STORMS
    ):
        await storm.add_wave(ctx)
    return judge_backoff_grows(ctx, storm)


def _declared_growth(retries: Retries) -> tuple[float, bool]:
    """The declared mean gain of second waits over first ones, and whether it is observable."""
    caps = [retries.max_delay_before(n) for n in range(1, retries.max_attempts)]
    gain = declared_mean(retries, 2) - declared_mean(retries, 1) if len(caps) >= 2 else 0.0
    return gain, len(caps) >= 2 and caps[1] >= GROWTH_OBSERVABLE * caps[0]


def judge_backoff_grows(ctx: Context, storm: Storm) -> Passed:
    """m3.backoff-grows's verdict on every wave of the storm."""
    retries, source = policy(ctx)
    caps = [retries.max_delay_before(n) for n in range(1, retries.max_attempts)]
    gain, observable = _declared_growth(retries)
    test = _growth(storm, gain)
    all_waits = [ws for wave in storm.waves for ws in wave.waits]
    by_retry = [[ws[n] for ws in all_waits if len(ws) > n] for n in range(len(caps))]
    expected = (
        "waits within " + ", ".join(f"{c * 1000:.0f}" for c in caps) + " ms for retries "
        f"1-{len(caps)}, and second waits longer than first ones on average (declared: "
        f"{gain * 1000:+.0f} ms; {describe(retries)}, {source})"
    )
    measured = "; ".join(
        f"wait {n + 1}: mean {statistics.fmean(ws) * 1000:.0f} ms, "
        f"max {max(ws) * 1000:.0f} ms (n={len(ws)})"
        for n, ws in enumerate(by_retry)
        if ws
    )
    if len(by_retry) >= 2 and by_retry[1]:
        measured += (
            f"; second minus first: {test.gain_s * 1000:+.0f} ± {test.stderr_s * 1000:.0f} ms "
            f"over {len(storm.waves)} storm(s)"
        )
    chart = storm.chart(retries)
    evidence: dict[str, Any] = {
        "measured": measured,
        "expected": expected,
        "data": {
            "waits_ms": [[round(w * 1000, 1) for w in ws] for ws in all_waits],
            "gain_ms": round(test.gain_s * 1000, 1),
            "stderr_ms": round(test.stderr_s * 1000, 1) if math.isfinite(test.stderr_s) else None,
            "declared_gain_ms": round(gain * 1000, 1),
            "storms": len(storm.waves),
            "noise_ms": round(storm.noise_s * 1000, 1),
            "first_attempts_within_ms": [round(w.together_s * 1000, 1) for w in storm.waves],
            **storm.chart_data(chart),
        },
        "figure": storm.figure,
    }
    with charted(chart):
        if observable:
            seconds = len(by_retry[1]) if len(by_retry) >= 2 else 0
            if seconds < 3:
                raise CheckFailed(f"only {seconds} checkouts reached a second retry", **evidence)
            if test.verdict is Growth.FLAT:
                raise CheckFailed(
                    "the second waits are no longer than the first ones: the backoff does not grow",
                    **evidence,
                )
        triples = [
            (w, *declared_bounds(retries, n + 1))
            for ws in all_waits
            for n, w in enumerate(ws[: len(caps)])
        ]
        _bounds_verdict(storm, triples, "waits", evidence)
        if not observable:
            return Passed(
                "the declared policy has no growth to observe (one wait, or a cap reached at "
                "once); the waits stay within it",
                chart=chart,
                **evidence,
            )
        if test.verdict is Growth.UNSURE:
            raise CheckInconclusive(
                f"after {len(storm.waves)} storms the waits are too noisy to tell whether they "
                "grow",
                hint=NOISE_HINT,
                **evidence,
            )
    return Passed(
        f"second waits are {test.gain_s * 1000:.0f} ms longer than first ones on average",
        chart=chart,
        **evidence,
    )


def _growth(storm: Storm, declared_gain_s: float) -> GrowthTest:
    """The growth test over every wave so far."""
    all_waits = [ws for wave in storm.waves for ws in wave.waits]
    firsts = [ws[0] for ws in all_waits if len(ws) >= 2]
    seconds = [ws[1] for ws in all_waits if len(ws) >= 2]
    return growth(firsts, seconds, declared_gain_s, z_grows=Z_GROWS, z_flat=Z_FLAT)
