"""Mutants: the reference solution with exactly one fault-tolerance property broken.

Each mutant is a few exact text substitutions on a copy of ``reference/solution``; a substitution
whose text is not found exactly once fails loudly, so a mutant cannot silently stop mutating when
the reference changes. ``fails`` names the checks it must fail; every other check of its milestone
must pass (or be skipped, for ``skips``), which proves each check targets what it claims to.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "reference" / "solution"
TEMPLATE = ROOT / "learner_template"


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace ``old`` (which must occur exactly once) by ``new`` in ``path``."""

    path: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Mutant:
    """A broken variant of the reference solution and the verdicts it must get."""

    name: str
    milestone: str
    fails: frozenset[str]
    edits: tuple[Edit, ...]
    skips: frozenset[str] = frozenset()


APP = "app/main.py"
NO_DEADLINE = Edit(APP, "asyncio.timeout(DEADLINE_S)", "asyncio.timeout(None)")

MUTANTS = (
    # Milestone 1: the table and nginx.
    Mutant(
        "inverted-budget-table",
        "milestone-1",
        frozenset({"m1.layers-ordered"}),
        (Edit("budgets.yaml", "read_timeout_s: 2}", "read_timeout_s: 5}"),),
    ),
    Mutant(
        "nginx-default-timeout",
        "milestone-1",
        frozenset({"m1.nginx-agrees"}),
        (Edit("nginx/nginx.conf", "proxy_read_timeout 10s;", ""),),
    ),
    Mutant(
        "too-many-attempts",
        "milestone-1",
        frozenset({"m1.retry-policy"}),
        (Edit("budgets.yaml", "max_attempts: 3 ", "max_attempts: 8 "),),
    ),
    Mutant(
        "typo-in-table",
        "milestone-1",
        frozenset({"m1.budgets-valid"}),
        (Edit("budgets.yaml", "read_timeout_s: 2}", "read_timout_s: 2}"),),
        skips=frozenset(
            {"m1.layers-ordered", "m1.retry-policy", "m1.nginx-agrees", "m1.k6-thresholds"}
        ),
    ),
    Mutant(
        "weak-load-test-threshold",
        "milestone-1",
        frozenset({"m1.k6-thresholds"}),
        (Edit("loadtest/checkout.js", "['p(95)<3000']", "['p(95)<10000']"),),
    ),
    # Milestone 2: the budgeted client.
    Mutant(
        "connect-timeout-only",
        "milestone-2",
        frozenset({"m2.read-timeout", "m2.slow-body"}),
        (
            Edit(
                APP,
                'read=PAYMENTS["read_timeout_s"],\n    write=PAYMENTS["read_timeout_s"],\n'
                '    pool=PAYMENTS["connect_timeout_s"],',
                "read=None,\n    write=None,\n    pool=None,",
            ),
            NO_DEADLINE,
        ),
    ),
    Mutant(
        "read-timeout-longer-than-budget",
        "milestone-2",
        frozenset({"m2.read-timeout"}),
        (Edit(APP, '    read=PAYMENTS["read_timeout_s"],', "    read=10,"),),
    ),
    Mutant(
        "blocking-call-in-async-handler",
        "milestone-2",
        frozenset({"m2.healthz-under-load"}),
        (
            Edit(
                APP,
                "    if idempotency_key is None:\n",
                "    time.sleep(0.2)  # a blocking call: the whole event loop waits\n"
                "    if idempotency_key is None:\n",
            ),
        ),
    ),
    Mutant(
        "per-read-timeouts-no-deadline",
        "milestone-2",
        frozenset({"m2.slow-body", "m2.read-timeout"}),
        (NO_DEADLINE,),
    ),
    Mutant(
        "timeout-surfaces-as-500",
        "milestone-2",
        frozenset({"m2.read-timeout", "m2.slow-body", "m2.connect-timeout"}),
        (
            Edit(
                APP,
                'return error(504, "payments_timeout")',
                'return error(500, "payments_timeout")',
            ),
        ),
    ),
    # Milestone 3: retries, backoff and jitter.
    Mutant(
        "no-retries",
        "milestone-3",
        frozenset({"m3.transient-heals", "m3.attempts-bounded"}),
        (Edit(APP, 'MAX_ATTEMPTS = RETRIES["max_attempts"]', "MAX_ATTEMPTS = 1"),),
        skips=frozenset({"m3.jitter-spread", "m3.backoff-grows"}),
    ),
    Mutant(
        "retries-without-jitter",
        "milestone-3",
        frozenset({"m3.jitter-spread"}),
        (Edit(APP, "    return random.uniform(0, cap)", "    return cap"),),
    ),
    Mutant(
        "unbounded-retries",
        "milestone-3",
        frozenset({"m3.attempts-bounded"}),
        (
            Edit(
                APP,
                "for attempt in range(1, MAX_ATTEMPTS + 1):",
                "for attempt in itertools.count(1):",
            ),
            Edit(
                APP,
                "if attempt == MAX_ATTEMPTS or not budget.try_spend():",
                "if not budget.try_spend():",
            ),
            Edit(APP, "import asyncio\n", "import asyncio\nimport itertools\n"),
        ),
    ),
    Mutant(
        "fixed-delay-instead-of-backoff",
        "milestone-3",
        frozenset({"m3.backoff-grows"}),
        (
            Edit(
                APP,
                'cap = min(RETRIES["max_delay_s"], RETRIES["base_delay_s"] * 2 ** (retry - 1))',
                'cap = RETRIES["base_delay_s"]',
            ),
        ),
    ),
    Mutant(
        "retries-a-decline",
        "milestone-3",
        frozenset({"m3.no-retry-on-decline"}),
        (Edit(APP, "RETRYABLE_STATUSES = {429,", "RETRYABLE_STATUSES = {402, 429,"),),
    ),
    Mutant(
        "retries-ignore-the-api-budget",
        "milestone-3",
        frozenset({"m3.retries-fit-budget"}),
        (
            NO_DEADLINE,
            Edit(APP, "if time.monotonic() + delay >= deadline:", "if False:"),
        ),
    ),
    # Milestone 4: the retry budget.
    Mutant(
        "no-retry-budget",
        "milestone-4",
        frozenset({"m4.outage-capped", "m4.budget-shared"}),
        (
            Edit(
                APP,
                "if attempt == MAX_ATTEMPTS or not budget.try_spend():",
                "if attempt == MAX_ATTEMPTS:",
            ),
        ),
        skips=frozenset({"m4.recovers"}),
    ),
    Mutant(
        "budget-kept-per-request",
        "milestone-4",
        frozenset({"m4.outage-capped", "m4.budget-shared"}),
        (
            Edit(
                APP,
                "    budget.deposit()\n",
                '    budget = RetryBudget(BUCKET["ratio"], BUCKET["burst"])  # one per request\n'
                "    budget.deposit()\n",
            ),
        ),
        skips=frozenset({"m4.recovers"}),
    ),
    Mutant(
        "budget-never-refills",
        "milestone-4",
        frozenset({"m4.recovers"}),
        (Edit(APP, "self.tokens = min(self.burst, self.tokens + self.ratio)", "pass"),),
    ),
    Mutant(
        "bucket-starts-empty",
        "milestone-4",
        frozenset({"m4.blip-heals"}),
        (Edit(APP, "ratio, burst, float(burst)", "ratio, burst, 0.0"),),
    ),
    # Milestone 5: idempotency.
    Mutant(
        "no-idempotency",
        "milestone-5",
        frozenset({"m5.double-submit", "m5.replayed-from-store", "m5.key-reuse-other-body"}),
        (Edit(APP, "    if idempotency_key is None:\n", "    if True:  # the key is ignored\n"),),
        skips=frozenset({"m5.shared-across-instances", "m5.concurrent-double-submit"}),
    ),
    Mutant(
        "in-process-dict-store",
        "milestone-5",
        frozenset({"m5.shared-across-instances"}),
        (
            Edit(
                APP,
                "store: Store = RedisStore(REDIS_URL) if REDIS_URL else MemoryStore()",
                "store: Store = MemoryStore()",
            ),
        ),
    ),
    Mutant(
        "fresh-provider-key-per-attempt",
        "milestone-5",
        frozenset({"m5.lost-response"}),
        (
            Edit(
                APP,
                'headers={"Idempotency-Key": key},',
                'headers={"Idempotency-Key": str(uuid.uuid4())},',
            ),
        ),
    ),
    Mutant(
        "store-written-after-charge",
        "milestone-5",
        frozenset({"m5.concurrent-double-submit"}),
        (
            Edit(
                APP,
                "existing = await store.claim(idempotency_key, print_)",
                "existing = await store.peek(idempotency_key)",
            ),
            Edit(
                APP,
                'provider_key = f"checkout:{idempotency_key}"',
                "provider_key = str(uuid.uuid4())",
            ),
        ),
    ),
    Mutant(
        "store-ignores-the-body",
        "milestone-5",
        frozenset({"m5.key-reuse-other-body"}),
        (Edit(APP, 'if existing["fingerprint"] != print_:', "if False:"),),
    ),
)


def materialize(source: Path, target: Path, edits: tuple[Edit, ...] = ()) -> Path:
    """Copy a learner repo to ``target`` and apply ``edits``; returns ``target``."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    for edit in edits:
        file = target / edit.path
        text = file.read_text("utf-8")
        count = text.count(edit.old)
        if count != 1:
            raise AssertionError(f"{edit.path}: {edit.old!r} occurs {count} times, not once")
        file.write_text(text.replace(edit.old, edit.new), "utf-8")
    return target
