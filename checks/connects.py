"""The service's connection attempts to the stub's connect-hang port, seen from its sockets.

The stub cannot count them: its connect-hang listener never accepts and its accept queue is
full, so the kernel drops each SYN before any socket exists on the stub's side (that is what
makes the connect hang, even on loopback; accepting and never reading would instead complete the
connect and make it a read hang, another fault). The only trace of an attempt is the client's
own socket, in state SYN-SENT towards that port, for as long as the client waits on it. Linux
lists every socket of a network namespace in /proc/net/tcp and /proc/net/tcp6, so the grader
sees the service's attempts when it runs in the grader's namespace (the local backend, the
autograder's single container) and none when it does not (the docker backend, another host):
then it says it cannot tell, and no hint rests on a count.

Each attempt is a new socket (a new inode), so polling the tables counts attempts and times how
long each waited. A poll only sees what exists when it runs: the count is a lower bound and each
wait is at most what the socket lived (a busy machine makes both smaller, never larger), so
"more attempts than allowed" and "an attempt waited past the connect timeout" are never claimed
from noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
SYN_SENT = "02"
POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class ConnectAttempt:
    """One socket of the service's seen in SYN-SENT towards the connect-hang port."""

    first_seen: float  # time.monotonic() of the first poll that saw it
    last_seen: float  # of the last one

    @property
    def waited_s(self) -> float:
        """How long it was seen waiting: at most how long the connect really waited."""
        return self.last_seen - self.first_seen


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} writes it: 32-bit words in the host's byte order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    found = ipaddress.ip_address(words)
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def syn_sent(
    table: str, addresses: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address], port: int
) -> set[str]:
    """The inodes of the sockets in SYN-SENT to ``port`` on one of ``addresses``, in ``table``."""
    found = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != SYN_SENT:
            continue
        remote, _, remote_port = fields[2].partition(":")
        try:
            to = _address(remote)
            to_port = int(remote_port, 16)
        except ValueError:
            continue
        if to_port == port and to in addresses:
            # Inode 0 is a socket already orphaned by its process: name it by its local port.
            found.add(fields[9] if fields[9] != "0" else f"port:{fields[1]}")
    return found


class ConnectWatch:
    """Polls the socket tables while a check runs; the attempts it saw, in order."""

    def __init__(
        self, addresses: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address], port: int
    ) -> None:
        self._addresses, self._port = addresses, port
        self._seen: dict[str, list[float]] = {}

    @classmethod
    def for_url(cls, url: str) -> ConnectWatch | None:
        """A watch of the host and port of ``url``; None where this machine cannot see them."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None or not TABLES[0].is_file():
            return None
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port, type=socket.SOCK_STREAM)
        except OSError:
            return None  # a name only another network knows (the docker backend's stub)
        addresses = frozenset(ipaddress.ip_address(str(info[4][0])) for info in infos)
        return cls(addresses, parts.port)

    def poll(self) -> None:
        """Note every attempt waiting now."""
        now = time.monotonic()
        for table in TABLES:
            with contextlib.suppress(OSError):
                for inode in syn_sent(table.read_text(), self._addresses, self._port):
                    self._seen.setdefault(inode, [now, now])[1] = now

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            self.poll()
            await asyncio.sleep(POLL_S)

    def attempts(self) -> list[ConnectAttempt]:
        """What it saw, in the order the attempts started."""
        return sorted(
            (ConnectAttempt(first, last) for first, last in self._seen.values()),
            key=lambda a: a.first_seen,
        )


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What the attempts show, for ``measured``, and the hint that follows from it."""

    measured: str
    hint: str
    cause: str  # "retries", "no-connect-timeout", "both", "waits" or "unknown"


def diagnose(
    attempts: Sequence[ConnectAttempt] | None,
    *,
    max_attempts: int,
    connect_s: float,
    tolerance_s: float,
    elapsed_s: float,
) -> Diagnosis:
    """Why a checkout whose connects hung answered late, as far as its attempts tell.

    Two causes give the same late answer: connects retried past max_attempts (each given up at
    the connect timeout, but too many), and no connect timeout (one attempt waits until a
    deadline cuts it). The count and the waits tell them apart; without them, both are named.
    """
    timeout_fix = (
        f"set a connect timeout of the table's payments.connect_timeout_s "
        f"(httpx.Timeout(..., connect={connect_s:g}))"
    )
    retries_fix = (
        f"count every attempt, connect timeouts included, against retries.max_attempts "
        f"({max_attempts}): no retry loop of your own around it, no transport retries "
        f"(httpx.AsyncHTTPTransport(retries=...)) on top of it"
    )
    if not attempts:
        return Diagnosis(
            "the grader could not see the service's connection attempts (it sees them only "
            "when the service runs on the grader's own network)",
            "Either a connect that hangs is not given up on at the connect timeout, or connects "
            f"are retried more than max_attempts allows (the grader could not count them): "
            f"{timeout_fix}, and {retries_fix}.",
            "unknown",
        )
    count, longest = len(attempts), max(a.waited_s for a in attempts)
    waits = ", ".join(f"{a.waited_s:.2f}" for a in attempts[:12])
    measured = (
        f"at least {count} connection attempt(s) to the provider (the table allows "
        f"{max_attempts}), waiting {waits}{', …' if count > 12 else ''} s"
    )
    too_many = count > max_attempts
    too_long = longest > connect_s + tolerance_s
    many = (
        f"your service made {count} connection attempts for one checkout; the table allows "
        f"{max_attempts}: retries beyond max_attempts"
    )
    long = (
        f"a connection attempt waited {longest:.2f} s where the connect timeout is "
        f"{connect_s:g} s: no connect timeout"
    )
    if too_many and too_long:
        cause = "both"
        hint = f"Both: {many}, and {long}. Fix both: {timeout_fix}; {retries_fix}."
    elif too_many:
        cause = "retries"
        hint = (
            f"Your {many[5:]} (each given up within {longest:.2f} s, so the connect timeout "
            f"works). Fix it: {retries_fix}."
        )
    elif too_long:
        cause = "no-connect-timeout"
        hint = (
            f"A {long[2:]} ({count} attempt(s), within max_attempts). Fix it: {timeout_fix}, "
            "and turn httpx.ConnectTimeout into a 503 or 504."
        )
    else:
        cause = "waits"
        hint = (
            f"Your service made {count} connection attempt(s), within max_attempts, each given "
            f"up within {longest:.2f} s of the {connect_s:g} s connect timeout, yet answered "
            f"after {elapsed_s:.2f} s: the time went elsewhere, in waits between attempts longer "
            "than the table's retries declare (base_delay_s, max_delay_s) or before the first."
        )
    return Diagnosis(measured, hint, cause)
