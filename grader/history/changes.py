"""What changed between two gradings of the same repo: pure logic, for `check` and `progress`."""

from __future__ import annotations

from collections.abc import Sequence

from grader.history.store import CheckRow, Grading
from grader.model import CheckChange


def between(before: Grading, after: Grading) -> tuple[CheckChange, ...]:
    """The checks both gradings ran whose status changed, in the later grading's order.

    A check only one of them ran (another milestone, another --target) is no change.
    """
    earlier: dict[str, CheckRow] = {c.check_id: c for c in before.checks}
    return tuple(
        CheckChange(
            c.check_id,
            earlier[c.check_id].status,
            c.status,
            before.short_commit,
            after.short_commit,
        )
        for c in after.checks
        if c.check_id in earlier and earlier[c.check_id].status != c.status
    )


def previous(history: Sequence[Grading], grading: Grading) -> Grading | None:
    """The latest grading before ``grading`` that ran any of the same checks."""
    ran = {c.check_id for c in grading.checks}
    for earlier in reversed([g for g in history if (g.id or 0) < (grading.id or 0)]):
        if ran & {c.check_id for c in earlier.checks}:
            return earlier
    return None
