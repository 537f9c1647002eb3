"""Class grading's pure parts: shards, submissions, JSON read back, gradebook, summary."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import cast

import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs among the dev tools
import pytest

from grader.course.batch import (
    LOG_FILE,
    BatchError,
    Row,
    Shard,
    Submission,
    check_jobs,
    check_merge_names,
    cpu_shares,
    find_submissions,
    gradebook_csv,
    summary_markdown,
    unsafe_id,
)
from grader.formats.json import JsonFormat, report_from_dict
from grader.model import (
    ONE_POINT,
    CheckResult,
    Evidence,
    Location,
    NotGraded,
    Report,
    Status,
)
from tests.conftest import run_failfast

# Names a spreadsheet would run as a formula, one per way of starting one (OWASP "CSV Injection").
FORMULAS = ("=cmd|' /C calc'!A0", "+1", "-x", "@sum(1)")
# As folders of a class: a name holds no "/", so the first is the folder `=cmd|' ` (holding
# `C calc'!A0`), and that folder is the submission.
FORMULA_FOLDERS = tuple(name.split("/")[0] for name in FORMULAS)
# Ids a CSV or pandas reader could turn into something else: NA and null (missing values),
# 0012 (a number), a comma, a quote, a line break, unicode, a leading space.
TRICKY_IDS = (
    "NA",
    "null",
    "nan",
    "None",
    "#N/A",
    "TRUE",
    "0012",
    "1e5",
    "a,b",
    'quote"d',
    "it's",
    "line\nbreak",
    "zoë-ñandú",
    "学生-七",
    "🙂",
    " leading space",
    "trailing space ",
)


def _report(*statuses: Status, points: Decimal = ONE_POINT) -> Report:
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


def test_formula_names_are_refused_all_at_once(tmp_path: Path) -> None:
    """Every name a spreadsheet would run, from a directory (by path) or a list (by line)."""
    klass = tmp_path / "class"
    for name in (*FORMULAS, "\tab", "\rreturn", "good", " spaced", "a=b", "x-1"):
        (klass / name).mkdir(parents=True)
    with pytest.raises(BatchError) as refused:
        find_submissions(klass)
    message = refused.value.message
    for name in (*FORMULA_FOLDERS, "\\tab", "\\rreturn"):  # a tab, a return: \t, \r
        assert f'/class/{name}"' in message, (name, message)
    for name in ("good", " spaced", "a=b", "x-1"):
        assert f"/{name}" not in message
    assert "6 submission names" in message and "CSV Injection" in message
    assert "rename these folders" in message and "\n" not in message

    listing = tmp_path / "list.txt"
    listing.write_text("# the class\nclass/good\nclass/+1\n\nclass/@sum(1)\n")
    with pytest.raises(BatchError) as refused:
        find_submissions(listing)
    message = refused.value.message
    assert f'{listing}:3: "class/+1"' in message and f'{listing}:5: "class/@sum(1)"' in message
    assert "2 submission names" in message and f"their lines in {listing}" in message
    listing.write_text("class/good\nclass/ spaced\n")
    assert [s.id for s in find_submissions(listing)] == [" spaced", "good"]


def test_grade_refuses_formula_names_before_grading(tmp_path: Path) -> None:
    """`failfast grade`: exit 2, every unsafe name in one paragraph, nothing graded."""
    klass = tmp_path / "class"
    for name in (*FORMULAS, "good"):
        (klass / name).mkdir(parents=True)
    out = tmp_path / "out"
    started = time.monotonic()
    done = run_failfast("grade", str(klass), "--out", str(out), timeout_s=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert time.monotonic() - started < 30  # no grading started
    for name in FORMULA_FOLDERS:
        assert f'{klass / name}"' in done.stderr, (name, done.stderr)
    assert "Nothing was graded" in done.stderr and "CSV Injection" in done.stderr
    assert f"{klass / 'good'}" not in done.stderr and "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1  # one paragraph
    assert not out.exists()


def test_merge_refuses_formula_names_before_writing(tmp_path: Path) -> None:
    """`failfast gradebook merge` of shards holding an unsafe name: exit 2, nothing written."""
    shard = tmp_path / "shard"
    for name in ("good", "=1+2", "-x"):
        (shard / name).mkdir(parents=True)
        (shard / name / LOG_FILE).write_text("crashed\n")
    (shard / "+not-graded").mkdir()  # no report and no log: not a submission of the shard
    check_merge_names([tmp_path])  # no submission folder there: nothing to refuse
    merged = tmp_path / "merged"
    done = run_failfast("gradebook", "merge", str(shard), "--out", str(merged), timeout_s=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f'{shard / "=1+2"}"' in done.stderr and f'{shard / "-x"}"' in done.stderr
    assert "Nothing was merged" in done.stderr and "2 submission names" in done.stderr
    assert "+not-graded" not in done.stderr and not merged.exists()


def test_two_submissions_with_one_name_are_refused(tmp_path: Path) -> None:
    """Ids name folders and rows: a list naming two `alice` repos is refused."""
    for where in ("a/alice", "b/alice"):
        (tmp_path / where).mkdir(parents=True)
    listing = tmp_path / "list.txt"
    listing.write_text("a/alice\nb/alice\n")
    with pytest.raises(BatchError, match="same id") as refused:
        find_submissions(listing)
    message = refused.value.message
    assert f'{listing}:1: "a/alice" ({tmp_path / "a" / "alice"})' in message
    assert f'{listing}:2: "b/alice" ({tmp_path / "b" / "alice"})' in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (".", "class"),  # the list's own directory
        ("./", "class"),
        ("alice/", "alice"),  # a trailing slash is ignored
        ("./alice/.", "alice"),
        ("bob/../alice", "alice"),
        ("alice/..", "class"),  # `..` last: the directory it resolves to
        ("link", "link"),  # a symlink keeps its own name
    ],
)
def test_a_listed_path_gets_its_directorys_name(tmp_path: Path, line: str, expected: str) -> None:
    """`.`, `./`, a trailing slash, `..` and symlinks: a non-empty id, the directory's name."""
    klass = tmp_path / "class"
    for name in ("alice", "bob"):
        (klass / name).mkdir(parents=True)
    (klass / "link").symlink_to(klass / "bob")
    listing = klass / "list.txt"
    listing.write_text(f"# one repo\n{line}\n")
    [found] = find_submissions(listing)
    assert found.id == expected
    assert found.path == (klass / line).resolve()


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("/", "the root directory / has no name"),
        ("/..", "the root directory / has no name"),
        (".hidden", "starts with a dot"),
        ("gradebook.csv", "the name of the class file gradebook.csv"),
        ("index.html/", "the name of the class file index.html"),
        ("loop", "symlink loop"),
    ],
)
def test_a_listed_path_without_a_usable_id_is_refused(tmp_path: Path, line: str, said: str) -> None:
    """`/` (no name), a hidden name, a class file's name, a loop: refused with the line."""
    for name in (".hidden", "gradebook.csv", "index.html"):
        (tmp_path / name).mkdir()
    (tmp_path / "loop").symlink_to("loop")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# the class\n{line}\n")
    with pytest.raises(BatchError, match=said) as refused:
        find_submissions(listing)
    assert f"{listing}:2: " in refused.value.message and "\n" not in refused.value.message


def test_unsafe_ids_cannot_be_made() -> None:
    """No submission can have an id whose folder would be --out itself or outside it."""
    for name in ("", ".", "..", "a/b", "../x", ".git", "summary.md"):
        assert unsafe_id(name) is not None, name
        with pytest.raises(ValueError, match="submission id"):
            Submission(name, Path("/repo"))
    for name in ("alice", "a..b", "a.b", " spaced", "学生"):
        assert unsafe_id(name) is None, name


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
    original = _report(Status.PASS, Status.FAIL, Status.SKIP, points=Decimal("2.5"))
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
    """A row per submission: its score, max score, status, reused, and each check's status."""
    rows = [
        Row("alice", _report(Status.PASS, Status.PASS), reused=True),
        Row("bob", _report(Status.PASS, Status.FAIL)),
        Row("carol", _report(Status.PASS, Status.INCONCLUSIVE)),
        Row("dave", None),
    ]
    table = list(csv.reader(io.StringIO(gradebook_csv(rows))))
    assert table[0] == [
        "submission",
        "score",
        "max_score",
        "status",
        "reused",
        "m2.check-0",
        "m2.check-1",
    ]
    assert table[1] == ["alice", "2", "2", "passed", "yes", "PASS", "PASS"]
    assert table[2] == ["bob", "1", "2", "failed", "", "PASS", "FAIL"]
    assert table[3] == ["carol", "1", "2", "inconclusive", "", "PASS", "INCONCLUSIVE"]
    assert table[4] == ["dave", "0", "0", "error", "", "", ""]


def _exact_rows() -> list[Row]:
    """A row per tricky id, each with points a float or ``:g`` would not keep."""
    worth = [
        Decimal("12345.67"),
        Decimal("1000000"),
        Decimal("1234567.89"),
        Decimal("0.5"),
        Decimal("6.67"),
        Decimal("0.01"),
        Decimal("99999999.99"),
    ]
    return [
        Row(name, _report(Status.PASS, Status.FAIL, points=worth[n % len(worth)]))
        for n, name in enumerate(TRICKY_IDS)
    ]


def test_gradebook_reads_back_exactly_with_csv(tmp_path: Path) -> None:
    """Python's csv reads every id back as the name, and every score as the exact decimal."""
    rows = _exact_rows()
    path = tmp_path / "gradebook.csv"
    path.write_text(gradebook_csv(rows), "utf-8")
    with path.open(newline="", encoding="utf-8") as file:
        back = list(csv.DictReader(file))
    assert [line["submission"] for line in back] == list(TRICKY_IDS)
    for row, line in zip(rows, back, strict=True):
        assert Decimal(line["score"]) == row.score and Decimal(line["max_score"]) == row.max_score
        assert "e" not in line["score"].lower() and "e" not in line["max_score"].lower()
    by_id = {line["submission"]: line for line in back}
    assert (by_id["NA"]["score"], by_id["NA"]["max_score"]) == ("12345.67", "24691.34")
    assert (by_id["null"]["score"], by_id["null"]["max_score"]) == ("1000000", "2000000")


def test_gradebook_reads_back_exactly_with_pandas(tmp_path: Path) -> None:
    """pandas, as a course's scripts read it, keeps every id and every score exactly."""
    rows = _exact_rows()
    path = tmp_path / "gradebook.csv"
    path.write_text(gradebook_csv(rows), "utf-8")
    frame = pd.read_csv(
        path,
        dtype={"submission": str},
        keep_default_na=False,
        converters={"score": Decimal, "max_score": Decimal},
    )
    assert frame["submission"].tolist() == list(TRICKY_IDS)
    assert frame["score"].tolist() == [row.score for row in rows]
    assert frame["max_score"].tolist() == [row.max_score for row in rows]
    # The roster's join: every learner's row found by their id, as the roster spells it.
    roster = pd.DataFrame({"submission": list(reversed(TRICKY_IDS))})
    joined = roster.merge(frame, on="submission", how="left", validate="one_to_one")
    assert joined["status"].tolist() == ["failed"] * len(TRICKY_IDS)
    # Read as pandas would by default, the scores are still the decimals (no 1e+06, no rounding).
    plain = pd.read_csv(path, dtype={"submission": str}, keep_default_na=False)
    assert [Decimal(str(score)) for score in plain["score"]] == [row.score for row in rows]


def test_a_row_makes_float_points_exact() -> None:
    """A reader that still builds float points: the row's are the decimals they print as."""
    report = _report(Status.PASS, Status.PASS, Status.FAIL)
    floats = replace(
        report,
        results=tuple(replace(r, max_score=cast("Decimal", 6.67)) for r in report.results),
    )
    row = Row("alice", floats)
    assert (row.score, row.max_score) == (Decimal("13.34"), Decimal("20.01"))
    exact = Row("bob", report)
    assert exact.report is report and exact.score == 2
    assert (Row("carol", None).score, Row("carol", None).max_score) == (Decimal(0), Decimal(0))


def test_gradebook_never_writes_a_formula() -> None:
    """Should a formula name reach the gradebook, it is refused, never written."""
    for name in FORMULAS:
        with pytest.raises(BatchError, match="CSV Injection"):
            gradebook_csv([Row("alice", None), Row(name, None)])


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
