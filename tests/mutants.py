"""Mutants: the reference solution with exactly one fault-tolerance property broken.

Each mutant is a few exact text substitutions on a copy of ``reference/solution``; a substitution
whose text is not found exactly once fails loudly, so a mutant cannot silently stop mutating when
the reference changes. ``fails`` names the checks it must fail; every other check of its milestone
must pass (or be skipped, for ``skips``), which proves each check targets what it claims to.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "reference" / "solution"
TEMPLATE = ROOT / "learner_template"
VARIANTS = ROOT / "tests" / "variants"


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

    def missed_by_chance(self, statuses: dict[str, str]) -> bool:
        """Whether ``statuses`` miss only in statistical checks, by their designed error rates.

        m3's storm checks are designed to FAIL a mutant in at least 95 % of runs (simulated:
        a constant wait PASSes backoff-grows in at most 1.1 %; checks/stats.py), and may end
        INCONCLUSIVE on a busy machine. A test holds them to that design by grading once more
        when they alone missed: a second miss (p < 0.1 %) fails the test.
        """
        wanted = self.verdicts(statuses)
        missed = {check_id for check_id in wanted if statuses[check_id] != wanted[check_id]}
        return bool(missed) and missed <= STATISTICAL

    def verdicts(self, check_ids: Iterable[str]) -> dict[str, str]:
        """The status each of ``check_ids`` must get: FAIL its targets, SKIP, else PASS."""
        return {
            check_id: "FAIL"
            if check_id in self.fails
            else "SKIP"
            if check_id in self.skips
            else "PASS"
            for check_id in check_ids
        }


# Checks whose FAIL of a mutant is statistical, with a designed miss rate (see missed_by_chance).
STATISTICAL = frozenset({"m3.jitter-spread", "m3.backoff-grows"})

APP = "app/main.py"
NO_DEADLINE = Edit(APP, "asyncio.timeout(DEADLINE_S)", "asyncio.timeout(None)")
BLOCKING_CALL = Edit(
    APP,
    "    if idempotency_key is None:\n",
    "    time.sleep(0.2)  # a blocking call: the whole event loop waits\n"
    "    if idempotency_key is None:\n",
)

# The provider's answer, as the reference passes it through to the client.
PAYMENT_BODY = 'return 200, {"status": "ok", "payment": response.json()}'
SETTLE_HEAD = (
    "async def settle(amount_cents: int, provider_key: str) -> tuple[int, dict[str, Any]]:\n"
    '    """Charge within the api budget; the status and body to answer with."""\n'
)

# m2.edge-answers-first checks nginx once the api gives up on its own (m2.read-timeout): a
# mutant that fails m2.read-timeout skips it.
EDGE_AFTER_READ_TIMEOUT = frozenset({"m2.edge-answers-first"})

# uvicorn answers 503 at once to a request that finds 8 connections open (idle keep-alive ones
# included) or 8 requests running: a server concurrency limit, /healthz under it too.
LIMIT_CONCURRENCY_8 = Edit("failfast.yaml", "--port $PORT", "--port $PORT --limit-concurrency 8")

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
        # /healthz right, but POST /checkout served by a location of its own at the default
        # 60 s: the location nginx chooses for checkout is the one judged.
        "checkout-location-keeps-default",
        "milestone-1",
        frozenset({"m1.nginx-agrees"}),
        (
            Edit(
                "nginx/nginx.conf",
                "        location / {\n",
                "        location = /checkout {\n            proxy_pass http://api:8000;\n"
                "        }\n\n        location / {\n",
            ),
        ),
    ),
    Mutant(
        # A "friendly" error page: nginx intercepts the api's own 502/503/504 and answers with
        # its HTML instead. Every timeout agrees with the table (m1.nginx-agrees judges location
        # /, which proxies with 10 s; a named location is never matched), the api answers in
        # time: only a checkout through nginx shows the customer getting nginx's page.
        "nginx-replaces-the-api-answer",
        "milestone-2",
        frozenset({"m2.edge-answers-first"}),
        (
            Edit(
                "nginx/nginx.conf",
                "            proxy_next_upstream off;\n        }\n",
                "            proxy_next_upstream off;\n\n"
                "            proxy_intercept_errors on;\n"
                "            error_page 502 503 504 @unavailable;\n"
                "        }\n\n"
                "        location @unavailable {\n"
                "            default_type text/html;\n"
                '            return 503 "<html><body><h1>Checkout is unavailable</h1></body>'
                '</html>";\n'
                "        }\n",
            ),
        ),
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
            {
                "m1.layers-ordered",
                "m1.retry-policy",
                "m1.nginx-agrees",
                "m1.k6-thresholds",
            }
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
        # No connect timeout, only the overall deadline (2.8 s): a hanging connect takes the
        # whole budget, inside the api budget but past 3 x 0.5 s connect timeouts + waits.
        "no-connect-timeout",
        "milestone-2",
        frozenset({"m2.connect-timeout"}),
        (Edit(APP, '    connect=PAYMENTS["connect_timeout_s"],', "    connect=None,"),),
    ),
    Mutant(
        # The connect timeout is right, but a connect that timed out "never reached the
        # provider", so it is retried at once and not counted against max_attempts: 5-6
        # attempts of 0.5 s until the deadline answers at ~2.8 s, the same late answer as
        # no-connect-timeout's; the hint must name this cause, from the attempts counted.
        "connects-retried-past-max-attempts",
        "milestone-2",
        frozenset({"m2.connect-timeout"}),
        (
            Edit(
                APP,
                "    for attempt in range(1, MAX_ATTEMPTS + 1):",
                "    for attempt in range(1, 4 * MAX_ATTEMPTS + 1):",
            ),
            Edit(
                APP,
                "        if attempt == MAX_ATTEMPTS or not budget.try_spend():",
                "        if isinstance(failure, httpx.ConnectTimeout):\n"
                "            continue  # never reached the provider: retried at once, uncounted\n"
                "        if attempt == MAX_ATTEMPTS or not budget.try_spend():",
            ),
        ),
    ),
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
        skips=EDGE_AFTER_READ_TIMEOUT,
    ),
    Mutant(
        # The API answers a payment of its own making: status, amount and one charge are all
        # right, only the charge's id is missing, which is how a client finds the payment again.
        # Every other m2 check builds on a working checkout, so they are skipped.
        "payment-is-not-the-charge",
        "milestone-2",
        frozenset({"m2.healthy-checkout"}),
        (
            Edit(
                APP,
                PAYMENT_BODY,
                'return 200, {"status": "ok", "payment": '
                '{"amount_cents": amount_cents, "status": "succeeded"}}',
            ),
        ),
        skips=frozenset(
            {"m2.read-timeout", "m2.slow-body", "m2.connect-timeout", "m2.healthz-under-load"}
        )
        | EDGE_AFTER_READ_TIMEOUT,
    ),
    Mutant(
        # No overall deadline, but each attempt's read timeout is cut to the budget left: held
        # headers are cut in time (m2.read-timeout passes), while a body trickled a byte every
        # 100 ms never trips a per-read timeout. Only m2.slow-body can see the difference.
        "per-attempt-timeouts-no-deadline",
        "milestone-2",
        frozenset({"m2.slow-body"}),
        (
            NO_DEADLINE,
            Edit(
                APP,
                '                headers={"Idempotency-Key": key},\n            )',
                '                headers={"Idempotency-Key": key},\n'
                "                timeout=httpx.Timeout(\n"
                '                    connect=PAYMENTS["connect_timeout_s"],\n'
                '                    read=max(0.01, min(PAYMENTS["read_timeout_s"], '
                "deadline - time.monotonic())),\n"
                '                    write=PAYMENTS["read_timeout_s"],\n'
                '                    pool=PAYMENTS["connect_timeout_s"],\n'
                "                ),\n"
                "            )",
            ),
        ),
    ),
    Mutant(
        "read-timeout-longer-than-budget",
        "milestone-2",
        frozenset({"m2.read-timeout"}),
        (Edit(APP, '    read=PAYMENTS["read_timeout_s"],', "    read=10,"),),
        skips=EDGE_AFTER_READ_TIMEOUT,
    ),
    Mutant(
        "blocking-call-in-async-handler",
        "milestone-2",
        frozenset({"m2.healthz-under-load"}),
        (BLOCKING_CALL,),
    ),
    Mutant(
        "per-read-timeouts-no-deadline",
        "milestone-2",
        frozenset({"m2.slow-body", "m2.read-timeout"}),
        (NO_DEADLINE,),
        skips=EDGE_AFTER_READ_TIMEOUT,
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
        skips=EDGE_AFTER_READ_TIMEOUT,
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
        # Every retry waits exactly half its cap (50 ms, then 100 ms): inside the declared
        # bounds with room to spare and growing as declared, so only the missing jitter is
        # wrong. (At the cap itself, the waits sat on the upper bound, and a busy machine's
        # lateness made m3.backoff-grows INCONCLUSIVE as well.)
        "retries-without-jitter",
        "milestone-3",
        frozenset({"m3.jitter-spread"}),
        (Edit(APP, "    return random.uniform(0, cap)", "    return cap / 2"),),
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
        # The same random wait before every retry: jittered, within the first cap, no backoff.
        # Judged from the distributions (second waits no longer than first ones on average).
        "same-wait-every-retry",
        "milestone-3",
        frozenset({"m3.backoff-grows"}),
        (Edit(APP, "    return random.uniform(0, cap)", "    return random.uniform(0.04, 0.1)"),),
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
        # A bucket per TCP connection: m4.budget-shared's 20 clients on their own connections
        # get 20 bursts. m4.outage-capped's 4 clients share one pool, so they use 4 connections,
        # the warm-up's and 3 fresh ones: 3 extra bursts. With the course's burst of 10 that is
        # 30 extra attempts over 200 checkouts, past its 0.05 slack, so no per-client bucket
        # can fail m4.budget-shared alone there; with a burst of 2 (the table's, edited below)
        # the 3 extra bursts fit the slack (at most 226 attempts against 230), and the 20 do
        # not (at least 240). A connection that gets a success forgets its bucket, so the next
        # one starts full: without it m4.recovers' probe, sent on the oldest pooled connection,
        # would find that connection's own bucket as the outage left it, and pass or fail by
        # chance. No check tells the two refill rules apart on a shared bucket.
        "budget-per-connection",
        "milestone-4",
        frozenset({"m4.budget-shared"}),
        (
            Edit("budgets.yaml", "burst: 10 ", "burst: 2  "),
            Edit(APP, "import asyncio\n", "import asyncio\nimport contextvars\n"),
            Edit(
                APP,
                "from fastapi import FastAPI, Header\n",
                "from fastapi import FastAPI, Header, Request\n",
            ),
            Edit(
                APP,
                'budget = RetryBudget(BUCKET["ratio"], BUCKET["burst"])\n',
                'budget = RetryBudget(BUCKET["ratio"], BUCKET["burst"])\n'
                "buckets: dict[Any, RetryBudget] = {}  # by (host, port) of the client\n"
                'peer: contextvars.ContextVar[Any] = contextvars.ContextVar("peer")\n',
            ),
            Edit(
                APP,
                "    budget.deposit()\n",
                '    budget = buckets.setdefault(peer.get(), RetryBudget(BUCKET["ratio"], '
                'BUCKET["burst"]))\n'
                "    budget.deposit()\n",
            ),
            Edit(
                APP,
                "            if response.status_code not in RETRYABLE_STATUSES:\n",
                "            if response.status_code == 200:\n"
                "                buckets.pop(peer.get(), None)\n"
                "            if response.status_code not in RETRYABLE_STATUSES:\n",
            ),
            Edit(
                APP,
                "    body: CheckoutRequest, idempotency_key: str | None = Header(default=None)\n"
                ") -> JSONResponse:\n"
                '    """Charge the customer once per Idempotency-Key, within the api budget."""\n',
                "    body: CheckoutRequest,\n"
                "    request: Request,\n"
                "    idempotency_key: str | None = Header(default=None),\n"
                ") -> JSONResponse:\n"
                '    """Charge the customer once per Idempotency-Key, within the api budget."""\n'
                "    peer.set(request.client)\n",
            ),
        ),
    ),
    Mutant(
        # uvicorn refuses past 8 connections at once with a 503 before the handler runs: the
        # 20 clients of m4.budget-shared mostly get that 503 and the provider never sees their
        # checkouts, so no budget is measured (it once passed at 0 attempts per checkout). The
        # other m4 checks send from at most 10 clients, one checkout a client at a time.
        "concurrency-limit-refuses-checkouts",
        "milestone-4",
        frozenset({"m4.budget-shared"}),
        (LIMIT_CONCURRENCY_8,),
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
        # A completed key is settled again through the provider, with the same provider key:
        # the provider replays its charge, so one charge and the same answer (m5.double-submit
        # passes), but a provider attempt per repeat. m5.shared-across-instances fails with it,
        # unavoidably: it demands the same of a repeat sent to the second instance, and no
        # realistic store answers a repeat from the store on one instance and not the other.
        "completed-key-replayed-by-the-provider",
        "milestone-5",
        frozenset({"m5.replayed-from-store", "m5.shared-across-instances"}),
        (
            Edit(
                APP,
                '            status, payload = existing["status"], existing["body"]\n',
                "            status, payload = await settle(\n"
                '                body.amount_cents, f"checkout:{idempotency_key}"\n'
                "            )\n",
            ),
        ),
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
    Mutant(
        # The provider key is derived from the body, not the client's key: two keys for the
        # same amount reach the provider as one key, and it replays the first charge. The store
        # itself still keys on Idempotency-Key, so repeats, reuse with another body and lost
        # responses behave. (A store keyed on the body instead would also turn a key reused with
        # another amount into a second charge, failing m5.key-reuse-other-body too.)
        "provider-key-from-the-body",
        "milestone-5",
        frozenset({"m5.distinct-keys"}),
        (
            Edit(
                APP,
                'provider_key = f"checkout:{idempotency_key}"',
                'provider_key = f"checkout:{print_}"',
            ),
        ),
    ),
    # The load test: one real k6 run per mutant (13 to 18 s each), one mutant per threshold;
    # lt.k6-run has none (see UNMUTABLE below).
    Mutant(
        # Per-attempt read timeouts without the overall deadline: while the bucket lasts, a held
        # checkout is retried and answers after two read timeouts, about 4 s.
        "no-deadline-under-load",
        "loadtest",
        frozenset({"lt.slow-phase-fails-fast"}),
        (NO_DEADLINE,),
    ),
    Mutant(
        # A successful checkout e-mails the receipt before it answers, through a relay that
        # takes 4.5 s. The slow phase has no successes to slow down; every recovery checkout
        # succeeds, 4.5 s late. (A leaked or undersized connection pool, the hint's example,
        # makes recovery checkouts wait inside the api deadline: they fail at 2.8 s and trip
        # lt.recovery-succeeds instead. A receipt writer serialised behind a lock queues the
        # recovery phase too, but its p95 hangs on how many arrivals k6 drops while it starts
        # VUs: it measured 3.49 s and 3.51 s, so it is not a stable mutant.)
        "receipt-mailed-before-answering",
        "loadtest",
        frozenset({"lt.recovery-latency"}),
        (
            Edit(
                APP,
                PAYMENT_BODY,
                "await asyncio.sleep(4.5)  # e-mailing the receipt\n        " + PAYMENT_BODY,
            ),
        ),
    ),
    Mutant(
        # uvicorn --limit-concurrency 8: it answers 503 at once to a request that finds 8
        # connections open, k6's idle keep-alive ones included. The slow phase fails fast (503
        # in ms, a few checkouts held), /healthz mostly fits; in the recovery phase 80-85 % of
        # checkouts are refused without reaching the provider: the refusal hint names the limit.
        "limit-concurrency-8",
        "loadtest",
        frozenset({"lt.recovery-succeeds"}),
        (LIMIT_CONCURRENCY_8,),
    ),
    Mutant(
        # A circuit breaker that opens after five timeouts and never closes: the slow phase
        # fails fast (a quick 503 once open), and so does every checkout after the provider
        # recovered.
        "circuit-never-closes",
        "loadtest",
        frozenset({"lt.recovery-succeeds"}),
        (
            Edit(
                APP,
                SETTLE_HEAD,
                "timeouts = [0]  # provider timeouts so far; five open the circuit for good\n\n\n"
                + SETTLE_HEAD
                + "    if timeouts[0] >= 5:\n"
                '        return error(503, "circuit_open")\n',
            ),
            Edit(
                APP,
                '        return error(504, "payments_timeout")',
                '        timeouts[0] += 1\n        return error(504, "payments_timeout")',
            ),
        ),
    ),
    Mutant(
        # /healthz refreshes a status snapshot with a blocking call every 2 s: the probe that
        # triggers it, and those sent while it runs, wait up to 300 ms (p99 of 110 probes is
        # 200 ms past the 100 ms limit, far past the 50 ms noise floor), while the loop is blocked
        # 15 % of the time, too little to push either checkout p95 past its limit.
        "healthz-refresh-blocks",
        "loadtest",
        frozenset({"lt.healthz-fast"}),
        (
            Edit(
                APP,
                '@app.get("/healthz")\nasync def healthz() -> dict[str, str]:\n'
                '    """Liveness: answers without touching the provider."""\n',
                "refreshed = 0.0  # when /healthz last refreshed its status snapshot\n\n\n"
                '@app.get("/healthz")\nasync def healthz() -> dict[str, str]:\n'
                '    """Liveness: answers without touching the provider."""\n'
                "    global refreshed\n"
                "    if time.monotonic() - refreshed >= 2.0:\n"
                "        time.sleep(0.3)  # a blocking refresh: the whole event loop waits\n"
                "        refreshed = time.monotonic()\n",
            ),
        ),
    ),
)


# Checks no mutant can fail, and why. A check listed here must not be able to FAIL at all
# (tests/test_mutant_coverage.py holds it to that), or it needs a mutant instead.
UNMUTABLE = {
    "lt.k6-run": "it judges the grader's own k6 script and k6 itself, not the learner's repo: "
    "what goes wrong there is ERROR (an environment problem), never FAIL",
}


# sync-handlers raises anyio's threadpool to 200 threads; these edits give it fewer.
SYNC_THREADS_8 = Edit("app/main.py", "WORKER_THREADS = 200", "WORKER_THREADS = 8")
SYNC_THREADS_24 = Edit("app/main.py", "WORKER_THREADS = 200", "WORKER_THREADS = 24")

# Mutants of a correct variant rather than of the reference, by variant: the same edits, applied
# to the variant's repo (materialize_variant(name, target, mutant.edits)).
VARIANT_MUTANTS = {
    "flask-gunicorn": (
        Mutant(
            # 16 threads for the 20 checkouts m2.healthz-under-load holds: gunicorn queues the
            # last 4, and every /healthz behind them, until a checkout gives up (~1.6 s).
            "gunicorn-16-threads",
            "milestone-2",
            frozenset({"m2.healthz-under-load"}),
            (Edit("failfast.yaml", "--threads 32", "--threads 16"),),
        ),
    ),
    "sync-handlers": (
        Mutant(
            # anyio's threadpool cut to 8 for the 20 checkouts m2.healthz-under-load holds: the
            # last 12 queue, and every /healthz (a plain `def` too) behind them, for ~2.75 s.
            "threadpool-8",
            "milestone-2",
            frozenset({"m2.healthz-under-load"}),
            (SYNC_THREADS_8,),
        ),
        Mutant(
            # 24 threads: 4 spare while m2.healthz-under-load holds 20 (milestones 1-5 PASS),
            # but the load test's slow phase keeps ~28 checkouts in flight (10/s for the 2.75 s
            # deadline): /healthz queues behind them past its 100 ms p99.
            "threadpool-24",
            "loadtest",
            frozenset({"lt.healthz-fast"}),
            (SYNC_THREADS_24,),
        ),
    ),
}


def materialize_variant(name: str, target: Path, edits: tuple[Edit, ...] = ()) -> Path:
    """A correct variant as a whole learner repo: the reference's files, the variant's on top.

    A variant keeps only what it writes differently (its app, requirements, table); the rest
    (nginx.conf, the k6 script, the manifest, the workflow) is the reference's. ``edits`` make
    it one of its VARIANT_MUTANTS.
    """
    materialize(REFERENCE, target)
    shutil.copytree(VARIANTS / name, target, dirs_exist_ok=True)
    for edit in edits:
        _apply(target, edit)
    return target


def materialize(source: Path, target: Path, edits: tuple[Edit, ...] = ()) -> Path:
    """Copy a learner repo to ``target`` and apply ``edits``; returns ``target``."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    for edit in edits:
        _apply(target, edit)
    return target


def _apply(target: Path, edit: Edit) -> None:
    """Apply one edit to the repo at ``target``; its text must occur exactly once."""
    file = target / edit.path
    text = file.read_text("utf-8")
    count = text.count(edit.old)
    if count != 1:
        raise AssertionError(f"{edit.path}: {edit.old!r} occurs {count} times, not once")
    file.write_text(text.replace(edit.old, edit.new), "utf-8")
