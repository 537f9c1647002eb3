"""The docker backend on a real engine: the same verdicts as local, isolation, and cleanup.

scripts/setup.sh starts the engine and builds the base images these tests need; without an
engine they fail (set FAILFAST_SKIP_DOCKER=1 to skip them on a machine that cannot have one).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from grader.backends.docker.engine import RUN_LABEL
from grader.backends.docker.options import DockerOptions, Limits
from grader.backends.docker.stack import DockerStack
from grader.cli.app import catalog
from grader.learner.repo import LearnerRepo
from tests.conftest import ROOT, grader_crashed, run_failfast
from tests.e2e.conftest import CiRun, docker_engine
from tests.mutants import MUTANTS, REFERENCE, Mutant, materialize

pytestmark = [pytest.mark.slow, pytest.mark.docker]
TEMPLATE = ROOT / "learner_template"
DOCKER = ("--backend", "docker")


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    """The local Docker engine; nothing of a run labelled before or after the module."""
    client = docker_engine(60)
    yield client
    client.close()


def left_behind(client: docker.DockerClient) -> list[str]:
    """Every container, network and image a run labelled that still exists."""
    selector = {"label": RUN_LABEL}
    return (
        [f"container {c.name}" for c in client.containers.list(all=True, filters=selector)]
        + [f"network {n.name}" for n in client.networks.list(filters=selector)]
        + [f"image {i.tags}" for i in client.images.list(filters=selector)]
    )


def test_reference_passes_every_check_in_containers(engine: docker.DockerClient) -> None:
    """`check all --backend docker` on the reference: every check PASS, nothing left."""
    run = run_failfast("check", "all", "--format", "json", *DOCKER, repo=REFERENCE, timeout_s=300)
    assert run.report is not None and run.report["backend"] == "docker", run.stdout + run.stderr
    assert set(run.statuses().values()) == {"PASS"}, run.statuses()
    assert run.returncode == 0
    assert left_behind(engine) == []


def test_template_fails_the_same_checks_on_both_backends(
    engine: docker.DockerClient, template_through_3: CiRun
) -> None:
    """The naive template fails milestone 2 the same way in containers as in processes."""
    # Milestone 2 of the template's local grading in CI (milestones 1 to 3), graded once.
    local = template_through_3.statuses("milestone-2")
    contained = run_failfast("check", "milestone-2", "--format", "json", *DOCKER, repo=TEMPLATE)
    assert contained.statuses() == local
    assert "FAIL" in local.values() and contained.returncode == 1
    assert left_behind(engine) == []


# In containers, each way a check observes the service across the container network is proven
# on one mutant: the connect-hang instance, a held or trickling provider, /healthz under load,
# the learner's nginx, a storm over fresh instances, the outage counts, a bucket per connection
# through the bridge, two instances on the contained Redis, a dropped connection, and the
# connects the grader cannot count there (its hint names both causes). That every mutant fails
# exactly its targets is tests/e2e/test_milestones.py's, locally; that every check passes in
# containers, the reference's test above.
THROUGH_CONTAINERS = (
    "no-connect-timeout",
    "connects-retried-past-max-attempts",
    "connect-timeout-only",
    "blocking-call-in-async-handler",
    "nginx-replaces-the-api-answer",
    "retries-without-jitter",
    "retries-ignore-the-api-budget",
    "no-retry-budget",
    "budget-per-connection",
    "store-written-after-charge",
    "fresh-provider-key-per-attempt",
)
LIVE_MUTANTS = [m for m in MUTANTS if m.name in THROUGH_CONTAINERS]


def test_every_mechanism_has_its_mutant() -> None:
    """Each name above is a mutant of tests/mutants.py: none was renamed away."""
    assert sorted(m.name for m in LIVE_MUTANTS) == sorted(THROUGH_CONTAINERS)


@pytest.mark.parametrize("mutant", LIVE_MUTANTS, ids=lambda m: m.name)
def test_mutant_fails_its_target_in_containers(
    mutant: Mutant, tmp_path: Path, engine: docker.DockerClient
) -> None:
    """Each mechanism's mutant fails its targets in containers as it does locally.

    Graded with --target: the checks it must fail and what they depend on. That every other
    check passes in containers is the reference's test above; that the mutant breaks only its
    targets, tests/e2e/test_milestones.py's.
    """
    repo = materialize(REFERENCE, tmp_path / "repo", mutant.edits)
    targets = [arg for check_id in sorted(mutant.fails) for arg in ("--target", check_id)]
    argv = ("check", mutant.milestone, "--format", "json", *targets, *DOCKER)
    run = run_failfast(*argv, repo=repo)
    if mutant.missed_by_chance(run.statuses()):
        run = run_failfast(*argv, repo=repo)
    expected = mutant.verdicts(catalog().needed_by(mutant.fails))
    assert run.statuses() == expected, run.report
    assert left_behind(engine) == []


def test_missing_base_image_is_named_before_building(
    tmp_path: Path, engine: docker.DockerClient
) -> None:
    """A FROM this machine lacks: exit 2, one paragraph naming it, no build attempted."""
    repo = materialize(REFERENCE, tmp_path / "repo", ())
    dockerfile = repo / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace("FROM python:3.11-slim", "FROM python:3.99-nowhere")
    )
    run = run_failfast("check", "milestone-2", "--format", "json", *DOCKER, repo=repo)
    assert run.returncode == 2 and run.report is not None
    assert run.report["error"]["type"] == "ImageBuildError"
    assert "python:3.99-nowhere" in run.report["error"]["message"]
    assert "--pull" in run.report["error"]["message"]
    assert left_behind(engine) == []  # the stub started while the build was refused


def test_failing_build_step_shows_the_log_tail(tmp_path: Path, engine: docker.DockerClient) -> None:
    """A RUN step that fails: exit 2, the reason, and the build log's last lines."""
    repo = materialize(REFERENCE, tmp_path / "repo", ())
    dockerfile = repo / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace(
            "COPY . ./", "COPY . ./\nRUN echo broken-step-output && exit 3"
        )
    )
    run = run_failfast("check", "milestone-2", "--format", "json", *DOCKER, repo=repo)
    assert run.returncode == 2 and run.report is not None
    error = run.report["error"]
    assert error["type"] == "ImageBuildError" and "did not build" in error["message"]
    assert any("broken-step-output" in line for line in error["details"]), error
    assert left_behind(engine) == []  # the stub and Redis started while it built


# --- A hostile app: what it tries from inside the API container --------------------------------

HOSTILE_ROUTES = """

import socket as _socket


def _reaches(host: str, port: int) -> bool:
    try:
        with _socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@app.get("/hostile/reach")
def hostile_reach(host: str, port: int) -> dict[str, bool]:
    return {"reached": _reaches(host, port)}


@app.get("/hostile/env")
def hostile_env() -> dict[str, str]:
    return dict(os.environ)


@app.get("/hostile/forks")
def hostile_forks() -> dict[str, object]:
    children, error = [], ""
    for _ in range(5000):
        try:
            pid = os.fork()
        except OSError as exc:
            error = repr(exc)
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return {"forked": len(children), "error": error}


@app.get("/hostile/memory")
def hostile_memory() -> dict[str, int]:
    hog = [bytearray(64 << 20) for _ in range(64)]  # 4 GiB, touched
    return {"held": sum(len(block) for block in hog)}
"""


@pytest.fixture(scope="module")
def hostile_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference solution plus routes that try to get out of their container."""
    repo = materialize(REFERENCE, tmp_path_factory.mktemp("hostile") / "repo", ())
    main = repo / "app" / "main.py"
    main.write_text(main.read_text() + HOSTILE_ROUTES)
    return repo


def _host_address() -> str:
    """This machine's own address on its default route (not loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        return str(probe.getsockname()[0])


@contextlib.contextmanager
def _listening() -> Iterator[int]:
    """A TCP server on every host address; yields its port."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                connection, _ = server.accept()
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        server.close()


async def _with_stack(repo: Path, limits: Limits | None = None) -> DockerStack:
    manifest = LearnerRepo(repo).manifest()
    options = DockerOptions(limits or Limits())
    return await DockerStack.start(LearnerRepo(repo), manifest, options)


async def _get(url: str, timeout_s: float = 30.0) -> Any:
    async with httpx.AsyncClient(timeout=timeout_s) as http:
        response = await http.get(url)
        response.raise_for_status()
        return response.json()


def test_hostile_app_cannot_get_out(
    hostile_repo: Path, engine: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No egress, no host service, no other run's containers, no secret of the grader's."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret-of-the-grader")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-of-the-grader")

    async def scenario() -> dict[str, Any]:
        mine, other = await asyncio.gather(_with_stack(hostile_repo), _with_stack(hostile_repo))
        try:
            api = mine.api.base_url
            other_stub = httpx.URL(other.provider_url)
            gateway = engine.networks.get(mine.network).attrs["IPAM"]["Config"][0]["Gateway"]
            with _listening() as port:
                # The control: the grader itself reaches the server it bound.
                with socket.create_connection((_host_address(), port), timeout=2):
                    pass
                targets = {
                    "pypi": "host=pypi.org&port=443",
                    "outside": "host=1.1.1.1&port=443",
                    "gateway": f"host={gateway}&port={port}",
                    "host": f"host={_host_address()}&port={port}",
                    "other-run": f"host={other_stub.host}&port={other_stub.port}",
                    "own-stub": "host=payments-stub&port=8081",
                }
                # At once: each blocked attempt waits out its 2 s connect timeout (the route
                # is a plain def, so the API runs them in threads side by side).
                reached = await asyncio.gather(
                    *(_get(f"{api}/hostile/reach?{query}") for query in targets.values())
                )
                found = dict(zip(targets, reached, strict=True))
                found["env"] = await _get(f"{api}/hostile/env")
            return found
        finally:
            await asyncio.gather(mine.aclose(), other.aclose())

    found = asyncio.run(scenario())
    assert found["own-stub"]["reached"], "the control: its own stub is reachable by name"
    for target in ("pypi", "outside", "gateway", "host", "other-run"):
        assert not found[target]["reached"], target
    env = found["env"]
    assert "GITHUB_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env, env
    assert env["PAYMENTS_URL"] == "http://payments-stub:8081" and env["PORT"] == "8000"
    assert left_behind(engine) == []


def test_fork_bomb_and_memory_hog_are_contained(
    hostile_repo: Path, engine: docker.DockerClient
) -> None:
    """Forks stop at the pids limit; a memory hog kills only its own container, named as such."""

    async def scenario() -> tuple[dict[str, Any], str | None, str | None]:
        stack = await _with_stack(hostile_repo, Limits(memory="256m", pids=64))
        try:
            forks = await _get(f"{stack.api.base_url}/hostile/forks", timeout_s=60)
            alive_after_forks = stack.api.exit_description()
            with contextlib.suppress(httpx.HTTPError):
                await _get(f"{stack.api.base_url}/hostile/memory", timeout_s=60)
            deadline = time.monotonic() + 20
            while stack.api.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return forks, alive_after_forks, stack.api.exit_description()
        finally:
            await stack.aclose()

    forks, after_forks, after_hog = asyncio.run(scenario())
    assert forks["forked"] < 64 and forks["error"], forks
    assert after_forks is None, "the fork bomb did not take the API down"
    assert after_hog is not None and "memory limit (256m" in after_hog, after_hog
    assert left_behind(engine) == []


def test_memory_hog_is_the_apis_crash_not_the_graders(
    tmp_path: Path, engine: docker.DockerClient
) -> None:
    """A checkout that exhausts memory FAILs checks with the crash named; exit 1, not 2."""
    repo = materialize(REFERENCE, tmp_path / "repo", ())
    main = repo / "app" / "main.py"
    main.write_text(
        main.read_text().replace(
            '@app.post("/checkout")',
            "_HOG: list[bytearray] = []\n\n\n"
            '@app.middleware("http")\n'
            "async def _hog(request, call_next):  # type: ignore[no-untyped-def]\n"
            '    if request.url.path == "/checkout":\n'
            "        _HOG.extend(bytearray(64 << 20) for _ in range(64))\n"
            "    return await call_next(request)\n\n\n"
            '@app.post("/checkout")',
        )
    )
    run = run_failfast("check", "milestone-2", "--format", "json", *DOCKER, repo=repo)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.report is not None
    crashed = [c for c in run.report["checks"] if "memory limit" in c["summary"]]
    assert crashed and all(c["status"] == "FAIL" for c in crashed), run.report
    assert left_behind(engine) == []


def _until_api_runs(engine: docker.DockerClient, limit_s: float = 90) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        running = engine.containers.list(filters={"label": RUN_LABEL})
        if any(c.labels.get("failfast.role", "").startswith("api") for c in running):
            return
        time.sleep(0.2)
    pytest.fail(f"the run started no API container within {limit_s:g} s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_interrupted_run_removes_everything(
    sig: signal.Signals, engine: docker.DockerClient
) -> None:
    """Ctrl-C or SIGTERM mid-run: exit 130, and no container, network or image of it left."""
    argv = [sys.executable, "-m", "grader", "check", "milestone-3", *DOCKER, "--repo"]
    grader = subprocess.Popen(
        [*argv, str(REFERENCE)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _until_api_runs(engine)
        grader.send_signal(sig)
        assert grader.wait(60) == 130
    finally:
        if grader.poll() is None:
            grader.kill()
    assert left_behind(engine) == []


def test_sigkilled_grader_is_swept_by_the_next_run(engine: docker.DockerClient) -> None:
    """Kill -9 mid-run leaves containers; the next run (here `doctor`) removes them."""
    argv = [sys.executable, "-m", "grader", "check", "milestone-3", *DOCKER, "--repo"]
    grader = subprocess.Popen(
        [*argv, str(REFERENCE)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _until_api_runs(engine)
    finally:
        grader.send_signal(signal.SIGKILL)
        grader.wait(10)
    assert left_behind(engine), "the SIGKILLed run left its containers (what the sweep is for)"
    done = subprocess.run(
        [sys.executable, "-m", "grader", "doctor", "--repo", str(REFERENCE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert not grader_crashed(done.stdout + done.stderr)
    assert left_behind(engine) == [], done.stdout
