"""The class-grading examples: the GitHub workflow is valid for GitHub, the Job is complete."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.conftest import ROOT
from tests.test_workflow import validate

EXAMPLES = ROOT / "examples"


def test_matrix_workflow_is_valid_and_shards_the_class() -> None:
    """GitHub's workflow schema accepts it; every shard of the matrix is graded, then merged."""
    path = EXAMPLES / "grade-class.yml"
    checked = validate(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    workflow: dict[str, Any] = yaml.safe_load(path.read_text())
    shards = workflow["jobs"]["grade"]["strategy"]["matrix"]["shard"]
    grade = next(
        s["run"] for s in workflow["jobs"]["grade"]["steps"] if "failfast grade" in s.get("run", "")
    )
    count = int(re.search(r"--shard \$\{\{ matrix.shard \}\}/(\d+)", grade).group(1))  # type: ignore[union-attr]
    assert shards == list(range(1, count + 1))
    assert "failfast gradebook merge" in yaml.safe_dump(workflow["jobs"]["merge"])
    assert workflow["jobs"]["merge"]["needs"] == "grade"


def test_indexed_job_names_what_sharding_needs() -> None:
    """An Indexed Job whose pods grade shard JOB_COMPLETION_INDEX + 1 of `completions`."""
    job: dict[str, Any] = yaml.safe_load((EXAMPLES / "grade-class-job.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] >= 1
    container = spec["template"]["spec"]["containers"][0]
    command = " ".join(container["args"])
    assert f'--shard "$((JOB_COMPLETION_INDEX + 1))/{spec["completions"]}"' in command
    assert "--out" in command and "$JOB_COMPLETION_INDEX" in command
    assert container["resources"]["limits"]["cpu"] == container["resources"]["requests"]["cpu"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
