"""Bad learner files through the real CLI: the learner's FAIL or exit 2, never a hang or ERROR.

Each case copies the reference solution, breaks one file the grader reads (budgets.yaml,
failfast.yaml, nginx/nginx.conf or a file it includes, loadtest/checkout.js) and grades it.
Milestone 1 FAILs the check that reads the file, with a message naming the file and what to
change; milestone 2, which needs the table or the manifest to start anything, stops with exit 2
and such a paragraph. `run_failfast` asserts that no run prints a traceback and that nothing
the grader started is left running; the unit versions are in tests/test_learner_files.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Run, grader_crashed, run_failfast
from tests.mutants import REFERENCE, materialize

# Each run is a second or less; a read that blocks (a FIFO) must fail the test, not hang it.
RUN_LIMIT_S = 60.0

TABLE = (REFERENCE / "budgets.yaml").read_text("utf-8")
NGINX = (REFERENCE / "nginx" / "nginx.conf").read_text("utf-8")
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)
)
INCLUDE_LINE = NGINX[: NGINX.index("http {")].count("\n") + 2  # the line added below "http {"


def line_of(text: str, needle: str) -> int:
    """The 1-based line ``needle`` starts on in ``text``."""
    return text[: text.index(needle)].count("\n") + 1


# --- ways to break a file -------------------------------------------------------------------------


Breaker = Callable[[Path], None]


def writes(relative: str, content: str | bytes) -> Breaker:
    """Replace the file with ``content``."""

    def apply(repo: Path) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        (repo / relative).write_bytes(data)

    return apply


def edits(relative: str, old: str, new: str) -> Breaker:
    """Replace ``old`` (which must be there) with ``new`` in the file."""

    def apply(repo: Path) -> None:
        text = (repo / relative).read_text("utf-8")
        assert old in text, f"{relative}: {old!r} not found"
        (repo / relative).write_text(text.replace(old, new, 1), "utf-8")

    return apply


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def fifo(relative: str) -> Breaker:
    """Make the file a named pipe: a plain read of it blocks until a writer comes, forever."""

    def apply(repo: Path) -> None:
        _remove(repo / relative)
        os.mkfifo(repo / relative)

    return apply


def links(relative: str, target: str) -> Breaker:
    """Make the file a symlink to ``target``."""

    def apply(repo: Path) -> None:
        _remove(repo / relative)
        (repo / relative).symlink_to(target)

    return apply


def directory(relative: str) -> Breaker:
    """Make the file a directory."""

    def apply(repo: Path) -> None:
        _remove(repo / relative)
        (repo / relative).mkdir()

    return apply


def sparse(relative: str, size: int) -> Breaker:
    """Make the file ``size`` bytes of nothing (sparse: no disk spent)."""

    def apply(repo: Path) -> None:
        with (repo / relative).open("wb") as file:
            file.truncate(size)

    return apply


def both(*breakers: Breaker) -> Breaker:
    """Apply each in turn."""

    def apply(repo: Path) -> None:
        for breaker in breakers:
            breaker(repo)

    return apply


@dataclass(frozen=True)
class Case:
    """One broken file, and what grading it must say."""

    name: str
    breaker: Breaker
    check: str  # the milestone-1 check that FAILs on it, or "" when milestone 2 is graded
    says: tuple[str, ...]  # each in the check's evidence, or in the exit-2 paragraph

    def __str__(self) -> str:
        return self.name


def grade(tmp_path: Path, milestone: str, breaker: Breaker) -> Run:
    """Grade ``milestone`` of a copy of the reference solution broken by ``breaker``."""
    repo = materialize(REFERENCE, tmp_path / "repo")
    breaker(repo)
    run = run_failfast("check", milestone, "--format", "json", repo=repo, timeout_s=RUN_LIMIT_S)
    assert not grader_crashed(run.stdout + run.stderr)
    return run


# --- milestone 1: the check that reads the file FAILs, with the file and the fix ------------------


def nan_table(value: str) -> Breaker:
    """budgets.yaml with the api budget set to ``value``."""
    return edits("budgets.yaml", "api:      {timeout_s: 3}", f"api:      {{timeout_s: {value}}}")


API_LINE = line_of(TABLE, "api:      {timeout_s: 3}")
ATTEMPTS_LINE = line_of(TABLE, "max_attempts: 3")
END_LINE = TABLE.count("\n") + 1

MILESTONE_1 = [
    Case(
        "budgets-alias-bomb",
        writes("budgets.yaml", ALIAS_BOMB),
        "m1.budgets-valid",
        ("budgets.yaml:2: uses the YAML alias *a: write the value out instead",),
    ),
    Case(
        "budgets-fifo",
        fifo("budgets.yaml"),
        "m1.budgets-valid",
        ("budgets.yaml: is a named pipe (FIFO), not a regular file: replace it with a regular",),
    ),
    Case(
        "budgets-dev-zero",
        links("budgets.yaml", "/dev/zero"),
        "m1.budgets-valid",
        ("budgets.yaml: leads outside your repository, to /dev/zero", "put the file itself there"),
    ),
    Case(
        "budgets-50mb",
        sparse("budgets.yaml", 50 * 1000 * 1000),
        "m1.budgets-valid",
        ("budgets.yaml: is 47.7 MiB, larger than the grader's limit of 256 KiB: make it smaller",),
    ),
    Case(
        "budgets-directory",
        directory("budgets.yaml"),
        "m1.budgets-valid",
        ("budgets.yaml: is a directory, not a regular file: remove the directory and put",),
    ),
    Case(
        "max-attempts-2000",
        edits("budgets.yaml", "max_attempts: 3", "max_attempts: 2000"),
        "m1.budgets-valid",
        (f"budgets.yaml:{ATTEMPTS_LINE}: retries.max_attempts must be at most 100, not 2000",),
    ),
    Case(
        "nan",
        nan_table(".nan"),
        "m1.budgets-valid",
        (f"budgets.yaml:{API_LINE}: layers.api.timeout_s must be a finite number, not .nan",),
    ),
    Case(
        "inf",
        nan_table(".inf"),
        "m1.budgets-valid",
        (f"budgets.yaml:{API_LINE}: layers.api.timeout_s must be at most 3600, not .inf",),
    ),
    Case(
        "1e20-seconds",
        nan_table("1.0e+20"),
        "m1.budgets-valid",
        (f"budgets.yaml:{API_LINE}: layers.api.timeout_s must be at most 3600, not 1e+20",),
    ),
    Case(
        "duplicate-key",
        edits("budgets.yaml", "api:      {timeout_s: 3}\n", "api: {timeout_s: 3}\n  api: {x: 1}\n"),
        "m1.budgets-valid",
        (
            f"budgets.yaml:{API_LINE + 1}: layers.api is given twice, on lines {API_LINE} and "
            f"{API_LINE + 1}: YAML keeps only the last one; delete the other",
        ),
    ),
    Case(
        "empty",
        writes("budgets.yaml", ""),
        "m1.budgets-valid",
        ("budgets.yaml: is empty: it needs `layers:`",),
    ),
    Case(
        "a-list",
        writes("budgets.yaml", "- nginx: 10\n- api: 3\n"),
        "m1.budgets-valid",
        ("budgets.yaml:1: must be a mapping of keys to values (`key: value` lines), not a list",),
    ),
    Case(
        "a-scalar",
        writes("budgets.yaml", "10 3 0.5 2\n"),
        "m1.budgets-valid",
        ("budgets.yaml:1: must be a mapping of keys to values (`key: value` lines), not the",),
    ),
    Case(
        "latin-1",
        writes("budgets.yaml", TABLE.encode("utf-8") + b"# caf\xe9\n"),
        "m1.budgets-valid",
        (f"budgets.yaml: is not UTF-8 text (byte 0xe9 at line {END_LINE}, column 6): save it",),
    ),
    Case(
        "two-documents",
        writes("budgets.yaml", TABLE + "---\nlayers: {}\n"),
        "m1.budgets-valid",
        (f"budgets.yaml:{END_LINE}: holds more than one YAML document (a second `---`)",),
    ),
    Case(
        "nginx-fifo",
        fifo("nginx/nginx.conf"),
        "m1.nginx-agrees",
        ("nginx/nginx.conf is a named pipe (FIFO), not a regular file: replace it with a",),
    ),
    Case(
        "nginx-include-fifo",
        both(
            edits("nginx/nginx.conf", "http {", "http {\n    include conf.d/*.conf;"),
            directory("nginx/conf.d"),
            fifo("nginx/conf.d/checkout.conf"),
        ),
        "m1.nginx-agrees",
        (
            f"nginx/conf.d/checkout.conf (included at nginx/nginx.conf:{INCLUDE_LINE}) is a named "
            f"pipe (FIFO), not a regular file: replace it with a regular file",
        ),
    ),
    Case(
        "nginx-dev-zero",
        links("nginx/nginx.conf", "/dev/zero"),
        "m1.nginx-agrees",
        ("nginx/nginx.conf leads outside your repository, to /dev/zero",),
    ),
    Case(
        "nginx-2mib",
        writes("nginx/nginx.conf", NGINX + "#" * (2 * 1024 * 1024) + "\n"),
        "m1.nginx-agrees",
        ("nginx/nginx.conf is 2.0 MiB, larger than the grader's limit of 1 MiB: make it smaller",),
    ),
    Case(
        "nginx-bom",
        writes("nginx/nginx.conf", b"\xef\xbb\xbf" + NGINX.encode("utf-8")),
        "m1.nginx-agrees",
        ("nginx/nginx.conf:1: the file starts with a UTF-8 byte order mark (BOM)", "without a BOM"),
    ),
    Case(
        "k6-script-fifo",
        fifo("loadtest/checkout.js"),
        "m1.k6-thresholds",
        ("loadtest/checkout.js is a named pipe (FIFO), not a regular file: replace it with a",),
    ),
    Case(
        "k6-script-dev-urandom",
        links("loadtest/checkout.js", "/dev/urandom"),
        "m1.k6-thresholds",
        ("loadtest/checkout.js leads outside your repository, to /dev/urandom",),
    ),
    Case(
        "k6-script-directory",
        directory("loadtest/checkout.js"),
        "m1.k6-thresholds",
        ("loadtest/checkout.js is a directory, not a regular file: remove the directory",),
    ),
]


@pytest.mark.parametrize("case", MILESTONE_1, ids=str)
def test_milestone_1_fails_the_check_that_reads_the_file(tmp_path: Path, case: Case) -> None:
    """Exit 1: the check reading the file FAILs, located on the file, saying what to change."""
    run = grade(tmp_path, "milestone-1", case.breaker)
    assert run.returncode == 1, run.stdout + run.stderr
    statuses = run.statuses()
    assert "ERROR" not in statuses.values(), statuses
    failed = run.check(case.check)
    assert failed["status"] == "FAIL", failed
    for text in case.says:
        assert text in failed["measured"], failed["measured"]
    path = failed["location"]["path"]
    assert path in failed["measured"] and path.split("/")[0] in (
        "budgets.yaml",
        "nginx",
        "loadtest",
    )
    if case.check != "m1.budgets-valid":  # the table itself is fine: only that check fails
        assert [i for i, s in statuses.items() if s != "PASS"] == [case.check]


def test_milestone_1_reads_a_bom_and_an_inner_symlink(tmp_path: Path) -> None:
    """A UTF-8 BOM (YAML allows it) and a symlink inside the repo are graded as usual: exit 0."""
    move = both(
        writes("config.yaml", b"\xef\xbb\xbf" + TABLE.encode("utf-8")),
        links("budgets.yaml", "config.yaml"),
    )
    run = grade(tmp_path, "milestone-1", move)
    assert run.returncode == 0, run.stdout
    assert set(run.statuses().values()) == {"PASS"}


# --- milestone 2: what cannot be held to stops grading with exit 2 before anything starts ---------


MILESTONE_2 = [
    Case(
        "budgets-nan",
        nan_table(".nan"),
        "",
        (f"budgets.yaml:{API_LINE}: layers.api.timeout_s must be a finite number, not .nan",),
    ),
    Case(
        "budgets-fifo",
        fifo("budgets.yaml"),
        "",
        ("budgets.yaml: is a named pipe (FIFO), not a regular file: replace it with a regular",),
    ),
    Case(
        "max-attempts-2000",
        edits("budgets.yaml", "max_attempts: 3", "max_attempts: 2000"),
        "",
        (f"budgets.yaml:{ATTEMPTS_LINE}: retries.max_attempts must be at most 100, not 2000",),
    ),
    Case(
        "manifest-fifo",
        fifo("failfast.yaml"),
        "",
        ("failfast.yaml: is a named pipe (FIFO), not a regular file: replace it with a regular",),
    ),
    Case(
        "manifest-alias-bomb",
        writes("failfast.yaml", ALIAS_BOMB),
        "",
        ("failfast.yaml:2: uses the YAML alias *a: write the value out instead",),
    ),
    Case(
        "manifest-nan-startup",
        writes("failfast.yaml", "startup_timeout_s: .nan\n"),
        "",
        ("failfast.yaml:1: startup_timeout_s must be a finite number, not .nan",),
    ),
    Case(
        "manifest-outside",
        links("failfast.yaml", "/etc/hostname"),
        "",
        ("failfast.yaml: leads outside your repository, to /etc/hostname",),
    ),
    Case(
        "manifest-directory",
        directory("failfast.yaml"),
        "",
        ("failfast.yaml: is a directory, not a regular file: remove the directory and put",),
    ),
]


@pytest.mark.parametrize("case", MILESTONE_2, ids=str)
def test_milestone_2_cannot_grade_with_the_file_and_the_fix(tmp_path: Path, case: Case) -> None:
    """Exit 2, one paragraph naming the file and what to change; nothing started or left."""
    run = grade(tmp_path, "milestone-2", case.breaker)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.report is not None and run.report["kind"] == "error"
    error = run.report["error"]
    assert error["type"] in ("BudgetsError", "ManifestError"), error
    for text in case.says:
        assert text in error["message"], error["message"]
    if error["type"] == "BudgetsError":
        assert "Run `failfast check milestone-1` to see every problem" in error["message"]
    else:
        assert "Fix it, or delete it to use the default command" in error["message"]


@pytest.mark.slow
def test_milestone_2_grades_through_a_bom_and_an_inner_symlink(tmp_path: Path) -> None:
    """The bounds refuse nothing a real repo holds: milestone 2 grades as usual, and cleans up."""
    move = both(
        writes("config/budgets.yaml", b"\xef\xbb\xbf" + TABLE.encode("utf-8")),
        links("budgets.yaml", "config/budgets.yaml"),
    )
    run = grade(tmp_path, "milestone-2", both(directory("config"), move))
    assert run.returncode == 0, run.stdout
    assert run.report is not None and run.report["budgets"]["origin"] == "learner"
