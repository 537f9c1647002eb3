"""The typed series a check's chart is drawn from: one frozen dataclass per kind of chart.

A check that measured something worth drawing attaches one of these to its evidence
(:attr:`grader.model.Evidence.chart`); the HTML page draws it and the JSON report writes it as
a check's ``chart`` object, whose ``kind`` names the class (``grader/schemas/report.schema.json``).
No format reads a check's ``data`` to draw: a field renamed here is renamed for every reader, and
mypy holds the checks that build the series to it.

Times are seconds (``_s``) or milliseconds (``_ms``), as the field says. Like ``grader.model``
this module imports nothing of the grader, so every layer may import it. :func:`to_plain` and
:func:`from_plain` turn a series into plain data (dicts, lists, numbers) and back: the JSON
report's writer and reader.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, ClassVar, Literal, TypeGuard

# --- m2.read-timeout, m2.slow-body, m3.retries-fit-budget -------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptSpan:
    """One provider attempt of a checkout, in seconds after the grader sent the checkout."""

    arrived_after_s: float
    ended_after_s: float | None  # None while it was still open when the grader stopped looking
    # The stub's word for how it ended: "responded", "client_gave_up", "in_progress", ...
    outcome: str


@dataclass(frozen=True, slots=True)
class CheckoutTimeline:
    """One checkout and each provider attempt it made, against the read timeout and api budget.

    ``elapsed_s`` is when the checkout's answer came (or the grader stopped waiting), with
    ``status`` None for no answer. ``read_timeout_s`` marks where each attempt should be cut,
    when the check holds it to one; the answer is due by ``api_budget_s`` (plus the tolerance).
    """

    kind: ClassVar[Literal["checkout-timeline"]] = "checkout-timeline"
    elapsed_s: float
    status: int | None
    attempts: tuple[AttemptSpan, ...]
    api_budget_s: float
    answer_tolerance_s: float = 0.0
    read_timeout_s: float | None = None


# --- m2.connect-timeout -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectTimeline:
    """One checkout while every connect to the provider hung, against the connect bound.

    ``connect_bound_s`` is the answer's limit when it was held to one (``max_attempts``
    attempts each given up at ``connect_timeout_s``, plus the declared waits and a tolerance);
    None when the api budget is the tighter bound.
    """

    kind: ClassVar[Literal["connect-timeline"]] = "connect-timeline"
    elapsed_s: float
    status: int | None
    connect_timeout_s: float
    max_attempts: int
    api_budget_s: float
    answer_tolerance_s: float = 0.0
    connect_bound_s: float | None = None


# --- m2.healthz-under-load --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeLatencies:
    """The latency of each /healthz probe sent while checkouts were stuck, against the limit."""

    kind: ClassVar[Literal["probe-latencies"]] = "probe-latencies"
    latencies_ms: tuple[float, ...]
    limit_ms: float


# --- m3.attempts-bounded ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptCounts:
    """Provider attempts of each checkout whose provider kept failing: 2 to ``max_attempts``."""

    kind: ClassVar[Literal["attempt-counts"]] = "attempt-counts"
    attempts: tuple[int, ...]  # one count per checkout, in the order they were sent
    max_attempts: int


# --- m3.jitter-spread, m3.backoff-grows -------------------------------------------------------

Span = tuple[float, float]  # (start, end)


@dataclass(frozen=True, slots=True)
class RetryStorm:
    """A storm of checkouts that failed at once: each one's attempts over the declared windows.

    Times are ms after the storm's first attempt arrived. ``checkouts`` holds, per checkout (in
    the order of its first attempt), the (arrival, end) of each attempt; ``windows_ms`` the
    declared (low, high) wait before retry n, counted from the end of attempt n, which is where
    a chart shades each retry's window.
    """

    kind: ClassVar[Literal["retry-storm"]] = "retry-storm"
    checkouts: tuple[tuple[Span, ...], ...]
    windows_ms: tuple[Span, ...]


# --- m4.outage-capped, m4.budget-shared -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutageAttempts:
    """Provider attempts per checkout over a sustained outage, against 1 + ratio.

    ``warmup`` are the attempts of the checkouts that spent the bucket's ``burst`` first;
    ``attempts`` those of the outage measured after, in the order the provider saw them.
    ``limit`` is 1 + ratio plus the check's slack: the most attempts per checkout allowed.
    """

    kind: ClassVar[Literal["outage-attempts"]] = "outage-attempts"
    attempts: tuple[int, ...]
    ratio: float
    limit: float
    warmup: tuple[int, ...] = ()
    burst: int | None = None


# --- lt.k6-run (and a load-test check whose threshold was crossed) -----------------------------

Percentile = Literal["p50", "p90", "p95", "p99"]
PERCENTILES: tuple[Percentile, ...] = ("p50", "p90", "p95", "p99")


@dataclass(frozen=True, slots=True)
class Threshold:
    """An upper limit k6 held a percentile of one phase to: ``percentile < limit_ms``."""

    percentile: Percentile
    limit_ms: float


@dataclass(frozen=True, slots=True)
class PhaseLatency:
    """The latency percentiles of one phase of the load test, in ms, and their thresholds.

    ``phase`` is the load test's name for it: ``slow``, ``recovery`` or ``healthz``. A
    percentile k6 did not report is None.
    """

    phase: str
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    thresholds: tuple[Threshold, ...] = ()

    def percentiles(self) -> tuple[tuple[Percentile, float | None], ...]:
        """Each percentile's name and value, in :data:`PERCENTILES` order."""
        return (
            ("p50", self.p50_ms),
            ("p90", self.p90_ms),
            ("p95", self.p95_ms),
            ("p99", self.p99_ms),
        )


@dataclass(frozen=True, slots=True)
class LatencyByPhase:
    """Latency percentiles per phase of the load test, against the thresholds k6 held."""

    kind: ClassVar[Literal["latency-by-phase"]] = "latency-by-phase"
    phases: tuple[PhaseLatency, ...]


# --- The HTML report's progress chart (not a check's: it never reaches the JSON report) -------


@dataclass(frozen=True, slots=True)
class MilestoneScore:
    """A milestone's points in one grading, over the checks the current grading ran of it."""

    score: float
    max_score: float

    @property
    def fraction(self) -> float:
        """``score / max_score`` in [0, 1]; 0 for a milestone worth nothing."""
        return min(max(self.score / self.max_score, 0.0), 1.0) if self.max_score > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ProgressStep:
    """One grading of the repo: when it was recorded, at which commit, each milestone's score.

    ``scores`` follows :attr:`ProgressSeries.milestones`; None where this grading did not run
    every check the current grading ran of that milestone (so its score is not comparable).
    """

    recorded_at: str  # ISO 8601, UTC
    commit: str  # short: abc1234, abc1234+ for a dirty tree, or "no commit"
    scores: tuple[MilestoneScore | None, ...]


@dataclass(frozen=True, slots=True)
class ProgressSeries:
    """A repo's score per milestone over its gradings, oldest first: the current one is last.

    Built from the grading history by `failfast check` (``grader.cli.history``) and drawn on the
    HTML report only; it is not a check's chart (:data:`Chart`), and no other format sees it.
    """

    milestones: tuple[str, ...]
    steps: tuple[ProgressStep, ...]


# --- Every kind -------------------------------------------------------------------------------

Chart = (
    CheckoutTimeline
    | ConnectTimeline
    | ProbeLatencies
    | AttemptCounts
    | RetryStorm
    | OutageAttempts
    | LatencyByPhase
)
# Each kind by the name its JSON object carries.
CHART_KINDS: Mapping[str, type[Chart]] = types.MappingProxyType(
    {
        kind.kind: kind
        for kind in (
            CheckoutTimeline,
            ConnectTimeline,
            ProbeLatencies,
            AttemptCounts,
            RetryStorm,
            OutageAttempts,
            LatencyByPhase,
        )
    }
)


def is_chart(value: object) -> TypeGuard[Chart]:
    """Whether ``value`` is a series of one of the kinds above."""
    return isinstance(value, tuple(CHART_KINDS.values()))


def is_finite(chart: object) -> bool:
    """Whether every number a series holds is finite: NaN or infinity draws no chart."""
    if isinstance(chart, float):
        return math.isfinite(chart)
    if isinstance(chart, tuple):
        return all(is_finite(item) for item in chart)
    if is_dataclass(chart):
        return all(is_finite(getattr(chart, f.name)) for f in fields(chart))
    return True


def to_plain(chart: Chart) -> dict[str, Any]:
    """A series as plain data: its ``kind``, then its fields; tuples become lists."""
    plain = _plain(chart)
    assert isinstance(plain, dict)
    return {"kind": chart.kind, **plain}


def _plain(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


class ChartShapeError(ValueError):
    """Plain data that is not a series of a known kind: the reader leaves the chart out."""


def from_plain(plain: Mapping[str, Any]) -> Chart:
    """The series :func:`to_plain` wrote; :class:`ChartShapeError` on any other shape.

    Every field is checked against its type (a number where a number is due, lists of the
    right length); keys the series does not have are ignored, so a newer report still reads.
    """
    if not isinstance(plain, Mapping):
        raise ChartShapeError("a chart is an object")
    kind = CHART_KINDS.get(str(plain.get("kind")))
    if kind is None:
        raise ChartShapeError(f"no chart of kind {plain.get('kind')!r}")
    found = _read(kind, plain, "chart")
    assert isinstance(found, kind)
    return found


def _read(expected: Any, value: object, where: str) -> object:
    """``value`` as the type ``expected``, or :class:`ChartShapeError` naming ``where``."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if isinstance(expected, type) and is_dataclass(expected):
        if not isinstance(value, Mapping):
            raise ChartShapeError(f"{where} is not an object")
        hints = typing.get_type_hints(expected)
        given = {
            f.name: _read(hints[f.name], value[f.name], f"{where}.{f.name}")
            for f in fields(expected)
            if f.name in value
        }
        try:
            return expected(**given)
        except TypeError as error:  # a field without a default is missing
            raise ChartShapeError(f"{where}: {error}") from None
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        return _read(next(a for a in args if a is not type(None)), value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ChartShapeError(f"{where} is not a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_read(args[0], item, f"{where}[{n}]") for n, item in enumerate(value))
        if len(value) != len(args):
            raise ChartShapeError(f"{where} has {len(value)} items, not {len(args)}")
        return tuple(
            _read(a, item, f"{where}[{n}]")
            for n, (a, item) in enumerate(zip(args, value, strict=True))
        )
    if origin is Literal:
        if value not in args:
            raise ChartShapeError(f"{where} is {value!r}, not one of {args}")
        return value
    if expected is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if expected is str and isinstance(value, str):
        return value
    raise ChartShapeError(f"{where} is {value!r}, not {getattr(expected, '__name__', expected)}")
