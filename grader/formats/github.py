"""GitHub Actions: annotations as workflow commands, the job summary, and fencing.

A workflow command is any output line that starts (after blanks) with ``::``. The grader emits
one ``::error`` per failed check, pointing at the learner's file where it knows one. Everything
else it prints, which may carry the learner's words, goes between ``::stop-commands::<token>``
and ``::<token>::``: the runner ignores commands in between, and the learner cannot end the
fence early because the token is drawn after their code has run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from grader.lines import sanitize
from grader.model import CheckResult, Location, Report, Status

# The runner's escapes (actions/toolkit, command.ts): data, and property values on top.
_DATA_ESCAPES = (("%", "%25"), ("\r", "%0D"), ("\n", "%0A"))
_PROPERTY_ESCAPES = (*_DATA_ESCAPES, (":", "%3A"), (",", "%2C"))
MESSAGE_CHARS = 4000  # GitHub truncates longer annotation messages anyway


def _escape(text: str, escapes: tuple[tuple[str, str], ...]) -> str:
    for raw, escaped in escapes:
        text = text.replace(raw, escaped)
    return text


def command(name: str, message: str, **properties: str | int | None) -> str:
    """One workflow command line, e.g. ``::error file=budgets.yaml,line=7,title=...::message``."""
    shown = ",".join(
        f"{key}={_escape(str(value), _PROPERTY_ESCAPES)}"
        for key, value in properties.items()
        if value is not None
    )
    lines = [sanitize(line, MESSAGE_CHARS) for line in message.split("\n")]
    body = _escape("\n".join(lines)[:MESSAGE_CHARS], _DATA_ESCAPES)
    return f"::{name}{' ' + shown if shown else ''}::{body}"


class AnnotationsFormat:
    """One annotation per check that did not pass; FAIL and ERROR as errors, the rest warnings.

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

    def annotation(self, result: CheckResult) -> str | None:
        """The annotation for one result, if it gets one."""
        if not result.status.needs_action:
            return None
        name = "warning" if result.status is Status.INCONCLUSIVE else "error"
        verdict = {
            Status.FAIL: "failed",
            Status.ERROR: "could not be graded (not your fault)",
            Status.INCONCLUSIVE: "was inconclusive: grade again",
        }[result.status]
        parts = [result.summary]
        if result.measured:
            parts.append(f"measured: {result.measured}")
        if result.hint:
            parts.append(f"hint: {result.hint}")
        return command(
            name,
            "\n".join(parts),
            **self._place(result.location),
            title=f"{result.id} {verdict}: {result.title}",
        )

    def render(self, report: Report) -> str:
        """The annotations, one line each; one error saying why, when nothing was graded."""
        if report.not_graded is not None:
            title = f"failfast could not grade {report.milestone}"
            place = self._place(report.not_graded.location)
            return command("error", report.not_graded.message, **place, title=title) + "\n"
        lines = [a for a in map(self.annotation, report.results) if a is not None]
        return "".join(line + "\n" for line in lines)


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
        """Append to the job summary (each step's summary file collects what its step adds)."""
        if self.summary is None:
            return
        try:
            with self.summary.open("a", encoding="utf-8") as file:
                file.write(markdown)
        except OSError as exc:
            # The report itself is intact; a missing summary must not fail the grading step.
            print(command("warning", f"failfast could not write the job summary: {exc}"))
