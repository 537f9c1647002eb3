"""The autograder image (autograder/) on a real engine: Gradescope's and PrairieLearn's layouts.

The image is staged from this checkout (`autograder/stage.py`: a wheel, the requirements) and
built with the docker SDK (pull=False, from the local base image scripts/setup.sh makes). Each
test runs one container the way its platform does: the submission mounted where the platform
puts it, the platform's script or entrypoint run, and the results file read back and validated
against the platform's schema. The whole stack (stub, Redis, the learner's API, nginx) runs
inside that one container on loopback. Milestone 2 only (FAILFAST_MILESTONE): seconds per run.

The image is kept, tagged failfast/autograder:test, as the next run's layer cache (only the
failfast layer is rebuilt when the checkout changes; the image it replaces is removed);
every container is removed. Without an engine these tests fail (FAILFAST_SKIP_DOCKER=1 skips).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import jsonschema
import pytest
import yaml

from grader.cli.app import catalog
from grader.learner.yamlfile import schema as grader_schema
from tests.conftest import ROOT
from tests.e2e.conftest import docker_engine
from tests.mutants import REFERENCE, TEMPLATE, Edit, materialize

pytestmark = [pytest.mark.slow, pytest.mark.docker]

TAG = "failfast/autograder:test"
IMAGE_LABEL = "dev.failfast.autograder-test"
RUN_LABEL = "dev.failfast.autograder-test.run"
MILESTONE = "milestone-2"
FAST = "milestone-5"  # for tests about the platform's plumbing, not about what is graded
PLATFORMS = ROOT / "grader" / "schemas" / "platforms"
AUTOGRADER = ROOT / "autograder"
RUN_TIMEOUT_S = 150  # one milestone-2 grading takes about 10 s here

# An API that never answers /healthz: failfast could not grade it (its problem is the repo's,
# but it is no verdict on the checks), and says so.
NEVER_STARTS = (
    Edit(
        "failfast.yaml",
        "command: uvicorn app.main:app --host 127.0.0.1 --port $PORT",
        "command: sleep 600",
    ),
    Edit("failfast.yaml", "startup_timeout_s: 20", "startup_timeout_s: 1"),
)


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    """The local Docker engine."""
    client = docker_engine(120)
    yield client
    left = client.containers.list(all=True, filters={"label": RUN_LABEL})
    client.close()
    assert left == [], f"containers left behind: {[c.name for c in left]}"


@pytest.fixture(scope="module")
def image(engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The autograder image of this checkout, built like `docker build` of a staged context."""
    context = tmp_path_factory.mktemp("autograder") / "context"
    staged = subprocess.run(
        [sys.executable, str(AUTOGRADER / "stage.py"), "--context", str(context)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert staged.returncode == 0, f"autograder/stage.py failed:\n{staged.stdout}{staged.stderr}"
    try:
        previous: str | None = engine.images.get(TAG).id
    except docker.errors.ImageNotFound:
        previous = None
    started = time.monotonic()
    try:
        built, _ = engine.images.build(
            path=str(context),
            tag=TAG,
            pull=False,
            rm=True,
            forcerm=True,
            labels={IMAGE_LABEL: "1"},
            timeout=900,
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        pytest.fail(f"the autograder image did not build: {exc.msg}\n{log[-4000:]}")
    print(f"built {TAG} in {time.monotonic() - started:.1f} s")  # shown with -s
    if previous is not None and previous != built.id:
        # The checkout changed: the old image's own layer goes, the shared layers stay (an
        # image still in use is left).
        with contextlib.suppress(docker.errors.APIError):
            engine.images.remove(previous, noprune=False)
    return str(built.id)


@dataclass
class Graded:
    """One container's run: its exit code, its output and the results file it left."""

    exit_code: int
    logs: str
    results: dict[str, Any]
    seconds: float


def run(
    engine: docker.DockerClient,
    image: str,
    *,
    mounts: dict[Path, str],
    results: tuple[Path, str],
    command: list[str] | None = None,
    entrypoint: str | list[str] | None = None,
    network_mode: str | None = None,
    environment: dict[str, str],
) -> Graded:
    """Run the image once and remove the container; read the results file.

    ``mounts`` maps host paths to container paths, read-only; ``results`` is the writable
    folder (host path, container path) where the platform collects results.json.
    """
    host_results, inside_results = results
    host_results.mkdir(parents=True, exist_ok=True)
    volumes = {str(host): {"bind": inside, "mode": "ro"} for host, inside in mounts.items()}
    volumes[str(host_results)] = {"bind": inside_results, "mode": "rw"}
    started = time.monotonic()
    container = engine.containers.run(
        image,
        command,
        entrypoint=entrypoint,
        detach=True,
        environment=environment,
        volumes=volumes,
        labels={RUN_LABEL: "1"},
        network_mode=network_mode,
    )
    try:
        exit_code = int(container.wait(timeout=RUN_TIMEOUT_S)["StatusCode"])
        logs = container.logs().decode("utf-8", errors="replace")
    finally:
        container.remove(force=True)
    seconds = time.monotonic() - started
    found = host_results / "results.json"
    assert found.is_file(), f"no results.json; the container said:\n{logs}"
    return Graded(exit_code, logs, json.loads(found.read_text("utf-8")), seconds)


def gradescope(
    engine: docker.DockerClient,
    image: str,
    submission: Path,
    tmp: Path,
    *before: str,
    source: tuple[Path, ...] = (),
    milestone: str = MILESTONE,
) -> Graded:
    """Gradescope's way: the submission in /autograder/submission, then run_autograder.

    run_autograder is the image's command; it runs as root, with the network. ``source`` files
    go where a course author's zip puts them (then FAILFAST_MILESTONE is not set: the zip's
    failfast-milestone says what to grade); ``before`` is shell that breaks the image first.
    """
    mounts = {submission: "/autograder/submission"}
    mounts.update({path: f"/autograder/source/{path.name}" for path in source})
    script = "; ".join((*before, "/autograder/run_autograder"))
    graded = run(
        engine,
        image,
        mounts=mounts,
        results=(tmp / "results", "/autograder/results"),
        command=["bash", "-c", script] if before else None,
        environment={} if source else {"FAILFAST_MILESTONE": milestone},
    )
    jsonschema.validate(graded.results, schema("gradescope"))
    assert graded.exit_code == 0, graded.logs
    return graded


def prairielearn(
    engine: docker.DockerClient,
    image: str,
    student: Path,
    tmp: Path,
    *before: str,
    environment: dict[str, str] | None = None,
    milestone: str = MILESTONE,
) -> Graded:
    """PrairieLearn's way: /grade/student, no network (its default), info.json's entrypoint.

    The entrypoint is the one baked into the image; ``before`` is shell that breaks it first.
    """
    entrypoint = "/usr/local/bin/failfast-prairielearn"
    graded = run(
        engine,
        image,
        mounts={student: "/grade/student"},
        results=(tmp / "results", "/grade/results"),
        entrypoint=["bash", "-c", "; ".join((*before, entrypoint))] if before else entrypoint,
        network_mode="none",
        environment={"FAILFAST_MILESTONE": milestone, **(environment or {})},
    )
    jsonschema.validate(graded.results, schema("prairielearn"))
    assert graded.exit_code == 0, graded.logs
    return graded


def schema(platform: str) -> dict[str, Any]:
    """The platform's results schema, as the other formats' tests use it."""
    document: dict[str, Any] = json.loads(
        (PLATFORMS / f"{platform}.schema.json").read_text("utf-8")
    )
    return document


def checks_of_milestone(milestone: str = MILESTONE) -> list[str]:
    """The ids of a milestone's checks (milestone 2's by default), in order."""
    return [spec.id for spec in catalog().for_milestone(milestone)]


# ---------------------------------------------------------------------------- Gradescope ---


def test_gradescope_reference_scores_full_marks(
    engine: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    """The reference, graded by run_autograder: a valid results.json, every test passed."""
    graded = gradescope(engine, image, REFERENCE, tmp_path)
    results = graded.results
    ids = [test["extra_data"]["check_id"] for test in results["tests"]]
    assert ids == checks_of_milestone()
    assert {test["status"] for test in results["tests"]} == {"passed"}, graded.logs
    assert results["score"] == sum(test["max_score"] for test in results["tests"]) == len(ids)
    assert results["extra_data"]["gradable"] is True
    # The learner's nginx ran in the same container (nginx is on PATH there): not SKIP/ERROR.
    statuses = {
        test["extra_data"]["check_id"]: test["extra_data"]["status"] for test in results["tests"]
    }
    assert statuses["m2.edge-answers-first"] == "PASS"
    assert "everything was already installed" in graded.logs  # offline: preinstalled by setup.sh
    assert graded.seconds < 60, f"grading milestone 2 took {graded.seconds:.0f} s"


def test_gradescope_template_scores_less_with_the_zips_course_and_milestone(
    engine: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    """The template, with the zip's failfast-course.yaml and failfast-milestone: fewer points."""
    course = tmp_path / "failfast-course.yaml"
    course.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "milestones": {"milestone-1": {"points": 3}, MILESTONE: {"points": 12}},
                "checks": {"m2.healthz-under-load": {"visibility": "after_due_date"}},
            }
        )
    )
    milestone = tmp_path / "failfast-milestone"
    milestone.write_text(f"{MILESTONE} --through\n")
    graded = gradescope(engine, image, TEMPLATE, tmp_path, source=(course, milestone))
    results = graded.results
    assert "--course /tmp/" in graded.logs and "--through" in graded.logs, graded.logs
    assert results["extra_data"]["scores"].keys() == {"milestone-1", MILESTONE}
    assert sum(test["max_score"] for test in results["tests"]) == pytest.approx(15)
    assert 0 < results["score"] < 15, graded.logs
    statuses = {test["extra_data"]["check_id"]: test["status"] for test in results["tests"]}
    assert statuses["m2.healthy-checkout"] == "passed"
    assert statuses["m2.read-timeout"] == "failed"
    visibility = {test["extra_data"]["check_id"]: test["visibility"] for test in results["tests"]}
    assert visibility["m2.healthz-under-load"] == "after_due_date"
    assert visibility["m2.read-timeout"] == "visible"


def test_gradescope_api_that_never_starts_still_gets_results(
    engine: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    """A submission whose API never answers: a results.json all 0 that says it could not grade."""
    submission = materialize(REFERENCE, tmp_path / "repo", NEVER_STARTS)
    graded = gradescope(engine, image, submission, tmp_path)
    results = graded.results
    assert results["score"] == 0
    assert all(test["score"] == 0 for test in results["tests"])
    assert "could not grade" in results["output"]
    assert results["extra_data"]["gradable"] is False
    assert "failfast exit code 2" in graded.logs


# An API that, each time it starts, writes a perfect score where failfast writes its results
# (its repo is $work/repo, the results $work/out/results.json) and tries to keep it there.
FORGES_RESULTS = (
    Edit(
        "failfast.yaml",
        "command: uvicorn app.main:app --host 127.0.0.1 --port $PORT",
        'command: \'printf "{\\"score\\": 1000}" > ../out/results.json; '
        "chmod 444 ../out/results.json; rm -f ../out/results.json; "
        "uvicorn app.main:app --host 127.0.0.1 --port $PORT'",
    ),
)


def test_gradescope_submission_cannot_forge_its_results(
    engine: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    """A learner's API that writes a results.json of its own: failfast's replaces it."""
    submission = materialize(REFERENCE, tmp_path / "repo", FORGES_RESULTS)
    # Any milestone with a live API will do: milestone 5's takes a quarter of milestone 2's time.
    graded = gradescope(engine, image, submission, tmp_path, milestone=FAST)
    assert graded.results["score"] == len(checks_of_milestone(FAST)), graded.logs
    assert len(graded.results["tests"]) == len(checks_of_milestone(FAST))


def test_gradescope_grader_that_cannot_start_still_gets_results(
    engine: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    """No failfast in the image: run_autograder still leaves a valid file, 0, not your fault."""
    graded = gradescope(engine, image, REFERENCE, tmp_path, "rm -rf /opt/failfast/grader")
    results = graded.results
    assert results["score"] == 0 and results["tests"] == []
    assert "could not grade" in results["output"]
    assert "not a verdict on your code" in results["output"]
    assert results["extra_data"]["gradable"] is False


# -------------------------------------------------------------------------- PrairieLearn ---


def test_prairielearn_reference_zip_is_gradable_with_full_score(
    engine: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    """The reference uploaded as one zip of its folder, no network: gradable, score 1.0."""
    student = tmp_path / "student"
    student.mkdir()
    with zipfile.ZipFile(student / "repo.zip", "w") as archive:
        for path in sorted(REFERENCE.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, Path("solution") / path.relative_to(REFERENCE))
    graded = prairielearn(engine, image, student, tmp_path, milestone=FAST)
    results = graded.results
    assert results["gradable"] is True, graded.logs
    assert results["score"] == 1.0
    assert [test["name"] for test in results["tests"]] == checks_of_milestone(FAST)
    assert all(test["points"] == test["max_points"] for test in results["tests"])


def test_prairielearn_grading_error_is_not_gradable(
    engine: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    """An API that never starts, and a grader that cannot start: gradable false, both times."""
    student = materialize(REFERENCE, tmp_path / "student", NEVER_STARTS)
    graded = prairielearn(engine, image, student, tmp_path / "never-starts")
    assert graded.results["gradable"] is False, graded.logs
    assert graded.results["format_errors"]
    broken = prairielearn(
        engine, image, student, tmp_path / "no-grader", "rm -rf /opt/failfast/grader"
    )
    assert broken.results["gradable"] is False
    assert "attempt is not used up" in broken.results["message"]


def test_prairielearn_timeout_grades_what_finished_but_is_not_gradable(
    engine: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    """FAILFAST_TIMEOUT before the end: the finished checks are reported, gradable false."""
    graded = prairielearn(engine, image, REFERENCE, tmp_path, environment={"FAILFAST_TIMEOUT": "4"})
    results = graded.results
    assert results["gradable"] is False, graded.logs
    assert "interrupted" in results["message"]
    assert len(results["tests"]) == len(checks_of_milestone())
    assert "failfast exit code 130" in graded.logs


# ------------------------------------------------------------------------------ the files ---


def test_prairielearn_example_question_and_course_file_are_valid() -> None:
    """The example info.json names the baked-in entrypoint; the course file is a valid one."""
    info = json.loads(
        (AUTOGRADER / "prairielearn/questions/failfast-milestone-2/info.json").read_text()
    )
    options = info["externalGradingOptions"]
    assert options["entrypoint"] == "/usr/local/bin/failfast-prairielearn"
    assert options["environment"]["FAILFAST_MILESTONE"] == MILESTONE
    assert int(options["environment"]["FAILFAST_TIMEOUT"]) < options["timeout"] <= 600
    course = yaml.safe_load(
        (AUTOGRADER / "prairielearn/serverFilesCourse/failfast/failfast-course.yaml").read_text()
    )
    jsonschema.validate(course, grader_schema("course"))
