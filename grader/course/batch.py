"""Grading a class: many submissions, one `failfast check` process each, a gradebook at the end.

``failfast grade SUBMISSIONS`` finds the submissions (:func:`find_submissions`), keeps this
shard's share (:func:`shard_of`), grades each with the real CLI in a process of its own (so one
repo that hangs or crashes the grader's process costs that submission only), ``jobs`` at a time,
each job pinned to its own share of the CPUs, and writes for each submission its reports into
``OUT/<id>/``. From those reports alone it writes the gradebook (``gradebook.csv``, atomically),
the class summary (``summary.md``) and the class page (``index.html``): ``failfast gradebook
merge`` rebuilds the same three from the reports of several shards.

The gradebook joins with the course roster: each submission's id is written exactly as its name,
and each score as the exact decimal of its points. So a name a spreadsheet would run as a formula
(``=cmd|' /C calc'!A0``) is refused before anything is graded or merged: altered, it would not
join; as it is, a spreadsheet would run it.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import hashlib
import html
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

from grader.errors import GradingError
from grader.formats.json import report_from_dict
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
GRADEBOOK = "gradebook.csv"
SUMMARY = "summary.md"
CLASS_PAGE = "index.html"
INTERRUPTED_EXIT = 130
# How long a submission's grader may take before the batch stops it and records an ERROR: the
# longest milestone run (`check all` with k6) takes about a minute here; a grader that is still
# running after this is stuck, and the batch goes on.
SUBMISSION_LIMIT_S = 900.0
# A stopped grader gets this long to write its reports and tear its stack down (containers take
# a few seconds) before it is killed.
STOP_GRACE_S = 30.0
# Timing checks need quiet cores: with two cores, two jobs are the "two busy loops" row of the
# accuracy table (0 false FAIL, INCONCLUSIVE under 1 %), four jobs the "four busy loops" row
# (0 false FAIL, INCONCLUSIVE up to 12 % for jitter-spread). More than twice the cores is
# refused; more than the cores is allowed with a warning.
JOBS_PER_CORE_WARN = 1
JOBS_PER_CORE_MAX = 2
# What a spreadsheet runs as a formula when a cell starts with it (OWASP "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class BatchError(GradingError):
    """A batch that cannot start: no submissions, a bad shard, too many jobs, an unsafe name."""


@dataclass(frozen=True, slots=True)
class Submission:
    """One learner repo of the class, by its id (its directory's name)."""

    id: str
    path: Path


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``: a deterministic slice of the class."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``I/N`` with 1 <= I <= N."""
        try:
            index_text, count_text = text.split("/")
            shard = cls(int(index_text), int(count_text))
        except ValueError:
            raise BatchError(
                f"--shard takes I/N, e.g. 2/4 (the second of four shards), not {text!r}."
            ) from None
        if not 1 <= shard.index <= shard.count:
            raise BatchError(f"--shard {text}: I must be between 1 and N.")
        return shard

    def holds(self, submission_id: str) -> bool:
        """Whether this shard grades the submission, by a hash of its id.

        A hash, not a position: the shards stay as they were when the class grows.
        """
        digest = hashlib.sha256(submission_id.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1


def find_submissions(where: Path) -> list[Submission]:
    """The submissions in a directory (one repo per subdirectory) or listed in a file.

    Refused, before anything is graded: a name a spreadsheet would run as a formula (every such
    name at once, with where it is), two submissions of one name, none at all.
    """
    # Each submission, with where it came from: its path, or the list's file and line.
    placed: list[tuple[Submission, str]] = []
    if where.is_dir():
        for child in sorted(where.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                placed.append((Submission(child.name, child.resolve()), _quoted(str(child))))
        fix = "rename these folders"
    elif where.is_file():
        for number, line in enumerate(where.read_text("utf-8").splitlines(), start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            path = (where.parent / text).resolve()
            if not path.is_dir():
                raise BatchError(f"{where}:{number}: {text} is not a directory (a learner repo).")
            placed.append((Submission(path.name, path), f"{where}:{number}: {_quoted(text)}"))
        fix = f"rename these repos' folders, and their lines in {where},"
    else:
        raise BatchError(
            f"There is nothing at {where}. Pass a directory with one learner repo per "
            "subdirectory, or a file listing the repos' paths, one per line."
        )
    refuse_formulas(
        [place for submission, place in placed if runs_as_formula(submission.id)],
        "Nothing was graded",
        f"{fix} so that each name starts with a letter, a digit or _, then grade again",
    )
    found = [submission for submission, _ in placed]
    ids = collections.Counter(s.id for s in found)
    twice = sorted(i for i, n in ids.items() if n > 1)
    if twice:
        raise BatchError(
            f"Two submissions have the same name ({', '.join(twice)}): each needs its own, as "
            "it names the submission's reports and its gradebook row."
        )
    if not found:
        raise BatchError(f"{where} holds no submission (no subdirectory, or no listed path).")
    return sorted(found, key=lambda s: s.id)


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
            _quoted(str(folder))
            for out in folders
            for folder in _submission_folders(out)
            if runs_as_formula(folder.name)
        ],
        "Nothing was merged",
        "rename these folders of the shards' output (and the repos' own folders, which `failfast "
        "grade` refuses) so that each name starts with a letter, a digit or _, then merge again",
    )


def _quoted(text: str) -> str:
    """A name or path in a message, in double quotes, with a tab or a newline in it visible."""
    return json.dumps(text, ensure_ascii=False)


def cpu_shares(jobs: int) -> list[set[int]]:
    """The CPUs each job is pinned to: the cores split evenly, or all of them shared."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cores:
        return [set() for _ in range(jobs)]
    if jobs > len(cores):
        return [set(cores) for _ in range(jobs)]
    return [set(cores[slot::jobs]) for slot in range(jobs)]


def check_jobs(jobs: int) -> str | None:
    """Refuse more jobs than can be timed fairly; a warning when close to it, else None."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if jobs < 1:
        raise BatchError("--jobs must be at least 1.")
    if jobs > JOBS_PER_CORE_MAX * cores:
        raise BatchError(
            f"--jobs {jobs} on {cores} core(s) would time the checks on an overloaded machine: "
            f"their noise would end many verdicts as INCONCLUSIVE. Use at most "
            f"{JOBS_PER_CORE_MAX * cores} here, or spread the class over machines with --shard."
        )
    if jobs > JOBS_PER_CORE_WARN * cores:
        return (
            f"--jobs {jobs} on {cores} core(s): jobs share cores, so expect more INCONCLUSIVE "
            "verdicts (never a false FAIL); one job per core is the fair load."
        )
    return None


# ---------------------------------------------------------------------------------------------
# Grading one submission


@dataclass(frozen=True, slots=True)
class Outcome:
    """What grading one submission left: its exit code and where its reports are."""

    submission: Submission
    exit_code: int
    seconds: float


@dataclass(slots=True)
class Batch:
    """One `failfast grade` run."""

    selection: Sequence[str]  # the `failfast check` arguments that pick milestones
    out: Path
    jobs: int = 1
    extra: Sequence[str] = ()  # more `failfast check` options: --backend, --course, --report
    on_done: Callable[[Outcome], None] = lambda outcome: None
    _stop: threading.Event = field(default_factory=threading.Event)
    _running: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self, submission: Submission) -> bool:
        """Whether a finished report of the submission is already in the output directory."""
        report = read_report(self.out / submission.id / REPORT_FILE)
        return report is not None and not report.interrupted

    def run(self, submissions: Sequence[Submission]) -> list[Outcome]:
        """Grade every submission, ``jobs`` at a time; stops early once :meth:`stop` is called."""
        queue = collections.deque(submissions)
        outcomes: list[Outcome] = []
        shares = cpu_shares(self.jobs)

        def worker(slot: int) -> None:
            while not self._stop.is_set():
                with self._lock:
                    if not queue:
                        return
                    submission = queue.popleft()
                outcome = self._grade(submission, shares[slot], slot)
                if outcome is None:  # stopped meanwhile: not done, --resume grades it again
                    return
                with self._lock:
                    outcomes.append(outcome)
                self.on_done(outcome)

        threads = [
            threading.Thread(target=worker, args=(slot,), name=f"grade-{slot}", daemon=True)
            for slot in range(self.jobs)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
        return outcomes

    def stop(self) -> None:
        """Stop: no new submission starts; the running graders are interrupted (they report)."""
        self._stop.set()
        with self._lock:
            running = list(self._running.values())
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)

    def _grade(self, submission: Submission, cpus: set[int], slot: int) -> Outcome | None:
        folder = self.out / submission.id
        folder.mkdir(parents=True, exist_ok=True)
        for stale in (REPORT_FILE, PAGE_FILE):
            with contextlib.suppress(FileNotFoundError):
                (folder / stale).unlink()
        argv = [
            sys.executable,
            "-m",
            "grader",
            "check",
            *self.selection,
            "--repo",
            str(submission.path),
            "--report",
            f"json={folder / REPORT_FILE}",
            "--report",
            f"html={folder / PAGE_FILE}",
            *(arg.replace("{dir}", str(folder)) for arg in self.extra),
        ]

        def pin() -> None:
            if cpus and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, cpus)

        started = time.monotonic()
        with (folder / LOG_FILE).open("wb") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the batch forwards Ctrl-C itself, once
                preexec_fn=pin,
                env={**os.environ, "COLUMNS": "100", "NO_COLOR": "1"},
            )
            with self._lock:
                self._running[slot] = process
            try:
                code = _wait(process, SUBMISSION_LIMIT_S)
            finally:
                with self._lock:
                    self._running.pop(slot, None)
        if self._stop.is_set() and code == INTERRUPTED_EXIT:
            return None
        return Outcome(submission, code, time.monotonic() - started)


def _wait(process: subprocess.Popen[bytes], limit_s: float) -> int:
    """The grader's exit code; past ``limit_s`` it is interrupted, then killed."""
    try:
        return process.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            return process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return process.wait()


# ---------------------------------------------------------------------------------------------
# Reports back into the model


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


# ---------------------------------------------------------------------------------------------
# The gradebook, the summary and the class page: from the reports alone


@dataclass(frozen=True, slots=True)
class Row:
    """One submission's line of the gradebook."""

    submission: str
    report: Report | None  # None: the grader left no report (it crashed, or was killed)

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
    return Row(submission, read_report(out / submission / REPORT_FILE))


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
    """The gradebook: a row per submission (id, score, max score, status, every check).

    Ids exactly as the submissions' names, so that it joins with the course roster; points as
    exact decimals (``12345.67``, ``1000000``, never ``1e+06``). A name a spreadsheet would run
    as a formula never gets here (:func:`find_submissions`, :func:`check_merge_names`); should
    one, it is refused rather than written.
    """
    refuse_formulas(
        [_quoted(row.submission) for row in rows if runs_as_formula(row.submission)],
        "No gradebook was written",
        "rename these submissions so that each name starts with a letter, a digit or _",
    )
    columns = check_columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["submission", "score", "max_score", "status", *columns])
    for row in rows:
        statuses = row.statuses()
        writer.writerow(
            [
                row.submission,
                points_text(row.score),
                points_text(row.max_score),
                row.status,
                *(statuses.get(column, "") for column in columns),
            ]
        )
    return buffer.getvalue()


def summary_markdown(rows: Sequence[Row], title: str) -> str:
    """The class summary: pass rate per check and its most common failure."""
    columns = check_columns(rows)
    graded = [row for row in rows if row.report is not None and row.report.not_graded is None]
    lines = [
        f"# {title}",
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
    return "\n".join(lines) + "\n"


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


@contextlib.contextmanager
def interrupted_by_signals(batch: Batch) -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM stop the batch cleanly: running graders report, nothing new starts."""
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        batch.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
