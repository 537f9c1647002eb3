"""Milestone 2, through the learner's own nginx: the api answers first, nginx passes it on.

Id: m2.edge-answers-first. The table's order nginx > api > payments, seen from the customer's
side: with the provider stuck, the answer through nginx is the api's own 502/503/504. It needs
the api's deadline (milestone 2's m2.read-timeout) and the learner's nginx/nginx.conf running:
under --backend docker, unchanged in front of the API; under --backend local, rewired to
loopback ports when an nginx binary is on PATH (grader/backends/local/edge.py), else SKIP,
not the learner's fault. A form of nginx.conf the local backend cannot point at its API (a unix
socket, a host other than api:8000, an include outside the repo, a host nginx would resolve at
run time: grader/learner/nginxroute.py) is SKIP as well, naming the directive and its file:line.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence

from checks.common import (
    ANSWER_TOLERANCE_S,
    answer_wait_s,
    expected_fail_fast,
    fail_fast_problems,
    hold_s,
    limit_for_table,
    repo_relative,
    skip_past_max_budget,
)
from grader.checkkit import (
    CheckFailed,
    CheckoutResult,
    CheckSkipped,
    Context,
    Delay,
    EdgeUnavailable,
    Location,
    Passed,
    check,
    learnerfile,
    nginxconf,
)

NGINX_FILE = nginxconf.CONF_PATH


# Starting nginx is bounded by grader/backends/local/edge.py (5 s), the checkout by
# answer_wait_s (5.5 s for the course's table); the rest is margin for a busy machine. A longer
# api budget lengthens the checkout, and the limit with it (limit_for_table).
EDGE_CHECK_LIMIT_S = 30.0


def _served_by(ctx: Context) -> tuple[str, Location | None]:
    """Which location of nginx.conf serves POST /checkout, in words, and where it is."""
    try:
        judged = nginxconf.judge_file(ctx.repo.path / NGINX_FILE, root=ctx.repo.path)
    except (learnerfile.LearnerFileError, nginxconf.NginxConfError):
        return f"{NGINX_FILE} (it changed while grading)", None  # m1.nginx-agrees read it
    where = Location(
        repo_relative(ctx, judged.location_file or judged.server_file),
        judged.location_line or judged.server_line,
    )
    return judged.summary(ctx.repo.path), where


# nginx's error log lines when it resolves a name at run time (ngx_resolver.c,
# ngx_http_upstream.c); how many of its last lines are searched for them.
_RESOLVER_SAID = ("no resolver defined to resolve", "could not be resolved", "while resolving")
RESOLVER_LINES = 60
# How long nginx's error log line may take to reach the grader after nginx's answer: a thread
# reads the pipe, and a busy 2-core machine can delay it by tens of milliseconds.
LOG_LAG_S = 0.5


def _resolving(lines: Sequence[str]) -> str | None:
    """The line where nginx says it resolved a name at run time, if it printed one."""
    return next((line for line in lines if any(s in line for s in _RESOLVER_SAID)), None)


def _checkout_proxy_pass(ctx: Context) -> tuple[str, str]:
    """The proxy_pass that serves POST /checkout, as written, and its file:line."""
    try:
        judged = nginxconf.judge_file(ctx.repo.path / NGINX_FILE, root=ctx.repo.path)
    except (learnerfile.LearnerFileError, nginxconf.NginxConfError):
        judged = None
    if judged is None or judged.proxy_pass is None:
        return "proxy_pass", NGINX_FILE
    stmt = judged.proxy_pass
    return stmt.text, f"{repo_relative(ctx, stmt.file)}:{stmt.line}"


def _cannot_grade_form(directive: str, where: str, why: str) -> CheckSkipped:
    """SKIP: a form of nginx.conf the local backend cannot run, named with its line."""
    return CheckSkipped(
        f"not run: the local backend cannot run `{directive}` ({where}) in front of its API",
        measured=f"{where}: `{directive}`: {why}",
        expected=f"nginx running your {NGINX_FILE} in front of your API",
        hint=f"Not a failure of yours: `{directive}` at {where} may well work under docker "
        f"compose, but the local backend, which points your nginx at the API it started on a "
        f"loopback port, cannot run it ({why}). Grade with --backend docker to run your "
        f"{NGINX_FILE} unchanged, or name the api the way the local backend rewires it: "
        f"`proxy_pass http://api:8000;` (a URI part may follow), an upstream block of "
        f"`server api:8000;`, or a variable set whole to `http://api:8000` with set or map. "
        f"m1.nginx-agrees still judges your nginx.conf.",
    )


def _nginx_page(result: CheckoutResult) -> bool:
    """Whether the answer is a page of nginx's: its own error page, or an error_page's HTML.

    An API answers JSON, or a framework's plain-text 500 when it crashes; HTML, or a page
    signed "nginx", is what nginx sends when it answers for the api.
    """
    if result.status is None or result.body_is_json:
        return False
    media = (result.content_type or "").split(";", 1)[0].strip().lower()
    return media == "text/html" or "nginx" in result.text.lower()


@check(
    "m2.edge-answers-first",
    "Through nginx, a stuck provider gets the api's own answer, not nginx's",
    # The api's own deadline is m2.read-timeout's to judge: with it passed, only nginx can fail
    # this one (a page of its own, or a budget shorter than the api's). Eager: it runs alongside
    # m2.read-timeout (one more held checkout, on amounts of its own) instead of adding its
    # 2-3 s after it, and its verdict counts only once m2.read-timeout has passed.
    depends=("m2.read-timeout",),
    eager=True,
    why="The table's order is a promise to the customer: when the provider hangs, the api gives "
    "up first and answers a 502/503/504 with a JSON body a client can act on, and nginx passes it "
    "on. If nginx answers instead, with its HTML 504 after its own budget, the customer waited "
    "longest for the least useful answer, and the api's work was done for nobody.",
    hint="Keep the table's order nginx > api > payments true at run time: the api must answer "
    "within its own budget whatever the provider does (an overall deadline around the provider "
    "call, as m2.read-timeout checks), and nginx must pass that answer on as it is (no "
    "proxy_intercept_errors with an error_page that replaces it).",
    timeout_s=limit_for_table(EDGE_CHECK_LIMIT_S),
)
async def edge_answers_first(ctx: Context) -> Passed:
    """Hold the provider past the api budget; POST /checkout through nginx; expect the api's 5xx.

    The condition it claims: with the provider stuck, POST /checkout sent through the learner's
    nginx gets the api's own answer: a 502/503/504 with a JSON body within the api budget
    (+0.5 s), not a page of nginx's (HTML, or a body that says "nginx").

    How it knows the condition holds while it measures: the stub holds every attempt with the
    checkout's amount before its headers for 10 s, or 1 s past the grader's wait for the answer
    (the api budget + 2.5 s) when that is longer, so the provider is stuck for as long as the
    checkout is open, whatever the table declares: only a layer that gives up on its own can
    answer. nginx runs the learner's nginx.conf (under the local backend rewired to the API on
    a loopback port); its error and access log lines are kept with the verdict. An api budget
    past 30 s is not graded (SKIP, saying why): a correct api may take all of it.

    The hints' evidence: a page of nginx's (HTML, or signed "nginx") is nginx answering for the
    api, and nginx's error log says why: "upstream timed out" is its proxy_read_timeout
    running out before the api's budget (the hint says so, with the line); a connection
    refused, reset or closed before an answer is an api that did not answer at all (the hint
    points at the api's output and the proxy_pass address). With neither line (an error_page
    that replaced the api's answer logs none), the hint names both a proxy_read_timeout
    shorter than the api budget and proxy_intercept_errors with an error_page. Any other
    answer that is late, not a 502/503/504 or not JSON comes after m2.read-timeout saw the api
    alone answer in time (this verdict counts only then), so the hint names what nginx may do
    to the answer first (an error_page, proxy_next_upstream), then the api's deadline for a
    checkout sent alongside another. nginx resolving a host at run time, which the local
    backend cannot give it, is a SKIP naming the directive.
    """
    skip_past_max_budget(ctx)  # before nginx starts: nothing to stop
    try:
        edge = await ctx.stack.start_edge()
    except nginxconf.NginxFormUnsupported as form:
        raise _cannot_grade_form(form.directive, f"{form.file}:{form.line}", form.why) from None
    except EdgeUnavailable as why:
        raise CheckSkipped(
            "not run: this machine cannot run your nginx (nothing to fix in your repo)",
            measured=str(why),
            expected=f"nginx running your {NGINX_FILE} in front of your API",
            hint="Nothing to fix in your repo: it is this machine that cannot run nginx (the "
            "line above says why). m1.nginx-agrees still judges your nginx.conf; grade where "
            "nginx runs (or with --backend docker) to get this check's verdict.",
        ) from None
    amounts = ctx.amounts(1)
    # Held far past the api budget (and past nginx's, if it is short): only a layer that gives
    # up on its own ends this checkout, and which layer answers is the verdict.
    await ctx.stack.stub.add_fault(Delay(delay_ms=int(hold_s(ctx) * 1000)), amounts=amounts)
    result = await ctx.driver.checkout(
        amounts[0], timeout_s=answer_wait_s(ctx), base_url=edge.base_url
    )
    if _nginx_page(result):
        # nginx logs before it answers, but the grader reads its log on another thread.
        await _logged(edge.output_tail, lambda x: _resolving(x) is not None, RESOLVER_LINES)
    resolving = _resolving(edge.output_tail(RESOLVER_LINES))
    if resolving is not None:
        # nginx looked a host up at run time (a form the rewiring could not point at the API):
        # without a resolver its answer is its own 502, which says nothing of the learner's
        # nginx under compose.
        directive, where = _checkout_proxy_pass(ctx)
        raise _cannot_grade_form(
            directive,
            where,
            f"through it nginx had to resolve a host name at run time, and the local backend "
            f"gives it no resolver (nginx said: {resolving})",
        )
    if result.status is not None:
        # nginx writes its access log line after the answer has left: the evidence shows
        # nginx's own record of the checkout.
        await _logged(edge.output_tail, lambda x: any("POST /checkout" in y for y in x), 8)
    return judge_edge_answers_first(ctx, result, ran=edge.config, nginx_output=edge.output_tail(8))


async def _logged(
    tail: Callable[[int], Sequence[str]], seen: Callable[[Sequence[str]], bool], last: int
) -> None:
    """Wait at most LOG_LAG_S for nginx's ``last`` output lines (``tail``) to show ``seen``."""
    until = time.monotonic() + LOG_LAG_S
    while not seen(tail(last)) and time.monotonic() < until:
        await asyncio.sleep(0.02)


# nginx's error log lines (ngx_http_upstream.c) for why it answered for the api: its own
# proxy_read_timeout ran out, or it got no answer at all (the connection refused, reset or
# closed before a response). An error_page that replaces the api's answer logs neither.
_NGINX_TIMED_OUT = "upstream timed out"
_NGINX_GOT_NOTHING = (
    "connect() failed",
    "prematurely closed",
    "reset by peer",
    "no live upstreams",
)


# An error log line: "2026/12/07 15:50:00 [error] 7#7: *1 <message>, client: ..., request: ...".
_NGINX_MESSAGE = re.compile(r"\*\d+ (?P<message>.*?)(?:, client: |$)")


def _message(line: str) -> str:
    """What an nginx error log line says, without its date, ids and request details."""
    found = _NGINX_MESSAGE.search(line)
    return found["message"] if found else line


def _nginx_page_hint(where: str, api_s: float, nginx_output: Sequence[str]) -> str:
    """The hint when nginx answered with a page of its own: the cause its error log names."""
    timed_out = next((_message(x) for x in nginx_output if _NGINX_TIMED_OUT in x), None)
    if timed_out is not None:
        return (
            f"nginx gave up on the api before the api answered (nginx said: {timed_out}): the "
            f"proxy_read_timeout in force at {where} is shorter than the api budget of "
            f"{api_s:g} s. Set it to the table's layers.nginx.timeout_s, longer than the api's."
        )
    nothing = next(
        (_message(x) for x in nginx_output if any(s in x for s in _NGINX_GOT_NOTHING)), None
    )
    if nothing is not None:
        return (
            f"nginx got no answer from the api at all (nginx said: {nothing}): the api "
            f"refused or closed the connection instead of answering. Look at your api's output "
            f"for this checkout (a worker that crashed or was killed), and at the address "
            f"proxy_pass gives at {where}."
        )
    return (
        f"nginx answered for the api: with the table's order nginx > api > payments it should "
        f"never have to. Look at {where}: a proxy_read_timeout shorter than the api budget of "
        f"{api_s:g} s, or proxy_intercept_errors with an error_page that replaces the api's "
        f"502/503/504, makes nginx speak first."
    )


def _api_hint(where: str, api_s: float) -> str:
    """The hint when the answer through nginx is not a page of nginx's, yet not the api's own.

    This verdict counts only once m2.read-timeout passed: the api alone answered in time, so
    the hint points at nginx first, not back at a deadline shown to work.
    """
    return (
        f"Through nginx the answer must be your api's own 502/503/504 with a JSON body, within "
        f"its budget of {api_s:g} s (+{ANSWER_TOLERANCE_S:g} s). Without nginx your api gave "
        f"that answer (m2.read-timeout passed, or this verdict would not count), so look first "
        f"at what nginx does to it at {where}: an error_page that replaces it, or "
        f"proxy_next_upstream sending the checkout to the api again. If nginx passes it on as "
        f"it is, your api's deadline did not hold for this checkout, sent alongside "
        f"m2.read-timeout's: bound every provider call with a deadline inside the api budget."
    )


def judge_edge_answers_first(
    ctx: Context, result: CheckoutResult, *, ran: str, nginx_output: Sequence[str]
) -> Passed:
    """m2.edge-answers-first's verdict on the checkout sent through nginx (``ran``: its config)."""
    api = ctx.budgets.layers.api_s
    served_by, location = _served_by(ctx)
    # The api's own answer within its budget, with the tolerance every fail-fast answer gets
    # (checks/common.py: ANSWER_TOLERANCE_S, measured on a busy 2-core machine); nginx adds a
    # millisecond or two on loopback.
    problems = fail_fast_problems(ctx, result)
    nginx_said = _nginx_page(result)
    if nginx_said:
        problems.insert(0, f"nginx answered {result.status} itself, with an HTML page")
    measured = (
        f"through nginx, checkout {result.describe()}, with {result.describe_body()}; "
        f"{served_by}; ran {ran}"
    )
    expected = f"the api's own {expected_fail_fast(ctx)}, passed on by nginx as it is"
    data = {
        "elapsed_s": round(result.elapsed_s, 3),
        "status": result.status,
        "nginx_page": nginx_said,
        "nginx_output": list(nginx_output),
    }
    if problems:
        where = str(location or NGINX_FILE)
        hint = _nginx_page_hint(where, api, nginx_output) if nginx_said else _api_hint(where, api)
        raise CheckFailed(
            f"through nginx, a stuck provider does not get the api's own answer: {problems[0]}",
            measured=measured,
            expected=expected,
            hint=hint,
            data=data,
            location=location if nginx_said else None,
        )
    problems.judge(
        "through nginx, the answer came late", measured=measured, expected=expected, data=data
    )
    return Passed(
        f"through nginx, checkout {result.describe()}: the api's own answer, passed on",
        measured=measured,
        expected=expected,
        data=data,
    )
