"""Shared fixtures: run the real `failfast` CLI as a process and prove it leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from grader.cli.app import catalog
from grader.learner.yamlfile import schema
from tests.postgres import postgres  # noqa: F401  # a session fixture, for every test to ask for

ROOT = Path(__file__).resolve().parent.parent
# Every check registered in module order before any test imports one check module: a module
# whose check depends on another module's (m5_race.py on m5.double-submit) imports only the kit.
catalog()


@dataclass
class Run:
    """One finished `failfast` process."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    pid: int
    report: dict[str, Any] | None = field(default=None)

    def statuses(self) -> dict[str, str]:
        """Check id -> status, from the JSON report."""
        assert self.report is not None, self.stdout + self.stderr
        return {c["id"]: c["status"] for c in self.report["checks"]}

    def check(self, check_id: str) -> dict[str, Any]:
        """One check's entry of the JSON report."""
        assert self.report is not None
        return next(c for c in self.report["checks"] if c["id"] == check_id)


def leftovers(owner_pid: int, repo: Path | None) -> list[str]:
    """Processes a grader run left: stubs it owned, or anything running in the learner repo."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue  # exited meanwhile, or not ours to read
        if f"--owner-pid {owner_pid}" in cmdline:
            found.append(f"{entry.name}: {cmdline}")
        elif repo is not None and Path(cwd).is_relative_to(repo.resolve()):
            found.append(f"{entry.name} (cwd {cwd}): {cmdline}")
    return found


@pytest.fixture(scope="session", autouse=True)
def history_of_the_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every grading of the suite is recorded in one history of its own, never the user's."""
    path = tmp_path_factory.mktemp("history") / "history.sqlite3"
    before = os.environ.get("FAILFAST_DB")
    os.environ["FAILFAST_DB"] = str(path)
    yield path
    if before is None:
        os.environ.pop("FAILFAST_DB", None)
    else:
        os.environ["FAILFAST_DB"] = before


def _inherited() -> dict[str, str]:
    # The suite may itself run under GitHub Actions (or with colours forced): a test asks for
    # GitHub mode or colour explicitly, never by accident.
    unwanted = ("GITHUB_", "RUNNER_", "ACTIONS_")
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(unwanted) and name not in ("FORCE_COLOR", "NO_COLOR", "CI")
    }


# A traceback through the grader's own code: the grader crashed. The learner's API may print
# tracebacks of its own (the template dies of httpx.ReadTimeout), and the report quotes them.
GRADER_FRAME = re.compile(
    r'File "[^"\n]*[/\\](?:grader|checks|reference[/\\]stub)[/\\][^"\n]*", line'
)


def grader_crashed(output: str) -> bool:
    """Whether ``output`` holds a traceback through the grader's own code."""
    return GRADER_FRAME.search(output) is not None


def run_failfast(
    *args: str,
    repo: Path | None = None,
    timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
) -> Run:
    """Run the real CLI to completion; assert no traceback and no process left behind."""
    argv = [sys.executable, "-m", "grader", *args]
    if repo is not None:
        argv += ["--repo", str(repo)]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_inherited(), "COLUMNS": "100", **(env or {})},
    )
    stdout, stderr = proc.communicate(timeout=timeout_s)
    run = Run(argv, proc.returncode, stdout, stderr, proc.pid)
    assert not grader_crashed(stdout + stderr), stdout + stderr
    assert leftovers(proc.pid, repo) == []
    graded = args[:1] == ("check",)  # `progress --format json` is not a report
    if (
        graded
        and "--format" in args
        and "json" in args
        and "--output" not in args
        and stdout.strip()
    ):
        run.report = json.loads(stdout)
        jsonschema.validate(run.report, schema("report"))
    return run


@pytest.fixture
def grade_json() -> Iterator[Any]:
    """Grade a milestone of a repo with the JSON report on stdout."""

    def grade(milestone: str, repo: Path, *extra: str, **kwargs: Any) -> Run:
        return run_failfast("check", milestone, "--format", "json", *extra, repo=repo, **kwargs)

    yield grade
