"""A docker run's containers as the grader sees them: their output, the API, the edge.

:class:`ContainerOutput` reads a container's output from an attach stream (:class:`Frames`
demultiplexes it) into a :class:`~grader.lines.LineLog` (bounded: every line counted, the first
and the last kept); :class:`DockerApi` and :class:`DockerEdge` meet
:mod:`grader.backends.base`'s protocols.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from grader.learner.nginxconf import parse
from grader.lines import LineLog, OutputSummary

# A container's output goes to the grader only, through its attach stream, and to no log file:
# the json-file driver wrote a flood of short lines to the engine's disk at 1.7 bytes a byte,
# and held the container to the pace of its JSON encoding (80 MB/s), where attached the grader
# reads 500-700 MB/s. Nothing reads a run's containers' logs from the engine.
LOG_CONFIG = {"type": "none", "config": {}}
READ_BYTES = 1 << 20  # one read of the attach stream: a flood costs few reads and appends
FRAME_HEADER = 8  # the engine's framing: stream (1 byte), 3 zero bytes, length (big-endian)


class Frames:
    """The payload of the engine's multiplexed attach stream, stdout and stderr as they came.

    Each frame is an 8-byte header (its stream, three zero bytes, its length, big-endian) and
    that many bytes; a read may end anywhere in a header or a payload. The payloads of one read
    come back as one block, so the log takes a flood in few big appends, not one per frame (the
    engine sends at most 32 kB a frame).
    """

    def __init__(self) -> None:
        self._header = bytearray()  # a header cut by the end of a read
        self._left = 0  # bytes of the current frame's payload still to come

    def payload(self, data: memoryview | bytes) -> bytes:
        """The payload bytes in ``data``, the next piece of the stream."""
        view = memoryview(data)
        parts: list[memoryview] = []
        pos, end = 0, len(view)
        while pos < end:
            if self._left:
                take = min(self._left, end - pos)
                parts.append(view[pos : pos + take])
                pos += take
                self._left -= take
                continue
            need = FRAME_HEADER - len(self._header)
            self._header += view[pos : pos + need]
            pos += min(need, end - pos)
            if len(self._header) == FRAME_HEADER:
                self._left = int.from_bytes(self._header[4:], "big")
                self._header.clear()
        return b"".join(parts)


def _reader(sock: Any) -> tuple[Callable[[bytearray], int], Any]:
    """How to read the attach stream's socket into a buffer, and the socket to shut down.

    The SDK hands over the socket under its HTTP response (a ``socket.SocketIO`` over a unix or
    TCP socket, an SSL socket, a named pipe): reads go to the socket itself, with no timeout,
    since a quiet container is no error and its stream ends when it stops.
    """
    raw: Any = getattr(sock, "_sock", sock) if isinstance(sock, socket.SocketIO) else sock
    with contextlib.suppress(AttributeError, OSError):
        raw.settimeout(None)
    if hasattr(raw, "recv_into"):
        return raw.recv_into, raw

    def recv(buffer: bytearray) -> int:  # an SSH channel: recv only
        data: bytes = raw.recv(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    return recv, raw


class ContainerOutput:
    """A created container's output, read from its attach stream into a bounded LineLog.

    Attached before the container starts (:meth:`attach`), so nothing it prints is missed; the
    stream, and the log, end when it stops. The engine passes the output on only as fast as the
    grader reads it, so what is counted is what the container wrote, up to what was still on its
    way when the container was removed: :meth:`summary` says whether that was read to the end.
    """

    def __init__(self, name: str, sock: Any) -> None:
        self.log = LineLog()
        self._read_into, self._sock = _reader(sock)
        self._whole = False  # the stream was read to its end, as the engine closed it
        self._cut = False  # the grader stopped reading (finish): an end is then no whole
        self._thread = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._thread.start()

    @classmethod
    def attach(cls, client: docker.DockerClient, container: Container) -> ContainerOutput:
        """Attach to a container that is created and not yet started, and read its output."""
        params = {"stdout": 1, "stderr": 1, "stream": 1, "logs": 0}
        return cls(str(container.name), client.api.attach_socket(container.id, params=params))

    def _read(self) -> None:
        frames = Frames()
        buffer = bytearray(READ_BYTES)
        view = memoryview(buffer)
        try:
            while (count := self._read_into(buffer)) > 0:
                block = frames.payload(view[:count])
                if block:
                    self.log.append(block)
            self._whole = not self._cut
        except (OSError, ValueError):
            pass  # the stream was cut (the engine went away, or finish() shut it)
        finally:
            self.log.end()
            with contextlib.suppress(OSError):
                self._sock.close()

    def finish(self, deadline: float) -> None:
        """Read what is still on its way until ``deadline`` (monotonic), then stop reading."""
        self.log.drain(max(deadline - time.monotonic(), 0.0))
        if not self.log.ended:
            self._cut = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self.log.drain(1.0)

    def summary(self) -> OutputSummary:
        """What the container printed; ``complete`` only if its stream was read to the end."""
        summary = self.log.summary()
        return summary if self._whole else replace(summary, complete=False)


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
