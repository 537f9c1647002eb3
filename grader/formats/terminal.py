"""The terminal report: live progress while checks run, then one block per check.

The only module that touches rich. Every string that may carry the learner's words (bodies,
output lines) is shown as plain ``Text`` after :func:`grader.lines.sanitize`, never as markup.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from grader.formats.base import COUNTED, WITHHELD_NOTE
from grader.formats.json import not_gradable_reason
from grader.lines import OutputSummary, sanitize
from grader.model import (
    CheckResult,
    ExitCode,
    NotGraded,
    Report,
    Status,
    milestone,
    points_text,
)

STYLE = {
    Status.PASS: "bold green",
    Status.FAIL: "bold red",
    Status.SKIP: "bold yellow",
    Status.INCONCLUSIVE: "bold blue",
    Status.ERROR: "bold magenta",
}
MARK = {
    Status.PASS: "✓",
    Status.FAIL: "✗",
    Status.SKIP: "-",
    Status.INCONCLUSIVE: "?",
    Status.ERROR: "!",
}
EXIT_MEANING = {
    ExitCode.PASSED: "every check passed",
    ExitCode.FAILED: "a check failed: the hints above say what to fix",
    ExitCode.NOT_GRADED: "the grader could not grade, or could not tell (an ERROR or "
    "INCONCLUSIVE above is not your fault: grade again)",
    ExitCode.INTERRUPTED: "grading was interrupted (Ctrl-C or SIGTERM): the checks above marked "
    "SKIP were not run or not finished; grade again to finish",
}


def _plain(text: str) -> Text:
    # Evidence may run to several lines (one problem each); each is sanitized on its own.
    return Text("\n".join(_line(line) for line in text.split("\n")))


def _line(text: str) -> str:
    """Any string the report prints, as one safe line: no control, bidi override or escape."""
    return sanitize(text, limit=2000)


def _plain_text(renderable: Group) -> str:
    # For files: no colour, a fixed width, nothing of the live terminal.
    console = Console(width=100, no_color=True, file=io.StringIO())
    with console.capture() as captured:
        console.print(renderable)
    return _rstrip(captured.get())


def print_to(console: Console, renderable: RenderableType) -> None:
    """Print to the console; piped (CI logs), without padding to its width at line ends."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    console.file.write(_rstrip(captured.get()))
    console.file.flush()


def _g(value: object) -> str:
    """A budget's number as the report shows it; "?" where there is none to show."""
    return f"{value:g}" if isinstance(value, int | float) else "?"


def _api_output(printed: OutputSummary) -> Group:
    """A flood of output, in a few lines: how much, its first lines, its last lines."""
    lines = [
        Text.assemble(
            ("api out ", "bold yellow"),
            f"your API printed {printed.describe()}; the grader kept its first and last lines:",
        )
    ]
    lines += [Text.assemble(("  first │ ", "dim"), _clip(line)) for line in printed.head]
    if printed.left_out:
        lines.append(Text(f"        … {printed.left_out:,} lines not kept", "dim"))
    lines += [Text.assemble(("  last  │ ", "dim"), _clip(line)) for line in printed.tail]
    return Group(*lines, Text())


def _clip(line: str) -> Text:
    """A line of a flood in one terminal line: its start and its end (a cut line's length)."""
    text = sanitize(line, limit=2000)
    return Text(text if len(text) <= 66 else f"{text[:28]} … {text[-33:]}")


def exit_line(code: ExitCode, meaning: str, unwritten: Sequence[str] = ()) -> str:
    """The report's exit line: the code the process exits with, and why.

    A report file that could not be written makes it 2 (an interruption stays 130), whatever
    the checks say: the line says both.
    """
    if not unwritten:
        return f"exit code {int(code)}: {meaning}"
    why = "; ".join(unwritten)
    if code is ExitCode.INTERRUPTED:
        return f"exit code {int(code)}: {meaning}; also {why}"
    return f"exit code {int(ExitCode.NOT_GRADED)}: {meaning}, but {why}"


def _rstrip(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.split("\n"))


class TerminalFormat:
    """The rich report a learner reads; plain text when the console is not a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console

    @classmethod
    def for_file(cls) -> TerminalFormat:
        """The format for a report file: rendered plain, whatever the terminal is."""
        return cls(Console(file=io.StringIO()))

    def print(self, report: Report, unwritten: Sequence[str] = ()) -> None:
        """Print the whole report to the console.

        ``unwritten``: why report files could not be written; the exit line then says exit 2.
        """
        self._print(self._renderable(report, unwritten))

    def _print(self, renderable: Group) -> None:
        print_to(self.console, renderable)

    def render(self, report: Report) -> str:
        """The report as plain text (for a report file)."""
        return _plain_text(self._renderable(report))

    def _renderable(self, report: Report, unwritten: Sequence[str] = ()) -> Group:
        if report.not_graded is not None:
            return self._not_graded(report, report.not_graded, unwritten)
        parts: list[Text | Group] = [Text()]
        parts.append(
            Text.assemble(
                ("failfast ", "bold"),
                (_line(report.milestone), "bold cyan"),
                _plain(f"  {report.title}"),
            )
        )
        parts.append(Text.assemble(("repo    ", "dim"), _plain(report.repo)))
        if report.backend != "local":
            parts.append(Text.assemble(("backend ", "dim"), _plain(report.backend)))
        for note in report.notes:
            parts.append(Text.assemble(("note    ", "bold yellow"), _plain(note)))
        if report.budgets is not None:
            layers = report.budgets.values.get("layers", {})
            held = (
                f"api {_g(layers.get('api_s'))} s, payments read {_g(layers.get('read_s'))} s, "
                f"connect {_g(layers.get('connect_s'))} s"
            )
            parts.append(
                Text.assemble(("budget  ", "dim"), _plain(f"{held} ({report.budgets.note})"))
            )
        parts.append(Text())
        several = len(report.milestones) > 1
        for key in report.milestones:
            results = report.results_of(key)
            if several:
                parts += [self._heading(key, results), Text()]
            parts += [self._block(result) for result in results]
        if report.api_output is not None and report.api_output.loud:
            parts.append(_api_output(report.api_output))
        if report.history is not None:
            parts += [Text.assemble(("history ", "bold"), _plain(report.history.line())), Text()]
        parts.append(self._summary(report, unwritten))
        return Group(*parts)

    def _heading(self, key: str, results: tuple[CheckResult, ...]) -> Text:
        passed = sum(r.status is Status.PASS for r in results)
        style = STYLE[Status.PASS] if passed == len(results) else STYLE[Status.FAIL]
        found = milestone(key)
        heading = Text.assemble(
            ("── ", "dim"),
            (_line(key), "bold cyan"),
            "  ",
            (f"{passed}/{len(results)} passed", style),
            _plain(f"  {found.title if found else ''}"),
        )
        heading.no_wrap, heading.overflow = True, "ellipsis"
        return heading

    def _block(self, result: CheckResult) -> Group:
        lines: list[Text] = [
            Text.assemble((_line(result.id), "bold"), _plain(f"  {result.title}")),
            _plain(result.summary).append(f"  ({result.duration_s:.1f} s)", "dim"),
        ]
        for label, value in result.evidence_parts():
            style = "bold yellow" if label == "hint" else "dim"
            lines.append(Text.assemble((f"{label}: ", style), _plain(value)))
        # Charts are drawn, not wrapped: a wrapped timeline would be unreadable.
        lines += [
            Text(_line(line), style="cyan", no_wrap=True, overflow="crop") for line in result.figure
        ]
        if result.api_output:
            lines.append(Text("your API's last output lines:", "dim"))
            lines += [Text.assemble(("  │ ", "dim"), _plain(line)) for line in result.api_output]
        # Two columns: the status, and everything else wrapped under the check's id.
        grid = Table.grid(padding=(0, 2))
        grid.add_column(width=5, justify="right", no_wrap=True)
        grid.add_column()
        grid.add_row(Text(result.status.value, STYLE[result.status]), Group(*lines))
        return Group(grid, Text())

    def _summary(self, report: Report, unwritten: Sequence[str]) -> Text:
        # INCONCLUSIVE is rare: named only when there is one.
        counts = [
            (report.count(status), word, STYLE[status])
            for status, word in COUNTED
            if status is not Status.INCONCLUSIVE or report.count(status)
        ]
        text = Text()
        for n, (count, word, style) in enumerate(counts):
            text.append(f"{count} {word}", style if count else "dim")
            text.append(", " if n < len(counts) - 1 else "")
        text.append(f" in {report.duration_s:.1f} s\n")
        text.append(f"score {points_text(report.score)}/{points_text(report.max_score)}", "bold")
        reason = not_gradable_reason(report)
        # A score of ERRORs is not the learner's: said where the score is, not only below.
        text.append(f"  not gradable: {reason}\n" if reason else "\n", STYLE[Status.ERROR])
        if report.withheld:
            text.append(f"{WITHHELD_NOTE}\n", "dim")
        text.append(exit_line(report.exit_code, EXIT_MEANING[report.exit_code], unwritten), "dim")
        first_bad = next((r for r in report.results if r.status is Status.FAIL), None)
        if first_bad is not None:
            text.append(
                f"\n`failfast explain {_line(first_bad.id)}` says more about a check.", "dim"
            )
        return text

    def _not_graded(
        self, report: Report, problem: NotGraded, unwritten: Sequence[str] = ()
    ) -> Group:
        """Why grading was impossible: one paragraph, then its supporting lines."""
        parts: list[Text] = [
            Text.assemble(
                ("failfast could not grade ", "bold magenta"),
                _plain(f"{report.milestone} of {report.repo}"),
            ),
            _plain(problem.message),
        ]
        parts += [Text.assemble(("  │ ", "dim"), _plain(line)) for line in problem.details]
        meaning = "the grader could not grade"
        parts.append(Text(exit_line(ExitCode.NOT_GRADED, meaning, unwritten), "dim"))
        return Group(*parts)
