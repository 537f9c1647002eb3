"""Output formats, one class each behind one enum (after pip-audit's ``_format``).

Find a format by its name: ``text`` is :mod:`grader.formats.terminal` (rich, for people),
``json`` :mod:`grader.formats.json` (for machines), ``junit`` :mod:`grader.formats.junit` (CI
test reports), ``markdown`` :mod:`grader.formats.markdown` (the GitHub job summary), ``html``
:mod:`grader.formats.html` (one self-contained page, with charts, for people). GitHub's
workflow-command annotations (:mod:`grader.formats.github`) are written under GitHub Actions
only. For grading platforms: ``gradescope`` (:mod:`grader.formats.gradescope`, its
``results.json``), ``prairielearn`` (:mod:`grader.formats.prairielearn`, its external grader's
``results.json``) and ``classroom`` (:mod:`grader.formats.classroom`, GitHub Classroom's runner
result). Formats import the model and nothing that grades; only the terminal format touches rich.
"""

from __future__ import annotations

import enum

from grader.formats.base import COUNTED, Format
from grader.formats.classroom import ClassroomFormat
from grader.formats.gradescope import GradescopeFormat
from grader.formats.html import HtmlFormat
from grader.formats.json import JsonFormat
from grader.formats.junit import JUnitFormat
from grader.formats.markdown import MarkdownFormat
from grader.formats.prairielearn import PrairieLearnFormat
from grader.formats.terminal import TerminalFormat

__all__ = ["COUNTED", "Format", "OutputFormat"]


class OutputFormat(enum.StrEnum):
    """The formats a report can be printed or written in: ``--report FORMAT=FILE``."""

    TEXT = "text"
    JSON = "json"
    JUNIT = "junit"
    MARKDOWN = "markdown"
    HTML = "html"
    GRADESCOPE = "gradescope"
    PRAIRIELEARN = "prairielearn"
    CLASSROOM = "classroom"

    @property
    def is_platform(self) -> bool:
        """Whether a grading platform reads this file (and so records its score)."""
        return self in (OutputFormat.GRADESCOPE, OutputFormat.PRAIRIELEARN, OutputFormat.CLASSROOM)

    @property
    def can_hide(self) -> bool:
        """Whether the platform can keep a check from the learner it grades.

        GitHub Classroom's reporter prints every test, its status and the total in the
        learner's own workflow log; PrairieLearn shows every test and the score. Neither has a
        visibility setting, so a course that hides checks cannot grade with them.
        """
        return self not in (OutputFormat.CLASSROOM, OutputFormat.PRAIRIELEARN)

    def to_format(self) -> Format:
        """A renderer of this format; text for a file is plain, at a fixed width."""
        formats: dict[OutputFormat, type[Format]] = {
            OutputFormat.JSON: JsonFormat,
            OutputFormat.JUNIT: JUnitFormat,
            OutputFormat.MARKDOWN: MarkdownFormat,
            OutputFormat.HTML: HtmlFormat,
            OutputFormat.GRADESCOPE: GradescopeFormat,
            OutputFormat.PRAIRIELEARN: PrairieLearnFormat,
            OutputFormat.CLASSROOM: ClassroomFormat,
        }
        return TerminalFormat.for_file() if self is OutputFormat.TEXT else formats[self]()
