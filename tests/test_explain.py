"""What `failfast explain` says of each check, and the hints that follow the evidence they name.

Every check's docstring (printed as "What it does") says the condition it claims, how it knows
that condition holds while it measures, and what evidence leads to each of its hints. The hint
tests below feed the judging functions of milestones 1-3 the evidence of one cause each, and
check that the hint names that cause, not another one the evidence does not show.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checks import m1_budget_table as m1
from checks import m1_k6
from checks.m2_timeouts import (
    LEFT_OPEN_HINT,
    WRONG_ANSWER_HINT,
    judge_read_timeout,
    judge_slow_body,
)
from checks.m2_via_nginx import judge_edge_answers_first
from checks.m3_retries import (
    ANSWER_HINT,
    FEW_ATTEMPTS_HINT,
    NO_ATTEMPT_HINT,
    judge_attempts_bounded,
    judge_no_retry_on_decline,
    judge_retries_fit_budget,
    judge_transient_heals,
)
from grader.cli.app import catalog
from grader.engine import k6
from grader.engine.context import Context
from grader.engine.driver import CheckoutResult
from grader.errors import CheckFailed
from grader.learner import budgets
from grader.learner.repo import LearnerRepo
from grader.model import Evidence, Passed
from grader.stubclient import Attempt
from tests.conftest import ROOT
from tests.mutants import REFERENCE
from tests.test_nginx import grade
from tests.test_stats import context

# The three paragraphs after the one-line summary, in this order (m2.healthz-under-load's form).
CONDITION = "The condition it claims: "
HOW = "How it knows the condition holds while it measures: "
EVIDENCE = ("The hint's evidence: ", "The hints' evidence: ")
JSON = "application/json"
COURSE = budgets.COURSE.layers
_seq = itertools.count(1)


def missing_paragraphs(what: str) -> list[str]:
    """Which of the three paragraphs a docstring lacks after its summary, or has out of order."""
    paragraphs = what.split("\n\n")
    found = paragraphs[1:4] + [""] * (4 - len(paragraphs))
    wanted = [(CONDITION,), (HOW,), EVIDENCE]
    return [
        " or ".join(label.strip() for label in labels)
        for paragraph, labels in zip(found, wanted, strict=True)
        if not paragraph.startswith(labels)
    ]


def test_every_check_says_its_condition_how_it_knows_and_its_hints_evidence() -> None:
    """Each registered check's docstring has the three paragraphs, in order, after its summary."""
    lacking = {
        spec.id: missing for spec in catalog().specs if (missing := missing_paragraphs(spec.what))
    }
    assert not lacking, "\n".join(f"{id}: no {', '.join(m)}" for id, m in lacking.items())


def test_missing_paragraphs_names_each_one_absent() -> None:
    """A one-line docstring lacks all three; a complete one, none; a swapped pair, both."""
    assert len(missing_paragraphs("Does a thing.")) == 3
    complete = f"Does a thing.\n\n{CONDITION}x.\n\n{HOW}y.\n\n{EVIDENCE[1]}z."
    assert missing_paragraphs(complete) == []
    swapped = f"Does a thing.\n\n{HOW}y.\n\n{CONDITION}x.\n\n{EVIDENCE[0]}z."
    assert missing_paragraphs(swapped) == [CONDITION.strip(), HOW.strip()]


def test_explain_prints_the_three_paragraphs_under_what_it_does() -> None:
    """`python -m grader explain m2.read-timeout` prints the labels between its first headings."""
    done = subprocess.run(
        [sys.executable, "-m", "grader", "explain", "m2.read-timeout"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # The terminal wraps lines at its width: compare the words, not the line breaks.
    shown = " ".join(done.stdout.split())
    labels = [CONDITION.strip(), HOW.strip(), EVIDENCE[1].strip()]
    places = [shown.find(text) for text in ("What it does", *labels, "Why it matters")]
    assert -1 not in places and places == sorted(places), shown


# --- evidence -------------------------------------------------------------------------------


def answer(elapsed_s: float, amount: int = 1, status: int | None = 504) -> CheckoutResult:
    """The checkout's answer after ``elapsed_s`` (JSON), sent at monotonic time 100."""
    return CheckoutResult(
        amount, 100.0, elapsed_s, status, {"error": "x"}, text='{"error": "x"}', content_type=JSON
    )


def attempt(
    amount: int, arrived: float, ended: float | None, *, status: int = 503, gave_up: bool = False
) -> Attempt:
    """A journalled attempt: answered ``status``, given up on at ``ended``, or open (None)."""
    outcome = "in_progress" if ended is None else "client_gave_up" if gave_up else "responded"
    return Attempt(
        seq=next(_seq),
        amount_cents=amount,
        idempotency_key=None,
        arrived_at=arrived,
        status=None if gave_up or ended is None else status,
        outcome=outcome,
        fault=None,
        response_started_at=None,
        finished_at=ended,
        gave_up_at=ended if gave_up else None,
        charge_id=None,
        replayed=False,
    )


def failed(judging: object) -> Evidence:
    """The evidence of a judging (a callable) that must FAIL."""
    assert callable(judging)
    with pytest.raises(CheckFailed) as raised:
        judging()
    return raised.value.evidence


# --- milestone 2 ----------------------------------------------------------------------------


def test_read_timeout_cut_in_time_then_late_answer_names_the_deadline() -> None:
    """Attempt cut at 2 s, a held retry, answer at 4.3 s: the deadline's hint, not the read's."""
    held = [
        attempt(1, 100.01, 102.01, gave_up=True),
        attempt(1, 102.1, 104.2, gave_up=True),
    ]
    evidence = failed(lambda: judge_read_timeout(context(), answer(4.3), held))
    assert evidence.summary.startswith("the read timeout cut the attempt, but"), evidence.summary
    assert "1 more attempt(s)" in evidence.hint and "one deadline" in evidence.hint
    assert "explicit read timeout" not in evidence.hint


def test_read_timeout_cut_in_time_then_a_500_names_the_answer() -> None:
    """The attempt cut at 2 s and a 500 at 2.1 s: the hint is about the answer's status."""
    held = [attempt(1, 100.01, 102.01, gave_up=True)]
    evidence = failed(lambda: judge_read_timeout(context(), answer(2.1, status=500), held))
    assert "not a fail-fast one" in evidence.summary and "504" in evidence.hint


def test_read_timeout_never_cut_keeps_the_checks_own_hint() -> None:
    """An attempt the service never gave up on: no read timeout, the check's own hint."""
    held = [attempt(1, 100.01, None)]
    evidence = failed(lambda: judge_read_timeout(context(), answer(5.5, status=None), held))
    assert evidence.summary.startswith("the read timeout is not enforced") and not evidence.hint


def test_slow_body_hint_follows_what_failed() -> None:
    """An attempt left open after a 504 in time, no answer, a 500 in time: three hints."""
    still_open = [attempt(1, 100.01, None)]
    evidence = failed(lambda: judge_slow_body(context(), answer(2.8), still_open))
    assert evidence.hint == LEFT_OPEN_HINT
    late = failed(lambda: judge_slow_body(context(), answer(5.5, status=None), still_open))
    assert not late.hint  # no answer in time: the check's own hint, a deadline
    cut = [attempt(1, 100.01, 102.8, gave_up=True)]
    wrong = failed(lambda: judge_slow_body(context(), answer(2.8, status=500), cut))
    assert wrong.hint == WRONG_ANSWER_HINT and "not a fail-fast one" in wrong.summary


def test_edge_hint_names_nginx_first_when_the_api_alone_answered_in_time() -> None:
    """A late JSON answer through nginx: the api alone passed, so the hint looks at nginx first."""

    def judged(result: CheckoutResult) -> Evidence:
        return failed(
            lambda: judge_edge_answers_first(context(), result, ran="as written", nginx_output=())
        )

    late = judged(answer(COURSE.api_s + 2.0))
    assert "m2.read-timeout passed" in late.hint and "error_page" in late.hint
    page = CheckoutResult(
        1, 100.0, 2.0, 504, None, text="<html>nginx</html>", content_type="text/html"
    )
    assert "proxy_read_timeout shorter than the api budget" in judged(page).hint


def test_edge_nginx_page_hint_follows_nginx_error_log() -> None:
    """A page of nginx's: its log says timed out, or no answer at all; each has its own hint."""
    page = CheckoutResult(
        1, 100.0, 1.0, 504, None, text="<html>nginx</html>", content_type="text/html"
    )
    prefix = "2026/12/07 15:50:00 [error] 7#7: *1 "
    request = ', client: 127.0.0.1, server: _, request: "POST /checkout HTTP/1.1"'

    def hint(*log: str) -> str:
        return failed(
            lambda: judge_edge_answers_first(context(), page, ran="as written", nginx_output=log)
        ).hint

    timed_out = hint(f"{prefix}upstream timed out (110: Connection timed out){request}")
    assert timed_out.startswith("nginx gave up on the api before the api answered")
    assert "(nginx said: upstream timed out (110: Connection timed out))" in timed_out
    closed = hint(f"{prefix}upstream prematurely closed connection{request}", "access line")
    assert closed.startswith("nginx got no answer from the api at all") and "client:" not in closed


# --- milestone 3 ----------------------------------------------------------------------------


def test_transient_heals_hint_follows_what_the_journal_shows() -> None:
    """No retry, no attempt, a lost success and a double charge each get their own summary."""
    failure, success = attempt(1, 100.0, 100.01), attempt(1, 100.2, 100.21, status=200)
    not_retried = failed(lambda: judge_transient_heals(answer(0.1, status=503), [failure], 0))
    assert not_retried.summary == "the failed attempt was not retried" and not not_retried.hint
    unseen = failed(lambda: judge_transient_heals(answer(0.1, status=503), [], 0))
    assert unseen.hint == NO_ATTEMPT_HINT
    lost = failed(lambda: judge_transient_heals(answer(0.3, status=503), [failure, success], 1))
    assert "answered the retry 200" in lost.hint
    twice = failed(lambda: judge_transient_heals(answer(0.3, status=200), [failure, success], 2))
    assert "2 charges" in twice.summary and "Stop retrying" in twice.hint
    assert isinstance(judge_transient_heals(answer(0.3, status=200), [failure, success], 1), Passed)


def test_no_retry_on_decline_without_an_attempt_is_not_a_retried_decline() -> None:
    """No attempt for one checkout: a checkout that never reached the provider, not a retry."""
    results = [answer(0.1, 1, status=503), answer(0.1, 2, status=402)]
    unseen = failed(lambda: judge_no_retry_on_decline(results, [0, 1]))
    assert "never reached the provider" in unseen.summary and unseen.hint == NO_ATTEMPT_HINT
    retried = failed(lambda: judge_no_retry_on_decline(results, [2, 0]))
    assert retried.summary == "a declined charge was tried 2 times" and not retried.hint
    declined = [answer(0.1, 1, status=402), answer(0.1, 2, status=402)]
    assert isinstance(judge_no_retry_on_decline(declined, [1, 1]), Passed)


def test_attempts_bounded_hint_follows_the_counts() -> None:
    """Too many: the check's own hint; too few: retry a 503; right, with a 500: the answer."""

    def judged(per_checkout: int, status: int = 503) -> Evidence:
        results = [answer(0.5, a, status=status) for a in (1, 2, 3)]
        grouped = {
            a: [attempt(a, 100.0 + n, 100.1 + n) for n in range(per_checkout)] for a in (1, 2, 3)
        }
        return failed(lambda: judge_attempts_bounded(context(), results, grouped))

    too_many = judged(4)
    assert too_many.summary.startswith("the attempts were not bounded") and not too_many.hint
    assert judged(1).hint == FEW_ATTEMPTS_HINT
    assert judged(3, status=500).hint == ANSWER_HINT


def test_retries_fit_budget_says_a_deadline_cut_only_where_one_did() -> None:
    """A given-up attempt: the deadline cut; all attempts answered in time: none was needed."""
    cut = [attempt(1, 100.0, 101.5), attempt(1, 101.6, 102.8, gave_up=True)]
    assert "the deadline cut the retries short" in (
        judge_retries_fit_budget(context(), answer(2.85, status=503), cut).summary
    )
    answered = [attempt(1, 100.0 + n, 100.5 + n) for n in range(3)]
    fit = judge_retries_fit_budget(context(), answer(2.6, status=503), answered)
    assert "no deadline needed" in fit.summary
    wrong = failed(lambda: judge_retries_fit_budget(context(), answer(2.85, status=500), cut))
    assert wrong.hint == ANSWER_HINT


# --- milestone 1 ----------------------------------------------------------------------------


def test_budgets_missing_gets_the_whole_file_hint_not_fill_in_values(tmp_path: Path) -> None:
    """No budgets.yaml: nothing to fill in, so the hint says to put the file in the repo."""
    ctx = Context(LearnerRepo.open(tmp_path), budgets.COURSE, 0)
    evidence = failed(lambda: m1.budgets_valid(ctx))
    assert evidence.hint == m1.WHOLE_FILE_HINT
    (tmp_path / "budgets.yaml").write_text("layers:\n  nginx: {timeout_s: null}\n")
    assert not failed(lambda: m1.budgets_valid(ctx)).hint  # values at lines: the check's own


def test_nginx_hint_names_what_the_config_lacks(tmp_path: Path) -> None:
    """No proxy_pass, a redirect, a rejected config: none is told to set proxy_read_timeout."""
    no_proxy = grade(tmp_path, "server {\n location /checkout {\n root /srv;\n }\n}")
    assert "does not proxy it" in failed(lambda: m1.nginx_agrees(no_proxy)).hint
    slash = grade(tmp_path, "server {\n location /checkout/ {\n proxy_pass http://api;\n }\n}")
    assert "301" in failed(lambda: m1.nginx_agrees(slash)).hint
    rejected = grade(tmp_path, "server {\n location / {\n proxy_pass http://api;\n")
    assert failed(lambda: m1.nginx_agrees(rejected)).hint.startswith("Fix nginx/nginx.conf:")


def test_k6_that_cannot_read_the_script_is_told_to_run_k6_inspect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """k6 refusing the script: the hint says to run `k6 inspect`, not to set thresholds."""
    shutil.copy(REFERENCE / "budgets.yaml", tmp_path / "budgets.yaml")
    (tmp_path / "loadtest").mkdir()
    (tmp_path / "loadtest" / "checkout.js").write_text("export default function () {\n")

    async def refused(script: Path, timeout_s: float) -> k6.Inspected:
        return k6.Inspected(107, {}, "SyntaxError: Unexpected end of input")

    monkeypatch.setattr(k6, "inspect", refused)
    ctx = Context(LearnerRepo.open(tmp_path), budgets.COURSE, 0)
    evidence = failed(lambda: asyncio.run(m1_k6.k6_thresholds(ctx)))
    assert "k6 inspect loadtest/checkout.js" in evidence.hint and "exited 107" in evidence.measured
