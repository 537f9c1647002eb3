"""Milestone 1: the timeout budget table, checked statically (nothing is started).

Ids: m1.budgets-valid, m1.layers-ordered, m1.retry-policy, m1.nginx-agrees, m1.k6-thresholds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import crossplane

from grader import budgets as budgets_mod
from grader import k6
from grader.budgets import MAX_ATTEMPTS_BOUND, RETRY_RATIO_BOUND, Budgets
from grader.context import Context
from grader.errors import CheckFailed, ToolTimeout
from grader.model import Location, Passed
from grader.registry import check
from grader.yamlfile import Loaded

# The learner's files these checks read, relative to the repo root (CI annotates them).
NGINX_FILE = "nginx/nginx.conf"
K6_SCRIPT = "loadtest/checkout.js"


def _learner_file(ctx: Context, relative: str, what: str) -> Path:
    """A file the learner's repo must have, or the FAIL saying it is missing."""
    path = ctx.repo.path / relative
    if not path.is_file():
        raise CheckFailed(
            f"{relative} was not found",
            measured=f"no file at {path}",
            expected=f"{what} at {relative}",
        )
    return path


def _table(ctx: Context) -> tuple[Budgets, Loaded]:
    loaded = budgets_mod.load(ctx.repo.path)
    if loaded.problems:  # unreachable after m1.budgets-valid passed, unless the file changed
        raise CheckFailed("budgets.yaml changed while grading", measured=str(loaded.problems[0]))
    return budgets_mod.from_data(loaded.data), loaded


@check(
    "m1.budgets-valid",
    "budgets.yaml exists and matches the schema",
    why="Every later check holds your service to the timeouts this table declares; a table the "
    "grader cannot read means nothing can be held to it.",
    hint="Fill in every value of budgets.yaml as a number of seconds (see the comments in the "
    "file and the format in the README); the line numbers above point at each problem.",
    live=False,
)
def budgets_valid(ctx: Context) -> Passed:
    """Parse budgets.yaml and validate it against the JSON Schema the grader ships."""
    loaded = budgets_mod.load(ctx.repo.path)
    if loaded.problems:
        shown = [str(p) for p in loaded.problems]
        unfilled = all(p.unfilled for p in loaded.problems)
        raise CheckFailed(
            "budgets.yaml is not filled in yet" if unfilled else "budgets.yaml is not valid",
            measured="\n".join(shown),
            expected="a table with layers.nginx.timeout_s, layers.api.timeout_s and "
            "layers.payments.{connect_timeout_s, read_timeout_s} as positive numbers of seconds",
            data={
                "problems": [
                    {"line": p.line, "field": p.field, "message": p.message}
                    for p in loaded.problems
                ]
            },
            location=loaded.problems[0].location,
        )
    budgets = budgets_mod.from_data(loaded.data)
    layers = budgets.layers
    sections = ["layers"] + [s for s in ("retries", "retry_budget") if s in loaded.data]
    return Passed(
        f"budgets.yaml is valid ({', '.join(sections)})",
        measured=f"nginx {layers.nginx_s:g} s, api {layers.api_s:g} s, payments connect "
        f"{layers.connect_s:g} s / read {layers.read_s:g} s",
    )


@check(
    "m1.layers-ordered",
    "Outer budgets exceed inner ones",
    depends=("m1.budgets-valid",),
    why="A caller that gives up before its callee wastes the callee's work and answers with a "
    "generic error; inverted budgets are the most common bug of this course.",
    hint="Order the table nginx > api > payments read timeout, and keep the connect timeout at "
    "most the read timeout: each layer must give up before the layer above it does.",
    live=False,
)
def layers_ordered(ctx: Context) -> Passed:
    """Check nginx > api > payments read timeout, and connect timeout <= read timeout."""
    budgets, loaded = _table(ctx)
    layers = budgets.layers
    where = {
        "api": loaded.location("layers", "api", "timeout_s"),
        "read": loaded.location("layers", "payments", "read_timeout_s"),
        "connect": loaded.location("layers", "payments", "connect_timeout_s"),
    }
    order = (
        f"nginx {layers.nginx_s:g} s > api {layers.api_s:g} s > payments read {layers.read_s:g} s"
    )
    wrong: list[tuple[Location, str]] = []
    if not layers.nginx_s > layers.api_s:
        wrong.append(
            (
                where["api"],
                f"{where['api']}: the api budget ({layers.api_s:g} s) is not shorter "
                f"than nginx's ({layers.nginx_s:g} s): nginx would give up first and answer 504",
            )
        )
    if not layers.api_s > layers.read_s:
        wrong.append(
            (
                where["read"],
                f"{where['read']}: the payments read timeout ({layers.read_s:g} s) "
                f"is not shorter than the api budget ({layers.api_s:g} s): the api cannot answer "
                f"within its budget while it waits on the provider",
            )
        )
    if not layers.connect_s <= layers.read_s:
        wrong.append(
            (
                where["connect"],
                f"{where['connect']}: the connect timeout ({layers.connect_s:g} s) "
                f"is longer than the read timeout ({layers.read_s:g} s)",
            )
        )
    if wrong:
        raise CheckFailed(
            "the budget table is inverted"
            if len(wrong) == 1
            else f"the budget table is inverted in {len(wrong)} places",
            measured="; ".join(text for _, text in wrong),
            expected="nginx > api > payments read timeout >= connect timeout",
            location=wrong[0][0],
        )
    return Passed("each layer gives up before its caller", measured=order)


@check(
    "m1.retry-policy",
    "The retry policy is within course bounds and its worst case is known",
    depends=("m1.budgets-valid",),
    why="Retries multiply the time a checkout can take: max_attempts attempts that each time out, "
    "plus the waits between them, must still fit in the api budget, or be cut off by a deadline.",
    hint="Keep max_attempts at most 5, base_delay_s at most max_delay_s, and the retry budget's "
    "ratio at most 0.2.",
    live=False,
)
def retry_policy(ctx: Context) -> Passed:
    """Check the declared retries against course bounds and compute their worst case."""
    budgets, loaded = _table(ctx)
    retries, bucket = budgets.retries, budgets.retry_budget
    worst, api = budgets.worst_case_s(), budgets.layers.api_s
    wrong: list[tuple[Location, str]] = []
    if retries is not None:
        if retries.max_attempts > MAX_ATTEMPTS_BOUND:
            where = loaded.location("retries", "max_attempts")
            wrong.append(
                (
                    where,
                    f"{where}: max_attempts is {retries.max_attempts}; the course "
                    f"allows at most {MAX_ATTEMPTS_BOUND}",
                )
            )
        if retries.base_delay_s > retries.max_delay_s:
            where = loaded.location("retries", "base_delay_s")
            wrong.append(
                (
                    where,
                    f"{where}: base_delay_s ({retries.base_delay_s:g} s) is longer "
                    f"than max_delay_s ({retries.max_delay_s:g} s)",
                )
            )
    if bucket is not None and bucket.ratio > RETRY_RATIO_BOUND:
        where = loaded.location("retry_budget", "ratio")
        wrong.append(
            (
                where,
                f"{where}: the retry budget's ratio is {bucket.ratio:g}; the course "
                f"allows at most {RETRY_RATIO_BOUND:g} (more would let retries amplify an outage)",
            )
        )
    data = {"worst_case_s": round(worst, 3), "api_budget_s": api}
    if wrong:
        raise CheckFailed(
            "the retry policy is out of bounds",
            location=wrong[0][0],
            measured="; ".join(text for _, text in wrong),
            expected=f"max_attempts <= {MAX_ATTEMPTS_BOUND}, base_delay_s <= "
            f"max_delay_s, ratio <= {RETRY_RATIO_BOUND:g}",
            data=data,
        )
    attempts = 1 if retries is None else retries.max_attempts
    measured = (
        f"worst case {worst:.2f} s: {attempts} attempt(s) of connect "
        f"{budgets.layers.connect_s:g} s + read {budgets.layers.read_s:g} s"
        + ("" if retries is None else " plus the longest waits between them")
    )
    if worst <= api:
        return Passed(
            f"the worst case fits the api budget of {api:g} s",
            measured=measured,
            expected=f"at most {api:g} s",
            data=data,
        )
    return Passed(
        f"the worst case exceeds the api budget of {api:g} s, so your code needs an overall "
        f"deadline: stop retrying, and cut the attempt in flight, when {api:g} s are spent "
        f"(milestones 2 and 3 check it live)",
        measured=measured,
        expected=f"at most {api:g} s, or an overall deadline",
        data=data | {"deadline_required": True},
    )


# nginx time syntax: "10", "10s", "500ms", "1m30s" (http://nginx.org/en/docs/syntax.html).
_NGINX_UNITS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "M": 2592000,
    "y": 31536000,
}
_NGINX_TIME = re.compile(r"(\d+)(ms|s|m|h|d|w|M|y)?")
NGINX_DEFAULT_TIMEOUT_S = 60.0  # proxy_read_timeout when none is set


def nginx_seconds(value: str) -> float | None:
    """Seconds in an nginx time value, or None when it is not one."""
    parts = _NGINX_TIME.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(int(number) * _NGINX_UNITS[unit or "s"] for number, unit in parts)


def proxy_read_timeouts(conf: Path) -> list[tuple[str, int, float, int | None]]:
    """For each location that proxy_passes: (location, its line, proxy_read_timeout, its line).

    The timeout is the location's own, else inherited from server, then http, else nginx's default.
    """
    parsed = crossplane.parse(
        str(conf), single=True, comments=False, check_ctx=False, check_args=False
    )
    if parsed["errors"]:
        error = parsed["errors"][0]
        raise CheckFailed(
            "nginx/nginx.conf cannot be parsed",
            measured=f"nginx/nginx.conf:{error.get('line')}: {error.get('error')}",
            expected="a config nginx accepts",
            location=Location(NGINX_FILE, error.get("line")),
        )
    found: list[tuple[str, int, float, int | None]] = []

    def walk(block: list[dict[str, Any]], inherited: tuple[float, int | None], label: str) -> None:
        own = inherited
        for directive in block:
            if directive["directive"] == "proxy_read_timeout" and directive["args"]:
                seconds = nginx_seconds(directive["args"][0])
                if seconds is None:
                    raise CheckFailed(
                        "nginx/nginx.conf has a proxy_read_timeout nginx would reject",
                        measured=f"nginx/nginx.conf:{directive['line']}: "
                        f"proxy_read_timeout {directive['args'][0]}",
                        expected="a time such as 10s",
                        location=Location(NGINX_FILE, directive["line"]),
                    )
                own = (seconds, directive["line"])
        for directive in block:
            if directive["directive"] == "proxy_pass" and label.startswith("location"):
                found.append((label, directive["line"], own[0], own[1]))
            if "block" in directive:
                name = " ".join([directive["directive"], *directive["args"]])
                walk(directive["block"], own, name)

    walk(parsed["config"][0]["parsed"], (NGINX_DEFAULT_TIMEOUT_S, None), "main")
    return found


@check(
    "m1.nginx-agrees",
    "nginx's proxy timeouts agree with the table's nginx layer",
    depends=("m1.budgets-valid",),
    why="The table is only true if the edge proxy enforces it: nginx waits 60 s by default, so "
    "a hung checkout would hold a connection six times longer than the table says.",
    hint="In nginx/nginx.conf set `proxy_read_timeout` (in the location that proxies to the api, "
    "or its server block) to the table's layers.nginx.timeout_s, e.g. `proxy_read_timeout 10s;`.",
    live=False,
)
def nginx_agrees(ctx: Context) -> Passed:
    """Parse nginx/nginx.conf with crossplane and compare proxy_read_timeout with the table."""
    budgets, loaded = _table(ctx)
    conf = _learner_file(ctx, NGINX_FILE, "the edge proxy's config")
    locations = proxy_read_timeouts(conf)
    if not locations:
        raise CheckFailed(
            "nginx/nginx.conf proxies nothing to the api",
            measured="no location with proxy_pass",
            expected="a location that proxy_passes to the api",
            location=Location(NGINX_FILE),
        )
    want = budgets.layers.nginx_s
    table_line = loaded.location("layers", "nginx", "timeout_s")
    wrong = []
    first: int | None = None
    for label, location_line, seconds, line in locations:
        if abs(seconds - want) > 1e-9:
            first = first or line or location_line
            where = (
                f"nginx/nginx.conf:{line}: proxy_read_timeout is {seconds:g} s"
                if line
                else (
                    f"{label} sets no proxy_read_timeout, so nginx waits its default {seconds:g} s"
                )
            )
            wrong.append(where)
    if wrong:
        raise CheckFailed(
            "nginx does not enforce the table's nginx budget",
            measured="; ".join(wrong),
            expected=f"proxy_read_timeout {want:g}s ({table_line}: "
            f"layers.nginx.timeout_s is {want:g})",
            location=Location(NGINX_FILE, first),
        )
    return Passed(
        f"nginx gives up after {want:g} s, as the table says",
        measured=", ".join(f"{label}: proxy_read_timeout {s:g} s" for label, _, s, _ in locations),
        expected=f"{want:g} s",
    )


# What a learner's own load test must hold checkout latency to: a high percentile (or the max).
LATENCY_AGGREGATES = re.compile(r"^(p\((9\d|100)(\.\d+)?\)|max)$")


# `k6 inspect` runs the script's init code, which the learner wrote: bounded, and blamed on it.
INSPECT_LIMIT_S = 30.0


async def learner_thresholds(script: Path) -> dict[str, list[str]]:
    """The thresholds of a k6 script, as k6 itself reads them (`k6 inspect`)."""
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
    live=False,
)
async def k6_thresholds(ctx: Context) -> Passed:
    """Read loadtest/checkout.js's thresholds with k6 and compare them with the api budget."""
    budgets, loaded = _table(ctx)
    script = _learner_file(ctx, K6_SCRIPT, "your k6 script")
    budget_ms = budgets.layers.api_s * 1000
    latency: list[str] = []
    weak: list[str] = []
    errors: list[str] = []
    for metric, expressions in (await learner_thresholds(script)).items():
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
