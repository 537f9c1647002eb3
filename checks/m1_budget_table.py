"""Milestone 1: the timeout budget table, checked statically (nothing is started).

Ids: m1.budgets-valid, m1.layers-ordered, m1.retry-policy, m1.nginx-agrees (m1.k6-thresholds,
which reads the load test against this table, is in m1_k6.py).
"""

from __future__ import annotations

from checks.common import repo_relative
from checks.files import NGINX_FILE, learner_file, table, unreadable
from grader.checkkit import (
    MAX_ATTEMPTS_BOUND,
    RETRY_RATIO_BOUND,
    CheckFailed,
    Context,
    Location,
    Passed,
    check,
    learnerfile,
    nginxconf,
)
from grader.checkkit import budgets as budgets_mod

# The hint when what is wrong is budgets.yaml as a whole (no line to point at), not a value.
WHOLE_FILE_HINT = (
    "Put budgets.yaml at the root of your repository as a plain YAML file: the starter repo's "
    "learner_template/budgets.yaml has every key, to fill in with numbers of seconds (the README "
    "gives the format)."
)


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
    """Parse budgets.yaml and validate it against the JSON Schema the grader ships.

    The condition it claims: the repo's budgets.yaml, at its root, is a YAML mapping that
    validates against grader/schemas/budgets.schema.json: the four layer timeouts filled in as
    numbers of seconds within the schema's bounds (more than 0, at most an hour), and retries
    and retry_budget, when present, complete and within theirs.

    How it knows the condition holds while it measures: a static check; nothing is started and
    no load is held. It reads the file once, through grader/learner/learnerfile.py (a regular
    file inside the repo, at most 256 KiB), parses it with PyYAML's safe loader made to refuse
    aliases, duplicate keys, .nan and .inf, and validates the document with jsonschema (Draft
    2020-12); each problem keeps its line and field, where it has them.

    The hints' evidence: problems found in the file, each at its line (a null left from the
    starter file, a value of the wrong type or out of bounds, a YAML syntax error), get the
    check's own hint, to fill in every value. Problems with no line at all are the file's own
    (missing, empty, unreadable as a regular file): the hint then says to put a budgets.yaml
    at the repo's root, as the README describes, since there is no value to fill in yet.
    """
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
            hint=WHOLE_FILE_HINT if all(p.line is None for p in loaded.problems) else None,
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
    """Check nginx > api > payments read timeout, and connect timeout <= read timeout.

    The condition it claims: in budgets.yaml, layers.nginx.timeout_s > layers.api.timeout_s >
    layers.payments.read_timeout_s, and connect_timeout_s <= read_timeout_s (numbers of the
    file, not of the running service).

    How it knows the condition holds while it measures: a static check; nothing is started and
    no load is held. It compares the four numbers of the table m1.budgets-valid read and
    validated (read again the same way, grader/learner/budgets.py), each located at its line.

    The hint's evidence: each pair out of order, named with the line of the inner value and
    the two numbers; the hint is the order itself, which is all a pair out of order can mean.
    """
    budgets, loaded = table(ctx)
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
    """Check the declared retries against course bounds and compute their worst case.

    The condition it claims: budgets.yaml's retries, when declared, have max_attempts at most 5
    and base_delay_s at most max_delay_s, and its retry_budget, when declared, a ratio at most
    0.2. The worst case (max_attempts attempts of connect + read timeout, plus the longest
    declared wait before each retry) is computed and compared with the api budget: a worst
    case over it is still a PASS, whose summary says an overall deadline is required (the live
    checks of milestones 2 and 3 hold the service to it).

    How it knows the condition holds while it measures: a static check; nothing is started and
    no load is held. It reads the numbers of the table m1.budgets-valid validated (read again
    the same way, grader/learner/budgets.py); a table without retries has nothing to bound.

    The hint's evidence: each value past its course bound, at its line, with the bound; the
    hint names the three bounds, which are the only way this check fails.
    """
    budgets, loaded = table(ctx)
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
    """Find the location nginx serves POST /checkout from; compare its proxy_read_timeout.

    The condition it claims: in nginx/nginx.conf, the location nginx would serve POST /checkout
    from proxies it (proxy_pass, no auto redirect to /checkout/), and the proxy_read_timeout in
    force there (its own, or inherited from the server or http block; nginx's default of 60 s
    when none is set) equals budgets.yaml's layers.nginx.timeout_s.

    How it knows the condition holds while it measures: a static check; nginx is not run and
    no load is held. It reads nginx.conf through grader/learner/learnerfile.py (a regular file
    inside the repo, bounded in size), parses it with crossplane (includes followed inside the
    repo) and picks the location as nginx does for POST /checkout (grader/learner/nginxconf.py:
    the default_server, else the first server, as the Host is unknown; rewrite, return,
    try_files and error_page are not followed, nor proxy_pass inside an `if`).

    The hints' evidence: a proxy_read_timeout in force that differs from the table, with its
    file:line (or nginx's default when nothing sets it), gets the check's own hint, to set it.
    A location that does not proxy_pass, or that nginx answers with a 301, gets a hint to
    proxy POST /checkout to the api there; a config crossplane cannot parse or with a value
    nginx would refuse (a time, a regex), a hint to fix the line shown; a file the grader will
    not read (a symlink out of the repo, too large), the reader's own fix. A missing
    nginx.conf gets the check's own hint.
    """
    budgets, loaded = table(ctx)
    conf = learner_file(
        ctx, NGINX_FILE, "the edge proxy's config", learnerfile.NGINX_CONF_MAX_BYTES
    )
    try:
        judged = nginxconf.judge_file(conf, root=ctx.repo.path)
    except learnerfile.LearnerFileError as error:  # a file it includes
        raise unreadable(error, "the files nginx.conf includes") from None
    except nginxconf.NginxConfError as error:
        where = Location(repo_relative(ctx, error.file or str(conf)), error.line)
        raise CheckFailed(
            f"{NGINX_FILE} is a config nginx would reject",
            measured=f"{where}: {error.message}",
            expected="a config nginx accepts",
            # What to set cannot be found in a config that does not parse: the line comes first.
            hint=f"Fix {where} so that nginx accepts the config (the line above says what it "
            "refuses); only then can the grader find the proxy_read_timeout it enforces on POST "
            "/checkout.",
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
            hint=_not_proxied_hint(judged.redirects, want),
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


def _not_proxied_hint(redirects: bool, nginx_s: float) -> str:
    """The hint when the location serving POST /checkout does not proxy it: no timeout to set."""
    fix = (
        "nginx answers POST /checkout with a 301 to /checkout/, as only a location with the "
        "trailing slash proxies it: add `location = /checkout` (or drop the slash)"
        if redirects
        else "The location serving POST /checkout (the line above) does not proxy it: give it"
    )
    return (
        f"{fix} with `proxy_pass http://api:8000;` and `proxy_read_timeout {nginx_s:g}s;` (the "
        f"table's layers.nginx.timeout_s)."
    )
