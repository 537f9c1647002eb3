"""GitHub Classroom's autograding result, as ``autograding-grading-reporter`` reads it.

Schema: ``grader/schemas/platforms/classroom.schema.json``. A runner step's output ``result``
is base64 of ``{"version": 1, "status": "pass|fail|error", "max_score": N, "tests": […]}``;
the reporter (classroom-resources/autograding-grading-reporter) decodes it, prints a table, and
sends Classroom the points. The file is that JSON; under GitHub Actions the CLI also appends
``result=<base64 of the file>`` to ``$GITHUB_OUTPUT`` (:func:`step_output`).

Two totals must agree. The reporter's table computes ``passed / len(tests) * max_score``
(``getTestScore``, counting ``status == "pass"``), while the points it sends Classroom sum
``tests[].score`` (``NotifyClassroom``). They agree for every mix of passes only if every test
is worth the same, so each check here is worth ``max_score / len(tests)``: the run's total
points, spread evenly, as Classroom's own Python runner does. The course's points still decide
``max_score`` (the run's total), and so a runner's weight beside other runners; to weigh
milestones differently, grade each in its own step, one runner each. The passing tests' scores
are then set so that their sum, added in the reporter's order, is exactly the table's number.

Statuses: PASS is ``pass``; FAIL and SKIP are ``fail``; ERROR and INCONCLUSIVE are ``error``.
The run's status is ``error`` when it is not gradable (:func:`grader.formats.json.gradable`),
else ``fail`` when a check did not pass, else ``pass``; the reporter fails the step for either.
A run that could not grade is one ``error`` test and ``max_score`` 0, so that the reporter sends
Classroom no points at all rather than a 0 (it skips a runner whose ``max_score`` is 0). A check
the course hides keeps its points but not its message.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from grader.formats.json import finite, points
from grader.formats.prairielearn import cut, details, hidden_note, plain_lines
from grader.model import CheckResult, Report, Status

VERSION = 1
MESSAGE_CHARS = 2000  # per test: the whole result travels as one step output
STATUS = {
    Status.PASS: "pass",
    Status.FAIL: "fail",
    Status.SKIP: "fail",
    Status.ERROR: "error",
    Status.INCONCLUSIVE: "error",
}


def shares(max_score: float, statuses: list[str]) -> list[float]:
    """Each test's score: ``max_score / n`` per pass, the last pass taking the float remainder.

    The reporter's sum of the scores, in order, then equals its table's
    ``passed / n * max_score`` exactly, not just to the last digit.
    """
    n = len(statuses)
    passed = [i for i, status in enumerate(statuses) if status == "pass"]
    scores = [0.0] * n
    if not passed or max_score <= 0:
        return scores
    table = len(passed) / n * max_score  # getTestScore's arithmetic, in the same order
    each = max_score / n
    for i in passed:
        scores[i] = each
    total = 0.0
    for i in passed[:-1]:
        total += scores[i]
    last = table - total
    # Float addition may still land a unit or two off: step the last share until it is exact.
    for _ in range(8):
        if total + last == table:
            break
        last = math.nextafter(last, math.inf if total + last < table else -math.inf)
    scores[passed[-1]] = last
    return scores


def step_output(document: str) -> str:
    """The ``$GITHUB_OUTPUT`` line that sets ``result`` to base64 of ``document``.

    base64 has no newline and no ``<<``, so the single-line form cannot be broken out of, and
    nothing the learner's code printed can set another output.
    """
    return f"result={base64.b64encode(document.encode('utf-8')).decode('ascii')}\n"


def _message(result: CheckResult) -> str:
    if result.visibility != "visible":
        return hidden_note(result)
    text = f"{result.status.value}: {' '.join(plain_lines(result.summary))}"
    more = details(result) if result.status is not Status.PASS else ""
    text += f"\n{more}" if more else ""
    return cut(text, MESSAGE_CHARS)


class ClassroomFormat:
    """The JSON a GitHub Classroom runner step hands ``autograding-grading-reporter``."""

    def render(self, report: Report) -> str:
        """The result as JSON: what the file holds, and what ``result`` carries in base64."""
        return json.dumps(finite(self.to_dict(report)), indent=2, allow_nan=False) + "\n"

    def to_dict(self, report: Report) -> dict[str, Any]:
        """The result as plain data, as the schema describes it."""
        problem = report.not_graded
        if problem is not None or not report.results:
            # One test, never none: the reporter divides by the number of tests.
            message = (
                f"{problem.kind}: {' '.join(plain_lines(problem.message))}"
                if problem is not None
                else "grading was interrupted before any check ran: grade again"
            )
            where = problem.location if problem is not None else None
            test = {
                "name": "failfast could not grade",
                "status": "error",
                "score": 0.0,
                "message": cut(message, MESSAGE_CHARS),
                "filename": where.path if where else "",
                "line_no": (where.line or 0) if where else 0,
                "duration": 0.0,
            }
            return {"version": VERSION, "status": "error", "max_score": 0.0, "tests": [test]}
        statuses = [STATUS[r.status] for r in report.results]
        max_score = points(report.max_score)
        scores = shares(max_score, statuses)
        overall = "pass" if all(s == "pass" for s in statuses) else "fail"
        return {
            "version": VERSION,
            "status": overall if report.gradable else "error",
            "max_score": max_score,
            "tests": [
                {
                    "name": f"{r.id}: {r.title}",
                    "status": status,
                    "score": score,
                    "message": _message(r),
                    "filename": r.location.path if r.location else "",
                    "line_no": (r.location.line or 0) if r.location else 0,
                    "duration": r.duration_s if math.isfinite(r.duration_s) else 0.0,
                }
                for r, status, score in zip(report.results, statuses, scores, strict=True)
            ],
        }
