"""Milestone 1: the timeout budget table, checked statically (nothing is started).

Ids: m1.budgets-valid, m1.layers-ordered, m1.retry-policy, m1.nginx-agrees, m1.k6-thresholds.
"""

from __future__ import annotations

import re
from pathlib import Path

from checks.common import repo_relative
from grader.checkkit import (
    MAX_ATTEMPTS_BOUND,
    RETRY_RATIO_BOUND,
    Budgets,
    CheckFailed,
    Context,
    Loaded,
    Location,
    Passed,
    ToolTimeout,
    check,
    k6,
    learnerfile,
    nginxconf,
)
from grader.checkkit import budgets as budgets_mod

# The learner's files these checks read, relative to the repo root (CI annotates them).
NGINX_FILE = nginxconf.CONF_PATH
K6_SCRIPT = "loadtest/checkout.js"


def _learner_file(ctx: Context, relative: str, what: str, limit_bytes: int) -> Path:
    """A file the learner's repo must have, readable the one safe way, or the FAIL saying why.

    Read through :mod:`grader.learner.learnerfile` (a regular file inside the repo, at most
    ``limit_bytes``), so that what reads it next (crossplane, ``k6 inspect``) gets a file that
    cannot hang or flood it.
    """
    path = ctx.repo.path / relative
    try:
        learnerfile.read_bytes(ctx.repo.path, relative, limit_bytes)
    except learnerfile.LearnerFileError as error:
        raise _unreadable(error, what) from None
    return path


def _unreadable(error: learnerfile.LearnerFileError, what: str) -> CheckFailed:
    """The FAIL for a learner's file the grader will not read as it is."""
    if error.missing and error.problem == "was not found":
        return CheckFailed(
            f"{error.file} was not found",
            measured=f"no file at {error.file}",
            expected=f"{what} at {error.file}",
            location=error.location,
        )
    return CheckFailed(
        f"{error.file} cannot be read as it is",
        measured=error.message,
        expected=f"{what}: a regular file inside your repository",
        hint=f"{error.fix[:1].upper()}{error.fix[1:]}.",
        location=error.location,
    )


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


@check(
    "m1.nginx-agrees",
    "nginx's proxy timeouts agree with the table's nginx layer",
    depends=("m1.budgets-valid",),
    why="The table is only true if the edge proxy enforces it: nginx waits 60 s by default, so "
    "a hung checkout would hold a connection six times longer than the table says.",
    hint="In nginx/nginx.conf set `proxy_read_timeout` (in the location that proxies POST "
    "/checkout to the api, or its server block) to the table's layers.nginx.timeout_s, e.g. "
    "`proxy_read_timeout 10s;`.",
    live=False,
)
def nginx_agrees(ctx: Context) -> Passed:
    """Find the location nginx serves POST /checkout from; compare its proxy_read_timeout."""
    budgets, loaded = _table(ctx)
    conf = _learner_file(
        ctx, NGINX_FILE, "the edge proxy's config", learnerfile.NGINX_CONF_MAX_BYTES
    )
    try:
        judged = nginxconf.judge_file(conf, root=ctx.repo.path)
    except learnerfile.LearnerFileError as error:  # a file it includes
        raise _unreadable(error, "the files nginx.conf includes") from None
    except nginxconf.NginxConfError as error:
        where = Location(repo_relative(ctx, error.file or str(conf)), error.line)
        raise CheckFailed(
            f"{NGINX_FILE} is a config nginx would reject",
            measured=f"{where}: {error.message}",
            expected="a config nginx accepts",
            location=where,
        ) from None
    story = judged.summary(ctx.repo.path)
    want = budgets.layers.nginx_s
    table_line = loaded.location("layers", "nginx", "timeout_s")
    expected = (
        f"the location serving POST /checkout proxies to the api with proxy_read_timeout "
        f"{want:g}s ({table_line}: layers.nginx.timeout_s is {want:g})"
    )
    at_location = Location(
        repo_relative(ctx, judged.location_file or judged.server_file),
        judged.location_line or judged.server_line,
    )
    if judged.redirects or not judged.proxies:
        raise CheckFailed(
            "nginx does not proxy POST /checkout to the api",
            measured=story,
            expected=expected,
            location=at_location,
        )
    if abs(judged.timeout_s - want) > 1e-9:
        located = (
            Location(repo_relative(ctx, judged.timeout_file), judged.timeout_line)
            if judged.timeout_file is not None
            else at_location
        )
        raise CheckFailed(
            "nginx does not enforce the table's nginx budget on POST /checkout",
            measured=story,
            expected=expected,
            location=located,
        )
    return Passed(
        f"nginx gives up on POST /checkout after {want:g} s, as the table says",
        measured=story,
        expected=expected,
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
        raise _unreadable(error, "a module your k6 script imports") from None
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
    """Read loadtest/checkout.js's thresholds with k6 and compare them with the api budget."""
    budgets, loaded = _table(ctx)
    script = _learner_file(ctx, K6_SCRIPT, "your k6 script", learnerfile.K6_SCRIPT_MAX_BYTES)
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
