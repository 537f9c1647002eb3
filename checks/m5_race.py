"""Milestone 5: the same key on two instances at once (m5.concurrent-double-submit).

The race the grader creates, how close it came, and the verdict on the charges it left. The
helpers it shares with the other m5 checks (submit, the ledger's story, the second instance)
are in m5_idempotency.py, which registers m5.double-submit before this check needs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from checks.common import Problems
from checks.held import answered_at, overlap_s

# Two client keys that reached the provider as one provider key: it replayed the first charge.
from checks.keys import evidence, new_key, payment_id, second_instance, submit
from grader.checkkit import (
    Attempt,
    Charge,
    CheckFailed,
    CheckoutResult,
    Context,
    Delay,
    Passed,
    check,
)

# How long the provider holds a charge in the concurrent check: long enough that both submits
# are in flight together, whatever the scheduling on a busy machine.
RACE_HOLD_MS = 500


@dataclass(frozen=True, slots=True)
class Race:
    """Two submits of one key, and whether they were in flight together.

    Times are the grader's monotonic clock, as are the stub journal's.
    """

    a: CheckoutResult
    b: CheckoutResult
    # When the provider began answering the key's first attempt (None: no attempt reached it).
    first_answered_at: float | None

    @classmethod
    def of(cls, a: CheckoutResult, b: CheckoutResult, attempts: Sequence[Attempt]) -> Race:
        """The race from both answers and the key's provider attempts."""
        first = min(attempts, key=lambda x: x.arrived_at, default=None)
        return cls(a, b, None if first is None else answered_at(first))

    @property
    def sent_apart_s(self) -> float:
        """How far apart the two submits were sent."""
        return abs(self.a.started_at - self.b.started_at)

    @property
    def together_s(self) -> float:
        """How long both submits were in flight together, as the client saw them."""
        a, b = self.a, self.b
        return overlap_s(
            (a.started_at, a.started_at + a.elapsed_s), (b.started_at, b.started_at + b.elapsed_s)
        )

    @property
    def margin_s(self) -> float | None:
        """How long before the provider answered the key's first attempt the later was sent.

        Negative: it was sent after that answer, so the first had nothing left to race. None:
        no attempt reached the provider.
        """
        if self.first_answered_at is None:
            return None
        return self.first_answered_at - max(self.a.started_at, self.b.started_at)

    @property
    def held(self) -> bool:
        """Whether the race the check claims was created: both sent before the first answer."""
        return self.margin_s is None or self.margin_s > 0

    def to_data(self) -> dict[str, object]:
        """For the report's data."""
        margin = self.margin_s
        return {
            "sent_apart_s": round(self.sent_apart_s, 4),
            "in_flight_together_s": round(self.together_s, 4),
            "second_sent_before_first_answer_s": None if margin is None else round(margin, 4),
            "race_held": self.held,
        }

    def describe(self) -> str:
        """In words, for ``measured``."""
        text = (
            f"sent {self.sent_apart_s * 1000:.0f} ms apart, in flight together for "
            f"{self.together_s:.2f} s"
        )
        margin = self.margin_s
        if margin is None:
            return text + "; no attempt reached the provider"
        if margin > 0:
            return text + f", the later sent {margin:.2f} s before the provider answered the first"
        return text + f", the later sent {-margin:.2f} s after the provider answered the first"


@check(
    "m5.concurrent-double-submit",
    "The same key on two instances at once charges once",
    depends=("m5.double-submit",),
    why="The worst duplicate arrives while the first request is still in flight: a store "
    "written only after the charge returns lets both through.",
    hint="Claim the key atomically before calling the provider (Redis SET key value NX), and "
    "answer 409 to a request whose key is claimed but not completed.",
    timeout_s=45,
)
async def concurrent_double_submit(ctx: Context) -> Passed:
    """Hold the charge 500 ms and send the key to both instances at once; expect one charge.

    The condition it claims: the same key submitted to two instances at once, while the first
    provider attempt is still in flight, is charged once; each answer is that payment or a 409.

    How it knows the condition holds while it measures: the stub holds the key's charge 500 ms,
    and both submits are sent together. From the two answers' send times and durations, and the
    journal's first attempt, the report says how far apart they were sent, how long both were in
    flight together, and whether the later was sent before the provider answered the first
    attempt: the race held. One that was not held (the later sent after that answer) and would
    PASS is INCONCLUSIVE: the second submit met a completed key, which m5.shared-across-instances
    checks. A double charge FAILs however they fell. Sent before the answer is what the grader
    can see; when instance B read the store is not (a request delayed inside B on a busy machine
    could still meet a completed key).

    The hint's evidence: two charges for one key sent twice at once, or two payments, is two
    submits that both reached the provider as new checkouts: neither claimed the key before
    calling it. An answer other than 200 or 409 is a claimed key answered some other way.
    """
    other = await second_instance(ctx)
    amounts, key = ctx.amounts(1), new_key()
    await ctx.stack.stub.add_fault(Delay(delay_ms=RACE_HOLD_MS), amounts=amounts)
    results = await asyncio.gather(
        submit(ctx, amounts[0], key), submit(ctx, amounts[0], key, other)
    )
    charges, story = await evidence(ctx, key, amounts)
    attempts = await ctx.stack.stub.journal(amounts)  # evidence() waited for them to end
    return judge_concurrent_double_submit(Race.of(results[0], results[1], attempts), charges, story)


def judge_concurrent_double_submit(
    race: Race, charges: Sequence[Charge], story: Sequence[str]
) -> Passed:
    """m5.concurrent-double-submit's verdict on two submits of one key and the charges made.

    A double charge FAILs however the submits fell; a PASS needs the race to have been held:
    the later submit sent before the provider answered the key's first attempt. Otherwise the
    second submit met a completed key, which m5.shared-across-instances already checks.
    """
    results = (race.a, race.b)
    ids = {payment_id(r) for r in results if r.status == 200}
    measured = (
        f"A {race.a.describe()}, B {race.b.describe()}; {len(charges)} charge(s); {race.describe()}"
    )
    expected = (
        "exactly one charge; each answer is that payment or a 409; both submits sent before the "
        "provider answered the first attempt"
    )
    data = {
        "charges": len(charges),
        "statuses": [r.status for r in results],
        "hold_ms": RACE_HOLD_MS,
        **race.to_data(),
    }
    bad = [r for r in results if r.status not in (200, 409)]
    if len(charges) != 1 or bad or len(ids) > 1:
        raise CheckFailed(
            f"the customer was charged {len(charges)} times"
            if len(charges) != 1
            else f"a concurrent submit {bad[0].describe()}"
            if bad
            else "the two submits answered different payments",
            measured=measured,
            expected=expected,
            data=data,
            figure=story,
        )
    problems = Problems()
    if not race.held:
        problems.doubts.append(
            "the grader could not create the race: the later submit was sent after the provider "
            "had answered the key's first attempt"
        )
    problems.judge("the race", measured=measured, expected=expected, data=data, figure=story)
    return Passed(
        "one charge for two simultaneous submits", measured=measured, expected=expected, data=data
    )
