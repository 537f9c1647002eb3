"""The grading history: its URL, its schema (Alembic, real), recording and reading it.

The store's tests run on SQLite and on a real PostgreSQL server (tests/postgres.py). PostgreSQL's
own (concurrency, its errors through the CLI) are tests/e2e/test_history_postgres.py; the CLI's,
tests/e2e/test_history.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from grader.errors import HistoryError
from grader.history import (
    CheckRow,
    Grading,
    Store,
    StoreUrl,
    between,
    migrate,
    previous,
    reuse_key,
    selection_of,
    selection_text,
)
from grader.history.gitinfo import read as read_git
from grader.history.gitinfo import without_credentials
from grader.history.tables import metadata
from grader.model import HistoryNote, Report
from tests.postgres import Server


def _grading(statuses: dict[str, str], commit: str | None = "a" * 40, **changes: object) -> Grading:
    """A grading of /repo at ``commit`` whose checks have these statuses."""
    checks = tuple(
        CheckRow(check_id, "milestone-2", status, Decimal(status == "PASS"), Decimal(1), "", "")
        for check_id, status in statuses.items()
    )
    base = Grading(
        started_at="2026-12-07T10:00:00+00:00",
        duration_s=1.0,
        repo_path="/repo",
        grader_version="0.3.0",
        course_digest="",
        backend="local",
        selection="milestone-2",
        milestones=("milestone-2",),
        score=sum((c.score for c in checks), Decimal(0)),
        max_score=Decimal(len(checks)),
        exit_code=0,
        complete=True,
        report_json="{}",
        checks=checks,
        commit=commit,
        dirty=False,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> StoreUrl:
    """A new, empty history: an SQLite file, or a database of the session's PostgreSQL server."""
    if request.param == "sqlite":
        return StoreUrl.parse(str(tmp_path / "history.sqlite3"))
    server: Server = request.getfixturevalue("postgres")
    return StoreUrl.parse(server.new_database())


@pytest.fixture
def store(url: StoreUrl) -> Iterator[Store]:
    """A new history, opened: its schema made by the migrations."""
    with Store.open(url) as opened:
        yield opened


def test_a_plain_path_is_an_sqlite_file(tmp_path: Path) -> None:
    """--db PATH means an SQLite file at that path, made absolute."""
    url = StoreUrl.parse("history.db")
    assert url.url.get_backend_name() == "sqlite"
    assert url.sqlite_file == Path("history.db").absolute()


def test_postgresql_goes_through_psycopg_and_its_password_is_never_shown() -> None:
    """postgresql:// takes psycopg 3; every message shows *** for the password."""
    url = StoreUrl.parse("postgresql://grader:s3cret@db.example/course")
    assert url.url.drivername == "postgresql+psycopg"
    assert "s3cret" not in url.shown and "***" in url.shown


@pytest.mark.parametrize(
    "text", ["mysql://u:p@h/db", "postgresql+asyncpg://u@h/db", "sqlite+pysqlite:///x:y://"]
)
def test_other_databases_are_refused_by_name(text: str) -> None:
    """Only SQLite and PostgreSQL through psycopg; the refusal names what to write instead."""
    if text.startswith("sqlite"):
        assert StoreUrl.parse(text).url.get_backend_name() == "sqlite"
        return
    with pytest.raises(HistoryError, match="postgresql://"):
        StoreUrl.parse(text)


def test_a_check_run_is_recorded_with_its_checks(store: Store) -> None:
    """Every field and check comes back as recorded, in order of recording."""
    first = store.record(_grading({"m2.read-timeout": "FAIL"}))
    second = store.record(_grading({"m2.read-timeout": "PASS"}, commit="b" * 40))
    found = store.gradings_of("/repo")
    assert [g.id for g in found] == [first, second]
    assert found[1].checks[0].status == "PASS" and found[1].short_commit == "bbbbbbb"
    assert found[0].score == Decimal(0) and found[1].max_score == Decimal(1)


def test_a_submission_recorded_twice_is_one_row(store: Store) -> None:
    """Same submission and reuse key: the database's unique key replaces, never doubles."""
    graded = _grading({"m2.read-timeout": "PASS"}, submission="alice", reuse_key="k1")
    first = store.record(graded)
    again = store.record(dataclasses.replace(graded, exit_code=1))
    assert first == again
    (latest,) = store.latest_submissions()
    assert latest.exit_code == 1 and latest.submission == "alice"
    assert store.reusable("alice", "k1") is not None and store.reusable("alice", "k2") is None


def test_the_latest_grading_is_the_last_recorded_even_when_its_row_is_older(
    store: Store,
) -> None:
    """A commit graded again after another (its row replaced in place) is the latest."""
    first = _grading({}, submission="carol", reuse_key="c1", recorded_at="2026-12-07T10:00:00")
    store.record(first)
    store.record(dataclasses.replace(first, reuse_key="c2", recorded_at="2026-12-07T11:00:00"))
    store.record(dataclasses.replace(first, exit_code=1, recorded_at="2026-12-07T12:00:00"))
    (latest,) = store.latest_submissions()
    assert (latest.reuse_key, latest.exit_code) == ("c1", 1)


def test_an_incomplete_grading_is_never_reused(store: Store) -> None:
    """A grading with an ERROR or INCONCLUSIVE (complete False) is graded again."""
    store.record(_grading({}, submission="bob", reuse_key="k", complete=False))
    assert store.reusable("bob", "k") is None


def test_changes_name_both_commits_and_skip_checks_not_run_both_times() -> None:
    """A status that changed is a change; a check only one grading ran is not."""
    before = _grading({"m2.read-timeout": "FAIL", "m2.slow-body": "PASS"}, id=1)
    after = _grading(
        {"m2.read-timeout": "PASS", "m2.connect-timeout": "FAIL"}, commit="c" * 40, id=2
    )
    (change,) = between(before, after)
    assert (change.before, change.after) == ("FAIL", "PASS")
    assert change.commits == "since commit aaaaaaa (now commit ccccccc)"
    note = HistoryNote("sqlite://", 2, (change,))
    assert note.line() == (
        "1 check changed since your last run: m2.read-timeout FAIL → PASS since commit "
        "aaaaaaa (now commit ccccccc)"
    )


def test_previous_is_the_last_grading_of_any_same_check() -> None:
    """A milestone-3 run in between does not hide the last milestone-2 run."""
    m2 = _grading({"m2.read-timeout": "FAIL"}, id=1)
    m3 = _grading({"m3.transient-heals": "PASS"}, id=2)
    now = _grading({"m2.read-timeout": "PASS"}, id=3)
    assert previous([m2, m3, now], now) == m2
    assert previous([m3, now], now) is None


def test_a_dirty_tree_or_no_commit_is_never_reused() -> None:
    """Only a clean commit says what was graded: no key otherwise."""
    assert reuse_key("a" * 40, False, "0.3", "", "local", "all") is not None
    assert reuse_key("a" * 40, True, "0.3", "", "local", "all") is None
    assert reuse_key(None, None, "0.3", "", "local", "all") is None
    assert reuse_key("a" * 40, False, "0.3", "", "local", "all") != reuse_key(
        "a" * 40, False, "0.3", "", "docker", "all"
    )


def test_git_state_is_read_from_a_real_checkout(tmp_path: Path) -> None:
    """Commit, dirty flag and remote (its token taken out) from the real git."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def run(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True)

    run("init", "-q")
    (tmp_path / "f").write_text("x")
    run("add", "f")
    run("-c", "user.email=a@b", "-c", "user.name=l", "commit", "-qm", "one")
    run("remote", "add", "origin", "https://learner:ghp_token@github.com/l/repo.git")
    state = read_git(tmp_path)
    assert state.commit is not None and len(state.commit) == 40 and state.dirty is False
    assert state.remote == "https://github.com/l/repo.git"
    (tmp_path / "f").write_text("y")
    assert read_git(tmp_path).dirty is True
    assert read_git(tmp_path / "nowhere").commit is None
    assert without_credentials("git@github.com:l/r.git") == "git@github.com:l/r.git"


def test_the_first_schema_upgrades_in_place(url: StoreUrl) -> None:
    """A history at revision 0001 (no targets) keeps its rows and gains the column on open."""
    engine = sa.create_engine(url.url)
    migrate.to_head(engine, url.shown, target="0001")
    with engine.begin() as db:
        columns = {c["name"] for c in sa.inspect(db).get_columns("gradings")}
        assert "targets" not in columns
        row: dict[str, object] = {
            c: "x" for c in columns if c not in ("id", "duration_s", "exit_code", "dirty")
        }
        row |= {"duration_s": 1.0, "exit_code": 0, "complete": True, "milestones": "milestone-2"}
        row |= {"score": "1", "max_score": "1", "submission": None, "reuse_key": None}
        row |= {"repo_path": "/old", "commit_sha": None, "repo_remote": None}
        db.execute(
            sa.text(
                f"INSERT INTO gradings ({', '.join(row)}) VALUES "
                f"({', '.join(':' + c for c in row)})"
            ),
            row,
        )
    engine.dispose()
    with Store.open(url) as store:
        (old,) = store.gradings_of("/old")
        assert old.targets == () and old.milestones == ("milestone-2",)
        store.record(_grading({}, repo_path="/old", targets=("m2.read-timeout",)))
        assert store.gradings_of("/old")[1].targets == ("m2.read-timeout",)


def test_the_tables_match_the_migrations(url: StoreUrl) -> None:
    """tables.py and the newest revision describe the same columns: neither drifts alone."""
    Store.open(url).close()
    engine = sa.create_engine(url.url)
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name
    engine.dispose()


def test_a_history_of_a_newer_failfast_is_refused(url: StoreUrl) -> None:
    """A schema revision this failfast does not know: refused, naming the upgrade."""
    Store.open(url).close()
    engine = sa.create_engine(url.url)
    with engine.begin() as db:
        db.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(HistoryError, match="newer failfast") as refused:
        Store.open(url)
    assert "pip install -U failfast-grader" in str(refused.value)


@contextlib.contextmanager
def _immutable(path: Path) -> Iterator[None]:
    """The file made immutable with chattr: not even root may write it."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"this file system has no immutable flag: {made.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_file_is_named_with_the_way_out(tmp_path: Path) -> None:
    """SQLite's "readonly database" becomes one message with the URL and --no-history."""
    url = StoreUrl.parse(str(tmp_path / "ro.sqlite3"))
    Store.open(url).close()
    with (
        _immutable(tmp_path / "ro.sqlite3"),
        Store.open(url) as store,
        pytest.raises(HistoryError) as refused,
    ):
        store.record(_grading({"m2.read-timeout": "PASS"}))
    message = str(refused.value)
    assert str(tmp_path / "ro.sqlite3") in message and "--no-history" in message


def test_grade_looks_a_selection_up_as_check_records_it() -> None:
    """One spelling: `all` never has --through; a milestone's --through is kept."""
    assert selection_text("all", True) == selection_of(Report("all", "/r", through=False)) == "all"
    assert selection_text("milestone-3", True) == "milestone-3 --through"
    assert selection_of(Report("milestone-3", "/r", through=True)) == "milestone-3 --through"
    assert selection_text("milestone-3", False) == selection_of(Report("milestone-3", "/r"))


def test_the_known_head_is_the_newest_revision_file() -> None:
    """migrate.HEAD, which spares each run loading Alembic, is where the revision files end."""
    assert migrate.head() == migrate.HEAD
