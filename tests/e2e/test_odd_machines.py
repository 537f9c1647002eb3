"""Odd machines and odd class lists: every run ends in a report or one clear paragraph.

Submission lists whose lines are `/`, `.`, `./`, `sub/` or `a/../b`; repos holding symlink
loops; a working directory deleted under the grader; an unwritable HOME; report files that
cannot be written. Each is the real CLI (`run_failfast` asserts no traceback and nothing left
running), graded at milestone 1 (static) except where a chart needs live checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs among the dev tools
import pytest

from tests.conftest import ROOT, Run, grader_crashed, leftovers, run_failfast
from tests.mutants import REFERENCE

M1_CHECKS = 5


def _repo(where: Path) -> Path:
    """A copy of the reference solution (milestone 1 passes every check)."""
    shutil.copytree(REFERENCE, where)
    return where


def _gradebook(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "gradebook.csv", dtype={"submission": str}, keep_default_na=False)


def _one_line(text: str) -> str:
    """Terminal output as one line: rich wraps long lines at the console's width."""
    return " ".join(text.split())


def _grade(listing: Path, out: Path, *more: str, timeout_s: float = 300) -> Run:
    return run_failfast(
        "grade", str(listing), "--out", str(out), "--milestone", "milestone-1", *more,
        timeout_s=timeout_s,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Class 4: submission lists


@pytest.mark.slow
def test_every_listed_form_is_graded_in_a_folder_and_a_row_of_its_own(tmp_path: Path) -> None:
    """`.`, `sub/`, `x/../b`, `c/.` and an absolute path: a non-empty id, own folder, one row."""
    home = _repo(tmp_path / "home-repo")  # the list lives in a repo of its own: `.` is it
    _repo(home / "sub-a")
    _repo(home / "sub-b")
    _repo(home / "sub-c")
    (home / "x").mkdir()
    elsewhere = _repo(tmp_path / "elsewhere" / "abs-e")
    listing = home / "class.txt"
    listing.write_text(f"# the class\n.\nsub-a/\nx/../sub-b\nsub-c/.\n{elsewhere}/\n")
    out = tmp_path / "out"
    done = _grade(listing, out)
    assert done.returncode == 0, done.stdout + done.stderr
    ids = ["abs-e", "home-repo", "sub-a", "sub-b", "sub-c"]
    book = _gradebook(out)
    assert sorted(book["submission"]) == ids  # one row each, none empty
    assert (book["status"] == "passed").all() and (book["max_score"] == M1_CHECKS).all()
    for name in ids:
        report = json.loads((out / name / "report.json").read_text())
        assert report["summary"]["passed"] == M1_CHECKS, name
    assert not (out / "report.json").exists()  # nothing at the top of --out
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ids
    assert done.stdout.strip().splitlines()[-1].startswith("exit code 0: 5 submission(s) graded")


@pytest.mark.parametrize(
    ("lines", "said", "numbers"),
    [
        (["sub-a", "/"], "the root directory / has no name", [2]),
        (["sub-a", "/.."], "the root directory / has no name", [2]),
        ([".", "./"], "same id, the name of their repo's directory, which names each", [1, 2]),
        (["sub-a", "sub-a/"], "same id", [1, 2]),
        (["x/../sub-a", "elsewhere/sub-a"], "same id", [1, 2]),
        (["sub-a", ".hidden"], "starts with a dot", [2]),
        (["sub-a", "loop"], "symlink loop", [2]),
    ],
)
def test_a_list_without_an_id_per_submission_is_refused_before_grading(
    tmp_path: Path, lines: list[str], said: str, numbers: list[int]
) -> None:
    """`/`, two lines of one id, a hidden name, a loop: exit 2, one paragraph with the lines."""
    klass = tmp_path / "klass"
    for name in ("sub-a", "x", ".hidden", "elsewhere/sub-a"):
        (klass / name).mkdir(parents=True)
    (klass / "loop").symlink_to("loop")
    listing = klass / "class.txt"
    listing.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    done = _grade(listing, out, timeout_s=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1  # one paragraph
    for number in numbers:
        assert f"{listing}:{number}: " in done.stderr, (number, done.stderr)
    if "same id" in said:  # both paths named
        assert done.stderr.count(f"({klass}") == 2
    assert not out.exists()  # nothing graded, nothing written


def test_a_submission_folder_that_is_a_file_or_a_symlink_is_refused(tmp_path: Path) -> None:
    """`--out/<id>` a symlink (it could lead outside --out) or a file: exit 2 before grading."""
    (tmp_path / "klass" / "alice").mkdir(parents=True)
    (tmp_path / "klass" / "bob").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "alice").symlink_to(tmp_path / "elsewhere")
    (out / "bob").write_text("not a folder")
    done = run_failfast("grade", str(tmp_path / "klass"), "--out", str(out), timeout_s=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f'"{out / "alice"}"' in done.stderr and f'"{out / "bob"}"' in done.stderr
    assert "Nothing was graded" in done.stderr and not (tmp_path / "elsewhere").exists()


# ---------------------------------------------------------------------------------------------
# Class 8: symlink loops, a deleted working directory, an unwritable HOME


def _loops(repo: Path) -> Path:
    """Symlink loops of every shape in a repo, and a symlink out of it."""
    (repo / "self").symlink_to("self")
    (repo / "ping").symlink_to("pong")
    (repo / "pong").symlink_to("ping")
    (repo / "nginx" / "up").symlink_to("..")  # a directory that contains itself
    (repo / "outside").symlink_to("/etc")
    return repo


def test_a_repo_holding_symlink_loops_is_graded(tmp_path: Path) -> None:
    """Loops and a link out of the repo, beside the learner's files: graded as without them."""
    repo = _loops(_repo(tmp_path / "repo"))
    run = run_failfast("check", "milestone-1", "--format", "json", repo=repo)
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(run.statuses().values()) == {"PASS"}


def test_a_learner_file_that_loops_or_leads_out_is_named(tmp_path: Path) -> None:
    """budgets.yaml a loop, checkout.js a link to /etc/passwd: FAIL naming it, nothing read."""
    repo = _loops(_repo(tmp_path / "repo"))
    (repo / "budgets.yaml").unlink()
    (repo / "budgets.yaml").symlink_to("budgets.yaml")
    run = run_failfast("check", "milestone-1", "--format", "json", repo=repo)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "symlink that leads back to itself" in run.check("m1.budgets-valid")["measured"]
    (repo / "budgets.yaml").unlink()
    shutil.copy(REFERENCE / "budgets.yaml", repo / "budgets.yaml")
    (repo / "loadtest" / "checkout.js").unlink()
    (repo / "loadtest" / "checkout.js").symlink_to("/etc/passwd")
    run = run_failfast("check", "milestone-1", "--format", "json", repo=repo)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.statuses()["m1.budgets-valid"] == "PASS"
    assert "leads outside your repository" in run.check("m1.k6-thresholds")["measured"]
    assert "root:" not in run.stdout  # /etc/passwd was not read into the report


@pytest.mark.parametrize("option", ["--repo", "--course", "--out"])
def test_a_path_that_is_a_symlink_loop_is_refused(tmp_path: Path, option: str) -> None:
    """--repo, --course or grade's --out a symlink loop: exit 2 naming it, no crash."""
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    if option == "--out":
        (tmp_path / "klass" / "alice").mkdir(parents=True)
        run = run_failfast("grade", str(tmp_path / "klass"), "--out", str(loop), timeout_s=60)
        said = run.stderr
    else:
        args = ["--repo", str(loop)]
        if option == "--course":
            args = ["--course", str(loop), "--repo", str(REFERENCE)]
        run = run_failfast("check", "milestone-1", *args)
        said = run.stdout
    assert run.returncode == 2, run.stdout + run.stderr
    assert "symlink loop" in said and str(loop) in said and "crashed" not in said


def _from_deleted_dir(tmp_path: Path, *args: str) -> Run:
    """Run the CLI from a working directory deleted before it starts (`rmdir` of its cwd)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    argv = [sys.executable, "-m", "grader", *args]
    script = 'cd "$1" && rmdir "$1" && shift && exec "$@"'
    proc = subprocess.Popen(
        ["/bin/sh", "-c", script, "sh", str(gone), *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    stdout, stderr = proc.communicate(timeout=120)
    assert not gone.exists()
    assert not grader_crashed(stdout + stderr) and "crashed" not in stdout + stderr
    assert leftovers(proc.pid, None) == []
    return Run(argv, proc.returncode, stdout, stderr, proc.pid)


def test_a_deleted_working_directory_with_absolute_paths_grades(tmp_path: Path) -> None:
    """From a deleted cwd, absolute --repo and --json: graded as anywhere (k6 included)."""
    repo = _repo(tmp_path / "repo")
    report = tmp_path / "report.json"
    run = _from_deleted_dir(
        tmp_path, "check", "milestone-1", "--repo", str(repo), "--json", str(report)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    statuses = {c["id"]: c["status"] for c in json.loads(report.read_text())["checks"]}
    assert set(statuses.values()) == {"PASS"} and len(statuses) == M1_CHECKS


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["check", "milestone-1"], 2),  # --repo is `.`, the deleted directory
        (["check", "milestone-1", "--repo", str(REFERENCE), "--json", "report.json"], 2),
        (["grade", "class.txt", "--out", "/tmp/never-made"], 2),
        (["doctor"], 1),  # doctor's code for "something is missing", with the fix
    ],
)
def test_a_deleted_working_directory_refuses_relative_paths(
    tmp_path: Path, args: list[str], code: int
) -> None:
    """From a deleted cwd, a relative path is refused naming the directory, the path, the fix."""
    run = _from_deleted_dir(tmp_path, *args)
    said = _one_line(run.stdout + run.stderr)
    assert run.returncode == code, said
    assert f"failfast was run from {tmp_path / 'gone'}, a directory that has been deleted" in said
    assert "give these paths as absolute paths" in said
    assert not Path("/report.json").exists() and not Path("/tmp/never-made").exists()


@pytest.mark.slow
def test_an_unwritable_home_leaks_nothing_into_the_report(tmp_path: Path) -> None:
    """HOME a file (nothing can be made in it, even by root): no matplotlib noise; charts drawn."""
    page = tmp_path / "report.html"
    private = tmp_path / "tmp"
    private.mkdir()
    env = {"HOME": "/dev/null", "XDG_CONFIG_HOME": "", "XDG_CACHE_HOME": "", "MPLCONFIGDIR": ""}
    run = run_failfast(
        "check", "milestone-2", "--report", f"html={page}",
        repo=REFERENCE, timeout_s=300, env={**env, "TMPDIR": str(private)},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    output = run.stdout + run.stderr
    for noise in ("matplotlib", "fontconfig", "warning", "mplconfigdir"):
        assert noise not in output.lower(), output
    html = page.read_text()
    assert html.count("<svg") >= 3  # m2's charts
    # matplotlib's private directory is gone with the run (failfast-<uid> keeps run records)
    assert [p.name for p in private.iterdir() if "matplotlib" in p.name] == []


# ---------------------------------------------------------------------------------------------
# Class 9: an exit line that is true


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--format", "json", "--output", "/dev/full"], "the json report to /dev/full: No space"),
        (["--junit", "{tmp}/a-file/report.xml"], "{tmp}/a-file is a file, not a directory"),
    ],
)
def test_a_report_that_cannot_be_written_makes_the_exit_line_say_2(
    tmp_path: Path, args: list[str], why: str
) -> None:
    """A full disk or a file in the way: the last line says exit 2 and why; the process exits 2."""
    (tmp_path / "a-file").write_text("in the way")
    run = run_failfast(
        "check", "milestone-1", *(a.replace("{tmp}", str(tmp_path)) for a in args), repo=REFERENCE
    )
    assert run.returncode == 2, run.stdout + run.stderr
    last = _one_line(run.stdout.rsplit("exit code", 1)[1])
    assert last.startswith("2: every check passed, but failfast could not write"), run.stdout
    assert why.replace("{tmp}", str(tmp_path)) in last
    assert "exit code 0" not in run.stdout
    assert "could not write" in run.stderr  # named on stderr too


def test_with_json_on_stdout_stderr_ends_with_the_true_exit_line(tmp_path: Path) -> None:
    """JSON on stdout stays one document; stderr's last line says exit 2 and why."""
    run = run_failfast(
        "check", "milestone-1", "--format", "json", "--junit", "/dev/full", repo=REFERENCE
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.report is not None and run.report["summary"]["passed"] == M1_CHECKS
    assert run.stderr.strip().splitlines()[-1] == (
        "exit code 2: every check passed, but failfast could not write the junit report to "
        "/dev/full: No space left on device"
    )


@pytest.mark.slow
def test_a_class_whose_gradebook_cannot_be_written_ends_with_exit_2(tmp_path: Path) -> None:
    """`failfast grade`: the gradebook's place taken by a directory: last line exit 2, why."""
    _repo(tmp_path / "klass" / "alice")
    out = tmp_path / "out"
    (out / "gradebook.csv").mkdir(parents=True)  # in the way of the gradebook file
    done = run_failfast(
        "grade", str(tmp_path / "klass"), "--out", str(out), "--milestone", "milestone-1",
        timeout_s=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("exit code 2: 1 submission(s) in the gradebook, but the gradebook")
    assert "could not be written" in last and "directory" in last.lower()
    assert json.loads((out / "alice" / "report.json").read_text())["summary"]["passed"] == 5
