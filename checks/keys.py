"""What milestone 5's checks share: fresh keys, keyed submits, the ledger's story of a key.

A failure of any of them names the key, how many times it was charged, and the provider attempts
that did it (:func:`ledger_story`); the second API instance on the same store is started once
per grading and shared (:func:`second_instance`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from checks.common import answer_wait_s
from grader.checkkit import (
    ApiInstance,
    Attempt,
    Charge,
    CheckoutResult,
    Context,
)


# Two client keys that reached the provider as one provider key: it replayed the first charge.
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


# A check about a completed key measured nothing when the key's first submit did not complete.
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


async def second_instance(ctx: Context) -> ApiInstance:
    """One more instance of the learner's API on the same REDIS_URL, shared by the checks."""
    return ctx.driver.watch(await ctx.once(_start_second_instance))


async def _start_second_instance(ctx: Context) -> ApiInstance:
    return await ctx.driver.start_api("api-b")
