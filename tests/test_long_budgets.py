"""Long but schema-valid budget tables: the holds, the time limits, the SKIP past a bound."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from pathlib import Path

import pytest

from checks.common import (
    HOLD_MARGIN_S,
    HOLD_S,
    MAX_HELD_API_S,
    answer_wait_s,
    hold_s,
    limit_for_table,
    skip_past_max_budget,
)
from checks.m3_retries import OVERRUN_S, READ_MARGIN_S, _slow_failure_s
from grader.cli.app import catalog
from grader.engine.context import Context
from grader.engine.registry import CheckSpec
from grader.engine.runner import Hooks, _Run
from grader.errors import CheckSkipped
from grader.learner import budgets
from grader.learner.budgets import Budgets, Layers, Retries
from grader.learner.repo import LearnerRepo
from grader.model import Passed, Status

# The checks that wait out the api budget against a stuck or slowly failing provider.
WAITS_OUT_THE_BUDGET = (
    "m2.read-timeout",
    "m2.slow-body",
    "m2.connect-timeout",
    "m2.edge-answers-first",
    "m3.retries-fit-budget",
)
# Every check of these files whose time limit follows the table.
FOLLOWS_THE_TABLE = (
    *WAITS_OUT_THE_BUDGET,
    "m2.healthy-checkout",
    "m3.transient-heals",
    "m3.attempts-bounded",
    "m3.no-retry-on-decline",
)


def table(api_s: float, read_s: float | None = None, max_attempts: int = 3) -> Budgets:
    """A table ordered as m1 wants it around ``api_s``, with the course's retry waits."""
    read = api_s * 0.8 if read_s is None else read_s
    retries = dataclasses.replace(budgets.COURSE_RETRIES, max_attempts=max_attempts)
    return Budgets(Layers(nginx_s=api_s + 2, api_s=api_s, connect_s=0.5, read_s=read), retries)


def ctx_for(tmp_path: Path, held_to: Budgets) -> Context:
    """A context holding the service to ``held_to``, with no stack: nothing live can run."""
    return Context(LearnerRepo.open(tmp_path), held_to, 0)


def spec(check_id: str) -> CheckSpec:
    """A registered check."""
    found = catalog().get(check_id)
    assert found is not None, check_id
    return found


def test_the_course_table_keeps_the_ten_second_hold(tmp_path: Path) -> None:
    """The course's table is held HOLD_S, as before: its figures were measured with that hold."""
    assert hold_s(ctx_for(tmp_path, budgets.COURSE)) == HOLD_S


@pytest.mark.parametrize("api_s", [0.1, 3.0, 7.5, 9.5, 12.0, 20.0, MAX_HELD_API_S])
def test_the_hold_outlasts_the_grader_wait_for_any_graded_budget(
    tmp_path: Path, api_s: float
) -> None:
    """The provider holds past the grader's wait: a correct deadline, never the hold, ends it."""
    ctx = ctx_for(tmp_path, table(api_s))
    assert hold_s(ctx) >= answer_wait_s(ctx) + HOLD_MARGIN_S
    assert hold_s(ctx) >= HOLD_S


def test_a_time_limit_follows_the_api_budget_past_the_course_s() -> None:
    """The course's limit up to the course's budget; 2 s more per second of budget past it."""
    limit = limit_for_table(25.0)
    assert limit(budgets.COURSE) == 25.0
    assert limit(table(1.0)) == 25.0
    longer = budgets.COURSE.layers.api_s + 10.0
    assert limit(table(longer)) == 45.0


@pytest.mark.parametrize("api_s", [3.0, 9.5, 12.0, MAX_HELD_API_S])
@pytest.mark.parametrize("check_id", FOLLOWS_THE_TABLE)
def test_each_limit_covers_two_answer_waits(tmp_path: Path, check_id: str, api_s: float) -> None:
    """A check may wait for the answer, then as long again for the attempts: within its limit."""
    held_to = table(api_s)
    assert spec(check_id).limit_s(held_to) >= 2 * answer_wait_s(ctx_for(tmp_path, held_to))


def test_a_fixed_limit_is_the_same_for_every_table() -> None:
    """A check that declares a number keeps it, whatever the table."""
    fixed = dataclasses.replace(spec("m2.read-timeout"), timeout_s=7.0)
    assert fixed.limit_s(budgets.COURSE) == fixed.limit_s(table(MAX_HELD_API_S)) == 7.0


async def _sleeps_a_tenth(ctx: Context) -> Passed:
    """Pass after 0.1 s."""
    await asyncio.sleep(0.1)
    return Passed("done")


@pytest.mark.parametrize(("api_s", "status"), [(3.0, Status.ERROR), (30.0, Status.PASS)])
def test_the_runner_holds_a_check_to_its_table_s_limit(
    tmp_path: Path, api_s: float, status: Status
) -> None:
    """A limit of api/100 s: 0.03 s for the course's table (ERROR), 0.3 s for a 30 s budget."""
    check = CheckSpec(
        id="m2.paced",
        title="paced",
        func=_sleeps_a_tenth,
        what="",
        why="",
        hint="h",
        timeout_s=lambda held_to: held_to.layers.api_s / 100,
    )
    graded = _Run(LearnerRepo(tmp_path), table(api_s), (check,), Hooks())
    asyncio.run(graded.run_all((check,), None, None))
    result = graded.results["m2.paced"]
    assert result.status is status
    if status is Status.ERROR:
        assert "within its limit of 0.03 s" in result.summary


def test_a_budget_at_the_bound_is_graded(tmp_path: Path) -> None:
    """An api budget of exactly MAX_HELD_API_S is graded."""
    skip_past_max_budget(ctx_for(tmp_path, table(MAX_HELD_API_S)))


@pytest.mark.parametrize("check_id", WAITS_OUT_THE_BUDGET)
def test_a_budget_past_the_bound_skips_before_anything_starts(
    tmp_path: Path, check_id: str
) -> None:
    """An hour of api budget: SKIP, saying why, before the check touches the (absent) stack."""
    ctx = ctx_for(tmp_path, table(3600.0))
    outcome = spec(check_id).func(ctx)
    assert inspect.iscoroutine(outcome)
    with pytest.raises(CheckSkipped) as skipped:
        asyncio.run(outcome)
    evidence = skipped.value.evidence
    assert f"past the {MAX_HELD_API_S:g} s this check grades" in evidence.summary
    assert "3600 s" in evidence.measured
    assert evidence.hint.startswith("Not a failure")


def test_slow_failures_are_the_course_s_for_the_course_s_table(tmp_path: Path) -> None:
    """The course's table keeps 0.75 x its read timeout per slow failure."""
    ctx = ctx_for(tmp_path, budgets.COURSE)
    assert _slow_failure_s(ctx) == 0.75 * budgets.COURSE.layers.read_s


def test_slow_failures_overrun_a_budget_their_attempts_used_to_fit(tmp_path: Path) -> None:
    """For api 9.5 s, read 4 s, 3 attempts: 3 x 3 s fit; the attempts now overrun by OVERRUN_S."""
    held_to = table(9.5, read_s=4.0)
    delay = _slow_failure_s(ctx_for(tmp_path, held_to))
    assert 3 * 0.75 * 4.0 < 9.5 + OVERRUN_S <= 3 * delay
    assert delay <= 4.0 - READ_MARGIN_S


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 5])
@pytest.mark.parametrize("read_s", [0.2, 1.0, 2.0, 4.0, 8.0, 25.0])
@pytest.mark.parametrize("api_s", [0.5, 3.0, 9.5, 30.0])
def test_slow_failures_stay_inside_the_read_timeout_and_overrun_when_they_can(
    tmp_path: Path, api_s: float, read_s: float, max_attempts: int
) -> None:
    """No slow failure is nearer the read timeout than before; each overruns where room allows."""
    retries = Retries(max_attempts, 0.1, 1.0, "full")
    held_to = dataclasses.replace(table(api_s, read_s=read_s), retries=retries)
    delay = _slow_failure_s(ctx_for(tmp_path, held_to))
    assert 0.75 * read_s <= delay <= max(0.75 * read_s, read_s - READ_MARGIN_S)
    if max_attempts * (read_s - READ_MARGIN_S) >= api_s + OVERRUN_S:
        assert max_attempts * delay >= api_s + OVERRUN_S - 1e-9
