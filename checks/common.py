"""What the live checks of every milestone share: the tolerances and what a fail-fast answer is."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from checks.stats import Zone, zone
from grader.checkkit import (
    COURSE_RETRIES,
    Attempt,
    Budgets,
    CheckFailed,
    CheckInconclusive,
    CheckoutResult,
    CheckSkipped,
    Context,
    Location,
    Retries,
    budgets,
)

T = TypeVar("T")

# Tolerances for a shared 2-core machine, where the grader, the stub and the learner's API
# compete for CPU. `benchmarks/verdict_stability.py --runs 20 --load` (both cores kept busy) on
# the reference solution: 100 of 100 verdicts PASS; the slowest fail-fast answer came at 2.84 s
# (limit 3 s + 0.5 s tolerance, so 0.66 s of margin), the first held attempt was
# cut within 0.005 s of the 2 s read timeout, and the slowest /healthz probe took 21 ms.
# The mutants miss these bounds by far more: a 2.8 s cut where 2 s is declared, answers at 5 s.
# Containers (--backend docker: the API limited to one CPU, reached over a bridge) add nothing
# measurable: `benchmarks/backend_wall_time.py`, median of each timing check's answer time,
# docker minus local, -0.08 to +0.00 s (the answers at 2.80-2.81 s on both backends).
ANSWER_TOLERANCE_S = 0.5  # an answer "within the api budget" may come this much later
ABANDON_TOLERANCE_S = 0.3  # the stub may see an attempt cut this far from the declared timeout
# A provider whose connects hang must be given up on at the declared connect timeout, so the
# answer comes within max_attempts connect timeouts plus the declared waits: 1.8 s for the
# course's table, checked only when that plus this tolerance is below the api budget (3 s).
# The reference, which retries connect timeouts, answers in 1.69-1.76 s (0.35 s inside the
# limit, before the noise band); a client with no connect timeout but a 2.8 s overall deadline
# answers at 2.8 s: 0.7 s past.
CONNECT_TOLERANCE_S = 0.3
# How long a slow provider holds its headers, or trickles its body, for the course's table: far
# past its 3 s api budget. A longer table's hold follows the table: hold_s().
HOLD_S = 10.0
# A hold outlasts the grader's wait for the answer (answer_wait_s) by this much at the least: a
# service with no deadline is then still waiting when the grader stops, and is seen late, never
# let off by the provider answering first; a correct one has given up long before.
HOLD_MARGIN_S = 1.0
# The longest api budget the checks that wait it out (a held provider, slow failures) grade;
# past it they SKIP, saying why, and never FAIL. A correct service may take the whole budget
# in each of them, so grading time grows with it: the reference with a 30 s budget takes 35 s
# for milestone 2 (its held checks run side by side, 30 s each), against 7 s with the
# course's table; at the schema's bound, an hour, over an hour. And past about 30 s no budget
# fails fast: the clients in front of a checkout have given up by then (AWS API Gateway's
# 29 s integration timeout, Heroku's 30 s router timeout), and the customer long before.
MAX_HELD_API_S = 30.0
HEALTHZ_LIMIT_S = 0.25
HEALTHZ_PROBES = 10
STUCK_CHECKOUTS = 20
FAIL_FAST_STATUSES = (502, 503, 504)
# Noise: past a time limit by no more than NOISE_PER_LAG times the worst the grader's own loop
# woke late during the check (at least NOISE_FLOOR_S) is INCONCLUSIVE, not FAIL. An answer
# rests on a few timers of the API's (a timeout, a sleep, a deadline), each of which wakes about
# as late as the grader's loop does on the same cores (benchmarks/measure_lateness.py: with four
# busy loops the API's waits came 2-36 ms late while the grader's came 16-33 ms late). The
# mutants miss their limits by 0.3 s to 2 s, far past the band on a quiet machine.
NOISE_PER_LAG = 4.0
NOISE_FLOOR_S = 0.05
# An INCONCLUSIVE's hint: a check's own hint says what to fix, and there is nothing to fix yet.
NOISE_HINT = "Nothing to fix yet: grade again on a quieter machine."


def held_to(declared: T | None, course: T, what: str, section: str) -> tuple[T, str]:
    """The learner's section of budgets.yaml, or the course's example while it declares none.

    Returns the value and where it comes from, in words for the evidence.
    """
    if declared is not None:
        return declared, "your budgets.yaml"
    return course, f"the course's example {what} (budgets.yaml declares no {section} yet)"


def policy(ctx: Context) -> tuple[Retries, str]:
    """The retry policy milestone 3 holds the service to, and where it comes from."""
    return held_to(ctx.budgets.retries, COURSE_RETRIES, "policy", "retries")


def answer_wait_s(ctx: Context) -> float:
    """How long the grader waits for one checkout's answer.

    Long enough to see what a slow service answers (httpx's default 5 s timeout, say), short
    enough that grading stays fast.
    """
    return ctx.budgets.layers.api_s + ANSWER_TOLERANCE_S + 2.0


def hold_s(ctx: Context) -> float:
    """How long a slow provider holds its headers, or trickles its body, for this table.

    HOLD_S for the course's table; for a longer api budget, HOLD_MARGIN_S past the grader's
    wait for the answer. Either way past the longest a correct service may wait on the provider
    (the api budget), so that its own deadline ends the checkout, never the provider.
    """
    return max(HOLD_S, answer_wait_s(ctx) + HOLD_MARGIN_S)


def skip_past_max_budget(ctx: Context) -> None:
    """SKIP a check that waits out the api budget when the table's is past MAX_HELD_API_S."""
    api = ctx.budgets.layers.api_s
    if api <= MAX_HELD_API_S:
        return
    raise CheckSkipped(
        f"not run: the api budget of {api:g} s is past the {MAX_HELD_API_S:g} s this check grades",
        measured=f"layers.api.timeout_s is {api:g} s in your budgets.yaml",
        expected=f"an api budget of at most {MAX_HELD_API_S:g} s (the course's is "
        f"{budgets.COURSE.layers.api_s:g} s)",
        hint=f"Not a failure, and no verdict either: this check waits for your service to give "
        f"up on a stuck or failing provider, which a correct service may take the whole api "
        f"budget to do, and grading {api:g} s of waiting per check takes unreasonably long. No "
        f"budget past {MAX_HELD_API_S:g} s fails fast: the clients in front of a checkout give "
        f"up around then. Lower layers.api.timeout_s (and the layers inside it) to at most "
        f"{MAX_HELD_API_S:g} s to get this check's verdict.",
    )


def limit_for_table(course_limit_s: float) -> Callable[[Budgets], float]:
    """A check's time limit (``@check(timeout_s=...)``) that grows with the table's api budget.

    ``course_limit_s`` for the course's table (or a shorter budget), and 2 s more for each
    second of api budget past the course's: a check waits for an answer within the api budget
    and then, at most, for a provider attempt cut within it again (m2.read-timeout's worst).
    """

    def limit_s(table: Budgets) -> float:
        longer_by = max(0.0, table.layers.api_s - budgets.COURSE.layers.api_s)
        return course_limit_s + 2.0 * longer_by

    return limit_s


def noise_s(ctx: Context) -> float:
    """Seconds past a time limit that this machine's noise, measured during the check, explains."""
    return max(NOISE_FLOOR_S, NOISE_PER_LAG * ctx.worst_lag_s())


class Problems(list[str]):
    """What is wrong with what a check saw, and, apart, what only the machine's noise may be."""

    def __init__(self) -> None:
        super().__init__()
        self.doubts: list[str] = []

    def late(self, ctx: Context, what: str, seconds: float, limit: float) -> None:
        """``what`` took ``seconds`` where ``limit`` is allowed: a problem, a doubt, or fine."""
        found = zone(seconds, limit, noise_s(ctx))
        text = f"{what} after {seconds:.2f} s, past {limit:.2f} s"
        if found is Zone.BEYOND:
            self.append(text)
        elif found is Zone.NOISY:
            self.doubts.append(f"{text} by no more than this machine's noise could explain")

    def merge(self, other: Problems) -> None:
        """Take on another's problems and doubts."""
        self.extend(other)
        self.doubts.extend(other.doubts)

    def judge(
        self,
        failed: str,
        *,
        measured: str = "",
        expected: str = "",
        data: Mapping[str, Any] | None = None,
        figure: Sequence[str] = (),
        location: Location | None = None,
        hint: str | None = None,
    ) -> None:
        """FAIL on the first problem; INCONCLUSIVE on the first doubt; return when neither.

        ``hint`` says what to fix, so it goes with the FAIL only (None: the check's own); an
        INCONCLUSIVE has nothing to fix yet and says so, with the same evidence.
        """
        evidence: dict[str, Any] = {
            "measured": measured,
            "expected": expected,
            "data": data,
            "figure": figure,
            "location": location,
        }
        if self:
            raise CheckFailed(f"{failed}: {self[0]}", hint=hint, **evidence)
        if self.doubts:
            raise CheckInconclusive(
                f"too close to call on this machine: {self.doubts[0]}",
                hint=NOISE_HINT,
                **evidence,
            )


def fail_fast_problems(ctx: Context, result: CheckoutResult) -> Problems:
    """What is wrong with an answer that should be a quick 502/503/504 with a JSON body."""
    limit = ctx.budgets.layers.api_s + ANSWER_TOLERANCE_S
    problems = Problems()
    if result.status is None:
        problems.append(f"checkout gave {result.describe()}; it must answer within {limit:.1f} s")
        return problems
    problems.late(ctx, "checkout answered", result.elapsed_s, limit)
    if result.status not in FAIL_FAST_STATUSES:
        problems.append(f"checkout answered {result.status}, not 502, 503 or 504")
    # The contract's "JSON body" is JSON labelled application/json (or +json): what clients
    # choose their parser by, and what FastAPI's JSONResponse and a returned dict send.
    if result.body is None or not result.labelled_json:
        problems.append(f"checkout answered {result.status} with {result.describe_body()}")
    return problems


def expected_fail_fast(ctx: Context) -> str:
    """The fail-fast answer a check expects, in words."""
    api = ctx.budgets.layers.api_s
    return (
        f"502, 503 or 504 with a JSON body within {api:g} s (+{ANSWER_TOLERANCE_S:g} s tolerance)"
    )


def per_checkout(attempts: Sequence[Attempt]) -> dict[int, list[Attempt]]:
    """Attempts grouped by amount (one amount per checkout), in arrival order."""
    grouped: dict[int, list[Attempt]] = {}
    for attempt in sorted(attempts, key=lambda a: a.arrived_at):
        if attempt.amount_cents is not None:
            grouped.setdefault(attempt.amount_cents, []).append(attempt)
    return grouped


def attempt_rows(grouped: dict[int, list[Attempt]]) -> list[list[float]]:
    """Arrival times per checkout, for a timeline figure."""
    return [[a.arrived_at for a in attempts] for attempts in grouped.values()]


async def attempts_by_checkout(
    ctx: Context, amounts: range, at_least: int, timeout_s: float | None = None
) -> dict[int, list[Attempt]]:
    """The journal for ``amounts`` once ``at_least`` attempts arrived and all ended, by checkout.

    Waits at most ``timeout_s``, by default the api budget plus the answer tolerance.
    """
    journal = await ctx.stack.stub.wait_for_journal(
        amounts,
        arrived=at_least,
        ended=True,
        timeout_s=ctx.budgets.layers.api_s + ANSWER_TOLERANCE_S if timeout_s is None else timeout_s,
    )
    return per_checkout(journal)


def repo_relative(ctx: Context, file: str) -> str:
    """A file of the learner's as the report shows it: relative to the repo, forward slashes."""
    path = Path(file)
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(ctx.repo.path.resolve()).as_posix()
    return path.as_posix()
