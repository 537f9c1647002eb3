"""--target (after check50's): a run narrowed to some checks and the checks they depend on."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.cli.app import catalog
from grader.engine import registry
from grader.errors import GradingError
from tests.conftest import ROOT, run_failfast


def test_a_target_brings_every_check_it_depends_on() -> None:
    """m2.edge-answers-first needs m2.read-timeout, which needs m2.healthy-checkout."""
    needed = catalog().needed_by(["m2.edge-answers-first"])
    assert needed == {"m2.edge-answers-first", "m2.read-timeout", "m2.healthy-checkout"}


def test_no_target_grades_every_check() -> None:
    """Without --target every check of the milestones is included."""
    selection = registry.select("milestone-2", catalog=catalog())
    assert selection.targets == () and selection.includes("m2.slow-body")


def test_targets_narrow_the_selection() -> None:
    """A target and its dependencies are included, its siblings are not; duplicates collapse."""
    selection = registry.select(
        "milestone-3",
        through=True,
        targets=["m2.read-timeout", "m2.read-timeout"],
        catalog=catalog(),
    )
    assert selection.targets == ("m2.read-timeout",)
    assert selection.includes("m2.healthy-checkout") and not selection.includes("m2.slow-body")
    assert not selection.includes("m1.budgets-valid")


@pytest.mark.parametrize(
    ("milestone", "target", "said"),
    [
        ("milestone-2", "m2.readtimeout", "did you mean m2.read-timeout?"),
        ("milestone-3", "m2.read-timeout", "run `failfast check milestone-2 --target"),
        ("milestone-2", "nothing-like-it", "`failfast list` shows every check id"),
    ],
)
def test_a_target_outside_the_run_is_refused(milestone: str, target: str, said: str) -> None:
    """An unknown id, or a check of a milestone not graded, is bad input naming the fix."""
    with pytest.raises(GradingError, match="--target") as refused:
        registry.select(milestone, targets=[target], catalog=catalog())
    assert said in str(refused.value)


def test_a_bad_target_exits_2_before_grading(tmp_path: Path) -> None:
    """The real CLI: a misspelt target is one paragraph and exit code 2, nothing started."""
    run = run_failfast(
        "check", "milestone-2", "--target", "m2.readtimeout", repo=ROOT / "reference" / "solution"
    )
    assert run.returncode == 2
    assert "did you mean m2.read-timeout?" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.slow
def test_a_targeted_run_grades_and_reports_only_what_it_needs() -> None:
    """--through with one target: the reference graded on it and its dependency alone."""
    run = run_failfast(
        "check",
        "milestone-2",
        "--through",
        "--target",
        "m2.read-timeout",
        "--format",
        "json",
        repo=ROOT / "reference" / "solution",
    )
    assert run.statuses() == {"m2.healthy-checkout": "PASS", "m2.read-timeout": "PASS"}
    assert run.report is not None and run.report["targets"] == ["m2.read-timeout"]
    assert run.returncode == 0
