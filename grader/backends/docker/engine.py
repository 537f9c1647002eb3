"""The docker backend's one boundary with the engine: the client, its errors, the run labels.

Every call to the engine goes through a client from :func:`connect`, and every error of the
docker SDK about the engine becomes an :class:`~grader.errors.EnvironmentProblem` in
:func:`engine_errors` (the learner's Dockerfile has its own, in ``images``). Every container,
network and image of a run carries :data:`RUN_LABEL` and :data:`OWNER_LABEL`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker
import docker.errors
from docker.models.containers import Container

from grader.errors import EnvironmentProblem

RUN_LABEL = "failfast.run"
OWNER_LABEL = "failfast.owner"  # "<boot id>:<pid>:<start>" of the grader that made it
ROLE_LABEL = "failfast.role"
STUB_IMAGE_LABEL = "failfast.stub-image"
ENGINE_TIMEOUT_S = 60  # any one call to the engine (builds stream: see Limits.build_timeout_s)


@contextlib.contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Translate the docker SDK's errors about the engine at this one boundary."""
    try:
        yield
    except docker.errors.DockerException as exc:
        raise EnvironmentProblem(
            f"The Docker engine failed while {what}: {exc}. Check it with `failfast doctor` "
            "(on a machine without systemd, `bash scripts/setup.sh engine` starts one)."
        ) from exc
    except OSError as exc:  # a socket the engine dropped, a build context unreadable
        raise EnvironmentProblem(
            f"Talking to the Docker engine failed while {what}: {exc}."
        ) from exc


def connect() -> docker.DockerClient:
    """A client of the local engine, or a clear message that there is none."""
    try:
        client = docker.from_env(timeout=ENGINE_TIMEOUT_S)
        client.ping()
    except docker.errors.DockerException as exc:
        raise EnvironmentProblem(
            "--backend docker needs a running Docker engine, and none answered "
            f"({exc}). Start one (`bash scripts/setup.sh engine` on a machine without systemd, "
            "or `sudo systemctl start docker`), check it with `failfast doctor`, or grade with "
            "--backend local."
        ) from exc
    return client


def remove_container(container: Container) -> None:
    """Remove a container and its volumes, running or not, if it is still there."""
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        container.remove(force=True, v=True)
