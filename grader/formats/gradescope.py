"""Gradescope's autograder results (``/autograder/results/results.json``).

As Gradescope's "Autograder Specifications" define them (schema:
``grader/schemas/platforms/gradescope.schema.json``). Each check is a test: ``number`` is
``"<milestone>.<n>"`` (``"2.3"``: the second milestone's third check, a milestone numbered by its
place in :data:`grader.model.MILESTONES`), ``score`` and ``max_score`` are the course's points,
``visibility`` the course's. Gradescope knows only ``passed`` and ``failed``: a PASS is ``passed``,
everything else ``failed`` with 0 points, and ``extra_data.status`` keeps the real status (SKIP,
ERROR, INCONCLUSIVE). Gradescope has no word for "not gradable": a run that is not gradable (a
check ERROR or INCONCLUSIVE, an interrupted run) scores 0, and the output says at the top that it
is not a grade, why, and to submit again; each such test says so too. A run that could not grade at
all still writes a valid file: score 0, no tests, and an output that says it is not a grade, and
why. Outputs are Markdown (``output_format: md``), the learner's words escaped as in the Markdown
report.

Hidden stays hidden: a check the course hides carries Gradescope's own ``visibility``, and the
top-level ``output``, which the learner sees, totals only the visible checks and says that
others are hidden, never which or how many points (``extra_data``, which only staff see, keeps
the whole run's scores).
"""

from __future__ import annotations

import json
import math
from typing import Any

from grader.formats.base import WITHHELD_NOTE
from grader.formats.json import milestone_scores, not_gradable_reason, readable
from grader.formats.markdown import code_block, inline
from grader.formats.prairielearn import cut
from grader.model import (
    MILESTONES,
    NO_POINTS,
    CheckResult,
    Report,
    Status,
    milestone,
    points_float,
    points_text,
)

OUTPUT_CHARS = 20_000  # per test: Gradescope shows it in a collapsed box; the file stays small
# Gradescope's specifications document no size limit for results.json; this is failfast's own
# bound, so that `check all` at its largest (2.85 MB of non-ASCII output uncut) uploads quickly.
# Test outputs are cut, evenly, until the file fits; scores, names and the top output never are.
MAX_BYTES = 1_000_000
NOT_GRADED_NOTE = {
    Status.ERROR: "**Not graded**: the grader could not run this check (its problem, not "
    "yours), so its 0 is not a verdict on your code. Submit again.",
    Status.INCONCLUSIVE: "**Not graded**: the machine was too noisy to tell right from wrong "
    "(not your fault), so its 0 is not a verdict on your code. Submit again.",
}


def _number(report: Report, result: CheckResult) -> str:
    """``"2.3"``: the milestone's place in the course, the check's place in its milestone."""
    found = milestone(result.milestone)
    major = MILESTONES.index(found) + 1 if found is not None else 0
    minor = next(
        n for n, r in enumerate(report.results_of(result.milestone), 1) if r.id == result.id
    )
    return f"{major}.{minor}"


def _seconds(value: float) -> int:
    return round(value) if math.isfinite(value) and value > 0 else 0


class GradescopeFormat:
    """``results.json`` for a Gradescope programming assignment's autograder."""

    def render(self, report: Report) -> str:
        """The results as JSON: the tests with their points, or why nothing was graded."""
        document = readable(self.to_dict(report))
        text = json.dumps(document, indent=2, allow_nan=False)
        limit = OUTPUT_CHARS
        while len(text.encode("utf-8")) > MAX_BYTES and limit > 200:
            limit //= 2
            for test in document["tests"]:
                test["output"] = cut(test["output"], limit)
            text = json.dumps(document, indent=2, allow_nan=False)
        return text + "\n"

    def to_dict(self, report: Report) -> dict[str, Any]:
        """The results as plain data, as the schema describes them."""
        common = {
            "execution_time": _seconds(report.duration_s),
            "output_format": "md",
            "visibility": "visible",
        }
        problem = report.not_graded
        if problem is not None:
            output = [
                "**This is not a grade**: failfast could not grade your submission. What it "
                "says below is why; if it names nothing in your repository, it is not your "
                "fault. Submit again once it is fixed.",
                "",
                inline(problem.message),
            ]
            if problem.details:
                output += ["", code_block(problem.details)]
            return {
                "score": 0.0,
                **common,
                "output": "\n".join(output),
                "tests": [],
                "extra_data": {
                    "gradable": False,
                    "error": {"type": problem.kind, "message": problem.message},
                },
            }
        return {
            "score": points_float(report.score if report.gradable else NO_POINTS),
            **common,
            "output": self._output(report),
            "tests": [self._test(report, r) for r in report.results],
            "extra_data": {
                "gradable": report.gradable,
                "exit_code": int(report.exit_code),
                "score": points_float(report.score),
                "max_score": points_float(report.max_score),
                "scores": milestone_scores(report),
            },
        }

    def _output(self, report: Report) -> str:
        """What the learner sees above the tests: only what visible checks add up to."""
        shown = [r for r in report.results if r.visibility == "visible"]
        earned = sum((r.score for r in shown), NO_POINTS)
        worth = sum((r.max_score for r in shown), NO_POINTS)
        out = []
        reason = not_gradable_reason(report, learner=True)
        if reason is not None:
            out += [
                f"⚠️ **This is not a grade**: {inline(reason)}. The score is 0 until a run "
                "grades every check: submit again.",
                "",
            ]
        label = "Score" if len(shown) == len(report.results) else "Score of the checks shown"
        out += [f"**{label} {points_text(earned)}/{points_text(worth)}**", ""]
        if len(shown) < len(report.results):
            out += [WITHHELD_NOTE, ""]
        out += ["| Milestone | Score |", "|---|---|"]
        for key in report.milestones:
            results = [r for r in shown if r.milestone == key]
            if not results:
                continue
            found = milestone(key)
            title = f" {found.title}" if found else ""
            key_earned = points_text(sum((r.score for r in results), NO_POINTS))
            key_worth = points_text(sum((r.max_score for r in results), NO_POINTS))
            out.append(f"| {inline(key + title)} | {key_earned}/{key_worth} |")
        return "\n".join(out)

    def _test(self, report: Report, result: CheckResult) -> dict[str, Any]:
        return {
            "name": f"{result.id}: {result.title}",
            "number": _number(report, result),
            "score": points_float(result.score),
            "max_score": points_float(result.max_score),
            "status": "passed" if result.status is Status.PASS else "failed",
            "output": cut(self._test_output(result), OUTPUT_CHARS),
            "output_format": "md",
            "visibility": result.visibility,
            "tags": [result.milestone] + ([] if result.gradable else ["not-graded"]),
            "extra_data": {
                "status": result.status.value,
                "check_id": result.id,
                "milestone": result.milestone,
                "gradable": result.gradable,
            },
        }

    def _test_output(self, result: CheckResult) -> str:
        out = []
        if result.status in NOT_GRADED_NOTE:
            out += [NOT_GRADED_NOTE[result.status], ""]
        out += [f"**{result.status.value}**: {inline(result.summary)}", ""]
        out += [f"- **{label}**: {inline(text)}" for label, text in result.evidence_parts()]
        if result.figure:
            out += ["", code_block(result.figure)]
        if result.api_output:
            out += ["", "Your API's last output lines:", "", code_block(result.api_output)]
        return "\n".join(out)
