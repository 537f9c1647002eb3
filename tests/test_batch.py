"""Class grading's pure parts: shards, submissions, JSON read back, gradebook, summary."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from grader.batch import (
    BatchError,
    Row,
    Shard,
    check_jobs,
    cpu_shares,
    find_submissions,
    gradebook_csv,
    summary_markdown,
)
from grader.formats.json import JsonFormat, report_from_dict
from grader.model import CheckResult, Evidence, Location, NotGraded, Report, Status


def _report(*statuses: Status, points: float = 1.0) -> Report:
    results = tuple(
        CheckResult(
            f"m2.check-{n}",
            f"Check {n}",
            "milestone-2",
            status,
            Evidence(f"summary {status.value}", measured="m", expected="e", hint="h"),
            max_score=points,
        )
        for n, status in enumerate(statuses)
    )
    return Report("milestone-2", "/repo", "2026-11-27T00:00:00Z", 1.0, results)


def test_shards_partition_the_class_stably() -> None:
    """Every id is in exactly one shard of N, and adding ids moves none of the others."""
    ids = [f"learner-{n}" for n in range(200)]
    for count in (1, 2, 3, 7):
        shards = [Shard(i, count) for i in range(1, count + 1)]
        assert all(sum(s.holds(x) for s in shards) == 1 for x in ids)
    before = {x: Shard(2, 3).holds(x) for x in ids}
    assert all(Shard(2, 3).holds(x) == held for x, held in before.items())
    assert 40 < sum(Shard(1, 3).holds(x) for x in ids) < 95  # roughly a third each


@pytest.mark.parametrize("text", ["0/2", "3/2", "a/b", "1", "1/2/3"])
def test_bad_shard_is_refused(text: str) -> None:
    """A shard outside 1..N, or not I/N, is bad input with the form to use."""
    with pytest.raises(BatchError, match="--shard"):
        Shard.parse(text)


def test_submissions_from_a_directory_and_from_a_list(tmp_path: Path) -> None:
    """Subdirectories (hidden ones left out), or listed paths relative to the list file."""
    for name in ("bob", "alice", ".git"):
        (tmp_path / "class" / name).mkdir(parents=True)
    (tmp_path / "class" / "notes.txt").write_text("not a repo")
    assert [s.id for s in find_submissions(tmp_path / "class")] == ["alice", "bob"]
    listing = tmp_path / "list.txt"
    listing.write_text("# the class\nclass/bob\n\nclass/alice\n")
    found = find_submissions(listing)
    assert [(s.id, s.path) for s in found] == [
        ("alice", (tmp_path / "class" / "alice").resolve()),
        ("bob", (tmp_path / "class" / "bob").resolve()),
    ]
    listing.write_text("class/bob\nclass/nobody\n")
    with pytest.raises(BatchError, match=r"list.txt:2: class/nobody is not a directory"):
        find_submissions(listing)


def test_two_submissions_with_one_name_are_refused(tmp_path: Path) -> None:
    """Ids name folders and rows: a list naming two `alice` repos is refused."""
    for where in ("a/alice", "b/alice"):
        (tmp_path / where).mkdir(parents=True)
    listing = tmp_path / "list.txt"
    listing.write_text("a/alice\nb/alice\n")
    with pytest.raises(BatchError, match="same name"):
        find_submissions(listing)


def test_jobs_beyond_fair_timing_are_refused_or_warned() -> None:
    """Up to the cores: fine; up to twice: a warning; beyond: refused."""
    cores = len(cpu_shares(1)[0]) or 1
    assert check_jobs(cores) is None
    if cores * 2 > cores:
        assert "INCONCLUSIVE" in (check_jobs(cores + 1) or "")
    with pytest.raises(BatchError, match="overloaded"):
        check_jobs(2 * cores + 1)


def test_cpu_shares_split_the_cores() -> None:
    """Each job gets its own cores when there are enough; the shares do not overlap."""
    cores = cpu_shares(1)[0]
    shares = cpu_shares(2)
    if len(cores) >= 2:
        assert not shares[0] & shares[1] and shares[0] | shares[1] == cores


def test_json_report_reads_back_as_the_report() -> None:
    """What the JSON format writes, read back, is the same report (scores included)."""
    original = _report(Status.PASS, Status.FAIL, Status.SKIP, points=2.5)
    original = Report(
        original.milestone,
        original.repo,
        original.started_at,
        original.duration_s,
        (
            *original.results[:1],
            CheckResult(
                "m1.budgets-valid",
                "Valid",
                "milestone-1",
                Status.FAIL,
                Evidence("bad", location=Location("budgets.yaml", 14), data={"x": [1, 2]}),
                api_output=("line",),
            ),
        ),
    )
    document = json.loads(JsonFormat().render(original))
    again = report_from_dict(document)
    assert again.results == original.results
    assert (again.score, again.max_score) == (original.score, original.max_score)
    error = Report("milestone-2", "/repo", not_graded=NotGraded("ApiStartError", "no", ("a",)))
    back = report_from_dict(json.loads(JsonFormat().render(error)))
    assert back.not_graded == error.not_graded


def test_gradebook_rows_scores_and_statuses() -> None:
    """A row per submission: its score, max score, status, and each check's status."""
    rows = [
        Row("alice", _report(Status.PASS, Status.PASS)),
        Row("bob", _report(Status.PASS, Status.FAIL)),
        Row("=cmd|' /c calc'!A0", _report(Status.PASS, Status.INCONCLUSIVE)),
        Row("dave", None),
    ]
    table = list(csv.reader(io.StringIO(gradebook_csv(rows))))
    assert table[0] == ["submission", "score", "max_score", "status", "m2.check-0", "m2.check-1"]
    assert table[1] == ["alice", "2", "2", "passed", "PASS", "PASS"]
    assert table[2] == ["bob", "1", "2", "failed", "PASS", "FAIL"]
    # A spreadsheet never runs a submission's name as a formula.
    assert table[3][0].startswith("'=") and table[3][3] == "inconclusive"
    assert table[4] == ["dave", "0", "0", "error", "", ""]


def test_summary_names_pass_rates_and_the_commonest_failure() -> None:
    """Pass rate per check over graded submissions; the most common FAIL, escaped."""
    failing = _report(Status.PASS, Status.FAIL)
    rows = [Row("a", failing), Row("b", failing), Row("c", _report(Status.PASS, Status.PASS))]
    text = summary_markdown(rows, "Class")
    assert "| `m2.check-0` | 3/3 | 100 % |  |" in text
    assert "| `m2.check-1` | 1/3 | 33 % | summary FAIL (2) |" in text
    forged = _report(Status.FAIL)
    forged = Report(
        forged.milestone,
        forged.repo,
        results=(
            CheckResult("m2.x", "X", "milestone-2", Status.FAIL, Evidence("a | b <img src=x>")),
        ),
    )
    text = summary_markdown([Row("f", forged)], "Class")
    assert "a \\| b &lt;img src=x&gt;" in text and "<img" not in text
