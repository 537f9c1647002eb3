"""Value objects of a grading run: statuses, evidence, results and the report."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


class Status(enum.StrEnum):
    """What a check concluded."""

    PASS = "PASS"
    FAIL = "FAIL"  # the learner's service did the wrong thing
    SKIP = "SKIP"  # a check it depends on did not pass
    INCONCLUSIVE = "INCONCLUSIVE"  # the machine was too noisy to tell: grade again
    ERROR = "ERROR"  # the grader or the environment broke: never the learner's fault


def _frozen(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(data or {}))


@dataclass(frozen=True, slots=True)
class Location:
    """A place in the learner's repo a verdict points at: CI annotates that file and line."""

    path: str  # relative to the repo root, with forward slashes
    line: int | None = None  # 1-based; None for the whole file

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True, slots=True)
class Passed:
    """What a check returns when the service did the right thing: the evidence of it."""

    summary: str
    measured: str = ""
    expected: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    figure: tuple[str, ...] = ()  # a small monospace chart, e.g. a timeline of attempts


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check with its evidence."""

    id: str
    title: str
    milestone: str
    status: Status
    summary: str
    measured: str = ""
    expected: str = ""
    hint: str = ""
    duration_s: float = 0.0
    data: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))
    # The last lines the learner's API printed, shown for FAIL and ERROR only.
    api_output: tuple[str, ...] = ()
    figure: tuple[str, ...] = ()
    location: Location | None = None  # the learner's file a FAIL points at, where there is one

    def __post_init__(self) -> None:
        """Freeze ``data`` so a result cannot change after it is reported."""
        object.__setattr__(self, "data", _frozen(self.data))


@dataclass(frozen=True, slots=True)
class BudgetSource:
    """Which budget the live checks held the service to, and why."""

    origin: str  # "learner" (their budgets.yaml) or "course" (not filled in yet)
    note: str
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one `failfast check` run found."""

    milestone: str  # what was asked for: "milestone-3", "all"
    repo: str
    started_at: str  # ISO 8601, UTC
    duration_s: float
    results: tuple[CheckResult, ...]
    budgets: BudgetSource | None = None
    # The milestones graded, in order: one, or several for `all` and `--through`.
    milestones: tuple[str, ...] = ()
    through: bool = False

    def __post_init__(self) -> None:
        """A report of one milestone lists just that one."""
        if not self.milestones:
            object.__setattr__(self, "milestones", (self.milestone,))

    def results_of(self, milestone: str) -> tuple[CheckResult, ...]:
        """The results of one of the milestones graded."""
        return tuple(r for r in self.results if r.milestone == milestone)

    def count(self, status: Status) -> int:
        """How many results have this status."""
        return sum(1 for r in self.results if r.status is status)

    @property
    def exit_code(self) -> int:
        """0: every check passed; 1: one failed; 2: the grader could not grade (or could not tell).

        An ERROR means the grader could not grade at all. A FAIL outranks an INCONCLUSIVE: the
        learner has something to fix either way.
        """
        if self.count(Status.ERROR):
            return 2
        if self.count(Status.FAIL) or self.count(Status.SKIP):
            return 1
        if self.count(Status.INCONCLUSIVE):
            return 2
        return 0
