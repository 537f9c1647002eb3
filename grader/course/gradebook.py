"""The gradebook, the class summary and the class page: written from the reports alone.

``failfast grade`` writes them once its submissions are graded, and ``failfast gradebook merge``
rebuilds the same three from the reports of several shards (:func:`collect`,
:func:`write_class_files`): ``gradebook.csv`` (atomically), ``summary.md`` and ``index.html``.

The gradebook joins with the course roster: each submission's id is written exactly as its name,
and each score as the exact decimal of its points. So a name a spreadsheet would run as a formula
(``=cmd|' /C calc'!A0``) is refused before anything is graded or merged: altered, it would not
join; as it is, a spreadsheet would run it.
"""

from __future__ import annotations

import collections
import csv
import html
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

from grader.errors import GradingError
from grader.formats.json import report_from_dict
from grader.lines import neutralise
from grader.model import (
    NO_POINTS,
    ExitCode,
    NotGraded,
    Report,
    Status,
    points_text,
)

REPORT_FILE = "report.json"
PAGE_FILE = "report.html"
LOG_FILE = "grader.log"
# Written instead of grading when the history held the submission's grading (grader.course.reuse).
REUSED_FILE = "reused.json"
GRADEBOOK = "gradebook.csv"
SUMMARY = "summary.md"
CLASS_PAGE = "index.html"
# What a spreadsheet runs as a formula when a cell starts with it (OWASP "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class BatchError(GradingError):
    """A batch that cannot start: no submissions, a bad shard, too many jobs, an unsafe name."""


def runs_as_formula(name: str) -> bool:
    """Whether a spreadsheet opening a CSV would run a cell holding ``name`` as a formula."""
    return name.startswith(FORMULA_STARTS)


def refuse_formulas(places: Sequence[str], outcome: str, fix: str) -> None:
    """Refuse names a spreadsheet would run as formulas: every one, where it is, and the fix.

    ``places`` says where each such name is (a path, a list's line); ``outcome`` what the refusal
    means (``Nothing was graded``); ``fix`` what to do instead.
    """
    if not places:
        return
    names = "submission name would" if len(places) == 1 else "submission names would"
    raise BatchError(
        f"{outcome}: {len(places)} {names} be run as a formula by a spreadsheet opening the "
        "gradebook, as a cell starting with =, +, -, @, a tab or a carriage return is one "
        f'(OWASP "CSV Injection"): {"; ".join(places)}. The gradebook writes every name exactly '
        f"as it is, so that it joins with the course roster: {fix}."
    )


def check_merge_names(folders: Iterable[Path]) -> None:
    """Refuse to merge shards that hold a submission a spreadsheet would run as a formula."""
    refuse_formulas(
        [
            quoted(str(folder))
            for out in folders
            for folder in _submission_folders(out)
            if runs_as_formula(folder.name)
        ],
        "Nothing was merged",
        "rename these folders of the shards' output (and the repos' own folders, which `failfast "
        "grade` refuses) so that each name starts with a letter, a digit or _, then merge again",
    )


def quoted(text: str) -> str:
    r"""A name or path in a message, in double quotes, every control or bidi character escaped.

    A tab reads ``\t``, a right-to-left override ``\u202e``: visible, and exact.
    """
    dumped = json.dumps(text, ensure_ascii=False)
    return "".join(c if neutralise(c) == c else f"\\u{ord(c):04x}" for c in dumped)


def read_report(path: Path) -> Report | None:
    """A submission's JSON report as a Report; None when there is none or it is unreadable."""
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    try:
        return report_from_dict(document)
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Row:
    """One submission's line of the gradebook."""

    submission: str
    report: Report | None  # None: the grader left no report (it crashed, or was killed)
    reused: bool = False  # its report is an earlier grading's, from the history (--db)

    def __post_init__(self) -> None:
        """Points as exact decimals, whatever number the report's reader built them as."""
        if self.report is not None:
            object.__setattr__(self, "report", _exact_points(self.report))

    @property
    def status(self) -> str:
        """passed, failed, inconclusive or error: what a course author acts on."""
        report = self.report
        if report is None or report.not_graded is not None or report.count(Status.ERROR):
            return "error"
        # Otherwise what the run exited with says it; NOT_GRADED is then an INCONCLUSIVE.
        return {
            ExitCode.INTERRUPTED: "interrupted",
            ExitCode.FAILED: "failed",
            ExitCode.NOT_GRADED: "inconclusive",
            ExitCode.PASSED: "passed",
        }[report.exit_code]

    @property
    def score(self) -> Decimal:
        """The points earned; 0 without a report."""
        return self.report.score if self.report is not None else NO_POINTS

    @property
    def max_score(self) -> Decimal:
        """The points at stake; 0 when there is no report to say."""
        return self.report.max_score if self.report is not None else NO_POINTS

    def statuses(self) -> dict[str, str]:
        """Check id -> status."""
        if self.report is None:
            return {}
        return {r.id: r.status.value for r in self.report.results}


def _exact_points(report: Report) -> Report:
    """The report with every point a Decimal: a reader may still build them as floats."""
    planned = report.planned_max_score
    points = (planned, *(r.max_score for r in report.results))
    if all(isinstance(p, Decimal | None) for p in points):
        return report
    return replace(
        report,
        results=tuple(replace(r, max_score=_decimal(r.max_score)) for r in report.results),
        planned_max_score=None if planned is None else _decimal(planned),
    )


def _decimal(value: object) -> Decimal:
    """A number as the decimal it prints as (a float 6.67 is 6.67, not 6.6699999…)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def row_of(out: Path, submission: str) -> Row:
    """A submission's gradebook row, from its report in ``out`` (if any)."""
    folder = out / submission
    return Row(submission, read_report(folder / REPORT_FILE), (folder / REUSED_FILE).is_file())


def collect(folders: Iterable[Path], only: Iterable[str] | None = None) -> list[Row]:
    """A row per submission folder of the output directories (``only``: these ids)."""
    wanted = set(only) if only is not None else None
    rows: dict[str, Row] = {}
    for out in folders:
        for folder in _submission_folders(out):
            if wanted is None or folder.name in wanted:
                rows[folder.name] = row_of(out, folder.name)
    return [rows[key] for key in sorted(rows)]


def _submission_folders(out: Path) -> list[Path]:
    """The folders of an output directory a grader ran in: those with a report or a log."""
    return [
        folder
        for folder in sorted(p for p in out.iterdir() if p.is_dir())
        if (folder / REPORT_FILE).exists() or (folder / LOG_FILE).exists()
    ]


def check_columns(rows: Sequence[Row]) -> list[str]:
    """Every check id of the rows, in report order (the first report that has each)."""
    seen: dict[str, None] = {}
    for row in rows:
        for check_id in row.statuses():
            seen.setdefault(check_id, None)
    return list(seen)


def gradebook_csv(rows: Sequence[Row]) -> str:
    """The gradebook: a row per submission (id, score, max score, status, reused, every check).

    Ids exactly as the submissions' names, so that it joins with the course roster (but for a
    control or bidi character, which becomes its visible stand-in); points as
    exact decimals (``12345.67``, ``1000000``, never ``1e+06``). A name a spreadsheet would run
    as a formula never gets here (:func:`find_submissions`, :func:`check_merge_names`); should
    one, it is refused rather than written.
    """
    refuse_formulas(
        [quoted(row.submission) for row in rows if runs_as_formula(row.submission)],
        "No gradebook was written",
        "rename these submissions so that each name starts with a letter, a digit or _",
    )
    columns = check_columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["submission", "score", "max_score", "status", "reused", *columns])
    for row in rows:
        statuses = row.statuses()
        writer.writerow(
            [
                row.submission,
                points_text(row.score),
                points_text(row.max_score),
                row.status,
                "yes" if row.reused else "",
                *(statuses.get(column, "") for column in columns),
            ]
        )
    return neutralise(buffer.getvalue(), keep_cr=False)  # a spreadsheet shows every cell as it is


def summary_markdown(rows: Sequence[Row], title: str) -> str:
    """The class summary: pass rate per check and its most common failure."""
    columns = check_columns(rows)
    graded = [row for row in rows if row.report is not None and row.report.not_graded is None]
    lines = [
        f"# {_md(title)}",
        "",
        f"{len(rows)} submissions: {sum(r.status == 'passed' for r in rows)} passed every check, "
        f"{sum(r.status == 'failed' for r in rows)} failed one or more, "
        f"{sum(r.status == 'error' for r in rows)} could not be graded, "
        f"{sum(r.status == 'inconclusive' for r in rows)} inconclusive.",
        "",
        "| check | passed | pass rate | most common failure |",
        "| --- | ---: | ---: | --- |",
    ]
    for column in columns:
        results = [
            result
            for row in graded
            if row.report is not None
            for result in row.report.results
            if result.id == column
        ]
        passed = sum(r.status is Status.PASS for r in results)
        failures = collections.Counter(r.summary for r in results if r.status is Status.FAIL)
        common = ""
        if failures:
            summary, count = failures.most_common(1)[0]
            common = f"{_md(summary)} ({count})"
        rate = f"{100 * passed / len(results):.0f} %" if results else "-"
        lines.append(f"| `{column}` | {passed}/{len(results)} | {rate} | {common} |")
    return neutralise("\n".join(lines) + "\n", keep_cr=False)  # no control or bidi override


def _md(text: str) -> str:
    """Learner-influenced text as one Markdown table cell: no markup, no pipes, no newlines."""
    escaped = html.escape(text[:200], quote=False).replace("\\", "\\\\")
    escaped = escaped.replace("|", "\\|").replace("\n", " ").replace("\r", " ")
    for char in "`*_[]":
        escaped = escaped.replace(char, "\\" + char)
    return escaped


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new, never half."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, "utf-8")
    os.replace(temporary, path)


def write_class_files(out: Path, rows: Sequence[Row], title: str) -> None:
    """The gradebook, the summary and the class page, from the rows."""
    from grader.formats.html import ClassEntry, render_class_page  # only when written

    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / GRADEBOOK, gradebook_csv(rows))
    write_atomically(out / SUMMARY, summary_markdown(rows, title))
    entries = [
        ClassEntry(
            row.submission,
            row.report or Report("?", row.submission, not_graded=_no_report(row.submission)),
            f"{row.submission}/{PAGE_FILE}" if row.report is not None else None,
        )
        for row in rows
    ]
    write_atomically(out / CLASS_PAGE, render_class_page(entries, title))


def _no_report(submission: str) -> NotGraded:
    return NotGraded(
        "NoReport",
        f"The grader left no report for {submission}: it crashed or was killed; its log is "
        f"{submission}/{LOG_FILE}.",
    )
