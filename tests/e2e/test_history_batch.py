"""`failfast grade --db` on SQLite: a class recorded as it is graded, reused, and exported.

Six checkouts of the reference graded at milestone 1 (its checks read files: two seconds each).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import ROOT, grader_crashed, leftovers
from tests.gitclass import commit, git_class

pytestmark = pytest.mark.slow
NAMES = ("ada", "bo", "cy", "di", "ed", "flo")
MILESTONE = ("--milestone", "milestone-1")


def grade(*args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    """`failfast grade ARGS`, finished; never a crash."""
    done = subprocess.run(
        [sys.executable, "-m", "grader", "grade", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert not grader_crashed(done.stdout + done.stderr), done.stdout + done.stderr
    return done


def export(db: str, out: Path) -> subprocess.CompletedProcess[str]:
    """`failfast gradebook export --db DB --out OUT`, finished."""
    return subprocess.run(
        [sys.executable, "-m", "grader", "gradebook", "export", "--db", db, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def rows(out: Path) -> dict[str, dict[str, str]]:
    """The gradebook of ``out``, by submission."""
    with (out / "gradebook.csv").open(newline="") as file:
        return {row["submission"]: row for row in csv.DictReader(file)}


def without_reused(table: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The gradebook's rows with the reused column left out."""
    return {k: {c: v for c, v in row.items() if c != "reused"} for k, row in table.items()}


def stored(db: Path) -> dict[str, int]:
    """Submission -> how many gradings of it the history holds, read with SQL of its own."""
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as connection:
        found = connection.execute(
            sa.text("SELECT submission, COUNT(*) FROM gradings GROUP BY submission")
        ).all()
    engine.dispose()
    return {str(name): int(count) for name, count in found}


def commits(db: Path, submission: str) -> list[str]:
    """The commits of the submission's gradings in the history."""
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as connection:
        found = connection.execute(
            sa.text("SELECT commit_sha FROM gradings WHERE submission = :s"), {"s": submission}
        ).all()
    engine.dispose()
    return [str(c) for (c,) in found]


def test_a_class_graded_twice_is_reused_and_a_new_commit_regraded(tmp_path: Path) -> None:
    """Second run: all six reused, no grader started, far faster; then only the new commit."""
    klass = git_class(tmp_path / "class", NAMES)
    db = tmp_path / "history.sqlite3"
    first_out, second_out = tmp_path / "first", tmp_path / "second"
    started = time.monotonic()
    platform = ("--platform", "gradescope")
    first = grade(str(klass), "--out", str(first_out), *MILESTONE, *platform, "--db", str(db))
    first_s = time.monotonic() - started
    assert first.returncode == 0, first.stdout + first.stderr
    assert "0 reused from the history" in first.stdout
    assert {r["reused"] for r in rows(first_out).values()} == {""}
    assert stored(db) == dict.fromkeys(NAMES, 1)

    started = time.monotonic()
    second = grade(str(klass), "--out", str(second_out), *MILESTONE, *platform, "--db", str(db))
    second_s = time.monotonic() - started
    assert second.returncode == 0, second.stdout + second.stderr
    assert "6 reused from the history" in second.stdout and "0 to grade" in second.stdout
    assert {r["reused"] for r in rows(second_out).values()} == {"yes"}
    assert without_reused(rows(second_out)) == without_reused(rows(first_out))
    # No `failfast check` ran: none left a log; the files are the first run's, byte for byte.
    assert not list(second_out.glob("*/grader.log"))
    for name in NAMES:
        for file in ("report.json", "report.html", "results.json"):
            assert (second_out / name / file).read_bytes() == (first_out / name / file).read_bytes()
    assert second_s < first_s / 2, (first_s, second_s)

    commit_after = commit_with_change(klass / "cy")
    page_before = (second_out / "ada" / "report.html").stat().st_mtime_ns
    third = grade(str(klass), "--out", str(second_out), *MILESTONE, "--db", str(db))
    assert third.returncode == 0, third.stdout + third.stderr
    assert "5 reused from the history" in third.stdout and "1 to grade" in third.stdout
    table = rows(second_out)
    assert {n for n, r in table.items() if r["reused"] != "yes"} == {"cy"}
    assert not (second_out / "cy" / "reused.json").exists()
    # Reused into the --out that holds its report already: its page is kept, not drawn again.
    assert (second_out / "ada" / "report.html").stat().st_mtime_ns == page_before
    assert [p.parent.name for p in second_out.glob("*/grader.log")] == ["cy"]
    assert stored(db)["cy"] == 2 and commit_after in commits(db, "cy")

    exported = tmp_path / "exported"
    done = export(str(db), exported)
    assert done.returncode == 0, done.stdout + done.stderr
    assert without_reused(rows(exported)) == without_reused(table)
    assert {r["reused"] for r in rows(exported).values()} == {""}


def commit_with_change(repo: Path) -> str:
    """The learner's next commit: a line more in the README."""
    with (repo / "README.md").open("a") as readme:
        readme.write("\nA note from the learner.\n")
    return commit(repo, "a note")


def test_a_sigkilled_batch_loses_only_the_submission_in_flight(tmp_path: Path) -> None:
    """SIGKILL mid-batch: every finished one is in the history; --resume with --db reuses them."""
    klass = git_class(tmp_path / "class", NAMES)
    db = tmp_path / "history.sqlite3"
    out = tmp_path / "out"
    args = [str(klass), "--out", str(out), *MILESTONE, "--db", str(db)]
    batch = subprocess.Popen(
        [sys.executable, "-m", "grader", "grade", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while len(list(out.glob("*/report.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    batch.kill()
    batch.wait(timeout=30)
    finished = {p.parent.name for p in out.glob("*/report.json")}
    assert len(finished) >= 2, "the batch never finished two submissions"
    # The submission in flight had its own grader, in a session of its own: it runs to its end
    # (or not) by itself; wait for it before reading what was kept.
    deadline = time.monotonic() + 120
    while _graders_of(klass) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _graders_of(klass) == []
    kept = stored(db)
    assert finished <= set(kept) and len(kept) <= len(finished) + 1, (finished, kept)
    assert set(kept.values()) == {1}

    again = grade(*args, "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    # --resume keeps the reports in --out; the history gives the one that finished unwatched.
    reused = len(kept) - len(finished)
    assert f"{reused} reused from the history" in again.stdout
    assert f"{len(NAMES) - len(kept)} to grade" in again.stdout
    table = rows(out)
    assert set(table) == set(NAMES) and {r["status"] for r in table.values()} == {"passed"}
    assert stored(db) == dict.fromkeys(NAMES, 1)
    assert leftovers(os.getpid(), klass) == []


def _graders_of(klass: Path) -> list[int]:
    """The pids of processes grading a repo of the class (a `failfast check` of its)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if f"--repo {klass}/" in cmdline:
            found.append(int(entry.name))
    return found


def test_an_unusable_history_is_refused_before_grading(tmp_path: Path) -> None:
    """--db on a file that cannot be made: one paragraph, exit 2, nothing graded."""
    klass = git_class(tmp_path / "class", NAMES[:1])
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = tmp_path / "out"
    done = grade(str(klass), "--out", str(out), *MILESTONE, "--db", str(blocker / "h.sqlite3"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Nothing was graded" in done.stderr and str(blocker) in done.stderr
    assert not list(out.glob("*/report.json"))


def test_without_db_a_class_is_never_recorded(tmp_path: Path) -> None:
    """No --db: nothing is recorded, not even in FAILFAST_DB's history, and no row is reused."""
    klass = git_class(tmp_path / "class", NAMES[:1])
    db = tmp_path / "theirs.sqlite3"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "grade",
            str(klass),
            "--out",
            str(tmp_path / "out"),
            *MILESTONE,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "FAILFAST_DB": str(db)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not db.exists() and "reused" not in done.stdout
    assert {r["reused"] for r in rows(tmp_path / "out").values()} == {""}


def test_a_submission_that_cannot_be_graded_is_exported_too(tmp_path: Path) -> None:
    """An API that never starts: recorded (never reused), so the export has the batch's rows."""
    klass = git_class(tmp_path / "class", ("good", "dead"))
    (klass / "dead" / "failfast.yaml").write_text("command: exit 3\n")
    commit(klass / "dead", "an API that exits at once")
    db = str(tmp_path / "history.sqlite3")
    out, exported = tmp_path / "out", tmp_path / "exported"
    args = [str(klass), "--milestone", "milestone-5", "--db", db]
    done = grade(*args, "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert rows(out)["dead"]["status"] == "error"
    assert export(db, exported).returncode == 0
    assert (exported / "gradebook.csv").read_text() == (out / "gradebook.csv").read_text()
    again = grade(*args, "--out", str(tmp_path / "again"))
    assert "1 reused from the history" in again.stdout and "1 to grade" in again.stdout
    assert rows(tmp_path / "again")["dead"]["reused"] == ""
