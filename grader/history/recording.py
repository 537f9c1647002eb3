"""A report as the history records it, and the key that says a grading can be reused."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

from grader.history import gitinfo
from grader.history.store import CheckRow, Grading
from grader.model import ALL, Report


def course_digest(course_file: Path | None) -> str:
    """sha256 of the course file's bytes; "" without one (every check 1 point, visible)."""
    if course_file is None:
        return ""
    return hashlib.sha256(course_file.read_bytes()).hexdigest()


def selection_text(milestone: str, through: bool) -> str:
    """What was asked for, as typed: ``milestone-N --through``; ``all`` never has --through.

    The one spelling of a selection: `failfast check` records it, `failfast grade` looks a
    submission up by it before grading, so the two cannot drift.
    """
    return milestone + (" --through" if through and milestone != ALL else "")


def selection_of(report: Report) -> str:
    """What the report's run was asked for (:func:`selection_text`)."""
    return selection_text(report.milestone, report.through)


def reuse_key(
    commit: str | None,
    dirty: bool | None,
    grader_version: str,
    digest: str,
    backend: str,
    selection: str,
) -> str | None:
    """What a grading's verdicts rest on, hashed; None when it cannot be told (no clean commit).

    Two gradings with the same key graded the same code with the same grader, course file,
    backend and milestones: the second is not needed.
    """
    if commit is None or dirty is not False:
        return None
    text = "\n".join((commit, grader_version, digest, backend, selection))
    return hashlib.sha256(text.encode()).hexdigest()


def grading_of(
    report: Report,
    report_json: str,
    *,
    repo: Path,
    grader_version: str,
    digest: str,
    submission: str | None = None,
) -> Grading:
    """The grading to record for ``report`` (as JSON: ``report_json``) of the repo at ``repo``."""
    git = gitinfo.read(repo)
    selection = selection_of(report)
    checks = tuple(
        CheckRow(r.id, r.milestone, r.status.value, r.score, r.max_score, r.summary, r.measured)
        for r in report.results
    )
    return Grading(
        started_at=report.started_at,
        duration_s=round(report.duration_s, 3),
        repo_path=str(repo.resolve()),
        grader_version=grader_version,
        course_digest=digest,
        backend=report.backend,
        selection=selection,
        milestones=report.milestones,
        score=report.score,
        max_score=report.max_score,
        exit_code=int(report.exit_code),
        complete=report.gradable and not report.interrupted,
        report_json=report_json,
        checks=checks,
        targets=report.targets,
        repo_remote=git.remote,
        commit=git.commit,
        dirty=git.dirty,
        submission=submission,
        reuse_key=None
        if submission is None
        else reuse_key(git.commit, git.dirty, grader_version, digest, report.backend, selection),
        recorded_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
    )
