"""`failfast grade` on a real class: gradebook against the reports, resume, shards and merge."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs among the dev tools
import pytest

from tests.conftest import ROOT, grader_crashed, leftovers
from tests.mutants import MUTANTS, REFERENCE, TEMPLATE, materialize

pytestmark = pytest.mark.slow
MERGE = (sys.executable, "-m", "grader", "gradebook", "merge")


def _class(where: Path, milestone: str, mutants: int) -> Path:
    """The reference, the template and ``mutants`` mutants of ``milestone``, one repo each."""
    where.mkdir(parents=True)
    shutil.copytree(REFERENCE, where / "reference")
    shutil.copytree(TEMPLATE, where / "template")
    for mutant in [m for m in MUTANTS if m.milestone == milestone][:mutants]:
        materialize(REFERENCE, where / mutant.name, mutant.edits)
    return where


def _grade(*args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "grader", "grade", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert not grader_crashed(done.stdout + done.stderr), done.stdout + done.stderr
    return done


def _gradebook(out: Path) -> list[dict[str, str]]:
    with (out / "gradebook.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def test_class_gradebook_equals_the_reports(tmp_path: Path) -> None:
    """Six repos in one command: each row's score and statuses are its own JSON report's."""
    # Milestone 5: live checks, and counts rather than times, so two jobs at once decide nothing
    # by noise; and a fifth of milestone 2's time.
    klass = _class(tmp_path / "class", "milestone-5", mutants=4)
    out = tmp_path / "out"
    done = _grade(str(klass), "--out", str(out), "--milestone", "milestone-5", "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _gradebook(out)
    assert len(rows) == 6
    # As a course's script reads it: pandas, ids as text, and the points as exact decimals.
    frame = pd.read_csv(
        out / "gradebook.csv",
        dtype={"submission": str},
        keep_default_na=False,
        converters={"score": Decimal, "max_score": Decimal},
    )
    assert frame["submission"].tolist() == [row["submission"] for row in rows]
    for row, score, max_score in zip(rows, frame["score"], frame["max_score"], strict=True):
        text = (out / row["submission"] / "report.json").read_text()
        report = json.loads(text, parse_float=Decimal)
        assert (score, max_score) == (Decimal(report["score"]), Decimal(report["max_score"])), row
        assert Decimal(row["score"]) == score and Decimal(row["max_score"]) == max_score
        assert {c["id"]: c["status"] for c in report["checks"]} == {
            k: v for k, v in row.items() if k.startswith("m5.")
        }
        assert (out / row["submission"] / "report.html").stat().st_size > 1000
    by_id = {row["submission"]: row for row in rows}
    assert by_id["reference"]["status"] == "passed"
    assert by_id["template"]["status"] == "failed"
    assert "| `m5.double-submit` |" in (out / "summary.md").read_text()
    page = (out / "index.html").read_text()
    assert 'href="reference/report.html"' in page
    assert leftovers(os.getpid(), klass) == []


def test_interrupted_batch_resumes_with_what_is_left(tmp_path: Path) -> None:
    """Ctrl-C after the first report: exit 130; --resume grades the rest; a dead API is ERROR."""
    klass = tmp_path / "class"
    klass.mkdir()
    for name in ("a-first", "b-second", "c-third"):
        shutil.copytree(REFERENCE, klass / name)
    dead = materialize(REFERENCE, klass / "d-never-starts", ())
    (dead / "failfast.yaml").write_text("command: exit 3\n")
    out = tmp_path / "out"
    args = [str(klass), "--out", str(out), "--milestone", "milestone-5"]
    batch = subprocess.Popen(
        [sys.executable, "-m", "grader", "grade", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = out / "a-first" / "report.json"
    deadline = time.monotonic() + 120
    while not first.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first.exists(), "the first submission was never graded"
    time.sleep(1.0)  # the second one is being graded now (a grading takes 2-4 s)
    batch.send_signal(signal.SIGINT)
    output, _ = batch.communicate(timeout=60)
    assert batch.returncode == 130, output
    assert "--resume" in output and not grader_crashed(output)
    graded_before = first.stat().st_mtime_ns
    assert not (out / "c-third" / "report.json").exists()

    done = _grade(*args, "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert first.stat().st_mtime_ns == graded_before, "--resume graded a finished one again"
    assert "4 of 4 submissions" in done.stdout and "to grade" in done.stdout
    assert "3 to grade" in done.stdout or "2 to grade" in done.stdout
    rows = {row["submission"]: row for row in _gradebook(out)}
    assert set(rows) == {"a-first", "b-second", "c-third", "d-never-starts"}
    assert rows["d-never-starts"]["status"] == "error" and rows["d-never-starts"]["score"] == "0"
    assert {rows[n]["status"] for n in ("a-first", "b-second", "c-third")} == {"passed"}


def test_shards_merged_equal_the_whole_class(tmp_path: Path) -> None:
    """Shards 1/2 and 2/2, merged, give the gradebook the unsharded run gives."""
    klass = _class(tmp_path / "class", "milestone-1", mutants=2)
    whole, one, two, merged = (tmp_path / n for n in ("whole", "one", "two", "merged"))
    common = [str(klass), "--milestone", "milestone-1"]
    assert _grade(*common, "--out", str(whole)).returncode == 0
    first = _grade(*common, "--out", str(one), "--shard", "1/2")
    second = _grade(*common, "--out", str(two), "--shard", "2/2")
    assert first.returncode == second.returncode == 0
    shares = [len(_gradebook(one)), len(_gradebook(two))]
    assert sum(shares) == 4 and all(shares), shares  # these four ids hash to both shards
    done = subprocess.run(
        [*MERGE, str(one), str(two), "--out", str(merged)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (merged / "gradebook.csv").read_text() == (whole / "gradebook.csv").read_text()
    assert (merged / "summary.md").read_text() == (whole / "summary.md").read_text()


def test_bad_batch_input_is_one_paragraph_and_exit_2(tmp_path: Path) -> None:
    """No such class, a bad shard, too many jobs: a sentence each, exit 2, no traceback."""
    (tmp_path / "learner").mkdir()
    course = tmp_path / "course.yaml"
    course.write_text("version: 1\nchecks:\n  m9.nope: {points: 2}\n")
    for args, said in (
        ([str(tmp_path / "nowhere")], "There is nothing at"),
        ([str(tmp_path), "--course", str(course)], "course.yaml:3"),
        ([str(tmp_path), "--shard", "3/2"], "--shard"),
        ([str(tmp_path), "--jobs", "999"], "overloaded"),
    ):
        done = _grade(*args)
        assert done.returncode == 2 and said in done.stderr + done.stdout, (args, done.stderr)
