"""Milestone 5: idempotent checkout on a shared store, proven from the provider's ledger.

Ids: m5.double-submit, m5.replayed-from-store, m5.shared-across-instances, m5.lost-response,
m5.key-reuse-other-body, m5.distinct-keys (m5.concurrent-double-submit is in m5_race.py).
The customer must never be charged twice, whatever fails: every check counts the charges the
stub committed, and a failure names the key, how many times it was charged, and the provider
attempts that did it.
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.keys import evidence, new_key, payment_id, second_instance, submit
from grader.checkkit import (
    ApiInstance,
    Charge,
    CheckFailed,
    CheckoutResult,
    Context,
    LostResponse,
    Passed,
    check,
)

# Two client keys that reached the provider as one provider key: it replayed the first charge.
PROVIDER_KEY_HINT = (
    "The provider replayed the first charge for the second key: both reached it with the same "
    "provider key. Derive the provider's Idempotency-Key from the client's key, never from the "
    "body or the amount."
)


NOT_COMPLETED_HINT = (
    "With a healthy provider, a checkout with a new Idempotency-Key must answer 200 with its "
    "payment, as m2.healthy-checkout asks of one without a key; the evidence shows what it "
    "answered instead."
)


def require_completed(first: CheckoutResult, measured: str, expected: str) -> None:
    """FAIL, with its own hint, when the key's first submit did not complete with a payment."""
    if first.status != 200 or payment_id(first) is None:
        raise CheckFailed(
            f"the key's first submit {first.describe()} without a payment, so no completed key "
            "was there to be honoured",
            measured=measured,
            expected=expected,
            hint=NOT_COMPLETED_HINT,
        )


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


# One charge, but instance B asked the provider: B's store lacked the key, or B settles a
# completed key through the provider; m5.replayed-from-store tells which.
B_ASKED_HINT = (
    "Instance B sent the completed key to the provider. Either its store did not have the key "
    "(keep the store in Redis at REDIS_URL, not in the process), or it found the key and settled "
    "it through the provider again (answer a completed key from the store): if "
    "m5.replayed-from-store fails too, it is the second."
)


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
    """Submit the same key and body twice in a row; expect one charge and the same payment.

    The condition it claims: a key submitted again with the same body once its first submit
    has completed is charged once, and both submits answer 200 with the same payment.

    How it knows the condition holds while it measures: the second submit is sent only once
    the first has answered, to the same instance, with a healthy provider. The stub's ledger
    (charges it committed) and journal (attempts it saw) say what each submit cost.

    The hint's evidence: two charges for one key, or a repeat answered with another payment,
    is a service that did not answer the repeat from a store of completed keys. A first submit
    that did not answer 200 with a payment (and made one charge) left no answer to repeat: the
    check says so, with a hint of its own.
    """
    amounts, key = ctx.amounts(1), new_key()
    first = await submit(ctx, amounts[0], key)
    second = await submit(ctx, amounts[0], key)
    charges, story = await evidence(ctx, key, amounts)
    measured = f"first {first.describe()}, second {second.describe()}; {len(charges)} charge(s)"
    expected = "both 200 with the same payment id, and exactly one charge"
    same = payment_id(first) is not None and payment_id(first) == payment_id(second)
    if len(charges) != 1:
        raise CheckFailed(
            f"the customer was charged {len(charges)} times",
            measured=measured,
            expected=expected,
            figure=story,
        )
    require_completed(first, measured, expected)
    if not same or second.status != 200:
        raise CheckFailed(
            "the second submit did not get the first answer",
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
    """Submit a key twice; expect no new provider attempt for the second submit.

    The condition it claims: a key whose first submit completed is answered from the service's
    store: the repeat makes no provider attempt and gets the first answer.

    How it knows the condition holds while it measures: the repeat is sent only once the first
    submit has answered 200 with a payment (otherwise there is no completed key, and the check
    says so with its own hint). The journal is counted just before the repeat is sent and once
    its attempts have ended; the difference is the repeat's provider attempts.

    The hint's evidence: a provider attempt for the repeat is a service that asked the provider
    (whose own key may have replayed the charge) instead of its store; a repeat answered with
    another payment did not get the stored answer.
    """
    run = await resubmit(ctx)
    measured = (
        f"the provider saw {run.attempts_for_second} attempt(s) for the second submit; second "
        f"{run.second.describe()}; {len(run.charges)} charge(s)"
    )
    expected = "no provider attempt for the second submit, and the first answer again"
    require_completed(run.first, measured, expected)
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
    """Submit to one instance, resubmit the key to a second; expect one charge, no new attempt.

    The condition it claims: a key completed on instance A is honoured by instance B (a second
    process on the same REDIS_URL): one charge, and B answers A's payment without a provider
    attempt.

    How it knows the condition holds while it measures: B's submit is sent only once A has
    answered 200 with a payment (otherwise the check says there was no completed key, with its
    own hint). The journal is counted just before B's submit and once its attempts have ended.

    The hints' evidence: a second charge is B not knowing the key at all: a store in process
    memory, the check's own hint. One charge but a provider attempt from B (the provider
    replaying its charge) is either B not knowing the key or B settling a completed key through
    the provider; the evidence here cannot tell them apart, so that hint names both, and
    m5.replayed-from-store (the same repeat on one instance) tells which.
    """
    run = await resubmit(ctx, again_on=await second_instance(ctx))
    measured = (
        f"instance A {run.first.describe()}, instance B {run.second.describe()}; "
        f"{run.attempts_for_second} provider attempt(s) for B; {len(run.charges)} charge(s)"
    )
    expected = "one charge, B answers A's payment with no provider attempt"
    require_completed(run.first, measured, expected)
    if len(run.charges) != 1 or run.attempts_for_second or not run.replayed:
        raise CheckFailed(
            f"the customer was charged {len(run.charges)} times"
            if len(run.charges) != 1
            else "instance B sent the key instance A completed to the provider"
            if run.attempts_for_second
            else "instance B did not answer instance A's payment",
            measured=measured,
            expected=expected,
            figure=run.story,
            hint=None if len(run.charges) != 1 or not run.attempts_for_second else B_ASKED_HINT,
        )
    return Passed("both instances share the store", measured=measured, expected=expected)


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
    """Commit the first attempt's charge, then drop the connection; expect one charge, a 200.

    The condition it claims: when the provider commits a charge and its response is lost, the
    checkout's retry does not charge again, and the checkout answers 200 with that charge.

    How it knows the condition holds while it measures: the stub commits the first attempt's
    charge, then drops the connection without an answer; later attempts go through. Whether the
    service retried is in the journal (the figure lists each attempt with its provider key and
    whether the provider charged or replayed it); a service that did not retry is told by the
    second hint.

    The hints' evidence: two charges are a retry the provider took for a new charge: it was
    sent with another provider key, or none (the figure shows which): the check's own hint. One
    charge but no 200 with it is a checkout that did not end with the committed payment (no
    retry after the lost response, or the replay not passed on): the retry hint.
    """
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
    """Submit a key with one amount, then with another; expect 422 and no second charge.

    The condition it claims: a key reused, once its first submit completed, with another body
    (another amount) is refused with 422, and only the first charge is made.

    How it knows the condition holds while it measures: the reuse is sent only once the first
    submit answered 200 with a payment (otherwise no completed key was there, and the check
    says so with its own hint). The ledger covers both amounts.

    The hint's evidence: a reuse not answered 422 (the first answer replayed, or a new charge)
    is a store that does not compare the request's body with the one stored for the key.
    """
    amounts, key = ctx.amounts(2), new_key()
    first = await submit(ctx, amounts[0], key)
    second = await submit(ctx, amounts[1], key)
    charges, story = await evidence(ctx, key, amounts)
    measured = (
        f"first {first.describe()}, reuse with another amount {second.describe()}; "
        f"{len(charges)} charge(s)"
    )
    expected = "422 for the reuse, and only the first charge"
    require_completed(first, measured, expected)
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
    """Submit two keys with the same amount; expect two charges and two payments.

    The condition it claims: two submits with their own keys and the same body are two
    charges, answered with two payments.

    How it knows the condition holds while it measures: the second submit is sent once the
    first has answered, with the same amount, a healthy provider and a new key. The journal says
    whether the second reached the provider, and whether the provider replayed a charge for it.

    The hints' evidence: a second submit the provider replayed reached it under the first's
    provider key: a provider key derived from the body, not the client's key (the replay hint).
    Otherwise one charge is a store that took the second key for the first (keyed on the body or
    the amount): the check's own hint.
    """
    amounts = ctx.amounts(1)
    keys = [new_key(), new_key()]
    results = [await submit(ctx, amounts[0], k) for k in keys]
    charges, story = await evidence(ctx, " and ".join(keys), amounts)
    ids = {payment_id(r) for r in results}
    measured = "; ".join(r.describe() for r in results) + f"; {len(charges)} charge(s)"
    expected = "two 200s with different payment ids, and two charges"
    if len(charges) != 2 or None in ids or len(ids) != 2:
        replayed = any(a.replayed for a in await ctx.stack.stub.journal(amounts))
        raise CheckFailed(
            f"two keys gave {len(charges)} charge(s) and {len(ids - {None})} payment(s)",
            measured=measured,
            expected=expected,
            figure=story,
            hint=PROVIDER_KEY_HINT if replayed else None,
        )
    return Passed("two keys, two charges", measured=measured, expected=expected)
