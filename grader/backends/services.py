"""What every backend does the same way to bring its services up: ports and readiness.

The stub's ready line, Redis's PONG, the API's ``GET /healthz`` and nginx's port are awaited
here for every backend, whether the service runs as a process or in a container; each backend
says only where the service is and how its output is read (:class:`Output`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx

from grader.errors import EnvironmentProblem

# A learner's API is ready when GET /healthz answers 200; each probe is bounded by this.
HEALTHZ_PROBE_TIMEOUT_S = 1.0
# Between probes of a starting service: a refused connection costs next to nothing, and every
# grading waits for several starts (fresh instances), so a short pause adds up.
READY_POLL_S = 0.05
# An API that exited before it was ready: how long its last lines may take to be read (or how
# long a process it left behind may hold its output open) before the message is written.
OUTPUT_DRAIN_S = 1.0


class Output(Protocol):
    """A service's output as a backend reads it: a process's pipe, a container's log."""

    def wait_for_line(self, predicate: Callable[[str], bool], timeout_s: float) -> str | None:
        """The first line matching ``predicate``, waiting at most ``timeout_s``."""

    def tail(self, n: int = 15) -> tuple[str, ...]:
        """The last ``n`` lines."""


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _is_ready_line(text: str) -> bool:
    return text.startswith("{") and '"ready"' in text


def stub_ready(output: Output, timeout_s: float, where: str = "") -> dict[str, Any]:
    """The reference stub's ready line (its ports), once printed; ``where`` it runs, for errors.

    The stub prints one JSON line with ``"ready"``, its host and ports, once it listens.
    """
    line = output.wait_for_line(_is_ready_line, timeout_s)
    if line is None:
        raise EnvironmentProblem(
            f"The grader's payments stub did not start within {timeout_s:.0f} s{where}. This is "
            "not your fault; its output ends with: " + " / ".join(output.tail(5) or ("(nothing)",))
        )
    ready: dict[str, Any] = json.loads(line)
    return ready


def redis_answers(
    host: str, port: int, timeout_s: float, running: Callable[[], bool] = lambda: True
) -> bool:
    """Whether Redis at ``host:port`` answers PING within ``timeout_s`` (while ``running``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running():
        try:
            with socket.create_connection((host, port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        time.sleep(READY_POLL_S)
    return False


async def accepts(
    host: str,
    port: int,
    timeout_s: float,
    running: Callable[[], bool],
    connect_timeout_s: float = 0.5,
) -> bool:
    """Whether ``host:port`` accepts a connection within ``timeout_s``, the service running.

    ``running`` says whether the service still runs: waiting stops when it does not, and it must
    still run once the port answers (another program that took the port would answer too).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running():
        try:
            opening = asyncio.open_connection(host, port)
            _, writer = await asyncio.wait_for(opening, connect_timeout_s)
        except (OSError, TimeoutError):
            await asyncio.sleep(READY_POLL_S)
            continue
        writer.close()
        return running()
    return False


async def poll_healthz(
    base_url: str, timeout_s: float, raise_if_exited: Callable[[], Awaitable[None]]
) -> str | None:
    """GET /healthz until it answers 200 (None), or ``timeout_s`` passes (the last failure).

    ``raise_if_exited`` is awaited before each probe: it raises, with the API's last words,
    once the API has exited, whichever backend runs it.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    async with httpx.AsyncClient(timeout=HEALTHZ_PROBE_TIMEOUT_S) as http:
        while True:
            await raise_if_exited()
            try:
                response = await http.get(f"{base_url}/healthz")
                if response.status_code == 200:
                    return None
                last = f"it answered {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            if time.monotonic() >= deadline:
                return last
            await asyncio.sleep(READY_POLL_S)
