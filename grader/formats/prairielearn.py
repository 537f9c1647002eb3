"""PrairieLearn's external grading results (``/grade/results/results.json``).

As PrairieLearn's "External Grading" page defines them (schema:
``grader/schemas/platforms/prairielearn.schema.json``): ``score`` from 0 to 1, ``gradable``,
``message``, ``output``, and ``tests`` that its ``<pl-external-grader-results>`` element shows,
each with ``name``, ``description``, ``points``, ``max_points``, ``message`` and ``output``.

``score`` is the exact share of the points (:func:`grader.model.fraction_of`: never 1.0 short
of full marks, never 0 once a point is earned; rounded to a few decimals, 199.99 of 200 would be
recorded as full marks). ``gradable`` is false when the grader could not grade, a check is ERROR
or INCONCLUSIVE, or the run was interrupted: PrairieLearn then marks the submission "invalid,
not gradable", awards and takes no points, and does not use up the learner's attempt;
``format_errors`` says why. PrairieLearn shows the learner every test and the score, and has no
way to hide one, so a course that hides checks is refused before grading
(:meth:`grader.course.file.Course.hidden`). The file must stay under 1 MB: outputs are cut in their
middle, evenly, until it fits.
"""

from __future__ import annotations

import json
from typing import Any

from grader.formats.json import not_gradable_reason, readable
from grader.lines import sanitize
from grader.model import CheckResult, Report, Status, fraction_of, points_float, points_text

MAX_BYTES = 1_000_000  # "this file should be limited to 1 MB"
# Room kept below the limit, for whatever PrairieLearn wraps around the file.
MARGIN_BYTES = 16_000
FIRST_CUT_CHARS = 64_000  # each message and output, before the file is measured
LAST_CUT_CHARS = 200  # below this a text is cut no further: the outputs go instead


def cut(text: str, limit: int, where: str = "") -> str:
    """``text`` in at most about ``limit`` characters: its start and its end, the middle said.

    ``where``, if given, says where the whole text is ("the full report is in ...").
    """
    if len(text) <= limit:
        return text
    keep = max(limit // 2 - 40, 0)
    cut_out = len(text) - 2 * keep
    said = f"{cut_out} characters cut" + (f": {where}" if where else "")
    return f"{text[:keep]}\n[… {said} …]\n{text[len(text) - keep :]}"


def plain_lines(text: str) -> list[str]:
    """Untrusted text, line by line, without control characters."""
    return [sanitize(line, limit=2000) for line in text.split("\n")]


def details(result: CheckResult) -> str:
    """A result's evidence, chart and the API's output, as plain text."""
    lines = [f"{label}: {text}" for label, text in result.evidence_parts()]
    if result.figure:
        lines += ["", *result.figure]
    if result.api_output:
        lines += ["", "your API's last output lines:", *(f"  | {x}" for x in result.api_output)]
    return "\n".join(line for text in lines for line in plain_lines(text))


def verdict(result: CheckResult) -> str:
    """The status and the summary in one line; ERROR and INCONCLUSIVE say whose doing it is."""
    word = {
        Status.ERROR: "ERROR (the grader's problem, not yours: this check is not graded)",
        Status.INCONCLUSIVE: "INCONCLUSIVE (too noisy to tell, not your fault: not graded)",
    }.get(result.status, result.status.value)
    return f"{word}: {' '.join(plain_lines(result.summary))}"


class PrairieLearnFormat:
    """``results.json`` for PrairieLearn's external grader."""

    def render(self, report: Report) -> str:
        """The results as JSON, under 1 MB however much the learner's API printed."""
        whole = readable(self.to_dict(report))
        limit = FIRST_CUT_CHARS
        while True:
            text = json.dumps(_cut_texts(whole, limit), indent=1, allow_nan=False)
            if len(text.encode("utf-8")) <= MAX_BYTES - MARGIN_BYTES:
                return text + "\n"
            if limit <= LAST_CUT_CHARS:  # never reached by a report failfast writes; still safe
                return json.dumps(_cut_texts(whole, 0), allow_nan=False) + "\n"
            limit //= 2

    def to_dict(self, report: Report) -> dict[str, Any]:
        """The results as plain data, nothing cut yet (:meth:`render` cuts to fit)."""
        reason = not_gradable_reason(report)
        problem = report.not_graded
        if problem is not None:
            lines = plain_lines(problem.message)
            lines += [line for detail in problem.details for line in plain_lines(detail)]
            return {
                "gradable": False,
                "score": 0.0,
                "message": "failfast could not grade this submission, so it is not graded and "
                "your attempt is not used up: " + " ".join(plain_lines(problem.message)),
                "output": "\n".join(lines),
                "format_errors": [line for line in lines if line][:20],
                "tests": [],
            }
        score = f"Score {points_text(report.score)}/{points_text(report.max_score)}"
        message = f"{score}." if reason is None else f"{score}, not gradable: {reason}."
        if reason is not None:
            message += " Your attempt is not used up; submit again."
        document: dict[str, Any] = {
            "gradable": report.gradable,
            # Exact to the float, and 1.0 only for full marks: PrairieLearn stores this number
            # as the submission's score (externalGraderCommon.ts, makeGradingResult).
            "score": fraction_of(report.score, report.max_score),
            "message": message,
            "output": self._output(report),
            "tests": [self._test(r) for r in report.results],
        }
        if reason is not None:
            document["format_errors"] = [
                f"{r.id}: {verdict(r)}" for r in report.results if not r.gradable
            ] or [reason]
        return document

    def _output(self, report: Report) -> str:
        lines = [f"failfast {report.milestone}: {report.title}"]
        for key in report.milestones:
            earned, worth = report.score_of(key)
            lines.append(f"  {key}: {points_text(earned)}/{points_text(worth)}")
        return "\n".join(lines)

    def _test(self, result: CheckResult) -> dict[str, Any]:
        return {
            "name": result.id,
            "description": result.title,
            "points": points_float(result.score),
            "max_points": points_float(result.max_score),
            "message": verdict(result),
            "output": details(result),
        }


def _cut_texts(value: Any, limit: int) -> Any:
    """``value`` with every string in it cut to about ``limit`` characters."""
    if isinstance(value, str):
        return cut(value, limit)
    if isinstance(value, dict):
        return {key: _cut_texts(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut_texts(item, limit) for item in value]
    return value
