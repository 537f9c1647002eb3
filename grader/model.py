"""Value objects of a grading run: milestones, statuses, evidence, results and the report.

The bottom of the grader: it imports nothing of the grader's, and everything else may import it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # for a type only: the model imports nothing of the grader when it runs
    from grader.lines import OutputSummary
    from grader.series import Chart

ALL = "all"  # `failfast check all`: every milestone in one run

# Points are exact decimals: a course gives them in hundredths (grader/course/file.py), and a
# score is their sum, so 6.67 + 6.67 + 6.66 is 20, not 19.999999999999996. Formats write them as the
# shortest float that reads back as the same decimal (:func:`points_float`).
Points = Decimal
NO_POINTS = Decimal(0)
ONE_POINT = Decimal(1)


def points_float(value: Decimal) -> float:
    """``value`` as a JSON number: the float whose shortest repr is the same decimal.

    Exact for every decimal of at most 15 significant digits (a course's points have at most
    seven); never -0.0.
    """
    return float(value) + 0.0


def points_text(value: Decimal) -> str:
    """Points for people and CSV cells, exactly: ``17``, ``6.67``, ``0.5``."""
    text = format(value.normalize(), "f")
    return "0" if text == "-0" else text


def fraction_of(score: Decimal, max_score: Decimal) -> float:
    """``score / max_score`` as a float in [0, 1]: 1.0 only for full marks, 0.0 only for none.

    A float division may round 199.99/200 up, or a sliver down, and a platform would then
    record a grade nobody earned.
    """
    if max_score <= 0:
        return 0.0
    ratio = float(Fraction(score) / Fraction(max_score))  # correctly rounded, unlike a Decimal
    ratio = min(max(ratio, 0.0), 1.0)
    if score < max_score and ratio >= 1.0:
        ratio = math.nextafter(1.0, 0.0)
    if score > 0 and ratio <= 0.0:
        ratio = math.nextafter(0.0, 1.0)
    return ratio


def percent_text(score: Decimal, max_score: Decimal) -> str:
    """``score / max_score`` in percent for people, floored to a tenth.

    ``99.9 %`` for 199.9 of 200 (never ``100 %`` short of full marks), ``<0.1 %`` rather than
    ``0 %`` for a sliver; ``-`` when nothing was at stake.
    """
    if max_score <= 0:
        return "-"
    ratio = score / max_score * 100
    shown = ratio.quantize(Decimal("0.1"), rounding=ROUND_FLOOR)
    if shown <= 0 < ratio:
        return "<0.1 %"
    return f"{points_text(shown)} %"


@dataclass(frozen=True, slots=True)
class Milestone:
    """A milestone of the course: its key on the command line, its check-id prefix, its title.

    A check's id starts with the prefix (``m2.read-timeout``) and its function lives in
    ``checks/<prefix>_*.py``.
    """

    key: str
    prefix: str
    title: str


# The one list of milestones, in the order they are graded.
MILESTONES: tuple[Milestone, ...] = (
    Milestone("milestone-1", "m1", "The timeout budget table"),
    Milestone("milestone-2", "m2", "A budgeted client: connect, read and overall timeouts"),
    Milestone("milestone-3", "m3", "Bounded retries with exponential backoff and jitter"),
    Milestone("milestone-4", "m4", "A token-bucket retry budget"),
    Milestone("milestone-5", "m5", "Idempotency keys on a shared store"),
    Milestone(
        "loadtest",
        "lt",
        "Load-test evidence with k6: fails fast under a slow provider, then recovers",
    ),
)
MILESTONE_KEYS: tuple[str, ...] = tuple(m.key for m in MILESTONES)
_BY_KEY = {m.key: m for m in MILESTONES}
_BY_PREFIX = {m.prefix: m for m in MILESTONES}


def milestone(key: str) -> Milestone | None:
    """The milestone with this key (``milestone-3``), if there is one."""
    return _BY_KEY.get(key)


def milestone_of(check_id: str) -> Milestone | None:
    """The milestone a check id belongs to, from its prefix (``m2.read-timeout``)."""
    return _BY_PREFIX.get(check_id.split(".", 1)[0])


@dataclass(frozen=True, slots=True)
class Selection:
    """What one `failfast check` run grades: one milestone, milestones 1 to N, or all of them."""

    name: str  # as asked for: "milestone-3", "all"
    milestones: tuple[str, ...]
    through: bool = False
    # --target: the checks asked for, as given; () grades every check of the milestones.
    targets: tuple[str, ...] = ()
    # The checks a run with targets grades: each target and every check it depends on.
    only: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        """In words, for report headings."""
        return selection_label(self.name, self.milestones)

    def includes(self, check_id: str) -> bool:
        """Whether this run grades the check: every one, or a target or what a target needs."""
        return not self.targets or check_id in self.only


def selection_label(name: str, milestones: tuple[str, ...]) -> str:
    """What a run graded, in words: a milestone's title, a range, or every milestone."""
    if name == ALL:
        return "every milestone"
    if len(milestones) <= 1:
        found = milestone(name)
        return found.title if found else name
    return f"{milestones[0]} through {milestones[-1]}"


class Status(enum.StrEnum):
    """What a check concluded."""

    PASS = "PASS"
    FAIL = "FAIL"  # the learner's service did the wrong thing
    SKIP = "SKIP"  # a check it depends on did not pass
    INCONCLUSIVE = "INCONCLUSIVE"  # the machine was too noisy to tell: grade again
    ERROR = "ERROR"  # the grader or the environment broke: never the learner's fault

    @property
    def needs_action(self) -> bool:
        """Whether someone has to act: fix the code (FAIL) or grade again (ERROR, INCONCLUSIVE).

        Reports show the hint, annotate, and detail exactly these.
        """
        return self in (Status.FAIL, Status.ERROR, Status.INCONCLUSIVE)


class ExitCode(enum.IntEnum):
    """What `failfast check` exits with."""

    PASSED = 0  # every check passed
    FAILED = 1  # a check failed (or was skipped because one it needs failed)
    NOT_GRADED = 2  # the grader could not grade, or could not tell: bad input, ERROR, INCONCLUSIVE
    INTERRUPTED = 130  # Ctrl-C or SIGTERM

    @property
    def meaning(self) -> str:
        """What the code tells whoever ran the grader, in a few words."""
        return {
            ExitCode.PASSED: "every check passed",
            ExitCode.FAILED: "a check failed",
            ExitCode.NOT_GRADED: "the grader could not grade",
            ExitCode.INTERRUPTED: "grading was interrupted",
        }[self]


def _frozen(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(data or {}))


@dataclass(frozen=True, slots=True)
class Location:
    """A place in the learner's repo a verdict points at: CI annotates that file and line."""

    path: str  # relative to the repo root, with forward slashes
    line: int | None = None  # 1-based; None for the whole file

    def __str__(self) -> str:
        """``budgets.yaml:14``, or the bare path for a whole file."""
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a verdict rests on; every verdict, PASS or not, carries one.

    ``hint`` overrides the check's own hint when a verdict calls for a more specific one;
    ``data`` carries numbers for the machine-readable reports; ``figure`` is a small monospace
    chart (lines of text); ``chart`` the typed series a drawn chart is made from (one of
    :data:`grader.series.Chart`); ``location`` is the learner's file and line at fault, which CI
    annotates.
    """

    summary: str
    measured: str = ""
    expected: str = ""
    hint: str = ""
    data: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))
    figure: tuple[str, ...] = ()
    location: Location | None = None
    chart: Chart | None = None

    def __post_init__(self) -> None:
        """Freeze ``data`` and ``figure`` so evidence cannot change after it is reported."""
        object.__setattr__(self, "data", _frozen(self.data))
        object.__setattr__(self, "figure", tuple(self.figure))


@dataclass(frozen=True, slots=True)
class Passed(Evidence):
    """What a check returns when the service did the right thing: the evidence of it."""


# Who may see a check's result: Gradescope's vocabulary, which the other platforms map onto.
Visibility = Literal["visible", "hidden", "after_due_date", "after_published"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check: its status and the evidence for it."""

    id: str
    title: str
    milestone: str
    status: Status
    evidence: Evidence
    duration_s: float = 0.0
    # The last lines the learner's API printed, shown for FAIL and ERROR only.
    api_output: tuple[str, ...] = ()
    # What the check is worth, and who may see it: 1 point, visible, unless a course file
    # (grader/course/file.py) says otherwise.
    max_score: Decimal = ONE_POINT
    visibility: Visibility = "visible"

    @property
    def score(self) -> Decimal:
        """The points earned: all of them for a PASS, none otherwise (SKIP, ERROR included)."""
        return self.max_score if self.status is Status.PASS else NO_POINTS

    @property
    def gradable(self) -> bool:
        """False when the grader, not the learner, decided it: ERROR or INCONCLUSIVE."""
        return self.status not in (Status.ERROR, Status.INCONCLUSIVE)

    @property
    def summary(self) -> str:
        """The verdict in one line."""
        return self.evidence.summary

    @property
    def measured(self) -> str:
        """What the check measured."""
        return self.evidence.measured

    @property
    def expected(self) -> str:
        """What the check expected."""
        return self.evidence.expected

    @property
    def hint(self) -> str:
        """How to fix it."""
        return self.evidence.hint

    @property
    def data(self) -> Mapping[str, Any]:
        """Numbers for machines."""
        return self.evidence.data

    @property
    def figure(self) -> tuple[str, ...]:
        """A small monospace chart."""
        return self.evidence.figure

    @property
    def location(self) -> Location | None:
        """The learner's file a FAIL points at, where there is one."""
        return self.evidence.location

    @property
    def chart(self) -> Chart | None:
        """The series its chart is drawn from, where it measured something to draw."""
        return self.evidence.chart

    def evidence_parts(self) -> list[tuple[str, str]]:
        """The evidence as (label, text) pairs in reading order; empty parts left out.

        The hint is shown only where someone has to act.
        """
        parts = [("measured", self.measured), ("expected", self.expected)]
        if self.status.needs_action:
            parts.append(("hint", self.hint))
        if self.location is not None:
            parts.append(("where", str(self.location)))
        return [(label, text) for label, text in parts if text]


@dataclass(frozen=True, slots=True)
class BudgetSource:
    """Which budget the live checks held the service to, and why."""

    origin: str  # "learner" (their budgets.yaml) or "course" (not filled in yet)
    note: str
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NotGraded:
    """Why the grader could not grade at all: a paragraph the learner can act on."""

    kind: str  # the error's name, e.g. "BudgetsError"
    message: str
    details: tuple[str, ...] = ()  # supporting lines, e.g. the API's last output lines
    location: Location | None = None  # the learner's file at fault, when there is one


@dataclass(frozen=True, slots=True)
class CheckChange:
    """A check whose status differs from the one it had at the repo's previous grading."""

    check_id: str
    before: str
    after: str
    before_commit: str  # abc1234, abc1234+ (uncommitted changes), or "no commit"
    after_commit: str

    @property
    def commits(self) -> str:
        """``since commit abc1234 (now def5678)``; "no commit" where there was none."""
        was, now = (
            c if c == "no commit" else f"commit {c}"
            for c in (self.before_commit, self.after_commit)
        )
        return f"since {was} (now {now})"


def changes_text(changes: Sequence[CheckChange]) -> str:
    """``m2.read-timeout PASS → FAIL since commit abc1234 (now def5678)``; commits said once."""
    by_commits: dict[str, list[str]] = {}
    for c in changes:
        by_commits.setdefault(c.commits, []).append(f"{c.check_id} {c.before} → {c.after}")
    return "; ".join(f"{', '.join(found)} {commits}" for commits, found in by_commits.items())


@dataclass(frozen=True, slots=True)
class HistoryNote:
    """What the grading history said of this run: shown on stdout, never in report files."""

    store: str  # its URL, password hidden
    grading_id: int
    # None: the repo had no earlier grading of these checks; () : one, with nothing changed.
    changes: tuple[CheckChange, ...] | None

    def line(self) -> str:
        """The line at the end of `failfast check`."""
        if self.changes is None:
            return "first grading of this repo recorded; `failfast progress` shows its history"
        if not self.changes:
            return "no check changed since your last run"
        count = f"{len(self.changes)} check{'s' * (len(self.changes) > 1)} changed"
        return f"{count} since your last run: {changes_text(self.changes)}"


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one `failfast check` run found, or why it could not grade."""

    milestone: str  # what was asked for: "milestone-3", "all"
    repo: str
    started_at: str = ""  # ISO 8601, UTC
    duration_s: float = 0.0
    results: tuple[CheckResult, ...] = ()
    budgets: BudgetSource | None = None
    # The milestones graded, in order: one, or several for `all` and `--through`.
    milestones: tuple[str, ...] = ()
    through: bool = False
    not_graded: NotGraded | None = None
    # Ctrl-C or SIGTERM cut the run short: the checks it did not finish are SKIP, "not run".
    interrupted: bool = False
    backend: str = "local"  # what ran the learner's code: "local" processes or "docker"
    notes: tuple[str, ...] = ()  # what the grader could not do to isolate it, say
    # What a run with no results was to be worth (the checks it was asked for, at the course's
    # points): a run that could not grade keeps its maximum in every denominator, so that one
    # ungradable milestone never drops out of a total.
    planned_max_score: Decimal | None = None
    # A learner's view (:meth:`for_learners`): checks the course hides were taken out, and
    # whether each of them could be graded (an ungradable one still makes the run ungradable).
    withheld: bool = False
    withheld_gradable: bool = True
    # What the learner's API printed over the whole run (every instance), when it ran.
    api_output: OutputSummary | None = None
    # --target: the run graded only these checks and what they depend on.
    targets: tuple[str, ...] = ()
    # The history's word on this run (stdout only: files are written without it).
    history: HistoryNote | None = None

    def __post_init__(self) -> None:
        """A report of one milestone lists just that one."""
        if not self.milestones:
            object.__setattr__(self, "milestones", (self.milestone,))

    @property
    def title(self) -> str:
        """What was graded, in words."""
        label = selection_label(self.milestone, self.milestones)
        return f"{label}, only {', '.join(self.targets)}" if self.targets else label

    def results_of(self, milestone: str) -> tuple[CheckResult, ...]:
        """The results of one of the milestones graded."""
        return tuple(r for r in self.results if r.milestone == milestone)

    def count(self, status: Status) -> int:
        """How many results have this status."""
        return sum(1 for r in self.results if r.status is status)

    @property
    def score(self) -> Decimal:
        """The points earned over every check of the run."""
        return sum((r.score for r in self.results), NO_POINTS)

    @property
    def max_score(self) -> Decimal:
        """The points the run's checks are worth; what it was to be worth when it has none."""
        if not self.results and self.planned_max_score is not None:
            return self.planned_max_score
        return sum((r.max_score for r in self.results), NO_POINTS)

    def score_of(self, milestone: str) -> tuple[Decimal, Decimal]:
        """The points earned in one milestone graded, and what its checks are worth."""
        results = self.results_of(milestone)
        return (
            sum((r.score for r in results), NO_POINTS),
            sum((r.max_score for r in results), NO_POINTS),
        )

    @property
    def gradable(self) -> bool:
        """Whether the score is the learner's: graded to the end, no check ERROR or INCONCLUSIVE."""
        return (
            self.not_graded is None
            and not self.interrupted
            and self.withheld_gradable
            and all(r.gradable for r in self.results)
        )

    def for_learners(self) -> Report:
        """What a learner may see: the checks the course hides are left out, with their points.

        Nothing left names them, counts them or lets their points be worked out; the run
        still says when one of them could not be graded (that is no result of the learner's).
        """
        hidden = [r for r in self.results if r.visibility != "visible"]
        if not hidden:
            return self
        return replace(
            self,
            results=tuple(r for r in self.results if r.visibility == "visible"),
            withheld=True,
            withheld_gradable=self.withheld_gradable and all(r.gradable for r in hidden),
        )

    @property
    def exit_code(self) -> ExitCode:
        """What the run exits with.

        An ERROR means the grader could not grade at all. A FAIL outranks an INCONCLUSIVE: the
        learner has something to fix either way. A SKIP alone is no failure: it follows a
        FAIL (which decides), an INCONCLUSIVE (grade again) or a tool this machine lacks (not
        the learner's doing). An interrupted run is 130 whatever it found.
        """
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if self.not_graded is not None or self.count(Status.ERROR):
            return ExitCode.NOT_GRADED
        if self.count(Status.FAIL):
            return ExitCode.FAILED
        if self.count(Status.INCONCLUSIVE) or not self.withheld_gradable:
            return ExitCode.NOT_GRADED
        return ExitCode.PASSED
