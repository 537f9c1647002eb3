"""One HTTP/1.1 server connection, driven by h11 over asyncio streams.

h11 only parses and serialises, so the stub decides what reaches the wire and when: it can hold
the headers, trickle the body, close without answering or abort with an RST, all of which an
ASGI server would refuse to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import h11

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
_READ_CHUNK = 64 * 1024
# Closing a socket whose peer has stopped reading could otherwise wait on a full send buffer.
_CLOSE_TIMEOUT_S = 1.0

Headers = Iterable[tuple[str, str]]


class BodyTooLarge(Exception):
    """The request body is over ``MAX_BODY_BYTES``."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A fully received request."""

    method: str
    target: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    arrived_at: float


def _reason(status: int) -> bytes:
    """Look up the reason phrase of ``status``; empty for codes HTTPStatus does not know."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class Channel:
    """A server-side HTTP/1.1 connection that knows when its client has gone away."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection_id: int
    ) -> None:
        self.connection_id = connection_id
        self.connected_at = time.monotonic()
        # When the client closed or broke the connection, as far as the stub could tell.
        self.gone_at: float | None = None
        self._reader = reader
        self._writer = writer
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._closed = False

    # Reading

    async def read_request(self) -> Incoming | None:
        """Read the next whole request; None once the client closes between requests.

        Raises ``h11.RemoteProtocolError`` on a malformed request and ``BodyTooLarge``.
        """
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                self._conn.receive_data(await self._read_some())
            elif isinstance(event, h11.Request):
                request = event
                if self._conn.they_are_waiting_for_100_continue:
                    self._writer.write(
                        self._conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                    )
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    raise BodyTooLarge(f"request body over {MAX_BODY_BYTES} bytes")
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                target = request.target.decode("latin-1")
                parts = urlsplit(target)
                return Incoming(
                    method=request.method.decode("latin-1"),
                    target=target,
                    path=parts.path,
                    query=parts.query,
                    headers=_header_dict(request.headers),
                    body=bytes(body),
                    arrived_at=time.monotonic(),
                )
            else:
                # ConnectionClosed, or PAUSED after a Connection: close exchange.
                return None

    async def _read_some(self) -> bytes:
        """Read what the client sent next; b"" (and ``gone_at`` set) when it has gone."""
        try:
            data = await self._reader.read(_READ_CHUNK)
        except OSError:
            data = b""
        if not data:
            self._mark_gone()
        return data

    def _mark_gone(self) -> None:
        """Note that the client has gone, the first time only."""
        if self.gone_at is None:
            self.gone_at = time.monotonic()

    async def watch(self, seconds: float) -> float | None:
        """Wait ``seconds`` while watching the client; return when it gave up, or None."""
        if self.gone_at is not None or seconds <= 0:
            return self.gone_at
        try:
            async with asyncio.timeout(seconds):
                while True:
                    data = await self._read_some()
                    if not data:
                        return self.gone_at
                    # A pipelined next request: h11 keeps it for the next cycle.
                    self._conn.receive_data(data)
        except TimeoutError:
            return None

    # Writing

    async def send_json(
        self, status: int, payload: Any, headers: Headers = (), *, close: bool = False
    ) -> bool:
        """Send a whole JSON response; False when the client was gone before it all went out."""
        body = json.dumps(payload).encode("utf-8")
        if not await self.send_head(status, len(body), headers, close=close):
            return False
        return await self.send_body(body) and await self.finish()

    async def send_head(
        self, status: int, content_length: int, headers: Headers = (), *, close: bool = False
    ) -> bool:
        """Send the status line and headers of a JSON response of ``content_length`` bytes."""
        fields = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(content_length)),
            ("Server", "failfast-payments-stub"),
            *headers,
        ]
        if close:
            fields.append(("Connection", "close"))
        event = h11.Response(status_code=status, headers=fields, reason=_reason(status))
        return await self._write(self._conn.send(event))

    async def send_body(self, data: bytes) -> bool:
        """Send part of the body."""
        return await self._write(self._conn.send(h11.Data(data=data)))

    async def finish(self) -> bool:
        """End the response."""
        return await self._write(self._conn.send(h11.EndOfMessage()))

    async def _write(self, data: bytes | None) -> bool:
        """Write and drain; False (and ``gone_at`` set) when the client has gone."""
        if self._closed or self.gone_at is not None:
            return False
        if self._writer.is_closing():
            self._mark_gone()
            return False
        try:
            self._writer.write(data or b"")
            await self._writer.drain()
        except OSError:
            self._mark_gone()
            return False
        return True

    async def reject(self, status: int, error: str, message: str) -> None:
        """Answer a request the stub could not parse, then close the connection."""
        if self.gone_at is not None:
            return
        # h11 may refuse to frame a response in the connection's state: closing says enough.
        with contextlib.suppress(h11.LocalProtocolError):
            await self.send_json(status, {"error": error, "message": message}, close=True)

    # Ending

    def next_cycle(self) -> bool:
        """Get ready for the next request on this connection; False when it must close."""
        if self._closed or self.gone_at is not None:
            return False
        if self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE:
            self._conn.start_next_cycle()
            return True
        return False

    def abort_with_rst(self) -> None:
        """Close the connection with a TCP RST instead of a FIN."""
        if self._closed:
            return
        self._closed = True
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER on with a zero timeout makes close() discard the socket with an RST.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    async def close(self) -> None:
        """Close the connection with a FIN (a no-op once closed)."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), _CLOSE_TIMEOUT_S)
        except (OSError, TimeoutError):
            self._writer.transport.abort()


def _header_dict(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers with lower-case names; repeated ones joined with ", " as HTTP allows."""
    result: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        result[name] = f"{result[name]}, {value}" if name in result else value
    return result


Handler = Callable[[Channel, Incoming], Awaitable[None]]


async def run_connection(channel: Channel, handle: Handler) -> None:
    """Serve requests on ``channel`` with ``handle`` until either side closes it."""
    try:
        while True:
            try:
                request = await channel.read_request()
            except h11.RemoteProtocolError as exc:
                if channel.gone_at is None:
                    await channel.reject(exc.error_status_hint, "invalid_request", str(exc))
                return
            except BodyTooLarge as exc:
                await channel.reject(413, "request_too_large", str(exc))
                return
            if request is None:
                return
            await handle(channel, request)
            if not channel.next_cycle():
                return
    finally:
        await channel.close()
