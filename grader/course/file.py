"""The course file: how many points each check is worth, and who may see its result.

An optional YAML file (``failfast check --course FILE``, ``failfast grade --course FILE``),
validated against ``grader/schemas/course.schema.json`` by :mod:`grader.learner.yamlfile`, so
that every problem names the file and the line::

    version: 1
    milestones:                # points per milestone, spread over its checks without their own
      milestone-2: {points: 20}
    checks:
      m2.read-timeout: {points: 5}
      m3.jitter-spread: {visibility: after_due_date}
    default_visibility: visible

A check worth nothing in the file is worth 1 point, as without a course file. A milestone's
points go first to its checks that have points of their own; the rest is spread evenly over the
others, to the hundredth of a point (20 over 3 checks: 6.67, 6.67, 6.66), so that the milestone
adds up to exactly what the file says. A check's visibility is its own, else its milestone's,
else ``default_visibility``.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, cast

from grader.engine.registry import Catalog
from grader.errors import CourseError
from grader.learner import yamlfile
from grader.model import MILESTONES, ONE_POINT, Report, Visibility, milestone_of, points_text
from grader.paths import followed

DEFAULT_POINTS = ONE_POINT
# Points are counted in whole hundredths, exactly: what the file gives, what is spread, and so
# every sum. A platform's reader then records the same decimal failfast computed.
CENT = Decimal("0.01")


def _decimal(value: object) -> Decimal:
    """A validated YAML number as the decimal it was written as (0.1 is 0.1, not a float)."""
    return Decimal(str(value))


@dataclass(frozen=True, slots=True)
class Rule:
    """What the file gives a milestone or a check; None where it says nothing."""

    points: Decimal | None = None
    visibility: Visibility | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Rule:
        """The rule of one validated ``{points: …, visibility: …}`` entry."""
        data = data or {}
        points = data.get("points")
        return cls(
            None if points is None else _decimal(points),
            cast("Visibility | None", data.get("visibility")),
        )


@dataclass(frozen=True, slots=True)
class Course:
    """Points and visibility per check; :attr:`DEFAULT` is every check 1 point, visible."""

    milestones: tuple[tuple[str, Rule], ...] = ()
    checks: tuple[tuple[str, Rule], ...] = ()
    default_visibility: Visibility = "visible"

    DEFAULT: ClassVar[Course]

    @classmethod
    def load(cls, path: Path, catalog: Catalog | None = None) -> Course:
        """Read and validate a course file; raises :class:`CourseError` naming the file and line.

        With ``catalog`` (the CLI passes its checks), every check id must be one of them, and a
        milestone's points must cover its checks' own points. Without it, ids are held only to
        a known milestone's prefix, and :meth:`apply` spreads what it can.
        """
        shown = str(path)
        resolved = followed(path.expanduser())
        if resolved is None:
            raise CourseError(
                f"The course file {shown} cannot be followed: a symlink on the way leads back "
                "to itself (a symlink loop). Pass --course the course's YAML file itself."
            )
        loaded = yamlfile.load(resolved, "course", root=resolved.parent)
        if loaded.data is None and not resolved.exists():
            raise CourseError(
                f"There is no course file at {shown}. Pass --course the path of the course's "
                f"YAML file, or grade without --course (every check 1 point, visible)."
            )
        problems = [_reword(p, shown) for p in loaded.problems]
        if not problems:
            data = loaded.data
            milestones, checks = data.get("milestones") or {}, data.get("checks") or {}
            course = cls(
                milestones=tuple((k, Rule.of(v)) for k, v in milestones.items()),
                checks=tuple((str(k), Rule.of(v)) for k, v in checks.items()),
                default_visibility=data.get("default_visibility", "visible"),
            )
            problems = course._problems(loaded, shown, catalog)
            if not problems:
                return course
        first, *more = sorted(problems, key=lambda p: p.line or 0)
        raise CourseError(
            f"The course file {shown} gives each check its points and visibility, and it cannot "
            f"be used: {first}. Fix it, or grade without --course (every check 1 point, "
            f"visible).",
            details=[str(p) for p in more],
        )

    def _problems(
        self, loaded: yamlfile.Loaded, shown: str, catalog: Catalog | None
    ) -> list[yamlfile.Problem]:
        """Check ids that are no check, and milestones whose checks' points cannot add up."""
        found: list[yamlfile.Problem] = []

        def problem(message: str, *path: str) -> None:
            found.append(yamlfile.Problem(shown, loaded.line(*path), ".".join(path), message))

        for section, rules in (("milestones", self.milestones), ("checks", self.checks)):
            for key, rule in rules:
                if rule.points is not None and rule.points % CENT:
                    problem(
                        f"{section}.{key}.points is {rule.points}: points are counted in "
                        f"hundredths (e.g. 2.5 or 6.67), so that every platform records exactly "
                        f"the score failfast computes; round it to two decimals",
                        section,
                        key,
                        "points",
                    )
        known = [spec.id for spec in catalog.specs] if catalog is not None else None
        for check_id, _ in self.checks:
            if known is not None and check_id not in known:
                close = difflib.get_close_matches(check_id, known, n=1)
                hint = f"did you mean {close[0]}?" if close else "`failfast list` names every one"
                message = f"checks.{check_id} is not a check of failfast ({hint})"
                problem(message, "checks", check_id)
            elif milestone_of(check_id) is None:
                prefixes = ", ".join(f"{m.prefix}." for m in MILESTONES)
                problem(
                    f"checks.{check_id} is not a check id: an id starts with its milestone's "
                    f"prefix ({prefixes}), e.g. m2.read-timeout",
                    "checks",
                    check_id,
                )
        if catalog is None or found:
            return found
        for key, rule in self.milestones:
            if rule.points is None:
                continue
            ids = [spec.id for spec in catalog.for_milestone(key)]
            own = {i: p for i in ids if (p := self._check(i).points) is not None}
            given = sum(own.values(), Decimal(0))
            listed = ", ".join(f"{i}: {points_text(p)}" for i, p in own.items())
            where = ("milestones", key, "points")
            total, sum_text = points_text(rule.points), points_text(given)
            if given > rule.points:
                problem(
                    f"milestones.{key}.points is {total}, but its checks' own points add "
                    f"up to {sum_text} ({listed}): raise the milestone's points or lower the "
                    f"checks'",
                    *where,
                )
            elif len(own) == len(ids) and given != rule.points:
                problem(
                    f"milestones.{key}.points is {total}, but every check of {key} has "
                    f"points of its own, adding up to {sum_text} ({listed}): make them agree, or "
                    f"leave a check without points to take the rest",
                    *where,
                )
        return found

    def _check(self, check_id: str) -> Rule:
        return dict(self.checks).get(check_id, Rule())

    def points(self, milestone: str, check_ids: Sequence[str]) -> dict[str, Decimal]:
        """What each check of one milestone is worth, given every check id of that milestone."""
        own = {i: p for i in check_ids if (p := self._check(i).points) is not None}
        rest = [i for i in check_ids if i not in own]
        total = dict(self.milestones).get(milestone, Rule()).points
        if total is None:
            spread = [DEFAULT_POINTS] * len(rest)
        else:
            spread = _spread(total - sum(own.values(), Decimal(0)), len(rest))
        worth = own | dict(zip(rest, spread, strict=True))
        return {i: worth[i] for i in check_ids}

    def visibility(self, check_id: str, milestone: str) -> Visibility:
        """Who may see a check's result: its own, its milestone's, or the default."""
        own = self._check(check_id).visibility
        of_milestone = dict(self.milestones).get(milestone, Rule()).visibility
        return own or of_milestone or self.default_visibility

    def hidden(self, planned: Sequence[tuple[str, str]]) -> list[str]:
        """The checks of ``planned`` (milestone, check id) that learners may not see now."""
        return [i for m, i in planned if self.visibility(i, m) != "visible"]

    def apply(self, report: Report, planned: Sequence[tuple[str, str]] = ()) -> Report:
        """The report with each result's points and visibility as this course gives them.

        ``planned`` is (milestone, check id) of every check the run was asked for: a run that
        has no results (it could not grade) is still worth what those checks are worth.
        """
        worth: dict[str, Decimal] = {}
        for key in _unique(r.milestone for r in report.results):
            worth |= self.points(key, [r.id for r in report.results if r.milestone == key])
        results = tuple(
            dataclasses.replace(
                r, max_score=worth[r.id], visibility=self.visibility(r.id, r.milestone)
            )
            for r in report.results
        )
        planned_max = report.planned_max_score
        if planned:
            planned_max = sum(
                (
                    sum(self.points(key, [i for m, i in planned if m == key]).values(), Decimal(0))
                    for key in _unique(m for m, _ in planned)
                ),
                Decimal(0),
            )
        return dataclasses.replace(report, results=results, planned_max_score=planned_max)


Course.DEFAULT = Course()


def _spread(total: Decimal, count: int) -> list[Decimal]:
    """``total`` over ``count`` checks in whole hundredths that add up to it exactly."""
    if count == 0:
        return []
    # In whole hundredths, so that each share is the decimal it prints as (6.67, not 6.666…).
    cents, extra = divmod(max(0, int(total / CENT)), count)
    return [(cents + (1 if n < extra else 0)) * CENT for n in range(count)]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _reword(problem: yamlfile.Problem, shown: str) -> yamlfile.Problem:
    """A schema problem in the course file's words: points, not seconds; the path as given."""
    message = problem.message.replace("a number of seconds", "a number of points")
    return dataclasses.replace(problem, file=shown, message=message)
