"""Grading runs several e2e tests read: each is done once per session, in GitHub Actions mode."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import jsonschema
import pytest

from grader.learner.yamlfile import schema
from tests.conftest import Run, run_failfast
from tests.gha import Command, commands
from tests.mutants import REFERENCE, TEMPLATE, Edit, materialize


@dataclass
class CiRun:
    """A `failfast check` run as a GitHub Actions step, with every report it wrote."""

    run: Run
    repo: Path
    report: dict[str, Any]  # from --json
    junit: Path
    summary: str  # what it added to $GITHUB_STEP_SUMMARY
    page: Path  # the HTML report (tests/e2e/test_html_browser.py opens it)

    @property
    def commands(self) -> list[Command]:
        """The workflow commands the runner would act on, from stdout."""
        return commands(self.run.stdout)

    def check(self, check_id: str) -> dict[str, Any]:
        """One check's entry of the JSON report."""
        return next(c for c in self.report["checks"] if c["id"] == check_id)

    def statuses(self, milestone: str | None = None) -> dict[str, str]:
        """Check id -> status, from the JSON report (of one milestone, if given)."""
        return {
            c["id"]: c["status"]
            for c in self.report["checks"]
            if milestone is None or c["milestone"] == milestone
        }


def grade_in_ci(
    target: str,
    repo: Path,
    tmp: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout_s: float = 300,
) -> CiRun:
    """Run `failfast check` as a GitHub Actions step would, writing JUnit, JSON and HTML."""
    junit, report, summary = tmp / "reports" / "junit.xml", tmp / "report.json", tmp / "summary.md"
    page = tmp / "report.html"
    run = run_failfast(
        "check",
        target,
        *args,
        "--junit",
        str(junit),
        "--json",
        str(report),
        "--report",
        f"html={page}",
        repo=repo,
        timeout_s=timeout_s,
        env={
            "GITHUB_ACTIONS": "true",
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_WORKSPACE": str(tmp),
            "COLUMNS": "80",
            # What a CI job has and a learner's API must never see.
            "GITHUB_TOKEN": "ghs_secret",
            "ACTIONS_RUNTIME_TOKEN": "runtime-secret",
            "GITHUB_ENV": str(tmp / "set_env"),
            **(env or {}),
        },
    )
    document = json.loads(report.read_text("utf-8"))
    jsonschema.validate(document, schema("report"))
    return CiRun(run, repo, document, junit, summary.read_text("utf-8"), page)


@pytest.fixture(scope="session")
def reference_all(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CiRun]:
    """`failfast check all` on the reference solution: every milestone, one run."""
    tmp = tmp_path_factory.mktemp("reference-all")
    yield grade_in_ci("all", materialize(REFERENCE, tmp / "repo"), tmp)


@pytest.fixture(scope="session")
def template_through_3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CiRun]:
    """`failfast check milestone-3 --through` on the learner template, as its CI would run it."""
    tmp = tmp_path_factory.mktemp("template-through-3")
    yield grade_in_ci("milestone-3", materialize(TEMPLATE, tmp / "repo"), tmp, "--through")


# The template, printing workflow commands on every checkout; one line is long enough for the
# report to wrap it, which would put `::error::` at the start of a line of its own.
FORGING = (
    Edit(
        "app/main.py",
        '    """Charge the customer and report the outcome."""\n',
        '    """Charge the customer and report the outcome."""\n'
        '    print("::error::forged by the learner", flush=True)\n'
        '    print("::set-output name=grade::100", flush=True)\n'
        '    print("   ::warning file=budgets.yaml,line=1::forged warning", flush=True)\n'
        '    print("x" * 60 + " ::error::forged-by-wrapping", flush=True)\n'
        '    print("ENV " + ",".join(sorted(__import__("os").environ)), flush=True)\n',
    ),
)


@pytest.fixture(scope="session")
def forging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CiRun]:
    """Milestone 5 of a template whose API prints workflow commands, graded in CI.

    Milestone 5: the template fails most of it, in two seconds (milestone 2 takes seven).
    """
    tmp = tmp_path_factory.mktemp("forging")
    yield grade_in_ci("milestone-5", materialize(TEMPLATE, tmp / "repo", FORGING), tmp)


def docker_engine(timeout_s: int = 60) -> docker.DockerClient:
    """The local Docker engine, or the test fails saying how to get one.

    scripts/setup.sh starts one; FAILFAST_SKIP_DOCKER=1 skips instead, on a machine that cannot
    have one. A skip by default would hide a backend nobody tested.
    """
    if os.environ.get("FAILFAST_SKIP_DOCKER") == "1":
        pytest.skip("FAILFAST_SKIP_DOCKER=1")
    try:
        client = docker.from_env(timeout=timeout_s)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"no Docker engine ({exc}): run `bash scripts/setup.sh` first")
    return client
