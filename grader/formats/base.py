"""What every output format shares: the interface, and how results are counted."""

from __future__ import annotations

from typing import Protocol

from grader.model import Report, Status

# How each format counts results, in this order (the JSON report's summary keys).
COUNTED: tuple[tuple[Status, str], ...] = (
    (Status.PASS, "passed"),
    (Status.FAIL, "failed"),
    (Status.SKIP, "skipped"),
    (Status.ERROR, "errors"),
    (Status.INCONCLUSIVE, "inconclusive"),
)

# What a learner's view (Report.for_learners) says in place of the checks it leaves out.
WITHHELD_NOTE = "Some checks are hidden by the course: they count in your grade, not shown here."


class Format(Protocol):
    """Turns a report into text: its checks, or why the grader could not grade."""

    def render(self, report: Report) -> str:
        """The whole report as text."""
