"""GitHub Classroom's autograding result, as ``autograding-grading-reporter`` reads it.

Schema: ``grader/schemas/platforms/classroom.schema.json``. A runner step's output ``result``
is base64 of ``{"version": 1, "status": "pass|fail|error", "max_score": N, "tests": […]}``;
the reporter (classroom-resources/autograding-grading-reporter) decodes it from the environment
variable ``<RUNNER>_RESULTS``, prints a table, and sends Classroom the points. The file is that
JSON; under GitHub Actions the CLI also appends ``result=<base64 of the file>`` to
``$GITHUB_OUTPUT`` (:func:`step_output`).

What Classroom records is what the reporter's ``NotifyClassroom`` sends: ``Points
${totalScore}/${maxScore}``, where ``totalScore`` adds every test's ``score`` in order, as
JavaScript numbers, over the runners whose ``max_score`` is not 0. So each test's ``score`` is
the check's points (0 unless it passed), and the last passing test's share is nudged by at most a
few units in the last place so that the reporter's float sum prints exactly the decimal failfast
computed (:func:`scores_for`). The reporter's console table instead shows ``passed / tests ×
max_score``, which equals the points only when every check is worth the same; the README says
so. Several failfast runner steps add up in the reporter's own float arithmetic: grade a whole
course in one step (``check all`` or ``--through``) for an exact total.

Statuses: PASS is ``pass``; FAIL and SKIP are ``fail``; ERROR and INCONCLUSIVE are ``error``.
The run's status is ``error`` when it is not gradable, else ``fail`` when a check did not pass,
else ``pass``; the reporter fails the step for either. A run that could not grade at all is one
``error`` test worth 0 and keeps ``max_score``, what the run was to be worth: the milestone
stays in Classroom's denominator instead of dropping out of the total. Classroom cannot hide a
test (the reporter prints every name, status and message in the learner's own workflow log),
so a course that hides checks is refused before grading (:func:`grader.course.file.Course.hidden`).

The result reaches the reporter through an environment variable, and Linux caps one
``NAME=value`` string at ``MAX_ARG_STRLEN`` (:data:`ENV_STRING_BYTES`): the JSON is written
without ASCII escapes and, when it is still too big, its messages are cut, least important first,
each cut saying so and where the full report is.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from grader.formats.json import readable
from grader.formats.prairielearn import cut, details, plain_lines
from grader.model import CheckResult, Report, Status, points_float

VERSION = 1
# Linux include/uapi/linux/binfmts.h: MAX_ARG_STRLEN = PAGE_SIZE * 32, the longest single
# argument or environment string execve accepts ("NAME=value" and its NUL); 131072 on 4 KiB
# pages. The reporter reads the result from the environment variable <RUNNER>_RESULTS.
ENV_STRING_BYTES = 131_072
RUNNER_NAME_BYTES = 256  # room for "<RUNNER>_RESULTS=": the workflow names its runner
# GitHub Actions docs, "Defining outputs for jobs": "Outputs are Unicode strings, and can be a
# maximum of 1 MB." The environment variable's limit is the smaller one.
STEP_OUTPUT_BYTES = 1_000_000
# The JSON's bytes, so that its base64 (4 bytes per 3) fits both limits.
MAX_DOCUMENT_BYTES = (ENV_STRING_BYTES - 1 - RUNNER_NAME_BYTES) // 4 * 3
NUDGES = 64  # units in the last place one share may move to make the total exact
MESSAGE_CHARS = 2000  # per test, before the whole document is measured
WHERE_FULL = "the full report is in this step's own output (failfast check) and its artifacts"
STATUS = {
    Status.PASS: "pass",
    Status.FAIL: "fail",
    Status.SKIP: "fail",
    Status.ERROR: "error",
    Status.INCONCLUSIVE: "error",
}


def js_sum(scores: list[float]) -> float:
    """What the reporter's ``acc.totalScore += score`` gives: IEEE doubles, left to right."""
    total = 0.0
    for score in scores:
        total += score  # Python floats are the same IEEE 754 doubles, rounded the same way
    return total


def scores_for(points: list[float], target: float) -> list[float]:
    """``points`` with one non-zero share nudged so that :func:`js_sum` is exactly ``target``.

    Each check's points are exact decimals written as floats, and float addition may land a
    unit in the last place off (6.67 + 6.67 + 6.66 is 20.000000000000004): one passing test's
    share absorbs that, by a few units in its last place, so that the total Classroom records
    prints as failfast's decimal. The last passing test is tried first; when rounding to even
    skips the target from there (6.66 + 33.33), an earlier one.
    """
    if not any(points) or js_sum(points) == target:
        return list(points)
    passed = [i for i, value in enumerate(points) if value > 0]
    for index in reversed(passed):
        start = points[index]
        if index == passed[-1]:  # only zeros follow it: what it must be is one subtraction
            start = target - js_sum(points[:index])
        for direction in (math.inf, -math.inf):
            scores = list(points)
            scores[index] = start
            for _ in range(NUDGES):
                if js_sum(scores) == target:
                    return scores
                scores[index] = math.nextafter(scores[index], direction)
    return list(points)  # not reached for points in hundredths (tested on random courses)


def step_output(document: str) -> str:
    """The ``$GITHUB_OUTPUT`` line that sets ``result`` to base64 of ``document``.

    base64 has no newline and no ``<<``, so the single-line form cannot be broken out of, and
    nothing the learner's code printed can set another output.
    """
    return f"result={base64.b64encode(document.encode('utf-8')).decode('ascii')}\n"


def _message(result: CheckResult) -> str:
    text = f"{result.status.value}: {' '.join(plain_lines(result.summary))}"
    more = details(result) if result.status is not Status.PASS else ""
    return f"{text}\n{more}" if more else text


def _dump(document: dict[str, Any]) -> str:
    """Compact JSON with UTF-8 as it is, every string neutralised (:func:`readable`).

    ASCII escapes would double or triple non-ASCII text.
    """
    return json.dumps(
        readable(document), ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )


class ClassroomFormat:
    """The JSON a GitHub Classroom runner step hands ``autograding-grading-reporter``."""

    def render(self, report: Report) -> str:
        """The result as JSON, small enough to reach the reporter whole or cut with a note."""
        document = self.to_dict(report)
        text = _dump(document)
        # Least important first: the details of each message, then the messages themselves.
        limit = MESSAGE_CHARS
        while len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES and limit > 40:
            limit //= 2
            for test in document["tests"]:
                test["message"] = cut(test["message"], limit, WHERE_FULL)
            text = _dump(document)
        if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:  # thousands of checks: names only
            for test in document["tests"]:
                test["message"] = f"{test['status']}: {WHERE_FULL}"
            text = _dump(document)
        return text + "\n"

    def to_dict(self, report: Report) -> dict[str, Any]:
        """The result as plain data, as the schema describes it (messages not yet cut)."""
        max_score = points_float(report.max_score)
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
                "name": "failfast could not grade: not a grade, run the workflow again",
                "status": "error",
                "score": 0.0,
                "message": cut(message, MESSAGE_CHARS, WHERE_FULL),
                "filename": where.path if where else "",
                "line_no": (where.line or 0) if where else 0,
                "duration": 0.0,
            }
            return {"version": VERSION, "status": "error", "max_score": max_score, "tests": [test]}
        statuses = [STATUS[r.status] for r in report.results]
        scores = scores_for(
            [points_float(r.score) for r in report.results], points_float(report.score)
        )
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
                    "message": cut(_message(r), MESSAGE_CHARS, WHERE_FULL),
                    "filename": r.location.path if r.location else "",
                    "line_no": (r.location.line or 0) if r.location else 0,
                    "duration": r.duration_s if math.isfinite(r.duration_s) else 0.0,
                }
                for r, status, score in zip(report.results, statuses, scores, strict=True)
            ],
        }
