"""The grading history: open it (creating or upgrading its schema), record gradings, read them.

Every SQLAlchemy, DBAPI and file error is translated here into :class:`HistoryError`, naming the
URL with its password hidden: the one boundary (as httpx translates its transports' errors).
Every recording is one transaction; a submission's is idempotent through the database's unique
key on (submission, reuse_key), never by looking first.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from grader.errors import HistoryError
from grader.history import migrate
from grader.history.tables import check_results, gradings
from grader.history.url import StoreUrl

# How long a write waits for another process's (SQLite's busy timeout; PostgreSQL's connect).
BUSY_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 10
MEASURED_CHARS = 2000  # a check's measured value as stored; the full one is in report_json


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One check of a recorded grading."""

    check_id: str
    milestone: str
    status: str
    score: Decimal
    max_score: Decimal
    summary: str
    measured: str


@dataclass(frozen=True, slots=True)
class Grading:
    """One grading, as recorded or about to be."""

    started_at: str
    duration_s: float
    repo_path: str
    grader_version: str
    course_digest: str
    backend: str
    selection: str
    milestones: tuple[str, ...]
    score: Decimal
    max_score: Decimal
    exit_code: int
    complete: bool
    report_json: str
    checks: tuple[CheckRow, ...] = ()
    targets: tuple[str, ...] = ()
    repo_remote: str | None = None
    commit: str | None = None
    dirty: bool | None = None
    submission: str | None = None
    reuse_key: str | None = None
    recorded_at: str = ""
    id: int | None = None

    @property
    def short_commit(self) -> str:
        """abc1234, abc1234+ when the tree had uncommitted changes, or "no commit"."""
        if self.commit is None:
            return "no commit"
        return self.commit[:7] + ("+" if self.dirty else "")


class Store:
    """An open history. Use :meth:`open`; close it with :meth:`close` or ``with``."""

    def __init__(self, url: StoreUrl, engine: sa.Engine) -> None:
        self.url, self.engine = url, engine

    @classmethod
    def open(cls, url: StoreUrl) -> Store:
        """Connect, create the schema on first use, upgrade an older one in place.

        A history written by a newer failfast (a schema revision this one does not know) is
        refused, never downgraded.
        """
        with _translated(url, "open"):
            file = url.sqlite_file
            if file is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
            engine = _engine(url)
            store = cls(url, engine)
            with _migration_lock(file):
                migrate.to_head(engine, url.shown)
            return store

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, grading: Grading) -> int:
        """Record one grading and its checks in one transaction; its id.

        A submission recorded again with the same reuse key (a retried or repeated recording)
        replaces the earlier row: one row per submission and inputs, whoever writes it.
        """
        with _translated(self.url, "write to"), self.engine.begin() as db:
            values = _row(grading)
            if grading.submission is not None and grading.reuse_key is not None:
                insert = _insert(self.engine)(gradings).values(values)
                keys = ["submission", "reuse_key"]
                update = {k: v for k, v in values.items() if k not in keys}
                upsert = insert.on_conflict_do_update(index_elements=keys, set_=update)
                grading_id = db.execute(upsert.returning(gradings.c.id)).scalar_one()
                db.execute(check_results.delete().where(check_results.c.grading_id == grading_id))
            else:
                grading_id = db.execute(
                    gradings.insert().values(values).returning(gradings.c.id)
                ).scalar_one()
            if grading.checks:
                db.execute(
                    check_results.insert(),
                    [_check_row(grading_id, c) for c in grading.checks],
                )
            return int(grading_id)

    def gradings_of(self, repo_path: str, *, limit: int = 200) -> list[Grading]:
        """The repo's gradings by `failfast check`, oldest first, each with its checks."""
        query = (
            sa.select(gradings)
            .where(gradings.c.repo_path == repo_path, gradings.c.submission.is_(None))
            .order_by(gradings.c.id.desc())
            .limit(limit)
        )
        return list(reversed(self._read(query)))

    def reusable(self, submission: str, reuse_key: str) -> Grading | None:
        """The complete grading of this submission with these inputs, if one is recorded."""
        query = sa.select(gradings).where(
            gradings.c.submission == submission,
            gradings.c.reuse_key == reuse_key,
            gradings.c.complete.is_(True),
        )
        found = self._read(query, checks=False)
        return found[0] if found else None

    def latest_submissions(self) -> list[Grading]:
        """Each submission's most recent grading (by `failfast grade`), by submission id.

        Most recent by when it was recorded, not by id: a grading recorded again with the same
        inputs (``--regrade``, a commit reverted to) keeps its row and id, and is the latest.
        """
        ranked = (
            sa.select(
                gradings.c.id,
                sa.func.row_number()
                .over(
                    partition_by=gradings.c.submission,
                    order_by=(gradings.c.recorded_at.desc(), gradings.c.id.desc()),
                )
                .label("rank"),
            )
            .where(gradings.c.submission.is_not(None))
            .subquery()
        )
        query = (
            sa.select(gradings)
            .join(ranked, gradings.c.id == ranked.c.id)
            .where(ranked.c.rank == 1)
            .order_by(gradings.c.submission)
        )
        return self._read(query, checks=False)

    def _read(self, query: sa.Select[Any], *, checks: bool = True) -> list[Grading]:
        with _translated(self.url, "read"), self.engine.connect() as db:
            rows = db.execute(query).mappings().all()
            found: dict[int, list[CheckRow]] = {int(r["id"]): [] for r in rows}
            if checks and found:
                for c in db.execute(
                    sa.select(check_results)
                    .where(check_results.c.grading_id.in_(list(found)))
                    .order_by(check_results.c.grading_id)
                ).mappings():
                    found[int(c["grading_id"])].append(_check_of(c))
        return [_grading_of(r, tuple(found[int(r["id"])])) for r in rows]


def _engine(url: StoreUrl) -> sa.Engine:
    if url.sqlite_file is not None:
        engine = sa.create_engine(url.url, connect_args={"timeout": BUSY_TIMEOUT_S})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi: Any, _record: object) -> None:
            cursor = dbapi.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.close()

        return engine
    return sa.create_engine(
        url.url, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}, pool_pre_ping=True
    )


def _insert(engine: sa.Engine) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL both)."""
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


@contextlib.contextmanager
def _migration_lock(file: Path | None) -> Iterator[None]:
    """One process at a time creates or upgrades an SQLite file (PostgreSQL: migrate.py locks)."""
    if file is None:
        yield
        return
    with open(str(file) + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _translated(url: StoreUrl, doing: str) -> Iterator[None]:
    """Third-party errors into one HistoryError naming the URL (password hidden) and the cause."""
    try:
        yield
    except HistoryError:
        raise
    except (sa.exc.SQLAlchemyError, OSError) as error:
        raise HistoryError(
            f"The grading history at {url.shown} could not {doing}: {_cause(error)}"
        ) from None


def _cause(error: BaseException) -> str:
    """The database's own words, one line, without SQLAlchemy's SQL echo and links."""
    original = getattr(error, "orig", None) or error
    text = " ".join(str(original).split())
    if isinstance(original, OSError) and original.filename:
        text = f"{original.strerror} ({original.filename})"
    if "readonly database" in text or "read-only" in text:
        return (
            f"{text}. The file (or its folder) is not writable by this user: point --db "
            "elsewhere, or pass --no-history."
        )
    return text[:400]


def _row(g: Grading) -> dict[str, Any]:
    return {
        "recorded_at": g.recorded_at,
        "started_at": g.started_at,
        "duration_s": g.duration_s,
        "repo_path": g.repo_path,
        "repo_remote": g.repo_remote,
        "commit_sha": g.commit,
        "dirty": g.dirty,
        "grader_version": g.grader_version,
        "course_digest": g.course_digest,
        "backend": g.backend,
        "selection": g.selection,
        "milestones": " ".join(g.milestones),
        "targets": " ".join(g.targets),
        "score": str(g.score),
        "max_score": str(g.max_score),
        "exit_code": g.exit_code,
        "complete": g.complete,
        "submission": g.submission,
        "reuse_key": g.reuse_key,
        "report_json": g.report_json,
    }


def _check_row(grading_id: int, c: CheckRow) -> dict[str, Any]:
    return {
        "grading_id": grading_id,
        "check_id": c.check_id,
        "milestone": c.milestone,
        "status": c.status,
        "score": str(c.score),
        "max_score": str(c.max_score),
        "summary": c.summary,
        "measured": c.measured[:MEASURED_CHARS],
    }


def _check_of(row: Any) -> CheckRow:
    return CheckRow(
        row["check_id"],
        row["milestone"],
        row["status"],
        Decimal(row["score"]),
        Decimal(row["max_score"]),
        row["summary"],
        row["measured"],
    )


def _grading_of(row: Any, checks: Sequence[CheckRow]) -> Grading:
    return Grading(
        started_at=row["started_at"],
        duration_s=row["duration_s"],
        repo_path=row["repo_path"],
        grader_version=row["grader_version"],
        course_digest=row["course_digest"],
        backend=row["backend"],
        selection=row["selection"],
        milestones=tuple(row["milestones"].split()),
        score=Decimal(row["score"]),
        max_score=Decimal(row["max_score"]),
        exit_code=row["exit_code"],
        complete=bool(row["complete"]),
        report_json=row["report_json"],
        checks=tuple(checks),
        targets=tuple(row["targets"].split()),
        repo_remote=row["repo_remote"],
        commit=row["commit_sha"],
        dirty=row["dirty"],
        submission=row["submission"],
        reuse_key=row["reuse_key"],
        recorded_at=row["recorded_at"],
        id=int(row["id"]),
    )
