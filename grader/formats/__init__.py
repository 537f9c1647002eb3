"""Output formats, one class each behind one interface (after pip-audit's ``_format``).

Only :mod:`grader.formats.terminal` touches rich.
"""

from __future__ import annotations

from typing import Protocol

from grader.errors import GradingError
from grader.model import Report


class Format(Protocol):
    """Turns a report, or the reason there is none, into text."""

    def render(self, report: Report) -> str:
        """The whole report as text."""

    def render_error(self, error: GradingError, milestone: str, repo: str) -> str:
        """Why grading was impossible, as text."""
