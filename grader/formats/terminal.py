"""The terminal report: live progress while checks run, then one block per check.

The only module that touches rich. Every string that may carry the learner's words (bodies,
output lines) is shown as plain ``Text`` after :func:`grader.procs.sanitize`, never as markup.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from grader.errors import GradingError
from grader.formats import COUNTED
from grader.model import CheckResult, Report, Status
from grader.procs import sanitize
from grader.registry import MILESTONES, CheckSpec, select
from grader.runner import Hooks

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
    0: "every check passed",
    1: "a check failed: the hints above say what to fix",
    2: "the grader could not grade, or could not tell (an ERROR or INCONCLUSIVE above is not "
    "your fault: grade again)",
}
# Statuses whose evidence and hint the report shows: all but SKIP, whose reason is its summary.
EVIDENCED = (Status.PASS, Status.FAIL, Status.INCONCLUSIVE, Status.ERROR)


def _plain(text: str) -> Text:
    # Evidence may run to several lines (one problem each); each is sanitized on its own.
    return Text("\n".join(sanitize(line, limit=2000) for line in text.split("\n")))


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


def _rstrip(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.split("\n"))


class TerminalFormat:
    """The rich report a learner reads; plain text when the console is not a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console

    @contextlib.contextmanager
    def progress(self) -> Iterator[Hooks]:
        """Hooks that show which checks are running and a line per finished check."""
        if not self.console.is_terminal:
            yield Hooks()
            return
        running: dict[str, str] = {}
        with self.console.status("starting…") as status:

            def show() -> None:
                names = ", ".join(running) or "…"
                status.update(f"running {names}")

            def on_start(spec: CheckSpec) -> None:
                running[spec.id] = spec.title
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

    def print(self, report: Report) -> None:
        """Print the whole report to the console."""
        self._print(self._renderable(report))

    def _print(self, renderable: Group) -> None:
        print_to(self.console, renderable)

    def render(self, report: Report) -> str:
        """The report as plain text (for --output)."""
        return _plain_text(self._renderable(report))

    def _renderable(self, report: Report) -> Group:
        parts: list[Text | Group] = [Text()]
        title = select(report.milestone, through=report.through).label
        parts.append(
            Text.assemble(("failfast ", "bold"), (report.milestone, "bold cyan"), f"  {title}")
        )
        parts.append(Text.assemble(("repo    ", "dim"), report.repo))
        if report.budgets is not None:
            layers = report.budgets.values.get("layers", {})
            held = (
                f"api {layers.get('api_s'):g} s, payments read {layers.get('read_s'):g} s, "
                f"connect {layers.get('connect_s'):g} s"
            )
            parts.append(Text.assemble(("budget  ", "dim"), f"{held} ({report.budgets.note})"))
        parts.append(Text())
        several = len(report.milestones) > 1
        for milestone in report.milestones:
            results = report.results_of(milestone)
            if several:
                parts += [self._heading(milestone, results), Text()]
            parts += [self._block(result) for result in results]
        parts.append(self._summary(report))
        return Group(*parts)

    def _heading(self, milestone: str, results: tuple[CheckResult, ...]) -> Text:
        passed = sum(r.status is Status.PASS for r in results)
        style = STYLE[Status.PASS] if passed == len(results) else STYLE[Status.FAIL]
        heading = Text.assemble(
            ("── ", "dim"),
            (milestone, "bold cyan"),
            "  ",
            (f"{passed}/{len(results)} passed", style),
            f"  {MILESTONES.get(milestone, '')}",
        )
        heading.no_wrap, heading.overflow = True, "ellipsis"
        return heading

    def _block(self, result: CheckResult) -> Group:
        lines: list[Text] = [
            Text.assemble((result.id, "bold"), f"  {result.title}"),
            _plain(result.summary).append(f"  ({result.duration_s:.1f} s)", "dim"),
        ]
        if result.status in EVIDENCED:
            for label, value in (("measured", result.measured), ("expected", result.expected)):
                if value:
                    lines.append(Text.assemble((f"{label}: ", "dim"), _plain(value)))
        if result.status in EVIDENCED and result.status is not Status.PASS and result.hint:
            lines.append(Text.assemble(("hint: ", "bold yellow"), _plain(result.hint)))
        # Charts are drawn, not wrapped: a wrapped timeline would be unreadable.
        lines += [Text(line, style="cyan", no_wrap=True, overflow="crop") for line in result.figure]
        if result.api_output:
            lines.append(Text("your API's last output lines:", "dim"))
            lines += [Text.assemble(("  │ ", "dim"), _plain(line)) for line in result.api_output]
        # Two columns: the status, and everything else wrapped under the check's id.
        grid = Table.grid(padding=(0, 2))
        grid.add_column(width=5, justify="right", no_wrap=True)
        grid.add_column()
        grid.add_row(Text(result.status.value, STYLE[result.status]), Group(*lines))
        return Group(grid, Text())

    def _summary(self, report: Report) -> Text:
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
        text.append(f"exit code {report.exit_code}: {EXIT_MEANING[report.exit_code]}", "dim")
        first_bad = next((r for r in report.results if r.status is Status.FAIL), None)
        if first_bad is not None:
            text.append(f"\n`failfast explain {first_bad.id}` says more about a check.", "dim")
        return text

    def print_error(self, error: GradingError, milestone: str, repo: str) -> None:
        """Print why grading was impossible: one paragraph, then its supporting lines."""
        self._print(self._error(error, milestone, repo))

    def render_error(self, error: GradingError, milestone: str, repo: str) -> str:
        """Why grading was impossible, as plain text (for --output)."""
        return _plain_text(self._error(error, milestone, repo))

    def _error(self, error: GradingError, milestone: str, repo: str) -> Group:
        parts: list[Text] = [
            Text.assemble(("failfast could not grade ", "bold magenta"), f"{milestone} of {repo}"),
            _plain(error.message),
        ]
        parts += [Text.assemble(("  │ ", "dim"), _plain(line)) for line in error.details]
        parts.append(Text("exit code 2: the grader could not grade", "dim"))
        return Group(*parts)
