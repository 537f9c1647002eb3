"""The learner template's GitHub workflow: valid for GitHub, and its steps really grade.

The schema is the one GitHub's own editor tooling publishes (vendored by check-jsonschema). The
steps that run shell commands are run here, in order, in a copy of the template, with the
runner's files (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) in a temporary directory; the steps that
only install (pip, apt) or use actions (checkout, upload) are what this machine already did.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gha import commands
from tests.mutants import TEMPLATE, materialize

WORKFLOW = TEMPLATE / ".github" / "workflows" / "failfast.yml"
SCHEMA = "vendor.github-workflows"
EXPRESSION = re.compile(r"\$\{\{\s*([\w.-]+)\s*\}\}")
INSTALLS = ("Install your API's dependencies", "Install the grader, with k6")


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    """Validate a workflow file with check-jsonschema against GitHub's workflow schema."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", SCHEMA, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def steps() -> list[dict[str, Any]]:
    """The grade job's steps, as YAML reads them."""
    document = yaml.safe_load(WORKFLOW.read_text("utf-8"))
    # PyYAML reads YAML 1.1, where the key `on` is the boolean True; GitHub reads it as "on".
    assert True in document and "push" in document[True]
    listed: list[dict[str, Any]] = document["jobs"]["grade"]["steps"]
    return listed


def step(name: str) -> dict[str, Any]:
    """The step with this name."""
    return next(s for s in steps() if s.get("name") == name)


def run_step(
    name: str, repo: Path, context: dict[str, str], tmp: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run a step's shell script as the runner would; its result and what it set as outputs."""
    found = step(name)
    output = tmp / f"output-{len(list(tmp.iterdir()))}"
    output.touch()

    def expression(match: re.Match[str]) -> str:
        assert match[1] in context, f"the test does not know ${{{{ {match[1]} }}}}"
        return context[match[1]]

    env = {
        k: re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", expression, v)
        for k, v in found.get("env", {}).items()
    }
    bindir = str(Path(sys.executable).parent)
    done = subprocess.run(
        ["bash", "-e", "-c", found["run"]],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "HOME": str(tmp),
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(repo),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"),
            **env,
        },
    )
    outputs = dict(
        line.split("=", 1) for line in output.read_text("utf-8").splitlines() if "=" in line
    )
    return done, outputs


def test_workflow_matches_githubs_schema() -> None:
    """check-jsonschema accepts the template's workflow against GitHub's workflow schema."""
    done = validate(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """The same validation refuses a workflow whose job has no runs-on: it can fail."""
    broken = tmp_path / "failfast.yml"
    broken.write_text(WORKFLOW.read_text("utf-8").replace("runs-on:", "runs_on:"), "utf-8")
    assert validate(broken).returncode != 0


def test_workflow_installs_and_keeps_what_grading_needs() -> None:
    """It installs the grader with k6 and redis-server, and keeps the reports even on failure."""
    assert "failfast-grader[k6]" in step("Install the grader, with k6")["run"]
    assert (
        "apt-get install -y --no-install-recommends redis-server"
        in step("Install redis-server (milestone 5)")["run"]
    )
    keep = step("Keep the reports")
    assert keep["uses"].startswith("actions/upload-artifact@")
    assert keep["if"] == "always()" and keep["with"]["path"] == "failfast-reports/"


@pytest.mark.parametrize(
    ("file", "given", "picked"),
    [
        ("milestone-1\n", "", "milestone-1"),
        ("  milestone-4 \n", "", "milestone-4"),
        ("milestone-2\n", "milestone-3", "milestone-3"),
        (None, "", "milestone-1"),
        ("all\n", "", "all"),
    ],
)
def test_pick_takes_the_input_then_the_file(
    file: str | None, given: str, picked: str, tmp_path: Path
) -> None:
    """The milestone is the run's input, else .failfast-milestone, else milestone-1."""
    repo = materialize(TEMPLATE, tmp_path / "repo")
    (repo / ".failfast-milestone").unlink()
    if file is not None:
        (repo / ".failfast-milestone").write_text(file, "utf-8")
    (tmp_path / "runner").mkdir()
    done, outputs = run_step(
        "Pick the milestone", repo, {"inputs.milestone": given}, tmp_path / "runner"
    )
    assert done.returncode == 0, done.stderr
    assert outputs == {"milestone": picked}


def test_pick_refuses_an_unknown_milestone(tmp_path: Path) -> None:
    """A typo in .failfast-milestone fails the step with an annotation on that file."""
    repo = materialize(TEMPLATE, tmp_path / "repo")
    (repo / ".failfast-milestone").write_text("milestone-9\n", "utf-8")
    (tmp_path / "runner").mkdir()
    done, outputs = run_step(
        "Pick the milestone", repo, {"inputs.milestone": ""}, tmp_path / "runner"
    )
    assert done.returncode == 2 and outputs == {}
    (error,) = commands(done.stdout)
    assert error.properties["file"] == ".failfast-milestone" and "milestone-9" in error.data


def test_workflow_steps_grade_the_template(tmp_path: Path) -> None:
    """Pick, doctor and grade run in order; the grade step writes every report it uploads."""
    repo = materialize(TEMPLATE, tmp_path / "repo")
    runner = tmp_path / "runner"
    runner.mkdir()
    context = {"inputs.milestone": ""}
    names = [s["name"] for s in steps() if "run" in s and s["name"] not in INSTALLS]
    assert names == [
        "Install redis-server (milestone 5)",
        "Pick the milestone",
        "Check the machine",
        "Grade",
    ]
    done, outputs = run_step("Pick the milestone", repo, context, runner)
    context["steps.pick.outputs.milestone"] = outputs["milestone"]
    done = run_step("Check the machine", repo, context, runner)[0]
    assert done.returncode == 0, done.stdout
    done = run_step("Grade", repo, context, runner)[0]
    # The template fails milestone 1: its budget table is not filled in.
    assert done.returncode == 1, done.stdout + done.stderr
    reports = repo / "failfast-reports"
    assert sorted(p.name for p in reports.iterdir()) == ["junit.xml", "report.json", "summary.md"]
    assert "m1.budgets-valid" in (runner / "summary.md").read_text("utf-8")
    annotated = [c.properties.get("file") for c in commands(done.stdout)]
    assert annotated == ["budgets.yaml"]
