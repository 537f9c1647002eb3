"""The docker backend's edges on a real engine, through the CLI, each refused in one paragraph.

A build that never ends, an image without a command, a build context too big to send, a socket
the user may not open: each is bad input or a machine's setup, never a crash. Exit code 2 with
one paragraph naming the file or path and the fix (``failfast doctor`` says the same of the
socket), and nothing of the run left on the engine or on the host.
"""

from __future__ import annotations

import grp
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from grader.backends.docker.engine import OWNER_LABEL, socket_path
from tests.conftest import ROOT, grader_crashed, leftovers, run_failfast
from tests.e2e.conftest import docker_engine
from tests.mutants import REFERENCE, Edit, materialize

pytestmark = [pytest.mark.slow, pytest.mark.docker]
DOCKER = ("--backend", "docker", "--format", "json")
FIX_CMD = 'CMD ["sh", "-c", "exec uvicorn app.main:app --host 0.0.0.0 --port ${PORT:-8000}"]'
REFERENCE_CMD = FIX_CMD  # the reference's own last line, which the edits below take away


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    """The local Docker engine."""
    client = docker_engine(60)
    yield client
    client.close()


def left_by(client: docker.DockerClient, pid: int) -> list[str]:
    """What the grader process ``pid`` labelled and left: containers, networks, images.

    Other runs may share the engine: only this grader's own label (boot:pid:start) counts.
    """
    mine = re.compile(rf"^[^:]*:{pid}:\d+$")

    def owned(labels: dict[str, str] | None) -> bool:
        return bool(mine.match((labels or {}).get(OWNER_LABEL, "")))

    return (
        [f"container {c.name}" for c in client.containers.list(all=True) if owned(c.labels)]
        + [f"network {n.name}" for n in client.networks.list() if owned(n.attrs.get("Labels"))]
        + [f"image {i.id}" for i in client.images.list(all=True) if owned(i.labels)]
    )


def _error(run: Any) -> dict[str, Any]:
    """The report's error, after the rules every refusal keeps: exit 2, one paragraph."""
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.report is not None and run.report["kind"] == "error", run.report
    assert run.report["exit_code"] == 2 and run.report["gradable"] is False
    error: dict[str, Any] = run.report["error"]
    assert "\n" not in error["message"] and "Traceback" not in run.stdout + run.stderr
    return error


def _exists(client: docker.DockerClient, kind: str, ident: str) -> bool:
    try:
        getattr(client, kind).get(ident)
    except docker.errors.NotFound:
        return False
    return True


def _sleepers() -> list[int]:
    """Host processes running `sleep infinity` (a build step's, were it left)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == b"sleep\0infinity\0":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


# --- (a) a build that never ends ------------------------------------------------------------


def _hanging(tmp_path: Path) -> tuple[Path, str]:
    """The reference with a step that commits a layer no cache holds, then one that never ends."""
    marker = uuid.uuid4().hex
    steps = (
        f"COPY . ./\nRUN echo {marker} > /tmp/marker\nRUN echo step-before-hang && sleep infinity"
    )
    return materialize(
        REFERENCE, tmp_path / "repo", (Edit("Dockerfile", "COPY . ./", steps),)
    ), marker


def test_a_build_that_never_ends_is_stopped_at_its_timeout(
    tmp_path: Path, engine: docker.DockerClient
) -> None:
    """`RUN sleep infinity`, --build-timeout 20: exit 2 at 20 s, the log's tail, nothing left."""
    # Left would be: the stopped step's container, the layer an earlier step committed, the
    # `sleep infinity` process.
    repo, marker = _hanging(tmp_path)
    started = time.monotonic()
    run = run_failfast(*("check", "milestone-2", *DOCKER, "--build-timeout", "20"), repo=repo)
    elapsed = time.monotonic() - started
    error = _error(run)
    assert error["type"] == "ImageBuildError", error
    message, details = error["message"], error["details"]
    assert str(repo / "Dockerfile") in message and "within 20 s (--build-timeout)" in message
    assert "sleep infinity" in message and "higher --build-timeout" in message
    assert "step-before-hang" in details, details
    assert 20 <= elapsed < 50, elapsed
    # The stopped step's container and the layer the marker step committed, by their ids in the
    # log the report shows.
    log = "\n".join(details)
    running = re.findall(r"Running in ([0-9a-f]{12})", log)
    layer = re.search(
        rf"RUN echo {marker}.*?\n ---> Running in \w+\n.*?\n ---> ([0-9a-f]{{12}})", log, re.S
    )
    assert len(running) == 2 and layer is not None, log
    assert not _exists(engine, "containers", running[-1])
    assert not _exists(engine, "images", layer.group(1))
    assert _sleepers() == []
    assert left_by(engine, run.pid) == []


def test_an_interrupt_while_a_step_hangs_stops_the_build_at_once(
    tmp_path: Path, engine: docker.DockerClient
) -> None:
    """Ctrl-C during `RUN sleep infinity`: exit 130 in seconds, not at the build's limit."""
    repo, _ = _hanging(tmp_path)
    argv = [sys.executable, "-m", "grader", "check", "milestone-2", *DOCKER, "--repo", str(repo)]
    grader = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not _sleepers() and time.monotonic() < deadline and grader.poll() is None:
            time.sleep(0.2)
        assert _sleepers(), "the build never reached its hanging step"
        interrupted = time.monotonic()
        grader.send_signal(signal.SIGINT)
        stdout, stderr = grader.communicate(timeout=60)
        elapsed = time.monotonic() - interrupted
    finally:
        if grader.poll() is None:
            grader.kill()
            grader.wait(10)
    assert grader.returncode == 130 and elapsed < 15, (elapsed, stdout + stderr)
    assert not grader_crashed(stdout + stderr) and leftovers(grader.pid, repo) == []
    assert _sleepers() == [] and left_by(engine, grader.pid) == []


# --- (b) an image without a command -----------------------------------------------------------


@pytest.mark.parametrize(
    "last_line", ["ENTRYPOINT []", "CMD []"], ids=["entrypoint-reset", "empty-cmd"]
)
def test_an_image_without_a_command_names_the_dockerfile_and_the_line_to_add(
    last_line: str, tmp_path: Path, engine: docker.DockerClient
) -> None:
    """No CMD and no ENTRYPOINT in the image: the Dockerfile is at fault, not the engine."""
    edit = Edit("Dockerfile", REFERENCE_CMD, last_line)
    repo = materialize(REFERENCE, tmp_path / "repo", (edit,))
    run = run_failfast("check", "milestone-2", *DOCKER, repo=repo)
    error = _error(run)
    assert error["type"] == "ImageBuildError", error
    message = error["message"]
    assert str(repo / "Dockerfile") in message and "no CMD (and no ENTRYPOINT)" in message
    assert message.endswith(FIX_CMD) and "engine failed" not in message
    assert left_by(engine, run.pid) == []


def test_a_dockerfile_without_cmd_is_told_it_runs_its_base_images_command(
    tmp_path: Path, engine: docker.DockerClient
) -> None:
    """No CMD line: the image runs its base's `python3`, which exits; the message says why."""
    repo = materialize(REFERENCE, tmp_path / "repo", (Edit("Dockerfile", REFERENCE_CMD, ""),))
    run = run_failfast("check", "milestone-2", *DOCKER, repo=repo)
    error = _error(run)
    assert error["type"] == "ApiStartError", error
    assert "Your Dockerfile has no CMD" in error["message"] and "(`python3`)" in error["message"]
    assert FIX_CMD in error["message"]
    assert left_by(engine, run.pid) == []


# --- (c) a build context too big to send ------------------------------------------------------


def test_a_huge_build_context_is_refused_before_sending(
    tmp_path: Path, engine: docker.DockerClient
) -> None:
    """A 3 GB file: refused in seconds, named with .dockerignore; ignored there, the repo passes."""
    # Sparse: the test spends no disk. Refused before sending: nothing packed, nothing sent.
    repo = materialize(REFERENCE, tmp_path / "repo")
    (repo / "data").mkdir()
    with open(repo / "data" / "dump.bin", "wb") as sparse:
        sparse.truncate(3 << 30)
    free_before = shutil.disk_usage(tempfile.gettempdir()).free
    started = time.monotonic()
    run = run_failfast("check", "milestone-2", *DOCKER, repo=repo)
    elapsed = time.monotonic() - started
    error = _error(run)
    assert error["type"] == "ImageBuildError", error
    message = error["message"]
    assert "data/dump.bin (3.2 GB)" in message and "200 MB (--build-context-mb)" in message
    assert str(repo / ".dockerignore") in message
    # Sending 3 GB took 88 s and 9.3 GB of disk here; the SDK packs the tar in a temporary file
    # first. Refused before: seconds, and no disk.
    assert elapsed < 15, elapsed
    assert free_before - shutil.disk_usage(tempfile.gettempdir()).free < 500 << 20
    assert left_by(engine, run.pid) == []

    (repo / ".dockerignore").write_text((repo / ".dockerignore").read_text() + "data/\n")
    graded = run_failfast("check", "milestone-2", *DOCKER, repo=repo, timeout_s=180)
    assert graded.returncode == 0 and set(graded.statuses().values()) == {"PASS"}, graded.report
    assert left_by(engine, graded.pid) == []


# --- (d) a socket the user may not open -------------------------------------------------------

NOBODY = 65534


def _as_nobody(
    *args: str,
    repo: Path,
    home: Path,
    groups: tuple[int, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[int, str, dict[str, Any] | None]:
    """Run the CLI as the user nobody on ``repo``; its exit code, output, and JSON report.

    The interpreter lives under /root (mode 700) here: the read-and-search capability lets
    nobody run it and read the repo. It grants no write, and opening a unix socket needs write
    permission, so the socket's own mode and group still decide (no root bypass).
    """
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running the grader as another user needs root and setpriv")
    group_flag = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
    argv = [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        group_flag,
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
        sys.executable,
        "-m",
        "grader",
        *args,
        "--repo",
        str(repo),
    ]
    unwanted = ("GITHUB_", "RUNNER_", "ACTIONS_")
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(unwanted) and name not in ("FORCE_COLOR", "NO_COLOR", "CI")
    }
    environment |= {"HOME": str(home), "COLUMNS": "100", "PYTHONDONTWRITEBYTECODE": "1"}
    environment |= env or {}
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
    )
    stdout, stderr = proc.communicate(timeout=60)
    assert not grader_crashed(stdout + stderr), stdout + stderr
    assert leftovers(proc.pid, repo) == []
    report = json.loads(stdout) if "--format" in args and stdout.strip() else None
    return proc.returncode, stdout + stderr, report


@pytest.fixture
def nobody_home(tmp_path: Path) -> Path:
    """A HOME the user nobody may write to."""
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)
    return home


@pytest.fixture
def repo() -> Iterator[Path]:
    """A copy of the reference that nobody may read (pytest's tmp_path is root's alone).

    A copy, for others grading reference/solution meanwhile are not this run's leftovers; the
    CLI checks --repo with access(2), which ignores the capability.
    """
    top = Path(tempfile.mkdtemp(prefix="failfast-nobody-"))
    top.chmod(0o755)
    try:
        yield materialize(REFERENCE, top / "repo")
    finally:
        shutil.rmtree(top)


def test_no_access_to_the_engines_socket_says_how_to_get_it(repo: Path, nobody_home: Path) -> None:
    """The real socket, as a user outside its group: the socket, its group, usermod, newgrp."""
    path = socket_path() if "DOCKER_HOST" not in os.environ else None
    if path is None or not os.path.exists(path):
        pytest.skip("the engine is not at the default unix socket here")
    info = os.stat(path)
    if info.st_mode & stat.S_IWOTH or info.st_gid == 0:
        pytest.skip(f"{path} lets everyone in, or only root: no group to join")
    group = grp.getgrgid(info.st_gid).gr_name
    code, output, report = _as_nobody("check", "milestone-2", *DOCKER, repo=repo, home=nobody_home)
    assert code == 2 and report is not None, output
    error = report["error"]
    assert error["type"] == "EnvironmentProblem" and "\n" not in error["message"]
    message = error["message"]
    assert f"lack permission to open the Docker engine's socket {path}" in message
    assert f"group {group}" in message and "the user nobody is not in its group" in message
    assert f"sudo usermod -aG {group} $USER" in message and f"newgrp {group}" in message
    assert "install Docker" not in message and "apt-get install" not in message

    code, output, _ = _as_nobody("doctor", "--backend", "docker", repo=repo, home=nobody_home)
    row = output[output.index("Docker engine") :]
    assert code == 1 and "permission denied on " + path in " ".join(row.split()), output
    assert f"sudo usermod -aG {group} $USER" in " ".join(row.split())
    assert "install Docker" not in output and "apt-get install docker" not in output


def test_a_socket_whose_mode_shuts_its_group_out_says_so(
    tmp_path: Path, repo: Path, nobody_home: Path
) -> None:
    """DOCKER_HOST at a socket of mode 000 whose group the user is in: the mode is the fix."""
    group_id = grp.getgrnam("docker").gr_gid if _has_group("docker") else 100
    path = tmp_path / "engine.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(str(path))
        listening.listen(1)
        os.chown(path, 0, group_id)
        path.chmod(0)
        env = {"DOCKER_HOST": f"unix://{path}"}
        code, output, report = _as_nobody(
            "check",
            "milestone-2",
            *DOCKER,
            repo=repo,
            home=nobody_home,
            groups=(group_id,),
            env=env,
        )
        assert code == 2 and report is not None, output
        message = report["error"]["message"]
        assert f"socket {path}" in message and "mode s---------" in message
        assert "is in its group" in message and f"sudo chmod 660 {path}" in message
        code, output, _ = _as_nobody(
            "doctor",
            "--backend",
            "docker",
            repo=repo,
            home=nobody_home,
            groups=(group_id,),
            env=env,
        )
        flat = " ".join(output.split())
        assert code == 1 and f"permission denied on {path}" in flat, output
        assert f"sudo chmod 660 {path}" in flat


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
