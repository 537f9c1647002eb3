"""The readers a course's platforms run on failfast's files, for the tests.

Where a reader installs from a registry, the tests run it (cmarkgfm, junitparser, pandas,
@actions/core). Where it does not, it is written here from its source or documentation, named
beside each rule: GitHub Classroom's reporter runs in Node (tests/readers/classroom_reporter.js,
so that its numbers are JavaScript's), Gradescope's and PrairieLearn's score rules are a line
each. Every reader returns exact decimals or fractions: a score is compared to the last digit,
never as a formatted float.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import cmarkgfm  # type: ignore[import-untyped]
from cmarkgfm.cmark import Options  # type: ignore[import-untyped]

# GitHub renders a job summary's raw HTML (<details>, <br>), so the tests do too.
UNSAFE = Options.CMARK_OPT_UNSAFE
REPORTER = Path(__file__).parent / "readers" / "classroom_reporter.js"


def node() -> str:
    """The node binary; the tests need it (CI installs it), so its absence fails loudly."""
    found = shutil.which("node")
    assert found is not None, "node is needed to run GitHub Classroom's reporter in the tests"
    return found


@dataclass(frozen=True)
class ClassroomReading:
    """What autograding-grading-reporter records and shows for a set of runner results."""

    sent: str | None  # "Points 6/20" as NotifyClassroom sends it; None when it sends nothing
    table: list[str]  # each runner's "Test Score" in the console table (counts passes)
    step: str  # how the reporter ends the step
    messages: list[str | None]

    @property
    def recorded(self) -> tuple[Decimal, Decimal]:
        """The points and maximum Classroom records, as the exact decimals they print as."""
        assert self.sent is not None, "the reporter sent Classroom nothing"
        found = re.fullmatch(r"Points (\S+)/(\S+)", self.sent)
        assert found is not None, self.sent
        return Decimal(found[1]), Decimal(found[2])


def classroom_reporter(**runners: bytes) -> ClassroomReading:
    """Run the reporter on runner results (name -> the result JSON's bytes) as a workflow does.

    Each result travels base64-encoded in the environment variable ``<RUNNER>_RESULTS``, as the
    reporter's README has the workflow pass it: a result too big for one environment string
    makes this raise ``OSError`` (E2BIG), as the runner would fail to start the reporter.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), "RUNNERS": ",".join(runners)}
    for name, document in runners.items():
        env[f"{name.upper()}_RESULTS"] = base64.b64encode(document).decode("ascii")
    done = subprocess.run(
        [node(), str(REPORTER)], env=env, capture_output=True, timeout=60, check=True
    )
    data = json.loads(done.stdout)
    return ClassroomReading(data["sent"], data["table"], data["step"], data["messages"])


def gradescope_score(document: dict[str, Any]) -> Decimal:
    """The score Gradescope records from results.json, exactly.

    Gradescope's Autograder Specifications: the top-level ``score`` is "optional, but required
    if not on each test case"; when present it is the submission's score, else the tests'
    scores add up to it.
    """
    if "score" in document:
        return Decimal(repr(float(document["score"])))
    return sum((Decimal(repr(float(t["score"]))) for t in document["tests"]), Decimal(0))


def prairielearn_reading(document: dict[str, Any]) -> tuple[bool, Fraction]:
    """Whether PrairieLearn grades the submission, and the score it stores, exactly.

    PrairieLearn's externalGraderCommon.ts (makeGradingResult) keeps ``results.score`` as the
    number it is; its "External Grading" docs: ``gradable: false`` marks the submission
    invalid, not graded, and ``format_errors`` say why.
    """
    return bool(document["gradable"]), Fraction(document["score"])


def json_scores(text: str) -> tuple[Decimal, Decimal]:
    """A JSON report's score and max_score, read as the decimals the numbers are written as."""
    document = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    return document.get("score", Decimal(0)), document["max_score"]


def summary_html(markdown: str) -> str:
    """The job summary as GitHub shows it: cmark-gfm with GitHub's extensions (cmarkgfm)."""
    return str(cmarkgfm.github_flavored_markdown_to_html(markdown, options=UNSAFE))


def score_in_text(text: str) -> tuple[Decimal, Decimal]:
    """The ``score X/Y`` a terminal, Markdown or HTML report shows a person."""
    text = html.unescape(re.sub(r"<[^>]*>", "", text))  # what a browser shows of a page
    found = re.search(r"[Ss]core(?: of the checks shown)?\W+([0-9.]+)/([0-9.]+)", text)
    assert found is not None, text[:500]
    return Decimal(found[1]), Decimal(found[2])
