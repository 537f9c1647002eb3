"""The docker backend's one boundary with the engine: the client, its errors, the run labels.

Every call to the engine goes through a client from :func:`connect`, and every error of the
docker SDK, requests or urllib3 about the engine becomes an
:class:`~grader.errors.EnvironmentProblem` in :func:`engine_errors` (the learner's Dockerfile has
its own, in ``build``). A socket this user may not open is said as such (:func:`socket_denied`),
here and in ``failfast doctor``. Every container, network and image of a run carries
:data:`RUN_LABEL` and :data:`OWNER_LABEL`.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import docker
import docker.errors
import urllib3.exceptions
from docker.models.containers import Container

from grader.errors import EnvironmentProblem

RUN_LABEL = "failfast.run"
OWNER_LABEL = "failfast.owner"  # "<boot id>:<pid>:<start>" of the grader that made it
ROLE_LABEL = "failfast.role"
STUB_IMAGE_LABEL = "failfast.stub-image"
ENGINE_TIMEOUT_S = 60  # any one call to the engine (builds stream: see Limits.build_timeout_s)
DEFAULT_SOCKET = "/var/run/docker.sock"  # the SDK's, when DOCKER_HOST is not set
# What the SDK, requests (whose errors are OSErrors) and urllib3 raise about the engine: a
# stream the engine cut reaches the caller as urllib3's own errors, which are not OSErrors.
SDK_ERRORS = (docker.errors.DockerException, urllib3.exceptions.HTTPError, OSError)


@contextlib.contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Translate the docker SDK's, requests' and urllib3's errors at this one boundary."""
    try:
        yield
    except SDK_ERRORS as exc:
        denied = socket_denied(exc)
        if denied is not None:
            raise EnvironmentProblem(denied.paragraph()) from exc
        raise EnvironmentProblem(
            f"The Docker engine failed while {what}: {exc}. Check it with `failfast doctor` "
            "(on a machine without systemd, `bash scripts/setup.sh engine` starts one)."
        ) from exc


def socket_path() -> str | None:
    """The engine's unix socket the SDK connects to, or None when DOCKER_HOST is not one."""
    host = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    return host.removeprefix("unix://") if host.startswith("unix://") else None


def _denied(exc: BaseException) -> bool:
    """Whether a PermissionError (EACCES, EPERM) is anywhere in ``exc``'s chain or arguments."""
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.errno in (errno.EACCES, errno.EPERM):
            return True
        pending += [item.__cause__, item.__context__, *item.args]
    return False


@dataclass(frozen=True, slots=True)
class SocketDenied:
    """This user may not open the engine's socket: what is in the way, and how to get access."""

    found: str  # "/var/run/docker.sock (owner root, group docker, mode srw-rw----): nobody is ..."
    fix: str  # "sudo usermod -aG docker $USER, then log out and in again (or newgrp docker)"

    def paragraph(self) -> str:
        """The one paragraph the CLI prints when grading cannot start."""
        return (
            f"You lack permission to open the Docker engine's socket {self.found}. Docker is "
            f"installed and may well be running: {self.fix}. Check with `failfast doctor "
            "--backend docker`, or grade with --backend local."
        )


def socket_denied(exc: BaseException) -> SocketDenied | None:
    """What keeps this user from the engine's socket, if a refused permission is what failed.

    Installing Docker is not the fix then; being in the socket's group is (and a login session
    started after joining it).
    """
    path = socket_path()
    if path is None or not _denied(exc):
        return None
    user = _name(pwd.getpwuid, os.geteuid())
    try:
        info = os.stat(path)
    except OSError as error:
        return SocketDenied(
            f"{path}: {error.strerror} for the user {user} on a directory above it",
            "ask the machine's administrator for access to that directory",
        )
    group = _name(grp.getgrgid, info.st_gid)
    where = (
        f"{path} (owner {_name(pwd.getpwuid, info.st_uid)}, group {group}, mode "
        f"{stat.filemode(info.st_mode)})"
    )
    relogin = f"then log out and in again (or run `newgrp {group}` in this shell)"
    if info.st_gid in (os.getegid(), *os.getgroups()):
        return SocketDenied(
            f"{where}: the user {user} is in its group {group}, but its mode does not let the "
            "group open it",
            f"give it the engine's usual mode (`sudo chmod 660 {path}`)",
        )
    if info.st_gid == 0:
        return SocketDenied(
            f"{where}: only root may open it, its group being root",
            "grade as root (sudo), or have the engine make its socket with a group of its own "
            "(dockerd --group docker, its default) and join that group (`sudo usermod -aG "
            "docker $USER`, then log out and in again, or `newgrp docker`)",
        )
    try:
        listed = user in grp.getgrgid(info.st_gid).gr_mem
    except KeyError:
        listed = False
    if listed:
        return SocketDenied(
            f"{where}: the user {user} was added to its group {group}, but this login session "
            "started before that",
            relogin.removeprefix("then "),
        )
    return SocketDenied(
        f"{where}: the user {user} is not in its group {group}",
        f"to use it without sudo, join that group (`sudo usermod -aG {group} $USER`), {relogin}",
    )


def _name(lookup: Callable[[int], Sequence[object]], number: int) -> str:
    """A user's or group's name (from ``pwd.getpwuid``, ``grp.getgrgid``), or its number."""
    try:
        return str(lookup(number)[0])
    except (KeyError, OverflowError):
        return str(number)


def connect() -> docker.DockerClient:
    """A client of the local engine, or a clear message that there is none (or no access)."""
    try:
        client = docker.from_env(timeout=ENGINE_TIMEOUT_S)
        client.ping()
    except SDK_ERRORS as exc:
        denied = socket_denied(exc)
        if denied is not None:
            raise EnvironmentProblem(denied.paragraph()) from exc
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
