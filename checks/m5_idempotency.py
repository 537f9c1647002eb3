"""Milestone 5: idempotent checkout on a shared store, proven from the provider's ledger.

Ids: m5.double-submit, m5.replayed-from-store, m5.shared-across-instances,
m5.concurrent-double-submit, m5.lost-response, m5.key-reuse-other-body, m5.distinct-keys.
The customer must never be charged twice, whatever fails: every check counts the charges the
stub committed, and a failure names the key, how many times it was charged, and the provider
attempts that did it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from checks.common import answer_wait_s
from grader.checkkit import (
    ApiInstance,
    Attempt,
    Charge,
    CheckFailed,
    CheckoutResult,
    Context,
    Delay,
    LostResponse,
    Passed,
    check,
)

# How long the provider holds a charge in the concurrent check: long enough that both submits
# are in flight together, whatever the scheduling on a busy machine.
RACE_HOLD_MS = 500


def new_key() -> str:
    """An Idempotency-Key no other checkout uses."""
    return f"ff-{uuid.uuid4().hex[:12]}"


async def submit(
    ctx: Context, amount: int, key: str, api: ApiInstance | None = None
) -> CheckoutResult:
    """POST /checkout with an Idempotency-Key."""
    return await ctx.driver.checkout(
        amount, api=api, timeout_s=answer_wait_s(ctx), headers={"Idempotency-Key": key}
    )


def payment_id(result: CheckoutResult) -> str | None:
    """The payment id of a successful checkout, if it has one."""
    body = result.body if isinstance(result.body, dict) else {}
    payment = body.get("payment")
    return str(payment.get("id")) if isinstance(payment, dict) and payment.get("id") else None


def ledger_story(
    key: str, charges: Sequence[Charge], attempts: Sequence[Attempt]
) -> tuple[str, ...]:
    """Which key was charged how many times, with the provider attempts that did it."""
    head = f"{key}: charged {len(charges)} time(s) in {len(attempts)} provider attempt(s)"
    if not attempts:
        return (head,)
    first = min(a.arrived_at for a in attempts)
    lines = [head]
    for attempt in sorted(attempts, key=lambda a: a.arrived_at):
        answer = f"answered {attempt.status}" if attempt.status else attempt.outcome
        if attempt.charge_id:
            verb = "replayed" if attempt.replayed else "CHARGED"
            answer += f", {verb} {attempt.charge_id}"
        key_sent = attempt.idempotency_key or "(none)"
        lines.append(f"  +{attempt.arrived_at - first:.2f} s  provider key {key_sent}: {answer}")
    return tuple(lines)


async def evidence(ctx: Context, key: str, amounts: range) -> tuple[list[Charge], tuple[str, ...]]:
    """The committed charges for ``amounts`` and the story of how they came about."""
    stub = ctx.stack.stub
    attempts = await stub.wait_for_journal(
        amounts, arrived=1, ended=True, timeout_s=answer_wait_s(ctx)
    )
    charges = await stub.ledger(amounts)
    return charges, ledger_story(key, charges, attempts)


@dataclass(frozen=True, slots=True)
class Resubmit:
    """A key submitted, completed, then submitted again, and what the provider saw of it."""

    first: CheckoutResult
    second: CheckoutResult
    attempts_for_second: int
    charges: list[Charge]
    story: tuple[str, ...]

    @property
    def replayed(self) -> bool:
        """Whether the second submit got the first one's payment."""
        first = payment_id(self.first)
        return first is not None and payment_id(self.second) == first


async def resubmit(ctx: Context, again_on: ApiInstance | None = None) -> Resubmit:
    """Submit a fresh key, then the same key and body again (on ``again_on``, if given)."""
    amounts, key = ctx.amounts(1), new_key()
    first = await submit(ctx, amounts[0], key)
    before = len(await ctx.stack.stub.journal(amounts))
    second = await submit(ctx, amounts[0], key, api=again_on)
    charges, story = await evidence(ctx, key, amounts)
    after = len(await ctx.stack.stub.journal(amounts))
    return Resubmit(first, second, after - before, charges, story)


async def second_instance(ctx: Context) -> ApiInstance:
    """One more instance of the learner's API on the same REDIS_URL, shared by the checks."""
    return ctx.driver.watch(await ctx.once(_start_second_instance))


async def _start_second_instance(ctx: Context) -> ApiInstance:
    return await ctx.driver.start_api("api-b")


@check(
    "m5.double-submit",
    "The same key twice charges once and answers the same",
    why="Clients retry: a double click, a mobile network that drops the answer. With an "
    "Idempotency-Key the second submit must get the first answer, never a second charge.",
    hint="Store the response under the request's Idempotency-Key once the checkout completes, "
    "and answer a repeat of the key from the store.",
    timeout_s=30,
)
async def double_submit(ctx: Context) -> Passed:
    """Submit the same key and body twice in a row; expect one charge and the same payment."""
    amounts, key = ctx.amounts(1), new_key()
    first = await submit(ctx, amounts[0], key)
    second = await submit(ctx, amounts[0], key)
    charges, story = await evidence(ctx, key, amounts)
    measured = f"first {first.describe()}, second {second.describe()}; {len(charges)} charge(s)"
    expected = "both 200 with the same payment id, and exactly one charge"
    same = payment_id(first) is not None and payment_id(first) == payment_id(second)
    if len(charges) != 1 or not same or first.status != 200 or second.status != 200:
        summary = (
            f"the customer was charged {len(charges)} times"
            if len(charges) != 1
            else "the second submit did not get the first answer"
        )
        raise CheckFailed(
            summary,
            measured=measured,
            expected=expected,
            figure=story,
        )
    return Passed(
        f"one charge, {payment_id(first)}, answered twice", measured=measured, expected=expected
    )


@check(
    "m5.replayed-from-store",
    "A completed key is answered from the store, not the provider",
    why="Forwarding the key and letting the provider deduplicate still costs a provider call "
    "per retry, and leaves you at the mercy of the provider's own key expiry.",
    hint="Look the Idempotency-Key up in your store before calling the provider; a completed "
    "key's stored response is the answer.",
    timeout_s=30,
)
async def replayed_from_store(ctx: Context) -> Passed:
    """Submit a key twice; expect no new provider attempt for the second submit."""
    run = await resubmit(ctx)
    measured = (
        f"the provider saw {run.attempts_for_second} attempt(s) for the second submit; second "
        f"{run.second.describe()}; {len(run.charges)} charge(s)"
    )
    expected = "no provider attempt for the second submit, and the first answer again"
    if run.attempts_for_second or not run.replayed or len(run.charges) != 1:
        raise CheckFailed(
            "the second submit reached the provider"
            if run.attempts_for_second
            else "the second submit did not get the first answer",
            measured=measured,
            expected=expected,
            figure=run.story,
        )
    return Passed("the repeat was answered from the store", measured=measured, expected=expected)


@check(
    "m5.shared-across-instances",
    "A key completed on one instance is honoured by another",
    depends=("m5.double-submit",),
    why="Behind a load balancer the retry lands on another instance: a store in process memory "
    "forgets the key there, and charges again.",
    hint="Keep the idempotency store in Redis at REDIS_URL (list `redis` under services in "
    "failfast.yaml), not in a dict of the process.",
    timeout_s=45,
)
async def shared_across_instances(ctx: Context) -> Passed:
    """Submit to one instance, resubmit the key to a second; expect one charge, no new attempt."""
    run = await resubmit(ctx, again_on=await second_instance(ctx))
    measured = (
        f"instance A {run.first.describe()}, instance B {run.second.describe()}; "
        f"{run.attempts_for_second} provider attempt(s) for B; {len(run.charges)} charge(s)"
    )
    expected = "one charge, B answers A's payment with no provider attempt"
    if len(run.charges) != 1 or run.attempts_for_second or not run.replayed:
        raise CheckFailed(
            f"the customer was charged {len(run.charges)} times"
            if len(run.charges) != 1
            else "instance B did not know the key instance A completed",
            measured=measured,
            expected=expected,
            figure=run.story,
        )
    return Passed("both instances share the store", measured=measured, expected=expected)


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
    """Hold the charge 500 ms and send the key to both instances at once; expect one charge."""
    other = await second_instance(ctx)
    amounts, key = ctx.amounts(1), new_key()
    await ctx.stack.stub.add_fault(Delay(delay_ms=RACE_HOLD_MS), amounts=amounts)
    results = await asyncio.gather(
        submit(ctx, amounts[0], key), submit(ctx, amounts[0], key, other)
    )
    charges, story = await evidence(ctx, key, amounts)
    ids = {payment_id(r) for r in results if r.status == 200}
    measured = f"A {results[0].describe()}, B {results[1].describe()}; {len(charges)} charge(s)"
    expected = "exactly one charge; each answer is that payment or a 409"
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
            figure=story,
        )
    return Passed("one charge for two simultaneous submits", measured=measured, expected=expected)


@check(
    "m5.lost-response",
    "A response lost after the charge does not charge again on retry",
    why="The nastiest failure: the provider charged, then the connection dropped. A retry with "
    "a new provider key is a second charge; only the same key on every attempt is safe.",
    hint="Send the provider one Idempotency-Key per checkout, the same on every attempt (derive "
    "it from the client's key), so a retry after a lost response is replayed, not charged.",
    timeout_s=30,
)
async def lost_response(ctx: Context) -> Passed:
    """Commit the first attempt's charge, then drop the connection; expect one charge, a 200."""
    amounts, key = ctx.amounts(1), new_key()
    await ctx.stack.stub.add_fault(LostResponse(), amounts=amounts, first_n=1)
    result = await submit(ctx, amounts[0], key)
    charges, story = await evidence(ctx, key, amounts)
    measured = f"checkout {result.describe()}; {len(charges)} charge(s)"
    expected = "200 with the one payment the provider committed, and no second charge"
    if len(charges) != 1:
        raise CheckFailed(
            f"the customer was charged {len(charges)} times",
            measured=measured,
            expected=expected,
            figure=story,
        )
    if result.status != 200 or payment_id(result) != charges[0].id:
        raise CheckFailed(
            "the checkout did not end with the committed payment",
            measured=measured,
            expected=expected,
            hint="Retry the lost attempt with the same provider key: the provider "
            "replays the charge it committed.",
            figure=story,
        )
    return Passed("the retry was replayed, not charged again", measured=measured, expected=expected)


@check(
    "m5.key-reuse-other-body",
    "A key reused with another body is refused with 422",
    why="A key names one operation: reusing it for another amount is a client bug, and "
    "replaying the first answer would tell the customer they paid what they did not.",
    hint="Store a fingerprint of the request body with the key; a repeat whose body differs "
    "gets 422 and no charge.",
    timeout_s=30,
)
async def key_reuse_other_body(ctx: Context) -> Passed:
    """Submit a key with one amount, then with another; expect 422 and no second charge."""
    amounts, key = ctx.amounts(2), new_key()
    first = await submit(ctx, amounts[0], key)
    second = await submit(ctx, amounts[1], key)
    charges, story = await evidence(ctx, key, amounts)
    measured = (
        f"first {first.describe()}, reuse with another amount {second.describe()}; "
        f"{len(charges)} charge(s)"
    )
    expected = "422 for the reuse, and only the first charge"
    if second.status != 422 or len(charges) != 1:
        raise CheckFailed(
            f"the reused key with another body {second.describe()}",
            measured=measured,
            expected=expected,
            figure=story,
        )
    return Passed("the reuse was refused with 422", measured=measured, expected=expected)


@check(
    "m5.distinct-keys",
    "Different keys are different charges, even for the same amount",
    why="Idempotency must not swallow real purchases: two orders of the same price with their "
    "own keys are two charges.",
    hint="Key the store on the Idempotency-Key alone, never on the body or the amount.",
    timeout_s=30,
)
async def distinct_keys(ctx: Context) -> Passed:
    """Submit two keys with the same amount; expect two charges and two payments."""
    amounts = ctx.amounts(1)
    keys = [new_key(), new_key()]
    results = [await submit(ctx, amounts[0], k) for k in keys]
    charges, story = await evidence(ctx, " and ".join(keys), amounts)
    ids = {payment_id(r) for r in results}
    measured = "; ".join(r.describe() for r in results) + f"; {len(charges)} charge(s)"
    expected = "two 200s with different payment ids, and two charges"
    if len(charges) != 2 or None in ids or len(ids) != 2:
        raise CheckFailed(
            f"two keys gave {len(charges)} charge(s) and {len(ids - {None})} payment(s)",
            measured=measured,
            expected=expected,
            figure=story,
        )
    return Passed("two keys, two charges", measured=measured, expected=expected)
