"""Unit tests of the runner's scheduling: dependencies, skips, exclusive, eager, errors, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from grader.cli.app import catalog
from grader.engine import registry
from grader.engine.context import Context
from grader.engine.registry import CheckSpec
from grader.engine.runner import Hooks, _Run
from grader.errors import CheckFailed, CheckInconclusive, EnvironmentProblem
from grader.learner import budgets
from grader.learner.repo import LearnerRepo
from grader.model import CheckResult, Evidence, Passed, Report, Status

EVENTS: list[str] = []


def spec(id_: str, func: registry.CheckFunc, **kwargs: object) -> CheckSpec:
    """A check spec that is not registered anywhere."""
    return CheckSpec(id=id_, title=id_, func=func, what="", why="", hint="h", **kwargs)  # type: ignore[arg-type]


def recording(name: str, wait_s: float) -> registry.CheckFunc:
    """A check that passes after ``wait_s``, recording ``<name>-start`` and ``<name>-end``."""

    async def check(ctx: Context) -> Passed:
        EVENTS.append(f"{name}-start")
        await asyncio.sleep(wait_s)
        EVENTS.append(f"{name}-end")
        return Passed(name)

    return check


ok = recording("ok", 0.05)
exclusive = recording("exclusive", 0.01)
eager_ok = recording("eager", 0.01)


def fails(ctx: Context) -> Passed:
    """Fail with evidence."""
    raise CheckFailed("broken", measured="m", expected="e")


def crashes(ctx: Context) -> Passed:
    """Crash like a buggy check."""
    raise ZeroDivisionError


def environment(ctx: Context) -> Passed:
    """Hit an environment problem."""
    raise EnvironmentProblem("no stub")


async def slow(ctx: Context) -> Passed:
    """Take longer than any limit under test."""
    await asyncio.sleep(5)
    return Passed("late")


def run(specs: list[CheckSpec], tmp_path: Path) -> dict[str, object]:
    """Run specs through the scheduler; statuses by id, and the results under _results."""
    EVENTS.clear()
    graded = _Run(LearnerRepo(tmp_path), budgets.COURSE, tuple(specs), Hooks())
    asyncio.run(graded.run_all(tuple(specs), None, None))
    results = graded.results
    return {k: v.status for k, v in results.items()} | {"_results": results}


def test_dependency_failure_skips_dependants(tmp_path: Path) -> None:
    """A check whose dependency failed is SKIP and names the dependency."""
    out = run([spec("m5.a", fails), spec("m5.b", ok, depends=("m5.a",))], tmp_path)
    assert out["m5.a"] is Status.FAIL and out["m5.b"] is Status.SKIP
    assert "m5.a is FAIL" in out["_results"]["m5.b"].summary  # type: ignore[index]


def test_a_dependency_that_did_not_fail_is_not_said_to_need_a_fix(tmp_path: Path) -> None:
    """SKIP after an ERROR says nothing of the learner's is to fix; after a FAIL, fix it first."""
    out = run(
        [
            spec("m5.a", environment),
            spec("m5.b", ok, depends=("m5.a",)),
            spec("m5.c", fails),
            spec("m5.d", ok, depends=("m5.a", "m5.c")),
        ],
        tmp_path,
    )
    results = out["_results"]
    assert isinstance(results, dict)
    assert "Nothing of yours to fix" in results["m5.b"].hint
    assert "Fix m5.a" not in results["m5.b"].hint
    assert results["m5.d"].hint.startswith("Fix m5.c first")


def test_failure_carries_evidence_and_hint(tmp_path: Path) -> None:
    """A FAIL keeps measured, expected and falls back to the check's hint."""
    result = run([spec("m5.a", fails)], tmp_path)["_results"]["m5.a"]  # type: ignore[index]
    assert (result.measured, result.expected, result.hint) == ("m", "e", "h")


def test_exclusive_runs_alone(tmp_path: Path) -> None:
    """An exclusive check starts only after the concurrent ones have ended."""
    run([spec("m5.a", ok), spec("m5.x", exclusive, exclusive=True), spec("m5.b", ok)], tmp_path)
    assert EVENTS == [
        "ok-start",
        "ok-start",
        "ok-end",
        "ok-end",
        "exclusive-start",
        "exclusive-end",
    ]


async def fails_late(ctx: Context) -> Passed:
    """Fail after a wait, recording when it ran."""
    EVENTS.append("fails-start")
    await asyncio.sleep(0.05)
    raise CheckFailed("broken", measured="m", expected="e")


def test_eager_check_runs_alongside_its_dependency(tmp_path: Path) -> None:
    """An eager check starts with the check it depends on; its PASS counts once that passes."""
    chain = [
        spec("m5.a", ok),
        spec("m5.b", ok, depends=("m5.a",)),
        spec("m5.e", eager_ok, depends=("m5.b",), eager=True),
    ]
    out = run(chain, tmp_path)
    assert out["m5.e"] is Status.PASS
    # m5.a alone, then m5.b and m5.e together: m5.e starts before m5.b ends.
    assert EVENTS == ["ok-start", "ok-end", "ok-start", "eager-start", "eager-end", "ok-end"]
    results = out["_results"]
    assert list(results) == ["m5.a", "m5.b", "m5.e"]  # type: ignore[call-overload]


def test_eager_check_is_skipped_when_its_dependency_fails(tmp_path: Path) -> None:
    """An eager check that ran beside a failing dependency is SKIP, saying it was not judged."""
    out = run(
        [spec("m5.a", fails_late), spec("m5.e", eager_ok, depends=("m5.a",), eager=True)],
        tmp_path,
    )
    assert out["m5.a"] is Status.FAIL and out["m5.e"] is Status.SKIP
    assert "eager-end" in EVENTS
    summary = out["_results"]["m5.e"].summary  # type: ignore[index]
    assert summary == "not judged: m5.a is FAIL"


def test_eager_check_waits_for_an_exclusive_dependency(tmp_path: Path) -> None:
    """An exclusive dependency runs alone: the eager check starts after it, like any other."""
    out = run(
        [
            spec("m5.x", exclusive, exclusive=True),
            spec("m5.e", eager_ok, depends=("m5.x",), eager=True),
        ],
        tmp_path,
    )
    assert out["m5.e"] is Status.PASS
    assert EVENTS == ["exclusive-start", "exclusive-end", "eager-start", "eager-end"]


def test_eager_needs_dependencies_and_no_exclusivity() -> None:
    """The decorator refuses an eager check with nothing to run beside, or one run alone."""
    with pytest.raises(ValueError, match="eager"):
        registry.check("m5.lonely", "t", why="w", hint="h", eager=True)
    with pytest.raises(ValueError, match="eager"):
        registry.check(
            "m5.both",
            "t",
            why="w",
            hint="h",
            depends=("m5.double-submit",),
            eager=True,
            exclusive=True,
        )


def test_crash_is_error_not_fail(tmp_path: Path) -> None:
    """A bug in a check is ERROR, blamed on the grader, and the other checks still run."""
    out = run([spec("m5.a", crashes), spec("m5.b", ok)], tmp_path)
    assert out["m5.a"] is Status.ERROR and out["m5.b"] is Status.PASS
    assert "not your fault" in out["_results"]["m5.a"].hint  # type: ignore[index]


def test_environment_problem_is_error(tmp_path: Path) -> None:
    """An environment problem inside a check is ERROR."""
    assert run([spec("m5.a", environment)], tmp_path)["m5.a"] is Status.ERROR


def test_time_limit_is_error(tmp_path: Path) -> None:
    """A check past its time limit is ERROR, within the limit."""
    out = run([spec("m5.a", slow, timeout_s=0.1)], tmp_path)
    assert out["m5.a"] is Status.ERROR
    assert "within its limit of 0.1 s" in out["_results"]["m5.a"].summary  # type: ignore[index]


def test_ids_must_name_their_milestone() -> None:
    """The decorator refuses ids a newcomer could not map to a file."""
    with pytest.raises(ValueError, match="not of the form"):
        registry.check("read_timeout", "t", why="w", hint="h")


def test_every_registered_check_is_documented() -> None:
    """Every check has a docstring, a why and a hint, and lives in its milestone's module."""
    for check in catalog().specs:
        assert check.what and check.why and check.hint, check.id
        module = check.func.__module__
        assert module.startswith(f"checks.{check.prefix}_"), (check.id, module)
        assert check.func.__name__ == check.id.split(".")[1].replace("-", "_"), check.id


def inconclusive(ctx: Context) -> Passed:
    """Be unable to tell."""
    raise CheckInconclusive("too noisy", measured="m", expected="e", figure=("|·|",))


def test_inconclusive_keeps_evidence_and_figure(tmp_path: Path) -> None:
    """An inconclusive verdict is its own status, with its evidence and chart."""
    result = run([spec("m5.a", inconclusive)], tmp_path)["_results"]["m5.a"]  # type: ignore[index]
    assert result.status is Status.INCONCLUSIVE
    assert (result.measured, result.figure) == ("m", ("|·|",))


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([Status.PASS], 0),
        ([Status.PASS, Status.FAIL, Status.SKIP], 1),
        ([Status.PASS, Status.INCONCLUSIVE], 2),
        ([Status.FAIL, Status.INCONCLUSIVE], 1),
        ([Status.FAIL, Status.ERROR], 2),
    ],
)
def test_exit_code_ranks_statuses(statuses: list[Status], code: int) -> None:
    """ERROR outranks FAIL, which outranks INCONCLUSIVE; all PASS is 0."""
    results = tuple(
        CheckResult(f"m5.c{n}", "t", "milestone-9", s, Evidence("")) for n, s in enumerate(statuses)
    )
    assert Report("milestone-9", ".", "", 0.0, results).exit_code == code
