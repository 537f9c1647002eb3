"""Grading a class: many submissions, one `failfast check` process each, a gradebook at the end.

``failfast grade SUBMISSIONS`` finds the submissions (:func:`find_submissions`), keeps this
shard's share (:func:`Shard.holds`), grades each with the real CLI in a process of its own (so one
repo that hangs or crashes the grader's process costs that submission only), ``jobs`` at a time,
each job pinned to its own share of the CPUs, and writes for each submission its reports into
``OUT/<id>/``. From those reports alone :mod:`grader.course.gradebook` writes the gradebook, the
class summary and the class page; its names are also importable from here.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grader.course.gradebook import (
    CLASS_PAGE,
    GRADEBOOK,
    LOG_FILE,
    PAGE_FILE,
    REPORT_FILE,
    REUSED_FILE,
    SUMMARY,
    BatchError,
    Row,
    check_merge_names,
    collect,
    gradebook_csv,
    quoted,
    read_report,
    refuse_formulas,
    row_of,
    runs_as_formula,
    summary_markdown,
    write_class_files,
)
from grader.history import ENV as HISTORY_ENV
from grader.paths import followed
from grader.process.process import ManagedProcess
from grader.process.signals import deferred_signals

__all__ = [  # what the CLI and the tests import from here
    "CLASS_PAGE",
    "GRADEBOOK",
    "LOG_FILE",
    "SUMMARY",
    "Batch",
    "BatchError",
    "Outcome",
    "Row",
    "Shard",
    "Submission",
    "check_jobs",
    "check_merge_names",
    "collect",
    "cpu_shares",
    "find_submissions",
    "gradebook_csv",
    "interrupted_by_signals",
    "prepare_out",
    "row_of",
    "summary_markdown",
    "unsafe_id",
    "write_class_files",
]

INTERRUPTED_EXIT = 130
NOT_GRADED_EXIT = 2
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


@dataclass(frozen=True, slots=True)
class Submission:
    """One learner repo of the class, by its id (its directory's name).

    The id names the submission's folder in ``--out`` and its gradebook row, so it is a name
    that stays inside ``--out``: never empty, ``.`` or ``..``, without a path separator (see
    :func:`unsafe_id`). A submission without such an id cannot be made.
    """

    id: str
    path: Path

    def __post_init__(self) -> None:
        """Refuse an id that would not be a folder of its own in ``--out``."""
        problem = unsafe_id(self.id)
        if problem is not None:
            raise ValueError(f"submission id {self.id!r} {problem}")


# The files `failfast grade` writes at the top of --out: no submission's folder may take a name.
CLASS_FILES = (GRADEBOOK, SUMMARY, CLASS_PAGE)


def unsafe_id(name: str) -> str | None:
    """Why ``name`` cannot be a submission's id, a folder of its own in ``--out``; None if it can.

    Empty (the root directory has no name), ``.`` or ``..``, a path separator: the folder would
    be ``--out`` itself or outside it. A leading dot: the folder would be hidden, by accident.
    A class file's name (``gradebook.csv``): the folder would take the file's place.
    """
    if not name:
        return "is empty (the root directory / has no name)"
    if name in (".", ".."):
        return f"is {name!r}, which names a directory of --out's own, not a folder inside it"
    if any(sep in name for sep in ("/", "\0", os.altsep or "/")):
        return "holds a path separator"
    if name.startswith("."):
        return "starts with a dot, so its folder in --out would be hidden"
    if name in CLASS_FILES:
        return f"is the name of the class file {name} that failfast grade writes in --out"
    return None


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

    In a directory, each subdirectory is a submission, its name the id (hidden ones are left
    out). In a list, each line that is not blank or a ``#`` comment is a repo's path, relative
    to the list's own directory; the id is the name of the directory it leads to, ``.`` and
    ``..`` resolved and a trailing ``/`` ignored (``.`` is the list's directory; a symlink keeps
    its own name). Refused, before anything is graded, with the line or path: a line that leads
    to no directory, an id that cannot name a folder of ``--out`` (:func:`unsafe_id`: ``/``), a
    name a spreadsheet would run as a formula (every such name at once), two submissions of one
    id (both named), none at all.
    """
    # Each submission, with where it came from: its path, or the list's file and line.
    placed: list[tuple[Submission, str]] = []
    if where.is_dir():
        for child in sorted(where.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                _refuse_unsafe(child.name, quoted(str(child)), "rename the folder,")
                placed.append((Submission(child.name, child.resolve()), quoted(str(child))))
        fix = "rename these folders"
    elif where.is_file():
        try:
            listed = where.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise BatchError(
                f"{where} cannot be read as a list of repos ({error}). Save it as UTF-8 text, "
                "one repo's path per line, then grade again."
            ) from None
        for number, line in enumerate(listed.splitlines(), start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            place = f"{where}:{number}: {quoted(text)}"
            path, name = _listed(where, number, text)
            _refuse_unsafe(
                name,
                place if str(path) == text else f"{place} (the directory {path})",
                f"move the repo into a directory named after the learner and list that one on "
                f"line {number} of {where},"
                if not name
                else f"rename the directory {path}, and its line {number} in {where},",
            )
            placed.append((Submission(name, path), place))
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
    _refuse_shared_ids(placed, where)
    found = [submission for submission, _ in placed]
    if not found:
        raise BatchError(f"{where} holds no submission (no subdirectory, or no listed path).")
    return sorted(found, key=lambda s: s.id)


def _listed(where: Path, number: int, text: str) -> tuple[Path, str]:
    """The directory a list's line leads to, and the submission's id: its name.

    The id is the last name of the path as written (pathlib drops a trailing ``/`` and ``.``
    parts); when there is none (``.``, ``..``, ``a/..``, ``/``) it is the name of the directory
    the path resolves to, which ``/`` has none of.
    """
    written = where.parent / text
    path = followed(written)
    if path is None:
        raise BatchError(
            f"{where}:{number}: {quoted(text)} cannot be followed: a symlink on the way leads "
            f"back to itself (a symlink loop). List the repo's real directory on line {number}."
        )
    if not path.is_dir():
        raise BatchError(f"{where}:{number}: {text} is not a directory (a learner repo).")
    name = written.name if written.name not in ("", "..") else path.name
    return path, name


def _refuse_unsafe(name: str, place: str, fix: str) -> None:
    """Refuse a submission whose id cannot be a folder of its own in ``--out``."""
    problem = unsafe_id(name)
    if problem is None:
        return
    raise BatchError(
        f"Nothing was graded: {place} would be a submission whose id, {quoted(name)}, {problem}. "
        "A submission's id is the name of its repo's directory, and it names the submission's "
        f"folder in --out and its row of the gradebook: {fix} then grade again."
    )


def _refuse_shared_ids(placed: Sequence[tuple[Submission, str]], where: Path) -> None:
    """Refuse two submissions of one id, naming both (every such pair, in one paragraph)."""
    by_id: dict[str, list[str]] = collections.defaultdict(list)
    for submission, place in placed:
        by_id[submission.id].append(f"{place} ({submission.path})" if where.is_file() else place)
    shared = [(i, places) for i, places in sorted(by_id.items()) if len(places) > 1]
    if not shared:
        return
    clashes = "; ".join(f"{quoted(i)} by {' and '.join(places)}" for i, places in shared)
    raise BatchError(
        f"Nothing was graded: two submissions have the same id, the name of their repo's "
        f"directory, which names each submission's folder in --out and its gradebook row: "
        f"{clashes}. List each repo once, and rename one of two repos' directories that share "
        "a name, then grade again."
    )


def prepare_out(out: Path, submissions: Sequence[Submission]) -> None:
    """Make ``--out`` before grading, and refuse one its submissions' folders cannot be made in.

    A submission's folder that is a file, or a symlink (which could lead outside ``--out``), is
    refused with its path, before anything is graded.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BatchError(
            f"--out {out} cannot be made: {error.strerror or error}. Pass --out a directory "
            "that can be written, then grade again."
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise BatchError(
            f"--out {out} cannot be written. Pass --out a directory that can be written, then "
            "grade again."
        )
    blocked = [
        quoted(str(out / s.id))
        for s in submissions
        if (out / s.id).is_symlink() or ((out / s.id).exists() and not (out / s.id).is_dir())
    ]
    if blocked:
        raise BatchError(
            f"Nothing was graded: in --out {out}, a submission's folder is a file or a symlink "
            f"(which could lead outside --out): {', '.join(blocked)}. Remove it, or pass "
            "another --out, then grade again."
        )


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
    # --db: each submission's grader records it, named by its id, in this history (its URL
    # goes in FAILFAST_DB, not on a command line any local user can read).
    history: str | None = None
    on_done: Callable[[Outcome], None] = lambda outcome: None
    # What could not be written (a submission's folder on a full disk): the batch exits 2.
    problems: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _running: dict[int, ManagedProcess] = field(default_factory=dict)
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
            process.signal_group(signal.SIGINT)

    def _grade(self, submission: Submission, cpus: set[int], slot: int) -> Outcome | None:
        folder = self.out / submission.id
        # The id is one safe name (Submission holds it to that): its folder is inside --out.
        assert folder.parent == self.out and folder.name == submission.id
        try:
            folder.mkdir(exist_ok=True)
            # A marker of an earlier reuse would call this fresh grading reused.
            for stale in (REPORT_FILE, PAGE_FILE, REUSED_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (folder / stale).unlink()
            log = (folder / LOG_FILE).open("wb")
        except OSError as error:  # a full disk, --out removed meanwhile: this one is not graded
            with self._lock:
                self.problems.append(
                    f"{submission.id} was not graded: its folder {folder} could not be "
                    f"written ({error.strerror or error})"
                )
            return Outcome(submission, NOT_GRADED_EXIT, 0.0)
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
            *(["--submission", submission.id] if self.history is not None else ["--no-history"]),
        ]
        env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
        if self.history is not None:
            env[HISTORY_ENV] = self.history

        def pin() -> None:
            if cpus and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, cpus)

        started = time.monotonic()
        with log:
            process = ManagedProcess(
                submission.id,
                argv,
                cwd=None,
                env=env,
                preexec=pin,
                log=log,  # in a session of its own: the batch forwards Ctrl-C itself, once
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


def _wait(process: ManagedProcess, limit_s: float) -> int:
    """The grader's exit code; past ``limit_s`` it is interrupted, then killed."""
    if not process.wait(limit_s):
        process.stop(interrupt_s=STOP_GRACE_S)
    code = process.returncode
    return code if code is not None else -signal.SIGKILL  # it outlived SIGKILL's bounded wait


@contextlib.contextmanager
def interrupted_by_signals(batch: Batch) -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM stop the batch cleanly: running graders report, nothing new starts."""
    with deferred_signals(lambda signum: batch.stop()) as received:
        yield received
