"""A docker run's containers as the grader sees them: their output, the API, the edge.

:class:`ContainerOutput` reads a container's output into a :class:`~grader.lines.LineLog`;
:class:`DockerApi` and :class:`DockerEdge` meet :mod:`grader.backends.base`'s protocols.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from grader.learner.nginxconf import parse
from grader.lines import LineLog


class ContainerOutput:
    """A container's output, read by a thread into a LineLog; the log ends when it stops."""

    def __init__(self, container: Container) -> None:
        self.log = LineLog()
        self._thread = threading.Thread(
            target=self._read, args=(container,), name=f"{container.name}-logs", daemon=True
        )
        self._thread.start()

    def _read(self, container: Container) -> None:
        pending = b""
        try:
            for chunk in container.logs(stream=True, follow=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.log.append(line)
        except (docker.errors.DockerException, OSError, ValueError):
            pass  # the container was removed while its output was read
        finally:
            if pending:
                self.log.append(pending)
            self.log.end()


@dataclass(slots=True)
class DockerApi:
    """An instance of the learner's API: one container of the run's image."""

    name: str
    base_url: str
    container: Container
    output: ContainerOutput
    memory: str
    _exit: str | None = field(default=None)

    def alive(self) -> bool:
        """Whether the container still runs: its output stream ends when it stops."""
        return not self.output.log.ended

    def exit_description(self) -> str | None:
        """How the container ended, in words, or None while it runs."""
        if self.alive():
            return None
        if self._exit is None:
            try:
                self.container.reload()
                state = self.container.attrs.get("State", {})
            except docker.errors.DockerException:
                state = {}
            code = state.get("ExitCode")
            if state.get("OOMKilled"):
                self._exit = (
                    f"was killed by the kernel at its memory limit ({self.memory}; exit code "
                    f"{code})"
                )
            elif state.get("Running"):
                return None
            else:
                self._exit = f"exited with code {code}"
        return self._exit

    def output_tail(self, n: int = 15) -> tuple[str, ...]:
        """The last lines the container printed."""
        return self.output.log.tail(n)

    def output_mark(self) -> int:
        """A position in its output."""
        return self.output.log.mark()

    def output_since(self, mark: int, n: int = 15) -> tuple[str, ...]:
        """At most the last ``n`` lines printed after ``mark``."""
        return self.output.log.since(mark, n)


@dataclass(frozen=True, slots=True)
class DockerEdge:
    """The learner's nginx in a container, in front of the main API instance."""

    base_url: str
    config: str
    output: ContainerOutput

    def output_tail(self, n: int = 15) -> tuple[str, ...]:
        """The last lines nginx printed."""
        return self.output.log.tail(n)


def listen_port(conf: Path) -> int:
    """The port the first `listen` of the config's servers names (nginx's default: 80)."""
    pending = [stmt for file in parse(conf)["config"] for stmt in file.get("parsed", [])]
    while pending:
        stmt = pending.pop(0)
        if stmt.get("directive") == "listen" and stmt.get("args"):
            address = str(stmt["args"][0])
            port = address.rsplit(":", 1)[-1] if not address.endswith("]") else "80"
            if port.isdigit():
                return int(port)
            if ":" not in address and not address.isdigit():
                return 80  # a host alone listens on 80
        pending = [*stmt.get("block", []), *pending]
    return 80


def container_address(container: Container, network: str) -> str:
    """The container's address on the run's network, as the grader reaches it."""
    container.reload()
    address: str = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    return address
