"""The learner's image, built from their Dockerfile: checked first, bounded in time, cleaned up.

:func:`preflight` refuses, before anything starts, what cannot build here: no Dockerfile, a base
image this machine lacks, a build context over its limit (``context``). :func:`build_learner_image`
streams the build through the docker SDK's low-level API and stops it at
:attr:`~grader.backends.docker.options.Limits.build_timeout_s`: a watchdog shuts the build's
connection, on which the engine kills and removes the build's container (the grader makes sure it
is gone), and the error shows the log's last lines. Every failure is an
:class:`~grader.errors.ImageBuildError` (the learner's Dockerfile) or an
:class:`~grader.errors.EnvironmentProblem` (the engine); the images a failed build committed are
removed. An image without a command (no CMD, no ENTRYPOINT) is refused with the line to add.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import docker
import docker.errors
import requests

from grader.backends.docker.context import check_size
from grader.backends.docker.engine import RUN_LABEL, SDK_ERRORS, engine_errors
from grader.backends.docker.images import missing_base_images
from grader.backends.docker.options import DockerOptions
from grader.errors import EnvironmentProblem, ImageBuildError
from grader.learner import learnerfile
from grader.learner.repo import LearnerRepo

DOCKERFILE = "Dockerfile"
MAX_DOCKERFILE_BYTES = learnerfile.MIB  # a Dockerfile is a few hundred bytes
# The HTTP read timeout beyond the build's limit: a backstop should the watchdog not reach the
# connection (the engine sends no response until it has the whole context).
BUILD_GRACE_S = 10.0
# How long the engine gets to kill and remove the container of a stopped build (it took 0.5 s).
ENGINE_CLEANUP_S = 15.0
LOG_KEPT, LOG_SHOWN, LINE_CHARS = 200, 15, 500

_ID = r"([0-9a-f]{12}|[0-9a-f]{64})"
_STEP = re.compile(r"^Step (\d+/\d+) : (\S+)(.*)$")
_RUNNING = re.compile(rf"^ ---> Running in {_ID}$")
_REMOVED = re.compile(rf"^Removing intermediate container {_ID}$")
_COMMITTED = re.compile(rf"^ ---> {_ID}$")
_SETS_COMMAND = re.compile(r"^\s*(CMD|ENTRYPOINT)\b", re.I | re.M)


def preflight(client: docker.DockerClient, repo: LearnerRepo, options: DockerOptions) -> str:
    """The Dockerfile's text, once nothing the build needs is missing; ImageBuildError if not."""
    if not (repo.path / DOCKERFILE).is_file():
        raise ImageBuildError(
            "--backend docker builds your API from the Dockerfile at the root of your repo, and "
            f"there is none in {repo.path}. Add one (the learner template's builds as is), or "
            "grade with --backend local."
        )
    data = learnerfile.read_bytes(repo.path, DOCKERFILE, MAX_DOCKERFILE_BYTES)
    text = data.decode("utf-8", errors="replace")
    if not options.pull:
        missing = missing_base_images(client, text)
        if missing:
            with engine_errors("listing images"):
                present = sorted(
                    tag for image in client.images.list() for tag in image.tags if ":" in tag
                )
            raise ImageBuildError(
                f"Your Dockerfile starts FROM {', '.join(missing)}, which this machine does not "
                "have, and the grader pulls no image unless asked to (--pull). Use a base image "
                f"this machine has ({', '.join(present[:8]) or 'none'}), or grade with --pull "
                "where a registry is reachable."
            )
    check_size(repo.path, options.limits.build_context_mb)
    return text


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """The learner's image: its id and the command a container of it runs."""

    id: str
    command: tuple[str, ...]  # ENTRYPOINT then CMD, as the engine will run them
    user: str  # the image's USER ("" when none)


def sets_command(dockerfile: str) -> bool:
    """Whether a Dockerfile has a CMD or ENTRYPOINT line (else its base image's command runs)."""
    return _SETS_COMMAND.search(dockerfile) is not None


class _BuildLog:
    """What the build said (the last lines, bounded), and what the builder did, from its lines.

    The builder's own lines ("Step 2/5 : RUN ...", " ---> Running in <id>", " ---> <id>") give
    the step, its container and the images the build committed. The learner's steps print into
    the same stream, so nothing read here is trusted beyond the checks :func:`_cleanup` makes.
    """

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=LOG_KEPT)
        self.step = ""  # "3/4 (`RUN sleep infinity`)"
        self.container: str | None = None  # the running step's container
        self.committed: list[str] = []  # images this build made (not the base, not the cache)
        self._pending = ""
        self._instruction = ""
        self._cached = False

    def feed(self, text: str) -> None:
        """Take a piece of the stream; whole lines are read, a partial one waits (bounded)."""
        *whole, self._pending = (self._pending + text).split("\n")
        self._pending = self._pending[-LINE_CHARS:]  # a line that never ends stays bounded
        for line in whole:
            self._line(line.rstrip("\r")[:LINE_CHARS])

    def _line(self, line: str) -> None:
        if line.strip():
            self.lines.append(line.rstrip())
        if step := _STEP.match(line):
            self.step = f"{step.group(1)} (`{step.group(2)}{step.group(3)[:150]}`)"
            self._instruction, self._cached, self.container = step.group(2).upper(), False, None
        elif line == " ---> Using cache":
            self._cached = True
        elif running := _RUNNING.match(line):
            self.container = running.group(1)
        elif _REMOVED.match(line):
            self.container = None
        elif (committed := _COMMITTED.match(line)) and self._ours():
            self.committed.append(committed.group(1))

    def _ours(self) -> bool:
        """Whether the step's image is one this build made: not FROM's base, not the cache."""
        return not self._cached and self._instruction not in ("", "FROM")

    def tail(self) -> tuple[str, ...]:
        """The last lines, the partial one included."""
        pending = (self._pending.strip() and [self._pending.rstrip()]) or []
        return tuple([*self.lines, *pending][-LOG_SHOWN:])


def build_learner_image(
    client: docker.DockerClient,
    repo: LearnerRepo,
    tag: str,
    labels: Mapping[str, str],
    options: DockerOptions,
    start_command: str,
    stopper: BuildStopper | None = None,
) -> BuiltImage:
    """Build the learner's Dockerfile as ``tag`` within the build's time limit.

    Call :func:`preflight` first. ``start_command`` is the manifest's command, from which the
    refusal of an image without a command suggests its CMD. ``stopper`` (made for ``tag``) lets
    the caller stop the build sooner: a run interrupted while it builds.
    """
    limits = options.limits
    log = _BuildLog()
    stopper = stopper or BuildStopper(tag)
    started = time.time()
    memory = _bytes(limits.build_memory)
    client.api.hooks["response"].append(stopper.hook)
    timer = threading.Timer(limits.build_timeout_s, stopper.stop, args=(True,))
    timer.daemon = True
    timer.start()
    error: str | None = None
    try:
        stream = client.api.build(
            path=str(repo.path),
            tag=tag,
            pull=options.pull,
            rm=True,
            forcerm=True,
            labels=dict(labels),
            container_limits={"memory": memory, "memswap": memory},
            decode=True,
            timeout=limits.build_timeout_s + BUILD_GRACE_S,
        )
        for chunk in stream:
            log.feed(str(chunk.get("stream", "")))
            if "error" in chunk or "errorDetail" in chunk:
                detail = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                error = str(detail)
                break
    except docker.errors.APIError as exc:  # the engine refused the Dockerfile itself
        error = str(exc.explanation or exc)
    except SDK_ERRORS as exc:  # the stream cut: by the watchdog, or by the engine
        if not stopper.stopped:
            _cleanup(client, log, started)
            raise EnvironmentProblem(
                f"The Docker engine stopped answering while it built your image ({exc}). Check "
                "it with `failfast doctor --backend docker`, and grade again."
            ) from exc
    finally:
        timer.cancel()
        with contextlib.suppress(ValueError):
            client.api.hooks["response"].remove(stopper.hook)
        stopper.close()
    if stopper.stopped:
        _cleanup(client, log, started)
        if not stopper.timed_out:
            raise ImageBuildError("The grader stopped the build: grading ended before it did.")
        raise _timed_out(repo, limits.build_timeout_s, log)
    if error is not None:
        _cleanup(client, log, started)
        raise ImageBuildError(
            f"Your Dockerfile did not build: {error.strip()}. Run `docker build .` in your repo "
            "to see the whole log; the build's last lines are below.",
            details=log.tail(),
        )
    return _inspect(client, repo, tag, start_command)


class BuildStopper:
    """Stops a build (its time is up, or the run ends): shuts the connection of its stream.

    The engine takes a closed connection as the build cancelled: it kills and removes the step's
    container. The connection is found by a response hook of the client's requests session, for
    the build of this tag only (other requests share the session).
    """

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.stopped = self.timed_out = False
        self._response: requests.Response | None = None
        self._lock = threading.Lock()

    def hook(self, response: requests.Response, *_: Any, **__: Any) -> requests.Response:
        """The session's response hook: keep the build's response; stop it if time is up already."""
        url = response.request.url or ""
        if urlsplit(url).path.endswith("/build") and parse_qs(urlsplit(url).query).get("t") == [
            self.tag
        ]:
            with self._lock:
                self._response = response
                if self.stopped:
                    self._shut()
        return response

    def stop(self, timed_out: bool = False) -> None:
        """Stop the build: by the watchdog when its time is up, or by the run that ends."""
        with self._lock:
            if not self.stopped:
                self.stopped, self.timed_out = True, timed_out
            self._shut()

    def close(self) -> None:
        """Release the build's response, however the build ended."""
        with self._lock:
            if self._response is not None:
                self._response.close()
                self._response = None

    def _shut(self) -> None:
        # shutdown, not close: it wakes the thread blocked reading the stream.
        connection = getattr(self._response.raw, "connection", None) if self._response else None
        sock = getattr(connection, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _cleanup(client: docker.DockerClient, log: _BuildLog, started: float) -> None:
    """After a failed or stopped build: its container gone, the images it committed removed.

    The ids come from the build's stream, which the learner's steps print into too: only a
    container or an untagged image made since this build started, and of no run, is removed.
    """
    if log.container is not None:
        with contextlib.suppress(*SDK_ERRORS):
            _wait_removed(client, log.container, started)
    for image_id in reversed(log.committed):
        with contextlib.suppress(*SDK_ERRORS):
            image = client.images.get(image_id)
            if not image.tags and _since(image.attrs.get("Created"), started):
                client.images.remove(image.id, noprune=True)


def _wait_removed(client: docker.DockerClient, container_id: str, started: float) -> None:
    """Wait for the engine to remove a stopped build's container; remove it if it did not."""
    deadline = time.monotonic() + ENGINE_CLEANUP_S
    while True:
        try:
            container = client.containers.get(container_id)
        except docker.errors.NotFound:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if RUN_LABEL not in container.labels and _since(container.attrs.get("Created"), started):
        container.remove(force=True)


def _since(created: object, started: float) -> bool:
    """Whether an engine timestamp ("2026-12-07T12:50:01.123456789Z", UTC) is after ``started``."""
    try:
        made = datetime.fromisoformat(str(created or "")[:19]).replace(tzinfo=UTC)
    except ValueError:
        return False
    return made.timestamp() >= started - 1  # the engine's seconds, truncated


def _timed_out(repo: LearnerRepo, limit_s: float, log: _BuildLog) -> ImageBuildError:
    step = f" in step {log.step}" if log.step else ""
    return ImageBuildError(
        f"Your Dockerfile ({repo.path / DOCKERFILE}) did not finish building within {limit_s:g} "
        f"s (--build-timeout), so the grader stopped the build{step}. A step that never ends "
        "holds it: a server or `sleep` started by RUN, a command waiting for input. The build's "
        "last lines are below (`docker build .` in your repo shows the whole log); if your "
        f"build is only slow, grade with a higher --build-timeout than {limit_s:g}.",
        details=log.tail(),
    )


def _inspect(
    client: docker.DockerClient, repo: LearnerRepo, tag: str, start_command: str
) -> BuiltImage:
    """The built image; ImageBuildError when it has no command to run."""
    with engine_errors("reading the built image"):
        image = client.images.get(tag)
    config = image.attrs.get("Config") or {}
    command = tuple(str(part) for part in (config.get("Entrypoint") or ()))
    command += tuple(str(part) for part in (config.get("Cmd") or ()))
    dockerfile = repo.path / DOCKERFILE
    if not command:
        raise ImageBuildError(
            f"Your image has no command to run: {dockerfile} sets no CMD (and no ENTRYPOINT), "
            "or sets an empty one, and its base image gives none, so the engine has nothing to "
            "start. --backend docker starts your API with the image's own command, with "
            f"PORT=8000 set. Add as the Dockerfile's last line: {suggested_cmd(start_command)}"
        )
    return BuiltImage(str(image.id), command, str(config.get("User") or ""))


def suggested_cmd(start_command: str) -> str:
    """A CMD line starting the API as the manifest's command does, on 0.0.0.0:$PORT (8000)."""
    command = re.sub(r"--host[= ](127\.0\.0\.1|localhost)\b", "--host 0.0.0.0", start_command)
    command = re.sub(r"\$(\{PORT\}|PORT\b)", "${PORT:-8000}", command)
    return "CMD " + json.dumps(["sh", "-c", f"exec {command.strip()}"])


def _bytes(size: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    size = size.strip().lower()
    return int(float(size[:-1]) * units[size[-1]]) if size[-1:] in units else int(size)
