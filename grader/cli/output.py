"""Where a report goes: the terminal, report files, GitHub Actions (summary, annotations, output).

The CLI decides what was asked for; this module delivers one :class:`grader.model.Report` (a
graded one, or one that says why nothing was graded) to every destination, through the formats
of :mod:`grader.formats`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.text import Text

from grader.engine.runner import Hooks
from grader.formats import OutputFormat
from grader.formats.classroom import step_output
from grader.formats.github import AnnotationsFormat, GitHubActions
from grader.formats.html import HtmlFormat
from grader.formats.markdown import MarkdownFormat
from grader.formats.terminal import MARK, STYLE, TerminalFormat
from grader.model import CheckResult, Report, Status
from grader.series import ProgressSeries


@dataclass(frozen=True, slots=True)
class ReportFile:
    """A report to write: ``--report FORMAT=FILE`` (``--json FILE`` and ``--junit FILE`` too)."""

    format: OutputFormat
    path: Path

    @classmethod
    def parse(cls, spec: str) -> ReportFile:
        """``junit=reports/failfast.xml``; raises ValueError naming the formats."""
        name, _, file = spec.partition("=")
        names = ", ".join(f.value for f in OutputFormat)
        if name not in set(OutputFormat) or not file:
            raise ValueError(
                f"{spec!r} is not FORMAT=FILE with FORMAT one of {names}, "
                f"e.g. junit=reports/failfast.xml"
            )
        return cls(OutputFormat(name), Path(file))


@dataclass(slots=True)
class Delivery:
    """What one `failfast check` run prints and writes, and where."""

    console: Console
    stdout_format: OutputFormat = OutputFormat.TEXT
    files: list[ReportFile] = field(default_factory=list)
    github: GitHubActions | None = None
    # Under GitHub Actions, the step's output file: a classroom report also sets `result`.
    step_outputs: Path | None = field(default_factory=lambda: _github_output(os.environ))
    # --for-learners: everything but a platform's own file is a learner's view.
    for_learners: bool = False

    def shown(self, report: Report) -> Report:
        """The report as this run shows it: a learner's view with --for-learners."""
        return report.for_learners() if self.for_learners else report

    @property
    def terminal(self) -> TerminalFormat:
        """The readable report on this console."""
        return TerminalFormat(self.console)

    @property
    def shows_progress(self) -> bool:
        """Whether checks are listed as they finish (text on stdout only)."""
        return self.stdout_format is OutputFormat.TEXT

    @contextlib.contextmanager
    def fenced(self) -> Iterator[None]:
        """Under GitHub Actions, nothing printed inside may be taken for a workflow command.

        Everything printed while grading may carry the learner's words. JSON on stdout escapes
        line starts by itself, and is left one clean document.
        """
        if self.github is None or self.stdout_format is not OutputFormat.TEXT:
            yield
            return
        with self.github.fenced(sys.stdout):
            yield

    @contextlib.contextmanager
    def progress(self) -> Iterator[Hooks]:
        """Hooks that show which checks are running and a line per finished check."""
        if not self.shows_progress or not self.console.is_terminal:
            yield Hooks()
            return
        running: dict[str, str] = {}
        with self.console.status("starting…") as status:

            def show() -> None:
                status.update(f"running {', '.join(running) or '…'}")

            def on_start(check_id: str, title: str) -> None:
                running[check_id] = title
                show()

            def on_finish(result: CheckResult) -> None:
                running.pop(result.id, None)
                line = Text.assemble(
                    (f" {MARK[result.status]} ", STYLE[result.status]),
                    (result.id, "bold"),
                    f"  {result.duration_s:.1f} s",
                    style="dim" if result.status is Status.SKIP else "",
                )
                self.console.print(line)
                show()

            yield Hooks(on_start=on_start, on_finish=on_finish)

    def write_files(self, report: Report, progress: ProgressSeries | None = None) -> list[str]:
        """Write every report file it can; returns a one-line message for each it could not.

        One file that cannot be written (its directory is a file, a full disk) never stops the
        others. ``progress`` (the repo's score over its gradings) is drawn by the HTML report
        alone.
        """
        problems = []
        for target in self.files:
            what = f"the {target.format.value} report to {target.path}"
            # A platform's file carries hidden checks with the platform's own visibility (the
            # platform hides them; Classroom and PrairieLearn, which cannot, refuse them).
            view = report if target.format.is_platform else self.shown(report)
            try:
                render = (
                    HtmlFormat(progress).render
                    if target.format is OutputFormat.HTML
                    else target.format.to_format().render
                )
                text = render(view)
            except Exception as bug:  # a bug in a format must not cost the other reports
                problems.append(
                    f"failfast could not render {what}: {bug!r}. This is a bug in the grader; "
                    f"please report it."
                )
                continue
            if target.format is OutputFormat.CLASSROOM and self.step_outputs is not None:
                problems += self._set_result(text, self.step_outputs)
            try:
                target.path.parent.mkdir(parents=True, exist_ok=True)
                # A lone surrogate in a learner's words cannot be UTF-8: it becomes "?".
                target.path.write_text(text, "utf-8", errors="replace")
            except OSError as exc:
                problems.append(f"failfast could not write {what}: {_why(target.path, exc)}")
        return problems

    @staticmethod
    def _set_result(document: str, outputs: Path) -> list[str]:
        """Append the step output ``result`` (base64 of the classroom JSON) to $GITHUB_OUTPUT.

        The runner reads that file line by line: ours starts a line of its own, whatever the
        file ended with, and base64 keeps it one line.
        """
        line = step_output(document.encode("utf-8", errors="replace").decode("utf-8"))
        try:
            with outputs.open("ab+") as file:  # writes always go to the end
                if file.seek(0, os.SEEK_END) > 0:
                    file.seek(-1, os.SEEK_END)
                    if file.read(1) != b"\n":
                        line = "\n" + line
                file.write(line.encode("ascii"))
        except OSError as exc:
            return [
                f"failfast could not set the step output `result` in {outputs} "
                f"($GITHUB_OUTPUT): {_why(outputs, exc)}"
            ]
        return []

    def show(self, report: Report, unwritten: Sequence[str] = ()) -> None:
        """Print the report on stdout in its format.

        ``unwritten`` says which report files could not be written: the run then exits 2, and
        the readable report's exit line says so and why.
        """
        report = self.shown(report)
        if self.stdout_format is OutputFormat.TEXT:
            self.terminal.print(report, unwritten)
        else:
            sys.stdout.write(self.stdout_format.to_format().render(report))
            sys.stdout.flush()

    def to_github(self, report: Report, repo: Path) -> None:
        """Under GitHub Actions: annotations (stderr when stdout is JSON), and the job summary."""
        if self.github is None:
            return
        # The job summary and annotations are on the learner's own run page: a learner's view.
        report = report.for_learners()
        annotations = AnnotationsFormat(repo, self.github.workspace)
        stream = sys.stdout if self.stdout_format is OutputFormat.TEXT else sys.stderr
        stream.write(annotations.render(report))
        stream.flush()
        self.github.add_summary(MarkdownFormat().render(report))


def _github_output(environ: Mapping[str, str]) -> Path | None:
    """The step's output file under GitHub Actions ($GITHUB_OUTPUT), if there is one."""
    found = environ.get("GITHUB_OUTPUT")
    return Path(found) if found else None


def _why(path: Path, exc: OSError) -> str:
    """Why ``path`` could not be written, in words: which part of it is in the way."""
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            return f"{parent} is a file, not a directory"
    return f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
