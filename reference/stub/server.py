"""The stub's three listeners (provider, admin, connect-hang) and ``serve``, which runs them."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reference.stub.admin import Admin
from reference.stub.channel import Channel, Handler, run_connection
from reference.stub.provider import Provider
from reference.stub.state import StubState

# Connect-hang: how long a connect of the stub's own may take before the queue counts as full,
# and how many it opens at most (a kernel that never drops SYNs must not make it loop forever).
_FILL_CONNECT_TIMEOUT_S = 0.1
_MAX_FILLERS = 64
# How often the stub checks that its owner process is still alive.
_OWNER_POLL_S = 0.2

ReadyCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class StubConfig:
    """How to run the stub: where it listens, the course knobs, the process it must not outlive."""

    host: str = "127.0.0.1"
    port: int = 0
    admin_port: int = 0
    latency_ms: int = 0
    fail_rate: float = 0.0
    seed: int = 0
    owner_pid: int | None = None


class ConnectHang:
    """A listening socket that never accepts, with its accept queue filled by the stub itself.

    Once the queue is full, Linux drops further SYNs instead of refusing them, so a client's
    connect hangs until its connect timeout, as with a dead host, even on loopback.
    """

    def __init__(self, listener: socket.socket, fillers: list[socket.socket], full: bool) -> None:
        self.listener = listener
        self.port: int = listener.getsockname()[1]
        self.full = full
        self._fillers = fillers

    @classmethod
    async def open(cls, host: str) -> ConnectHang:
        """Listen on an ephemeral port of ``host``, then fill the accept queue."""
        family, kind, proto, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
        try:
            listener.bind(address)
            listener.listen(0)
        except OSError:
            listener.close()
            raise
        target = listener.getsockname()
        loop = asyncio.get_running_loop()
        fillers: list[socket.socket] = []
        for _ in range(_MAX_FILLERS):
            filler = socket.socket(family, kind, proto)
            filler.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(filler, target), _FILL_CONNECT_TIMEOUT_S)
            except TimeoutError:
                # This connect hangs: the queue is full. It has done its job as a probe.
                filler.close()
                return cls(listener, fillers, full=True)
            except OSError:
                filler.close()
                break
            # Kept open: each completed connection holds a slot of the queue.
            fillers.append(filler)
        return cls(listener, fillers, full=False)

    def close(self) -> None:
        """Close the listener and every filler connection."""
        for filler in self._fillers:
            filler.close()
        self.listener.close()


class PaymentsStub:
    """The stub's state and listeners."""

    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.state = StubState.new(config.seed)
        self._provider = Provider(
            self.state,
            latency_ms=config.latency_ms,
            fail_rate=config.fail_rate,
            seed=config.seed,
        )
        self._admin = Admin(self.state, self.info)
        self._servers: list[asyncio.Server] = []
        self._connect_hang: ConnectHang | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._provider_ids = itertools.count(1)
        self._admin_ids = itertools.count(1)
        self.port = 0
        self.admin_port = 0

    async def start(self) -> None:
        """Open the three listeners; on failure, close whatever was opened and re-raise."""
        try:
            provider = await asyncio.start_server(
                self._on_provider, self.config.host, self.config.port
            )
            self._servers.append(provider)
            admin = await asyncio.start_server(
                self._on_admin, self.config.host, self.config.admin_port
            )
            self._servers.append(admin)
            self._connect_hang = await ConnectHang.open(self.config.host)
        except BaseException:
            await self.close()
            raise
        # A host name may resolve to several addresses, each with its own socket: the first one
        # is the one announced.
        self.port = provider.sockets[0].getsockname()[1]
        self.admin_port = admin.sockets[0].getsockname()[1]

    @property
    def connect_hang(self) -> ConnectHang:
        """The connect-hang listener (after ``start``)."""
        assert self._connect_hang is not None, "start() first"
        return self._connect_hang

    def ready_event(self) -> dict[str, Any]:
        """Build the line announcing that every listener is up."""
        return {
            "event": "ready",
            "host": self.config.host,
            "port": self.port,
            "admin_port": self.admin_port,
            "connect_hang_port": self.connect_hang.port,
        }

    def info(self) -> dict[str, Any]:
        """Describe the stub for ``GET /info``: ports, knobs, and the stub's clock."""
        return {
            "host": self.config.host,
            "port": self.port,
            "admin_port": self.admin_port,
            "connect_hang_port": self.connect_hang.port,
            "connect_hang_full": self.connect_hang.full,
            "latency_ms": self.config.latency_ms,
            "fail_rate": self.config.fail_rate,
            "seed": self.config.seed,
            "pid": os.getpid(),
            "now": time.monotonic(),
        }

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers = []
        if self._connect_hang is not None:
            self._connect_hang.close()
            self._connect_hang = None

    async def _on_provider(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one connection to the provider port."""
        channel = Channel(reader, writer, next(self._provider_ids))
        await self._run(channel, self._provider.handle)

    async def _on_admin(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection to the admin port."""
        channel = Channel(reader, writer, next(self._admin_ids))
        await self._run(channel, self._admin.handle)

    async def _run(self, channel: Channel, handle: Handler) -> None:
        """Serve a connection, tracked so that ``close`` can cancel it."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await run_connection(channel, handle)
        except asyncio.CancelledError:
            # Only close() cancels a connection, at shutdown. Ending normally, rather than
            # cancelled, keeps asyncio's streams from logging the cancellation as an error.
            pass
        except Exception:
            # A bug of the stub's own: say so loudly, but keep serving other connections.
            sys.stderr.write("payments stub: internal error while serving a connection:\n")
            traceback.print_exc(file=sys.stderr)
        finally:
            self._connections.discard(task)


def process_is_gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # A zombie still answers kill(pid, 0) until its parent reaps it, yet it is dead.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in {"Z", "X"}


async def wait_for_exit(pid: int) -> None:
    """Return once process ``pid`` has exited."""
    while not process_is_gone(pid):
        await asyncio.sleep(_OWNER_POLL_S)


async def serve(
    config: StubConfig, ready: ReadyCallback, stop: asyncio.Event | None = None
) -> None:
    """Run the stub until ``stop`` is set or the owner process exits.

    ``ready`` gets the ready event (``{"event": "ready", "host", "port", "admin_port",
    "connect_hang_port"}``) once every listener is up.
    """
    stub = PaymentsStub(config)
    await stub.start()
    waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future((stop or asyncio.Event()).wait())]
    if config.owner_pid is not None:
        waiters.append(asyncio.ensure_future(wait_for_exit(config.owner_pid)))
    try:
        ready(stub.ready_event())
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        await stub.close()
