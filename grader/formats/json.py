"""The JSON report; its schema is ``grader/schemas/report.schema.json``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from grader import __version__
from grader.formats.base import COUNTED
from grader.lines import OutputSummary, neutralise
from grader.model import (
    ALL,
    BudgetSource,
    CheckResult,
    Evidence,
    ExitCode,
    HistoryNote,
    Location,
    NotGraded,
    Report,
    Status,
    points_float,
)
from grader.series import Chart, ChartShapeError, from_plain, is_chart, is_finite, to_plain

SCHEMA_VERSION = 1


def _key(key: Any) -> str | int | bool | None:
    if isinstance(key, str | int | bool) or key is None:
        return key
    return str(key)


def readable(value: Any) -> Any:
    """``value`` as failfast's JSON files write it: finite numbers, every string neutralised.

    NaN and Infinity become null (as JSON.stringify does): Python's json writes them as bare
    ``NaN`` and ``Infinity``, which no JSON parser need accept. A platform, a dashboard or a CI
    page shows a JSON string as it is, so a learner's bidi override or C1 control would reach its
    page: every string, keys included, goes through :func:`grader.lines.neutralise` (a CR too:
    failfast's texts break lines with LF); no reader of these files needs the exact bytes of a
    learner's words. Keys that are not str, int, bool
    or None (a tuple, say), and values JSON has no type for, become their str.
    """
    if isinstance(value, str):
        return neutralise(value, keep_cr=False)
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {readable(_key(k)): readable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [readable(v) for v in value]
    return neutralise(str(value), keep_cr=False)


def points_decimal(value: object) -> Decimal:
    """Points read back from a JSON file: the decimal the number was written as."""
    return Decimal(str(value))


def not_gradable_reason(report: Report, *, learner: bool = False) -> str | None:
    """Why the run's score is not the learner's to keep, in a few words; None when it is.

    ``learner``: for a learner's eyes, a check the course hides is not counted or named.
    """
    if report.not_graded is not None:
        return "the grader could not grade"
    if report.interrupted:
        return "grading was interrupted before every check finished"
    shown = [r for r in report.results if not learner or r.visibility == "visible"]
    unsure = sum(not r.gradable for r in shown)
    if unsure:
        checks = "check" if unsure == 1 else "checks"
        return f"{unsure} {checks} ERROR or INCONCLUSIVE, not your fault"
    if not report.gradable:
        return "a check could not be graded, not your fault"
    return None


def milestone_scores(report: Report) -> dict[str, dict[str, float]]:
    """Each milestone graded: the points earned and the points its checks are worth."""
    scores = {key: report.score_of(key) for key in report.milestones}
    return {
        key: {"score": points_float(score), "max_score": points_float(worth)}
        for key, (score, worth) in scores.items()
    }


def _seconds(value: float) -> float:
    """A duration the schema accepts: a number, at least 0."""
    return value if math.isfinite(value) and value >= 0 else 0.0


def _chart(series: Chart | None) -> dict[str, Any]:
    """A check's ``chart`` entry: its typed series as the schema's chart object, if it has one.

    A series holding NaN or an infinity is left out, as the HTML page draws none from it: JSON
    has no word for those numbers, and the schema's chart no null where a number is due.
    """
    if is_chart(series) and is_finite(series):
        return {"chart": to_plain(series)}
    return {}


def _chart_of(check: Mapping[str, Any]) -> Chart | None:
    """A check's chart read back into its series; None when it has none, or an unreadable one."""
    plain = check.get("chart")
    if plain is None:
        return None
    try:
        return from_plain(plain)
    except ChartShapeError:
        return None  # a report is read whole: only the chart is left out


def _api_output(printed: OutputSummary | None) -> dict[str, Any]:
    """The report's ``api_output`` entry: what the learner's API printed, when it ran."""
    if printed is None:
        return {}
    return {
        "api_output": {
            "bytes": printed.bytes,
            "lines": printed.lines,
            "instances": printed.instances,
            "head": list(printed.head),
            "tail": list(printed.tail),
            **({} if printed.complete else {"complete": False}),  # counts are lower bounds
        }
    }


def _api_output_of(document: Mapping[str, Any]) -> OutputSummary | None:
    """The report's ``api_output`` read back; None when it has none."""
    plain = document.get("api_output")
    if not isinstance(plain, Mapping):
        return None
    return OutputSummary(
        head=tuple(plain.get("head") or ()),
        tail=tuple(plain.get("tail") or ()),
        bytes=int(plain.get("bytes", 0)),
        lines=int(plain.get("lines", 0)),
        instances=int(plain.get("instances", 1)),
        complete=plain.get("complete") is not False,
    )


class JsonFormat:
    """One JSON document per run, for machines: CI steps, dashboards, course tooling."""

    def render(self, report: Report) -> str:
        """The report as JSON: the checks, or why the grader could not grade."""
        document = self.to_dict(report) if report.not_graded is None else self._not_graded(report)
        return json.dumps(readable(document), indent=2, allow_nan=False) + "\n"

    def to_dict(self, report: Report) -> dict[str, Any]:
        """The report as plain data, as the schema describes it."""
        budgets = report.budgets
        return {
            "schema_version": SCHEMA_VERSION,
            "failfast_version": __version__,
            "kind": "report",
            "milestone": report.milestone,
            "milestones": list(report.milestones),
            "targets": list(report.targets),
            "repo": report.repo,
            "started_at": report.started_at,
            "duration_s": _seconds(report.duration_s),
            "exit_code": int(report.exit_code),
            "backend": report.backend,
            "notes": list(report.notes),
            "summary": {word: report.count(status) for status, word in COUNTED},
            "score": points_float(report.score),
            "max_score": points_float(report.max_score),
            "gradable": report.gradable,
            "withheld": report.withheld,
            "scores": milestone_scores(report),
            "budgets": None
            if budgets is None
            else {"origin": budgets.origin, "note": budgets.note, "values": dict(budgets.values)},
            **_api_output(report.api_output),
            **_history(report.history),
            "checks": [
                {
                    "id": r.id,
                    "title": r.title,
                    "milestone": r.milestone,
                    "status": r.status.value,
                    "summary": r.summary,
                    "measured": r.measured,
                    "expected": r.expected,
                    "hint": r.hint,
                    "duration_s": _seconds(r.duration_s),
                    "data": dict(r.data),
                    "api_output": list(r.api_output),
                    "figure": list(r.figure),
                    "location": None
                    if r.location is None
                    else {"path": r.location.path, "line": r.location.line},
                    "score": points_float(r.score),
                    "max_score": points_float(r.max_score),
                    "visibility": r.visibility,
                    **_chart(r.chart),
                }
                for r in report.results
            ],
        }

    def _not_graded(self, report: Report) -> dict[str, Any]:
        """Why grading was impossible, as plain data."""
        assert report.not_graded is not None
        return {
            "schema_version": SCHEMA_VERSION,
            "failfast_version": __version__,
            "kind": "error",
            "milestone": report.milestone,
            "repo": report.repo,
            "exit_code": int(report.exit_code),
            "gradable": False,
            "score": 0,
            "max_score": points_float(report.max_score),
            "error": {
                "type": report.not_graded.kind,
                "message": report.not_graded.message,
                "details": list(report.not_graded.details),
            },
        }


def report_from_dict(document: Mapping[str, Any]) -> Report:
    """The Report a JSON report of this format (schema version 1) was written from: its reader."""
    if document.get("kind") == "error":
        error = document["error"]
        planned = document.get("max_score")
        return Report(
            document["milestone"],
            document["repo"],
            not_graded=NotGraded(error["type"], error["message"], tuple(error.get("details", ()))),
            planned_max_score=None if planned is None else points_decimal(planned),
        )
    results = []
    for check in document["checks"]:
        location = check.get("location")
        evidence = Evidence(
            check["summary"],
            measured=check.get("measured", ""),
            expected=check.get("expected", ""),
            hint=check.get("hint", ""),
            data=check.get("data") or {},
            figure=tuple(check.get("figure") or ()),
            location=None if location is None else Location(location["path"], location["line"]),
            chart=_chart_of(check),
        )
        result = CheckResult(
            check["id"],
            check["title"],
            check["milestone"],
            Status(check["status"]),
            evidence,
            duration_s=float(check.get("duration_s", 0.0)),
            api_output=tuple(check.get("api_output") or ()),
        )
        if "max_score" in check:
            result = replace(
                result,
                max_score=points_decimal(check["max_score"]),
                visibility=check.get("visibility", "visible"),
            )
        results.append(result)
    budgets = document.get("budgets")
    milestones = tuple(document.get("milestones") or ())
    return Report(
        document["milestone"],
        document["repo"],
        started_at=document.get("started_at", ""),
        duration_s=float(document.get("duration_s", 0.0)),
        results=tuple(results),
        milestones=milestones,
        # --through is what makes one milestone's run grade several (`all` is its own name).
        through=document["milestone"] != ALL and len(milestones) > 1,
        budgets=None
        if not isinstance(budgets, Mapping)
        else BudgetSource(budgets["origin"], budgets["note"], dict(budgets.get("values") or {})),
        interrupted=document.get("exit_code") == int(ExitCode.INTERRUPTED),
        backend=document.get("backend", "local"),
        notes=tuple(document.get("notes") or ()),
        withheld=bool(document.get("withheld", False)),
        api_output=_api_output_of(document),
        targets=tuple(document.get("targets") or ()),
    )


def _history(note: HistoryNote | None) -> dict[str, Any]:
    """The history's word on the run, on stdout only (files are written without it)."""
    if note is None:
        return {}
    changes = (
        None
        if note.changes is None
        else [
            {
                "check": c.check_id,
                "before": c.before,
                "after": c.after,
                "before_commit": c.before_commit,
                "after_commit": c.after_commit,
            }
            for c in note.changes
        ]
    )
    return {"history": {"store": note.store, "grading_id": note.grading_id, "changes": changes}}
