"""Output formats, one class each behind one interface (after pip-audit's ``_format``).

``terminal`` (rich, for people), ``json`` (for machines), ``junit`` (for CI test reports),
``markdown`` (the GitHub job summary) and ``github`` (workflow-command annotations). Only
:mod:`grader.formats.terminal` touches rich.
"""

from __future__ import annotations

from typing import Protocol

from grader.errors import GradingError
from grader.model import CheckResult, Report, Status

# How each format counts results, in this order (the JSON report's summary keys).
COUNTED: tuple[tuple[Status, str], ...] = (
    (Status.PASS, "passed"),
    (Status.FAIL, "failed"),
    (Status.SKIP, "skipped"),
    (Status.ERROR, "errors"),
    (Status.INCONCLUSIVE, "inconclusive"),
)


class Format(Protocol):
    """Turns a report, or the reason there is none, into text."""

    def render(self, report: Report) -> str:
        """The whole report as text."""

    def render_error(self, error: GradingError, milestone: str, repo: str) -> str:
        """Why grading was impossible, as text."""


def evidence(result: CheckResult) -> list[tuple[str, str]]:
    """A result's evidence as (label, text) pairs, in reading order; empty parts left out.

    The hint is shown only where there is something to fix: never for PASS or SKIP.
    """
    parts = [("measured", result.measured), ("expected", result.expected)]
    if result.status not in (Status.PASS, Status.SKIP):
        parts.append(("hint", result.hint))
    if result.location is not None:
        parts.append(("where", str(result.location)))
    return [(label, text) for label, text in parts if text]
