"""Milestone 1: the learner's load test, read statically (m1.k6-thresholds).

k6 inspect reads the thresholds of loadtest/checkout.js (and the local modules it imports,
whose remote imports are refused first); they must hold checkout to the budget table that
m1_budget_table.py checks.
"""

from __future__ import annotations

import re
from pathlib import Path

from checks.files import K6_SCRIPT, learner_file, table, unreadable
from grader.checkkit import (
    CheckFailed,
    Context,
    Location,
    Passed,
    ToolTimeout,
    check,
    k6,
    learnerfile,
)

# What a learner's own load test must hold checkout latency to: a high percentile (or the max).
LATENCY_AGGREGATES = re.compile(r"^(p\((9\d|100)(\.\d+)?\)|max)$")


# `k6 inspect` runs the script's init code, which the learner wrote: bounded, and blamed on it.
INSPECT_LIMIT_S = 30.0


async def learner_thresholds(script: Path, repo: Path) -> dict[str, list[str]]:
    """The thresholds of a k6 script, as k6 itself reads them (`k6 inspect`).

    A script importing a module from the network (or from outside ``repo``) is refused first,
    before k6 starts: k6 would fetch it (20 s where DNS never answers), and the grader never
    does, so that a verdict is the same offline.
    """
    try:
        refused = k6.remote_imports(script, repo)
    except learnerfile.LearnerFileError as error:  # a module the script imports
        raise unreadable(error, "a module your k6 script imports") from None
    if refused:
        why = k6.refusal(refused)
        raise CheckFailed(
            why.summary,
            measured=why.measured,
            expected=why.expected,
            hint=why.hint,
            location=why.location,
        )
    try:
        inspected = await k6.inspect(script, INSPECT_LIMIT_S)
    except ToolTimeout as overrun:
        raise CheckFailed(
            f"k6 could not read {K6_SCRIPT} within {overrun.limit_s:g} s",
            measured=f"`k6 inspect` was still running after {overrun.limit_s:g} s",
            expected="a script whose init code (outside the default function) finishes",
            hint="Look for a loop or a long wait at the top level of loadtest/checkout.js: k6 "
            "runs that code before any test starts.",
            location=Location(K6_SCRIPT),
        ) from None
    if inspected.exit_code != 0:
        raise CheckFailed(
            f"k6 cannot read {K6_SCRIPT}",
            measured=f"`k6 inspect` exited {inspected.exit_code}: {inspected.last_line}",
            expected="a script k6 runs",
            # k6 refused the script before any threshold was read: its own words say why.
            hint=f"Run `k6 inspect {K6_SCRIPT}` yourself: k6's last line (above) says what it "
            "refuses, such as a syntax error or an import it cannot find. Its thresholds are "
            "judged once k6 reads it.",
            location=Location(K6_SCRIPT),
        )
    return inspected.thresholds()


@check(
    "m1.k6-thresholds",
    "Your load test's thresholds hold checkout to the budget table",
    depends=("m1.budgets-valid",),
    why="A load test without thresholds always passes: it is the thresholds that turn a run "
    "into evidence that checkout fails fast, and they are only as strong as their numbers.",
    hint="In loadtest/checkout.js set thresholds such as "
    "`'http_req_duration{name:checkout}': ['p(95)<3000']` (the api budget, in ms) and "
    "`'http_req_failed{name:checkout}': ['rate<0.01']`.",
    # Past k6 inspect's own limit, so that a learner's script that never finishes is its FAIL.
    timeout_s=INSPECT_LIMIT_S + 10,
    live=False,
)
async def k6_thresholds(ctx: Context) -> Passed:
    """Read loadtest/checkout.js's thresholds with k6 and compare them with the api budget.

    The condition it claims: loadtest/checkout.js, as k6 reads it, has a threshold on
    http_req_duration (any tags) with a p(90)-p(100) or max aggregate and < or <= a limit of at
    most the api budget in ms, and a rate threshold on http_req_failed or checks (any limit).

    How it knows the condition holds while it measures: static as far as the service goes;
    nothing of the learner's is started and no load is held. It reads budgets.yaml as
    m1.budgets-valid does and the script through grader/learner/learnerfile.py, refuses a
    script that imports from the network or outside the repo before k6 starts, then runs
    `k6 inspect` (the script's init code runs, bounded at 30 s) and reads the thresholds from
    the options k6 prints; an expression grader/engine/k6.py cannot parse is not judged.

    The hints' evidence: no latency threshold of that form, or only ones with a limit above
    the api budget, or no rate threshold, gets the check's own hint, example thresholds. An
    import from the network or outside the repo gets a hint to vendor it or copy it in;
    `k6 inspect` past 30 s, one to look for a loop at the script's top level; k6 exiting
    non-zero, one to run `k6 inspect` and read its last line; a file the grader will not read,
    the reader's own fix.
    """
    budgets, loaded = table(ctx)
    script = learner_file(ctx, K6_SCRIPT, "your k6 script", learnerfile.K6_SCRIPT_MAX_BYTES)
    budget_ms = budgets.layers.api_s * 1000
    latency: list[str] = []
    weak: list[str] = []
    errors: list[str] = []
    for metric, expressions in (await learner_thresholds(script, ctx.repo.path)).items():
        name = k6.MetricName.parse(metric)
        for text in expressions:
            try:
                expression = k6.Expression.parse(text)
            except ValueError:
                continue  # k6 itself accepted it; a form this check does not judge
            shown = f"'{metric}': '{text}'"
            if name.name == "http_req_duration" and LATENCY_AGGREGATES.match(expression.aggregate):
                if expression.operator in ("<", "<=") and expression.limit <= budget_ms:
                    latency.append(shown)
                else:
                    weak.append(shown)
            elif name.name in ("http_req_failed", "checks") and expression.aggregate == "rate":
                errors.append(shown)
    api_line = loaded.location("layers", "api", "timeout_s")
    expected = (
        f"a p(9x) or max threshold on http_req_duration under {budget_ms:.0f} ms "
        f"({api_line}), and a rate threshold on http_req_failed or checks"
    )
    problems = []
    if not latency:
        problems.append(
            f"the latency thresholds {', '.join(weak)} are weaker than the api budget "
            f"of {budget_ms:.0f} ms"
            if weak
            else "no threshold holds checkout latency"
        )
    if not errors:
        problems.append("no threshold holds the error rate (http_req_failed or checks)")
    if problems:
        raise CheckFailed(
            problems[0],
            measured="; ".join(problems),
            expected=expected,
            location=Location(K6_SCRIPT),
        )
    return Passed(
        f"thresholds hold checkout to {budget_ms:.0f} ms and bound its errors",
        measured=", ".join(latency + errors),
        expected=expected,
    )
