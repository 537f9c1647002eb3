"""Every check that can end INCONCLUSIVE, driven into its noise band: a normal verdict, no crash.

Each judging function is fed a measurement just past its limit, inside the band the machine's
noise (a LagMeter seeded to a chosen lag, as tests/test_stats.py's context() does) explains; for
contrast, one past the band FAILs and one within PASSes. BAND_TESTS maps every check id to its
band test, and an `ast` walk of checks/*.py finds every check that can reach an INCONCLUSIVE:
a new one without a band test fails the suite.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from checks import lt_loadtest as lt
from checks.common import (
    ABANDON_TOLERANCE_S,
    ANSWER_TOLERANCE_S,
    CONNECT_TOLERANCE_S,
    NOISE_HINT,
    NOISE_PER_LAG,
    Problems,
    noise_s,
)
from checks.connects import ConnectAttempt
from checks.held import HeldProbe, Probe
from checks.m2_timeouts import judge_read_timeout, judge_slow_body
from checks.m2_timeouts_connect import judge_connect_timeout
from checks.m2_under_load import judge_healthz_under_load
from checks.m2_via_nginx import judge_edge_answers_first
from checks.m3_retries import judge_attempts_bounded, judge_retries_fit_budget
from checks.m3_storm import Storm, Wave, judge_backoff_grows, judge_jitter_spread
from checks.m5_race import Race, judge_concurrent_double_submit
from checks.stats import BOUND_SLACK_S
from grader.backends.local.stack import LocalStack
from grader.engine import k6, registry
from grader.engine.context import AMOUNT_BLOCK, Context
from grader.engine.driver import CheckoutResult, Driver
from grader.engine.noise import LagMeter
from grader.engine.runner import _run_one
from grader.errors import CheckFailed, CheckInconclusive
from grader.learner import budgets
from grader.learner.repo import LearnerRepo
from grader.model import Evidence, Passed, Status
from grader.stubclient import Attempt, Charge
from tests.conftest import ROOT, leftovers
from tests.mutants import MUTANTS, REFERENCE, materialize
from tests.test_stats import context

JSON = "application/json"
LAG_S = 0.05  # the grader's loop woke 50 ms late at worst during the check
BAND_S = NOISE_PER_LAG * LAG_S  # so a limit may be overrun by 200 ms before it is a FAIL
COURSE = budgets.COURSE.layers
API_LIMIT_S = COURSE.api_s + ANSWER_TOLERANCE_S
_seq = itertools.count(1)


def answer(elapsed_s: float, amount: int = 1, status: int = 504) -> CheckoutResult:
    """A fail-fast answer (a JSON 5xx) after ``elapsed_s``, sent at monotonic time 100."""
    return CheckoutResult(
        amount, 100.0, elapsed_s, status, {"error": "x"}, text='{"error": "x"}', content_type=JSON
    )


def attempt(amount: int, arrived: float, ended: float, *, gave_up: bool = False) -> Attempt:
    """A journalled provider attempt: answered 503, or given up on by the client at ``ended``."""
    return Attempt(
        seq=next(_seq),
        amount_cents=amount,
        idempotency_key=None,
        arrived_at=arrived,
        status=None if gave_up else 503,
        outcome="client_gave_up" if gave_up else "responded",
        fault=None,
        response_started_at=None,
        finished_at=ended,
        gave_up_at=ended if gave_up else None,
        charge_id=None,
        replayed=False,
    )


def inconclusive(judging: Callable[[], object]) -> Evidence:
    """The evidence of a judging that must end in a normal INCONCLUSIVE, with its measurement."""
    with pytest.raises(CheckInconclusive) as raised:
        judging()
    evidence = raised.value.evidence
    assert evidence.measured and evidence.expected and evidence.data, evidence
    assert evidence.hint.startswith(NOISE_HINT), evidence.hint
    return evidence


def failed(judging: Callable[[], object]) -> Evidence:
    """The evidence of a judging that must FAIL."""
    with pytest.raises(CheckFailed) as raised:
        judging()
    return raised.value.evidence


# --- Milestone 2 ---------------------------------------------------------------------------


def test_connect_timeout_in_its_band_is_inconclusive_without_the_fail_hint() -> None:
    """Issue #22's crash: 0.1 s past the connect bound, the deadline's FAIL hint stays out."""
    retries = budgets.COURSE_RETRIES
    bound = (
        retries.max_attempts * COURSE.connect_s + retries.longest_waits_s() + CONNECT_TOLERANCE_S
    )
    evidence = inconclusive(lambda: judge_connect_timeout(context(LAG_S), answer(bound + 0.1)))
    assert evidence.data["elapsed_s"] == pytest.approx(bound + 0.1)
    assert evidence.data["connect_bound_s"] == pytest.approx(bound)
    assert f"{bound + 0.1:.2f} s" in evidence.measured and evidence.chart is not None
    late = answer(bound + BAND_S + 0.1)
    # One attempt seen waiting until the deadline cut it: no connect timeout, as the hint says.
    one_long = [ConnectAttempt(100.02, 100.02 + late.elapsed_s - 0.05)]
    beyond = failed(lambda: judge_connect_timeout(context(LAG_S), late, one_long))
    assert beyond.hint.startswith("Your overall deadline answered, but the connect timeout")
    assert beyond.data["connect_attempts"] == 1 and beyond.data["cause"] == "no-connect-timeout"
    # Attempts the grader could not see: the hint names both causes.
    unseen = failed(lambda: judge_connect_timeout(context(LAG_S), late, None))
    assert "max_attempts" in unseen.hint and "connect=0.5" in unseen.hint
    assert unseen.data["connect_attempts"] is None and "could not see" in unseen.measured
    assert isinstance(judge_connect_timeout(context(LAG_S), answer(bound - 0.3)), Passed)


def _held(abandoned_after_s: float) -> list[Attempt]:
    return [attempt(1, 100.01, 100.01 + abandoned_after_s, gave_up=True)]


def test_read_timeout_cut_in_its_band_is_inconclusive() -> None:
    """An attempt cut 0.1 s past the read timeout's tolerance: INCONCLUSIVE, with its timeline."""
    bound = COURSE.read_s + ABANDON_TOLERANCE_S
    late = _held(bound + 0.1)
    evidence = inconclusive(lambda: judge_read_timeout(context(LAG_S), answer(2.5), late))
    assert evidence.data["attempts"][0]["abandoned_after_s"] == pytest.approx(bound + 0.1)
    assert "abandoned after 2.40 s" in evidence.measured
    too_late = _held(bound + BAND_S + 0.1)
    failed(lambda: judge_read_timeout(context(LAG_S), answer(2.8), too_late))
    assert isinstance(judge_read_timeout(context(LAG_S), answer(2.1), _held(2.0)), Passed)


def test_slow_body_answer_in_its_band_is_inconclusive() -> None:
    """A 504 0.1 s past the api budget's tolerance, the trickle given up: INCONCLUSIVE."""
    given_up = [attempt(1, 100.01, 102.8, gave_up=True)]
    evidence = inconclusive(
        lambda: judge_slow_body(context(LAG_S), answer(API_LIMIT_S + 0.1), given_up)
    )
    assert evidence.data["elapsed_s"] == pytest.approx(API_LIMIT_S + 0.1)
    far = answer(API_LIMIT_S + BAND_S + 0.1)
    failed(lambda: judge_slow_body(context(LAG_S), far, given_up))
    assert isinstance(judge_slow_body(context(LAG_S), answer(2.85), given_up), Passed)


def test_healthz_under_load_in_its_band_is_inconclusive() -> None:
    """The slowest probe at the plateau 0.1 s past 250 ms on a machine 50 ms late: INCONCLUSIVE."""

    def judged(worst_s: float) -> Passed:
        latencies = [0.01] * 9 + [worst_s]
        probes = [
            HeldProbe(Probe(100.1 + n / 10, t, 200, None, outstanding=20), 20)
            for n, t in enumerate(latencies)
        ]
        return judge_healthz_under_load(context(LAG_S), probes, 20, since=100.0)

    evidence = inconclusive(lambda: judged(0.35))
    assert evidence.data["latencies_ms"][-1] == 350.0
    assert "10 probes taken while the provider held all 20 checkouts: slowest 350 ms" in (
        evidence.measured
    )
    assert evidence.data["probes"][-1] == {
        "sent_after_s": 1.0,
        "latency_ms": 350.0,
        "held": 20,
        "outstanding": 20,
        "status": 200,
        "failure": None,
    }
    failed(lambda: judged(0.25 + BAND_S + 0.1))
    assert isinstance(judged(0.03), Passed)


def test_edge_answers_first_in_its_band_is_inconclusive_with_its_data() -> None:
    """Through nginx, the api's 504 0.1 s past its tolerance: INCONCLUSIVE, data included."""

    def judged(elapsed_s: float) -> Passed:
        return judge_edge_answers_first(
            context(LAG_S), answer(elapsed_s), ran="nginx.conf as written", nginx_output=("ok",)
        )

    evidence = inconclusive(lambda: judged(API_LIMIT_S + 0.1))
    assert evidence.data["elapsed_s"] == pytest.approx(API_LIMIT_S + 0.1)
    assert evidence.data["nginx_page"] is False and evidence.data["nginx_output"] == ["ok"]
    failed(lambda: judged(API_LIMIT_S + BAND_S + 0.1))
    assert isinstance(judged(2.9), Passed)


# --- Milestone 3 ---------------------------------------------------------------------------


def test_attempts_bounded_with_one_answer_in_its_band_is_inconclusive() -> None:
    """Three attempts each; one answer 0.1 s past the api budget's tolerance: INCONCLUSIVE."""

    def judged(slowest_s: float) -> Passed:
        results = [answer(0.5, 1), answer(0.6, 2), answer(slowest_s, 3)]
        grouped = {a: [attempt(a, 100.0 + n, 100.1 + n) for n in range(3)] for a in (1, 2, 3)}
        return judge_attempts_bounded(context(LAG_S), results, grouped)

    evidence = inconclusive(lambda: judged(API_LIMIT_S + 0.1))
    assert evidence.data["attempts"] == [3, 3, 3]
    failed(lambda: judged(API_LIMIT_S + BAND_S + 0.1))
    assert isinstance(judged(0.7), Passed)


def test_retries_fit_budget_answer_in_its_band_is_inconclusive() -> None:
    """Two slow 503s, then an answer 0.1 s past the tolerance: INCONCLUSIVE, with the figure."""
    attempts = [attempt(1, 100.01, 101.51), attempt(1, 101.6, 103.1)]

    def judged(elapsed_s: float) -> Passed:
        return judge_retries_fit_budget(context(LAG_S), answer(elapsed_s, status=503), attempts)

    evidence = inconclusive(lambda: judged(API_LIMIT_S + 0.1))
    assert evidence.figure and len(evidence.data["attempts"]) == 2
    failed(lambda: judged(API_LIMIT_S + BAND_S + 0.1))
    assert isinstance(judged(2.85), Passed)


SPREAD = [0.005 * k for k in range(20)]  # first-retry waits over the declared 0-100 ms
QUIET_NOISE = ((0.1, 0.1005, 0.101),)  # the grader's lockstep retries, hardly apart


def storm(
    firsts: Sequence[float],
    seconds: Sequence[float] = (),
    noise: tuple[tuple[float, ...], ...] = QUIET_NOISE,
) -> Storm:
    """A wave on 4 instances: failed attempt, first wait, retry (and a second wait and retry).

    The grader's own lockstep retries (``noise``) were 1 ms late.
    """
    grouped: dict[int, list[Attempt]] = {}
    for n, first in enumerate(firsts):
        amount, t = 1000 + n, 100.0 + n * 0.001
        attempts = [
            attempt(amount, t, t + 0.005),
            attempt(amount, t + 0.005 + first, t + 0.01 + first),
        ]
        if seconds:
            t = attempts[-1].arrived_at + 0.005 + seconds[n]
            attempts.append(attempt(amount, t, t + 0.005))
        grouped[amount] = attempts
    instance_of = {amount: n % 4 for n, amount in enumerate(grouped)}
    return Storm([Wave(grouped, instance_of, noise, (0.001,))])


def test_jitter_spread_too_noisy_to_tell_is_inconclusive() -> None:
    """Waits spread over the range, but the grader's lockstep retries as spread: INCONCLUSIVE."""
    noisy = ((0.10, 0.13, 0.16, 0.19),)
    evidence = inconclusive(lambda: judge_jitter_spread(context(), storm(SPREAD, noise=noisy)))
    assert len(evidence.data["first_retry_waits_ms"]) == 20 and evidence.figure
    assert "20 first-retry waits from 4 instance(s)" in evidence.measured
    failed(lambda: judge_jitter_spread(context(), storm([0.05] * 20)))
    assert isinstance(judge_jitter_spread(context(), storm(SPREAD)), Passed)


def test_jitter_spread_waits_late_in_their_band_are_inconclusive() -> None:
    """3 of 20 first waits 10 ms past the bound's slack (noise 20 ms): INCONCLUSIVE."""
    late = SPREAD[:17] + [0.1 + BOUND_SLACK_S + 0.01] * 3
    evidence = inconclusive(lambda: judge_jitter_spread(context(), storm(late)))
    assert (
        evidence.data["noise_ms"] == 20.0
        and evidence.data["first_retry_waits_ms"][-3:] == [140.0] * 3
    )
    failed(lambda: judge_jitter_spread(context(), storm(SPREAD[:17] + [0.2] * 3)))


def test_backoff_too_noisy_to_tell_growth_is_inconclusive() -> None:
    """Second waits 20 ms longer than first ones on average, ±9 ms: INCONCLUSIVE."""
    unsure = storm(SPREAD, [w + 0.02 for w in SPREAD])
    evidence = inconclusive(lambda: judge_backoff_grows(context(), unsure))
    assert evidence.data["gain_ms"] == 20.0 and "second minus first: +20" in evidence.measured
    failed(lambda: judge_backoff_grows(context(), storm(SPREAD, SPREAD)))
    assert isinstance(
        judge_backoff_grows(context(), storm(SPREAD, [2 * w for w in SPREAD])), Passed
    )


def test_backoff_waits_late_in_their_band_are_inconclusive() -> None:
    """Growing waits, but 5 of 40 second waits 10 ms past the bound's slack: INCONCLUSIVE."""
    seconds = [2 * w for w in SPREAD[:15]] + [0.2 + BOUND_SLACK_S + 0.01] * 5
    evidence = inconclusive(lambda: judge_backoff_grows(context(), storm(SPREAD, seconds)))
    assert "later than the declared bounds allow" in str(evidence.summary)
    beyond = [2 * w for w in SPREAD[:15]] + [0.3] * 5
    failed(lambda: judge_backoff_grows(context(), storm(SPREAD, beyond)))


# --- Milestone 5 ---------------------------------------------------------------------------


def test_concurrent_submits_that_never_raced_are_inconclusive() -> None:
    """The second submit sent after the provider answered the first: no race, so no PASS.

    Not a noise band in seconds: the grader could not create the race it claims, so a PASS
    would rest on nothing. A double charge is a FAIL however the submits fell.
    """
    held_charge = Attempt(
        seq=next(_seq),
        amount_cents=1,
        idempotency_key="checkout:k",
        arrived_at=100.01,
        status=200,
        outcome="responded",
        fault=None,
        response_started_at=100.51,
        finished_at=100.52,
        gave_up_at=None,
        charge_id="ch_1",
        replayed=False,
    )
    paid = {"payment": {"id": "ch_1"}}

    def judged(second_sent_at: float, charges: int = 1) -> Passed:
        first = CheckoutResult(1, 100.0, 0.53, 200, paid, content_type=JSON)
        second = CheckoutResult(1, second_sent_at, 0.01, 200, paid, content_type=JSON)
        race = Race.of(first, second, [held_charge])
        ledger = [Charge(f"ch_{n}", 1, f"checkout:{n}", n) for n in range(charges)]
        return judge_concurrent_double_submit(race, ledger, ("story",))

    evidence = inconclusive(lambda: judged(100.6))
    assert evidence.data["race_held"] is False and evidence.data["in_flight_together_s"] == 0.0
    assert "after the provider answered the first" in evidence.measured
    failed(lambda: judged(100.6, charges=2))
    assert isinstance(judged(100.002), Passed)


# --- The load test: the checks themselves, on a k6 run of chosen numbers --------------------

SLOW = "http_req_duration{scenario:slow}"
RECOVERY = "http_req_duration{scenario:recovery}"
HEALTHZ = "http_req_duration{scenario:health}"
FAILED = "http_req_failed{scenario:recovery}"
CHECKOUT_LIMIT = f"p(95)<{lt.checkout_limit_ms(context()):.0f}"  # p(95)<3500
# Each threshold as loadtest/checkout.js writes it for the course's table, and a value within.
K6_THRESHOLDS = {
    SLOW: ("p(95)", CHECKOUT_LIMIT, 2900.0),
    RECOVERY: ("p(95)", CHECKOUT_LIMIT, 40.0),
    HEALTHZ: ("p(99)", f"p(99)<{lt.HEALTHZ_P99_LIMIT_MS}", 5.0),
    FAILED: ("rate", f"rate<{lt.RECOVERY_FAILED_MAX}", 0.0),
}


def load(values: dict[str, float] | None = None) -> lt.Load:
    """A k6 run meeting every threshold but those of ``values``; noise as 50 ms late (200 ms)."""
    metrics = {}
    for metric, (stat, expression, within) in K6_THRESHOLDS.items():
        value = (values or {}).get(metric, within)
        threshold = k6.Threshold(metric, expression, k6.Expression.parse(expression).holds(value))
        samples = {"passes": 1.0, "fails": 99.0} if stat == "rate" else {"count": 100.0}
        metrics[metric] = k6.Metric(metric, {stat: value, **samples}, (threshold,))
    summary = k6.Summary(metrics)
    return lt.Load(k6.Run(0, summary, summary, 11.0, ()), noise_s(context(LAG_S)) * 1000)


def judged_by(check: Callable[[Context], Any], measured: lt.Load) -> Passed:
    """Run the load-test check itself on ``measured``, as if k6 had just run it."""

    async def run() -> Passed:
        ctx = context(LAG_S)
        ctx.measurements[lt._load] = asyncio.ensure_future(asyncio.sleep(0, measured))
        verdict: Passed = await check(ctx)
        return verdict

    return asyncio.run(run())


def test_slow_phase_p95_in_its_band_is_inconclusive() -> None:
    """Slow-phase p95 100 ms past 3500 ms, the run's noise 200 ms: INCONCLUSIVE."""
    check = lt.slow_phase_fails_fast
    evidence = inconclusive(lambda: judged_by(check, load({SLOW: 3600.0})))
    assert evidence.data["value"] == 3600.0 and evidence.chart is not None
    failed(lambda: judged_by(check, load({SLOW: 3800.0})))
    assert isinstance(judged_by(check, load()), Passed)


def test_recovery_p95_in_its_band_is_inconclusive() -> None:
    """Recovery-phase p95 100 ms past 3500 ms, the run's noise 200 ms: INCONCLUSIVE."""
    check = lt.recovery_latency
    evidence = inconclusive(lambda: judged_by(check, load({RECOVERY: 3600.0})))
    assert evidence.data["value"] == 3600.0 and "3,600 ms" in evidence.measured
    failed(lambda: judged_by(check, load({RECOVERY: 3800.0})))
    assert isinstance(judged_by(check, load()), Passed)


def test_healthz_p99_in_its_band_is_inconclusive() -> None:
    """/healthz p99 100 ms past 100 ms, the run's noise 200 ms: INCONCLUSIVE."""
    check = lt.healthz_fast
    evidence = inconclusive(lambda: judged_by(check, load({HEALTHZ: 200.0})))
    assert evidence.data["value"] == 200.0
    failed(lambda: judged_by(check, load({HEALTHZ: 350.0})))
    assert isinstance(judged_by(check, load()), Passed)


def test_recovery_failures_have_no_band_past_their_limit() -> None:
    """lt.judge's INCONCLUSIVE is for latencies: a failed-request rate past 1 % always FAILs."""
    check = lt.recovery_succeeds
    evidence = failed(lambda: judged_by(check, load({FAILED: 0.011})))
    assert evidence.data["value"] == 0.011
    assert isinstance(judged_by(check, load({FAILED: 0.009})), Passed)


# --- Completeness: every INCONCLUSIVE a check can reach has its band test above --------------

BAND_TESTS: dict[str, list[Callable[[], None]]] = {
    "m2.connect-timeout": [test_connect_timeout_in_its_band_is_inconclusive_without_the_fail_hint],
    "m2.read-timeout": [test_read_timeout_cut_in_its_band_is_inconclusive],
    "m2.slow-body": [test_slow_body_answer_in_its_band_is_inconclusive],
    "m2.healthz-under-load": [test_healthz_under_load_in_its_band_is_inconclusive],
    "m2.edge-answers-first": [test_edge_answers_first_in_its_band_is_inconclusive_with_its_data],
    "m3.attempts-bounded": [test_attempts_bounded_with_one_answer_in_its_band_is_inconclusive],
    "m3.retries-fit-budget": [test_retries_fit_budget_answer_in_its_band_is_inconclusive],
    "m3.jitter-spread": [
        test_jitter_spread_too_noisy_to_tell_is_inconclusive,
        test_jitter_spread_waits_late_in_their_band_are_inconclusive,
    ],
    "m3.backoff-grows": [
        test_backoff_too_noisy_to_tell_growth_is_inconclusive,
        test_backoff_waits_late_in_their_band_are_inconclusive,
    ],
    "m5.concurrent-double-submit": [test_concurrent_submits_that_never_raced_are_inconclusive],
    "lt.slow-phase-fails-fast": [test_slow_phase_p95_in_its_band_is_inconclusive],
    "lt.recovery-latency": [test_recovery_p95_in_its_band_is_inconclusive],
    "lt.healthz-fast": [test_healthz_p99_in_its_band_is_inconclusive],
    # It shares lt.judge, whose INCONCLUSIVE only latencies reach: its test shows a rate has none.
    "lt.recovery-succeeds": [test_recovery_failures_have_no_band_past_their_limit],
}
CHECK_FILES = sorted((ROOT / "checks").glob("*.py"))
Function = tuple[str, str]  # (module, qualified name)


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Module-level functions and methods of module-level classes, with qualified names."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield f"{node.name}.{item.name}", item


def _reaches_inconclusive(func: ast.AST) -> bool:
    """Whether ``func`` raises CheckInconclusive or calls some ``.judge(`` (Problems.judge)."""
    for node in ast.walk(func):
        if isinstance(node, ast.Raise) and node.exc is not None:
            raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(raised, ast.Name) and raised.id == "CheckInconclusive":
                return True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "judge"
        ):
            return True
    return False


def inconclusive_checks() -> dict[str, list[str]]:
    """Check id -> the functions of checks/ through which it can end INCONCLUSIVE.

    A function's edges are every name it mentions (called or passed, as ``ctx.once(_storm)``)
    that is a function of checks/, its own module's or imported with ``from checks.x import``,
    and every method of checks/ named as an attribute it calls: a conservative call graph.
    """
    defs: dict[Function, ast.AST] = {}
    edges: dict[Function, set[Function]] = {}
    checks: dict[str, Function] = {}
    for path in CHECK_FILES:
        tree = ast.parse(path.read_text("utf-8"))
        module = path.stem
        for name, definition in _functions(tree):
            defs[(module, name)] = definition
            for decorator in definition.decorator_list:
                if (
                    isinstance(decorator, ast.Call)
                    and isinstance(decorator.func, ast.Name)
                    and decorator.func.id == "check"
                ):
                    first = decorator.args[0]
                    assert isinstance(first, ast.Constant) and isinstance(first.value, str)
                    checks[first.value] = (module, name)
    methods: dict[str, set[Function]] = {}
    for module, name in defs:
        if "." in name:
            methods.setdefault(name.split(".")[1], set()).add((module, name))
    for path in CHECK_FILES:
        tree = ast.parse(path.read_text("utf-8"))
        module = path.stem
        imported: dict[str, Function] = {}
        for statement in ast.walk(tree):
            if isinstance(statement, ast.ImportFrom) and statement.module is not None:
                package, _, source = statement.module.partition(".")
                if package == "checks":
                    for alias in statement.names:
                        imported[alias.asname or alias.name] = (source, alias.name)
        for name, body in _functions(tree):
            out = edges.setdefault((module, name), set())
            for node in ast.walk(body):
                if isinstance(node, ast.Name):
                    target = imported.get(node.id, (module, node.id))
                    if target in defs:
                        out.add(target)
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    out |= methods.get(node.func.attr, set())

    def path_to_inconclusive(start: Function) -> list[str]:
        seen, stack = {start}, [(start, [f"{start[0]}.{start[1]}"])]
        while stack:
            here, trail = stack.pop()
            if _reaches_inconclusive(defs[here]):
                return trail
            for nxt in sorted(edges.get(here, set()) - seen):
                seen.add(nxt)
                stack.append((nxt, [*trail, f"{nxt[0]}.{nxt[1]}"]))
        return []

    trails = {check_id: path_to_inconclusive(func) for check_id, func in checks.items()}
    return {check_id: trail for check_id, trail in trails.items() if trail}


def test_every_check_that_can_end_inconclusive_has_a_band_test() -> None:
    """Each check the ast finds reaching an INCONCLUSIVE has a band test here; none is stale."""
    found = inconclusive_checks()
    # The walk works: the check is found, and a check with no INCONCLUSIVE is not.
    assert "m2.connect-timeout" in found and "m2.healthy-checkout" not in found
    missing = {check_id: trail for check_id, trail in found.items() if check_id not in BAND_TESTS}
    assert not missing, (
        f"no band test in this file for (check: how it reaches INCONCLUSIVE) {missing}"
    )
    assert set(BAND_TESTS) == set(found), f"stale: {sorted(set(BAND_TESTS) - set(found))}"
    module = globals()
    for tests in BAND_TESTS.values():
        assert tests and all(module.get(t.__name__) is t for t in tests)
        assert all(t.__name__.startswith("test_") for t in tests)


def _judge_call_sites() -> Iterator[tuple[str, ast.Call]]:
    for path in CHECK_FILES:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "judge"
            ):
                yield f"{path.name}:{node.lineno}", node


# A value of the type each evidence keyword takes.
SAMPLE_EVIDENCE: dict[str, Any] = {
    "measured": "measured",
    "expected": "expected",
    "data": {"elapsed_s": 1.0},
    "figure": ("row",),
    "location": None,
    "hint": "the FAIL's own hint",
}


def test_problems_judge_takes_every_keyword_its_call_sites_pass() -> None:
    """Each ``.judge(`` call's keywords: a doubt ends INCONCLUSIVE, a problem FAIL, no TypeError."""
    sites = list(_judge_call_sites())
    assert len(sites) >= 6
    for where, call in sites:
        names = [k.arg for k in call.keywords]
        assert None not in names, f"{where}: pass judge's keywords by name"
        unknown = set(names) - set(SAMPLE_EVIDENCE)
        assert not unknown, f"{where}: add {unknown} to SAMPLE_EVIDENCE"
        kwargs = {name: SAMPLE_EVIDENCE[name] for name in names if name is not None}
        doubted = Problems()
        doubted.doubts.append("late by no more than noise")
        with pytest.raises(CheckInconclusive) as raised:
            doubted.judge("failed", **kwargs)
        assert raised.value.evidence.hint == NOISE_HINT, where
        assert raised.value.evidence.measured == kwargs.get("measured", ""), where
        wrong = Problems()
        wrong.append("wrong")
        with pytest.raises(CheckFailed) as fail:
            wrong.judge("failed", **kwargs)
        assert fail.value.evidence.hint == kwargs.get("hint", ""), where


def test_every_inconclusive_raised_in_checks_says_nothing_to_fix_yet() -> None:
    """A ``raise CheckInconclusive(`` without its own hint would get the check's FAIL hint."""
    raises = 0
    for path in CHECK_FILES:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "CheckInconclusive"
            ):
                raises += 1
                hint = next((k.value for k in node.keywords if k.arg == "hint"), None)
                text = ast.unparse(hint) if hint is not None else ""
                assert "NOISE_HINT" in text, f"{path.name}:{node.lineno} hint={text or None}"
    assert raises >= 5


# --- On the real stack: the crash cannot come back ---------------------------------


async def _connect_timeout_on(repo_path: Path, lag_s: float) -> tuple[Status, Evidence]:
    """m2.connect-timeout run by the runner on the real stub and learner app, its lag seeded."""
    repo = LearnerRepo.open(repo_path)
    table, _ = budgets.for_live_checks(repo.path)
    spec = registry.load("checks").get("m2.connect-timeout")
    assert spec is not None
    stack = await LocalStack.start(repo, repo.manifest())
    try:
        async with httpx.AsyncClient() as http:
            meter = LagMeter()
            ctx = Context(repo, table, AMOUNT_BLOCK, stack, Driver(stack, http), lag=meter)
            # As if the grader's loop had woken lag_s late during the check: a wide band.
            meter.record(ctx.started_at, lag_s)
            result = await _run_one(spec, ctx, stack)
    finally:
        await stack.aclose()
    return result.status, result.evidence


@pytest.mark.slow
def test_a_deadline_only_app_in_a_wide_band_is_inconclusive_on_the_real_stack(
    tmp_path: Path,
) -> None:
    """The issue's case for real: no connect timeout, answered by the 2.8 s deadline, in band.

    The no-connect-timeout mutant answers at the deadline, ~0.7 s past the 2.1 s connect bound:
    with the loop 0.3 s late the band is 1.2 s, so the runner must report INCONCLUSIVE with the
    measurement, not ERROR (issue #22); with no lag, the FAIL with the deadline's hint.
    """
    mutant = next(m for m in MUTANTS if m.name == "no-connect-timeout")
    repo = materialize(REFERENCE, tmp_path / "repo", mutant.edits)
    # This process may own stubs of other tests' (a session's shared stub): only new ones count.
    before = set(leftovers(os.getpid(), repo))
    status, evidence = asyncio.run(_connect_timeout_on(repo, lag_s=0.3))
    assert status is Status.INCONCLUSIVE, evidence
    assert evidence.hint == NOISE_HINT and "connect timeout did not" not in evidence.hint
    assert evidence.summary.startswith("too close to call on this machine: checkout answered")
    bound = evidence.data["connect_bound_s"]
    assert bound < evidence.data["elapsed_s"] <= bound + NOISE_PER_LAG * 0.3, evidence.data
    assert evidence.measured.startswith("answered 50") and evidence.chart is not None
    # The same app judged on a quiet machine: the FAIL it is, with the deadline's own hint.
    status, evidence = asyncio.run(_connect_timeout_on(repo, lag_s=0.0))
    assert status is Status.FAIL, evidence
    assert evidence.hint.startswith("Your overall deadline answered, but the connect timeout")
    # The cause, from the connects the grader counted: one attempt, held until the deadline.
    assert evidence.data["cause"] == "no-connect-timeout", evidence.data
    assert evidence.data["connect_attempts"] == 1 and "connect=0.5" in evidence.hint
    assert set(leftovers(os.getpid(), repo)) - before == set()
