"""The budget table (``budgets.yaml``) as value objects, and the course's own budget."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from grader.errors import BudgetsError
from grader.learner import yamlfile
from grader.model import BudgetSource

BUDGETS_FILE = "budgets.yaml"  # at the learner's repo root

Jitter = Literal["full", "equal", "decorrelated"]

# Course bounds on what a learner may declare (issue: milestones 3 and 4).
MAX_ATTEMPTS_BOUND = 5
RETRY_RATIO_BOUND = 0.2


@dataclass(frozen=True, slots=True)
class Layers:
    """Timeouts of each layer of one POST /checkout, in seconds."""

    nginx_s: float
    api_s: float
    connect_s: float
    read_s: float


@dataclass(frozen=True, slots=True)
class Retries:
    """The declared retry policy."""

    max_attempts: int
    base_delay_s: float
    max_delay_s: float
    jitter: Jitter

    def max_delay_before(self, retry: int) -> float:
        """The longest the policy may wait before retry ``retry`` (1 = the first retry)."""
        if self.jitter == "decorrelated":
            # AWS's decorrelated jitter: sleep = min(cap, uniform(base, previous * 3)).
            factor, power = 3.0, retry
        else:
            factor, power = 2.0, retry - 1
        try:
            grown = self.base_delay_s * factor**power
        except OverflowError:  # past any float: any positive base has reached the cap long ago
            grown = math.inf if self.base_delay_s > 0 else 0.0
        return min(self.max_delay_s, grown)

    def longest_waits_s(self) -> float:
        """The sum of the longest waits before each retry, in time logarithmic in max_attempts.

        Once a wait reaches the cap every later one is the cap, so the rest is one product.
        """
        total, retry = 0.0, 1
        while retry < self.max_attempts:
            wait = self.max_delay_before(retry)
            if wait >= self.max_delay_s or self.base_delay_s <= 0:
                return total + wait * (self.max_attempts - retry)
            total += wait
            retry += 1
        return total


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """The declared token bucket."""

    ratio: float
    burst: int


@dataclass(frozen=True, slots=True)
class Budgets:
    """A whole budget table."""

    layers: Layers
    retries: Retries | None = None
    retry_budget: RetryBudget | None = None

    def worst_case_s(self) -> float:
        """How long one checkout may take if every attempt times out and every wait is longest."""
        attempt = self.layers.connect_s + self.layers.read_s
        if self.retries is None:
            return attempt
        return self.retries.max_attempts * attempt + self.retries.longest_waits_s()


# The course's stack: nginx 10 s > api 3 s > payments 2 s per attempt (0.5 s to connect), and
# the example policy of the design notes, held to while a learner's table declares none.
COURSE_RETRIES = Retries(max_attempts=3, base_delay_s=0.1, max_delay_s=1.0, jitter="full")
COURSE_RETRY_BUDGET = RetryBudget(ratio=0.1, burst=10)
COURSE = Budgets(Layers(nginx_s=10.0, api_s=3.0, connect_s=0.5, read_s=2.0))


def from_data(data: dict[str, Any]) -> Budgets:
    """Build the value objects from a document that passed the schema."""
    layers = data["layers"]
    retries = data.get("retries")
    budget = data.get("retry_budget")
    return Budgets(
        layers=Layers(
            nginx_s=float(layers["nginx"]["timeout_s"]),
            api_s=float(layers["api"]["timeout_s"]),
            connect_s=float(layers["payments"]["connect_timeout_s"]),
            read_s=float(layers["payments"]["read_timeout_s"]),
        ),
        retries=None
        if retries is None
        else Retries(
            max_attempts=int(retries["max_attempts"]),
            base_delay_s=float(retries["base_delay_s"]),
            max_delay_s=float(retries["max_delay_s"]),
            jitter=retries["jitter"],
        ),
        retry_budget=None
        if budget is None
        else RetryBudget(ratio=float(budget["ratio"]), burst=int(budget["burst"])),
    )


def load(repo: Path) -> yamlfile.Loaded:
    """Read and validate ``budgets.yaml`` of a learner repo; problems are data, not exceptions.

    Read through :mod:`grader.learner.learnerfile` (a regular file in the repo, 256 KiB at most);
    the
    schema bounds every number (timeouts at most an hour, max_attempts at most 100, burst at
    most 100) and the loader refuses .nan, .inf, aliases and duplicate keys, each as a problem
    with its line, so nothing computed from a valid table can overflow or crash.
    """
    return yamlfile.load(repo / BUDGETS_FILE, "budgets", root=repo)


def for_live_checks(repo: Path) -> tuple[Budgets, BudgetSource]:
    """The budget the live checks hold the service to: the learner's table, or the course's.

    A table that is not filled in yet (nulls, as the template ships it) means the course's budget;
    a table that is missing, is not YAML or is filled in wrongly cannot be graded against.
    """
    loaded = load(repo)
    if not loaded.problems:
        budgets = from_data(loaded.data)
        return budgets, BudgetSource("learner", "your budgets.yaml", _values(budgets))
    if all(p.unfilled for p in loaded.problems):
        note = "budgets.yaml is not filled in yet, so you are held to the course's budget"
        return COURSE, BudgetSource("course", note, _values(COURSE))
    first = loaded.problems[0]
    more = f" (and {len(loaded.problems) - 1} more problems)" if len(loaded.problems) > 1 else ""
    raise BudgetsError(
        f"The live checks hold your service to the timeouts in budgets.yaml, and it cannot be "
        f"used: {first}{more}. Run `failfast check milestone-1` to see every problem with its "
        f"line, fix them, and grade again.",
        details=[str(p) for p in loaded.problems],
        location=first.location,
    )


def _values(budgets: Budgets) -> dict[str, Any]:
    return asdict(budgets)
