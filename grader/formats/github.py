"""GitHub Actions: annotations as workflow commands, the job summary, and fencing.

A workflow command is any output line that starts (after blanks) with ``::``. The grader emits
one ``::error`` per failed check, pointing at the learner's file where it knows one, written
byte for byte as @actions/core writes it (tests/test_github_commands.py compares the two), and
at most as many as GitHub keeps. Everything else it prints, which may carry the learner's words,
goes between ``::stop-commands::<token>`` and ``::<token>::``: the runner ignores commands in
between, and the learner cannot end the fence early because the token is drawn after their code
has run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from grader.lines import neutralise
from grader.model import MILESTONE_KEYS, CheckResult, Location, Report, Status

# How @actions/core writes a command (actions/toolkit, packages/core/src/command.ts:
# escapeData, escapeProperty), which the runner undoes (actions/runner,
# src/Runner.Common/ActionCommand.cs: UnescapeData, UnescapeProperty). "%" goes first, so an
# escape in the text ("%0A" written by the learner) comes back as written.
_DATA_ESCAPES = (("%", "%25"), ("\r", "%0D"), ("\n", "%0A"))
_PROPERTY_ESCAPES = (*_DATA_ESCAPES, (":", "%3A"), (",", "%2C"))
# The order @actions/core writes an annotation's properties in (packages/core/src/utils.ts,
# toCommandProperties); any others follow in the order given.
_PROPERTY_ORDER = ("title", "file", "line", "endLine", "col", "endColumn")

# The runner keeps the first 4096 UTF-16 code units of an annotation's message and cuts the rest
# (actions/runner, src/Runner.Worker/ExecutionContext.cs: _maxIssueMessageLength = 4096, against
# .NET's string.Length). failfast cuts first, a little below, where it can say so.
MESSAGE_CHARS = 4000  # UTF-16 code units, as the runner counts them
# "The title that represents the annotation. The maximum size is 255 characters." (GitHub REST
# API docs, "Check runs", output.annotations[].title: where an annotation ends up.)
TITLE_CHARS = 255
# GitHub keeps 10 error and 10 warning annotations per step, 50 per job, and drops the rest
# without a word. Sources: GitHub REST API docs, "Check runs" (output.annotations: "GitHub Actions
# are limited to 10 warning annotations and 10 error annotations per step"); actions/toolkit,
# docs/problem-matchers.md, "Limitations" ("10 warning annotations, 10 error annotations, and 10
# notice annotations per step", "50 annotations per job (sum of annotations from all the
# steps)"); actions/runner, src/Runner.Worker/ExecutionContext.cs, AddIssue, which keeps the
# first _maxCountPerIssueType = 10 of each kind a step issues. One failfast step stays within 20.
ERRORS_PER_STEP = 10
WARNINGS_PER_STEP = 10
ANNOTATIONS_PER_JOB = 50

# GitHub's limit on what one step writes to $GITHUB_STEP_SUMMARY: "each step is restricted to a
# maximum size of 1MiB ... If more than 1MiB of content is added for a step, then the upload for
# the step will fail and an error annotation will be created" (GitHub docs, "Workflow commands
# for GitHub Actions", "Adding a job summary", "Step isolation and limits"); the runner checks
# the file's size in bytes against 1024 * 1024 (actions/runner, src/Runner.Worker/
# FileCommandManager.cs, CreateStepSummaryCommand.AttachmentSizeLimit) and uploads nothing over.
SUMMARY_BYTES = 1024 * 1024


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def message_text(message: str, limit: int = MESSAGE_CHARS) -> str:
    """An annotation's message as failfast sends it: neutralised, and cut to ``limit`` units.

    Nothing else changes: CR and LF stay (they are escaped), and so does every character GitHub
    can show. A cut message ends with "…".
    """
    text = neutralise(message)
    if _utf16_units(text) <= limit:
        return text
    kept, units = [], 0
    for char in text:
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit - 1:
            break
        kept.append(char)
    return "".join(kept) + "…"


def property_text(value: str | int, limit: int | None = None) -> str:
    """A property's value as failfast sends it: neutralised, and as the runner will read it back.

    The runner drops what a property value cannot carry: it trims the blanks that end the last
    property (``propertiesStr.Trim()``), and the ``=`` that start a value (``Split('=', 2,
    RemoveEmptyEntries)``). Trailing blanks go from every value, so that where a property comes
    does not change it, and a value that starts with ``=`` gets a space before it. Over ``limit``
    characters (a title's :data:`TITLE_CHARS`), it is cut and ends with "…".
    """
    text = neutralise(str(value)).rstrip()
    if text.startswith("="):
        text = " " + text
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _escape(text: str, escapes: tuple[tuple[str, str], ...]) -> str:
    for raw, escaped in escapes:
        text = text.replace(raw, escaped)
    return text


def _ordered(properties: Mapping[str, str | int | None]) -> list[tuple[str, str | int | None]]:
    known = [(key, properties[key]) for key in _PROPERTY_ORDER if key in properties]
    return known + [(k, v) for k, v in properties.items() if k not in _PROPERTY_ORDER]


def command(name: str, message: str, **properties: str | int | None) -> str:
    """One workflow command line, e.g. ``::error title=...,file=budgets.yaml,line=7::message``.

    Byte for byte what @actions/core's ``core.error(message_text(message), {title, file,
    startLine})`` prints for the same values after :func:`property_text`: properties in its
    order, empty ones (None, "", 0) left out as it leaves them out, escaped as it escapes them.
    Control characters and bidi overrides are neutralised (:func:`grader.lines.neutralise`), the
    message is cut to :data:`MESSAGE_CHARS` and the title to :data:`TITLE_CHARS`; nothing else is
    lost: the runner reads back exactly :func:`message_text` and :func:`property_text`.
    """
    shown = []
    for key, value in _ordered(properties):
        if not value:
            continue
        text = property_text(value, TITLE_CHARS if key == "title" else None)
        if text:
            shown.append(f"{key}={_escape(text, _PROPERTY_ESCAPES)}")
    body = _escape(message_text(message), _DATA_ESCAPES)
    return f"::{name}{' ' + ','.join(shown) if shown else ''}::{body}"


_VERDICT = {
    Status.FAIL: "failed",
    Status.ERROR: "could not be graded (not your fault)",
    Status.INCONCLUSIVE: "was inconclusive: grade again",
}
# Which results get which annotation, most important first: a FAIL before an ERROR.
_ERRORS = (Status.FAIL, Status.ERROR)
_WARNINGS = (Status.INCONCLUSIVE,)


class AnnotationsFormat:
    """Annotations for the checks that did not pass, at most as many as GitHub keeps.

    FAIL and ERROR are errors, INCONCLUSIVE warnings: at most :data:`ERRORS_PER_STEP` and
    :data:`WARNINGS_PER_STEP` of them. Errors come FAIL first, then ERROR, each in milestone
    order; warnings in milestone order. GitHub would silently drop any beyond its limit, so
    failfast leaves them out itself, and the last annotation of a kind says how many more there
    are and that the job summary lists them all.

    ``repo`` and ``workspace`` turn a location in the learner's repo into a path GitHub can
    show on the pull request: relative to the workspace the repo was checked out in.
    """

    def __init__(self, repo: Path, workspace: Path) -> None:
        self.repo = repo.resolve()
        self.workspace = workspace.resolve()

    def _place(self, location: Location | None) -> dict[str, str | int | None]:
        """The file and line properties of an annotation: none outside the workspace."""
        if location is None:
            return {}
        path = self.repo / location.path
        if not path.is_relative_to(self.workspace):
            return {}
        return {"file": path.relative_to(self.workspace).as_posix(), "line": location.line}

    def annotation(self, result: CheckResult, more: str = "") -> str | None:
        """The annotation for one result, if it gets one; ``more`` ends its message, uncut."""
        if not result.status.needs_action:
            return None
        name = "warning" if result.status is Status.INCONCLUSIVE else "error"
        parts = [result.summary]
        if result.measured:
            parts.append(f"measured: {result.measured}")
        if result.hint:
            parts.append(f"hint: {result.hint}")
        message = "\n".join(parts)
        if more:
            message = message_text(message, MESSAGE_CHARS - _utf16_units(more) - 2) + "\n\n" + more
        return command(
            name,
            message,
            **self._place(result.location),
            title=f"{result.id} {_VERDICT[result.status]}: {result.title}",
        )

    def render(self, report: Report) -> str:
        """The annotations, one line each; one error saying why, when nothing was graded."""
        if report.not_graded is not None:
            title = f"failfast could not grade {report.milestone}"
            place = self._place(report.not_graded.location)
            return command("error", report.not_graded.message, **place, title=title) + "\n"
        order: dict[str, int] = {}  # the milestones graded, in order; then any others
        for key in (*report.milestones, *MILESTONE_KEYS):
            order.setdefault(key, len(order))
        lines = []
        for statuses, limit, kind, what in (
            (_ERRORS, ERRORS_PER_STEP, "errors", ("failed or could not be graded",) * 2),
            (_WARNINGS, WARNINGS_PER_STEP, "warnings", ("was inconclusive", "were inconclusive")),
        ):
            results = sorted(
                (r for r in report.results if r.status in statuses),
                key=lambda r: (statuses.index(r.status), order.get(r.milestone, len(order))),
            )
            for n, result in enumerate(results[:limit], 1):
                left_out = len(results) - limit
                more = ""
                if n == limit and left_out > 0:
                    checks = "check" if left_out == 1 else "checks"
                    more = (
                        f"{left_out} more {checks} {what[left_out > 1]}, not annotated: GitHub "
                        f"shows at most {limit} {kind} per step. The job summary lists every "
                        f"check."
                    )
                lines.append(self.annotation(result, more))
        return "".join(line + "\n" for line in lines if line is not None)


@dataclass(frozen=True, slots=True)
class GitHubActions:
    """Running as a GitHub Actions step: where the job summary goes and the workspace is."""

    workspace: Path
    summary: Path | None

    @classmethod
    def detect(cls, environ: Mapping[str, str] = os.environ) -> GitHubActions | None:
        """The GitHub Actions step this runs in, or None anywhere else."""
        if environ.get("GITHUB_ACTIONS", "").lower() in ("", "false", "0"):
            return None
        summary = environ.get("GITHUB_STEP_SUMMARY")
        workspace = Path(environ.get("GITHUB_WORKSPACE") or Path.cwd())
        return cls(workspace=workspace, summary=Path(summary) if summary else None)

    @staticmethod
    @contextlib.contextmanager
    def fenced(out: TextIO) -> Iterator[None]:
        """Whatever is written to ``out`` inside cannot be a workflow command."""
        token = secrets.token_hex(16)
        out.write(f"::stop-commands::{token}\n")
        out.flush()
        try:
            yield
        finally:
            out.flush()
            out.write(f"::{token}::\n")
            out.flush()

    def add_summary(self, markdown: str) -> None:
        """Append to the job summary (each step's summary file collects what its step adds).

        The Markdown report keeps under :data:`SUMMARY_BYTES` by itself; should what the step
        wrote before leave no room for it, a note goes in its place, because a file over the
        limit would cost the step its whole summary.
        """
        if self.summary is None:
            return
        # A lone surrogate in a learner's words cannot be UTF-8: it becomes "?".
        data = markdown.encode("utf-8", errors="replace")
        try:
            written = self.summary.stat().st_size if self.summary.exists() else 0
            problem = None
            if written + len(data) > SUMMARY_BYTES:
                problem = (
                    f"failfast's report ({len(data) // 1024} KiB) would take this step's job "
                    f"summary ({written // 1024} KiB so far) past GitHub's 1 MiB limit: it is "
                    f"in the job's log instead."
                )
                note = f"\n**failfast**: {problem}\n".encode()
                data = note if written + len(note) <= SUMMARY_BYTES else b""
            with self.summary.open("ab") as file:
                file.write(data)
        except OSError as exc:
            # The report itself is intact; a missing summary must not fail the grading step.
            problem = f"failfast could not write the job summary: {exc}"
        if problem is not None:
            sys.stderr.write(command("warning", problem) + "\n")
            sys.stderr.flush()
