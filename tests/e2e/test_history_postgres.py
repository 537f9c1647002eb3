"""The grading history on a real PostgreSQL server: shards at once, first use at once, its errors.

The server is the session's own throwaway cluster (tests/postgres.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from grader.history import StoreUrl
from tests.conftest import ROOT, run_failfast
from tests.e2e.test_history_batch import export, grade, rows, without_reused
from tests.gitclass import git_class
from tests.mutants import REFERENCE
from tests.postgres import Server

GRADE = (sys.executable, "-m", "grader", "grade")
MILESTONE = ("--milestone", "milestone-1")
# Two shards' worth of ids: sha256 puts these in both halves (checked below, not assumed).
NAMES = ("ada", "bo", "cy", "di", "ed", "flo")


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(StoreUrl.parse(url).url)


@pytest.mark.slow
def test_two_shards_at_once_export_the_unsharded_gradebook(
    postgres: Server, tmp_path: Path
) -> None:
    """Shards 1/2 and 2/2 write one database at once; the export equals one whole run's."""
    klass = git_class(tmp_path / "class", NAMES)
    db = postgres.new_database()
    common = [str(klass), *MILESTONE, "--db", db]
    shards = [
        subprocess.Popen(
            [*GRADE, *common, "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (1, 2)
    ]
    outputs = [shard.communicate(timeout=600)[0] for shard in shards]
    assert [s.returncode for s in shards] == [0, 0], outputs
    sizes = [len(rows(tmp_path / f"s{i}")) for i in (1, 2)]
    assert sum(sizes) == len(NAMES) and all(sizes), sizes
    whole = tmp_path / "whole"
    done = grade(str(klass), *MILESTONE, "--out", str(whole))  # no --db: graded anew
    assert done.returncode == 0, done.stdout + done.stderr
    exported = tmp_path / "exported"
    done = export(db, exported)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "secret" not in done.stdout and postgres.password not in done.stdout
    # Row for row, and every column (the reused column is empty in both).
    assert (exported / "gradebook.csv").read_text() == (whole / "gradebook.csv").read_text()
    assert (exported / "summary.md").read_text() == (whole / "summary.md").read_text()
    assert (exported / "index.html").read_text() == (whole / "index.html").read_text()
    assert without_reused(rows(exported)) == without_reused(rows(whole))
    engine = _engine(db)
    with engine.connect() as connection:
        counted = connection.execute(
            sa.text("SELECT COUNT(*), COUNT(DISTINCT submission) FROM gradings")
        ).one()
    engine.dispose()
    assert tuple(counted) == (len(NAMES), len(NAMES))  # none lost, none doubled


def test_first_use_by_processes_at_once_creates_the_schema_once(postgres: Server) -> None:
    """Three processes open one empty database together: all succeed, one schema, one version.

    Without migrate.py's advisory lock each round fails (a duplicate key in pg_type).
    """
    program = (
        "import sys, time\n"
        "from grader.history import Store, StoreUrl\n"
        "url, start = StoreUrl.parse(sys.argv[1]), float(sys.argv[2])\n"
        "while time.time() < start:\n"
        "    pass\n"  # a busy wait: a sleep's wake-up spreads the starts more than a migration
        "Store.open(url).close()\n"
    )
    for _ in range(3):
        db = postgres.new_database()
        start = str(time.time() + 2.5)  # every process past its imports, then all at once
        openers = [
            subprocess.Popen(
                [sys.executable, "-c", program, db, start],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(3)
        ]
        said = [o.communicate(timeout=60)[0] for o in openers]
        assert [o.returncode for o in openers] == [0, 0, 0], said
        engine = _engine(db)
        with engine.connect() as connection:
            versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
            tables = set(sa.inspect(connection).get_table_names())
        engine.dispose()
        assert len(versions) == 1 and {"gradings", "check_results"} <= tables


@pytest.mark.parametrize("problem", ["wrong password", "unreachable"])
def test_a_server_that_refuses_costs_a_paragraph_not_the_report(
    postgres: Server, problem: str, tmp_path: Path
) -> None:
    """`check` reports and exits as graded; `grade` refuses before grading; *** for the password."""
    db = postgres.new_database()
    if problem == "wrong password":
        url = db.replace(postgres.password, "Wr0ngPassw0rd")
        said = "password authentication failed"
    else:
        url = db.replace(f":{postgres.port}/", ":9/")
        said = "Connection refused"
    hidden = url.split(":")[2].split("@")[0]
    report = tmp_path / "report.json"
    run = run_failfast("check", "milestone-1", "--db", url, "--json", str(report), repo=REFERENCE)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "exit code 0: every check passed" in run.stdout
    assert said in run.stderr and "***" in run.stderr and hidden not in run.stdout + run.stderr
    assert "its reports are written as usual" in run.stderr
    assert json.loads(report.read_text())["exit_code"] == 0

    klass = git_class(tmp_path / "class", NAMES[:1])
    out = tmp_path / "out"
    done = grade(str(klass), *MILESTONE, "--out", str(out), "--db", url)
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr and "***" in done.stderr and "Nothing was graded" in done.stderr
    assert hidden not in done.stdout + done.stderr
    assert not list(out.glob("*/report.json"))
