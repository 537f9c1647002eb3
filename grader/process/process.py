"""One child process: started in a session of its own, its output kept within bounds, stopped.

Every process the grader starts is a :class:`ManagedProcess`: the learner's API, the stub,
Redis and nginx (through :class:`~grader.process.tracker.ProcessTracker`, which also owns what
they start), k6 (:func:`~grader.process.command.run_command`) and each submission's grader in a
batch. Its output goes to a sink read by a thread of its own, in blocks of whatever the pipe
holds (up to :data:`CHUNK_BYTES`), however they are cut into lines: a
:class:`~grader.lines.LineLog` (every line counted, the first and the last kept), a
:class:`BoundedOutput` (the first and the last bytes) or a file. The reader does no work per
line, so however much a learner's program prints, it is drained as fast as it is written: the
program never blocks on a full pipe, and nothing grows in memory.

Every wait is bounded, and every way of stopping processes is :func:`escalate`: SIGINT, then
SIGTERM, then SIGKILL, each followed by a bounded wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

from grader.lines import LineLog, OutputSummary
from grader.process.proctable import proc_stat

# Variables a learner's API may inherit from the grader's environment: enough to find its
# interpreter and speak UTF-8, nothing that could carry a secret (tokens, cloud credentials).
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
# The most a reader takes from a pipe at once: a program printing fast fills big blocks, each
# read and counted at once.
CHUNK_BYTES = 1 << 20
# How much an untrusted program's pipe may hold (``pipe_bytes``; Linux's default is 64 KiB, its
# limit for an unprivileged process 1 MiB): room to go on printing while the reader is between
# two reads, and twice the throughput. Only for the learner's API: a user's pipes share a
# budget (``/proc/sys/fs/pipe-user-pages-soft``, 64 MiB), past which new pipes get 8 KiB.
BIG_PIPE_BYTES = 1 << 20
# How long SIGKILL is repeated (a process may fork while it is being killed) and waited on.
KILL_WAIT_S = 3.0
_POLL_S = 0.02


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a child: a few inherited variables plus ``extra``."""
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    # The grader's own interpreter directory comes last on PATH, so `uvicorn` is found even when
    # failfast was run as .venv/bin/failfast without activating the venv.
    bindir = str(Path(sys.executable).parent)
    path = env.get("PATH", os.defpath)
    if bindir not in path.split(os.pathsep):
        env["PATH"] = f"{path}{os.pathsep}{bindir}" if path else bindir
    env.update({"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(extra)
    return env


def escalate(
    send: Callable[[signal.Signals], object],
    finished: Callable[[], bool],
    *,
    interrupt_s: float | None = None,
    terminate_s: float | None = None,
    kill_s: float = KILL_WAIT_S,
) -> list[signal.Signals]:
    """Stop something: SIGINT, then SIGTERM, then SIGKILL, each followed by a bounded wait.

    ``send(sig)`` signals whatever is to stop; ``finished()`` says whether it all has. SIGINT
    is sent only when ``interrupt_s`` is given and SIGTERM only when ``terminate_s`` is, each
    then waited on that long at most; SIGKILL always comes last, and is sent again while
    something is left (a process may fork while being killed), for ``kill_s`` at most. Nothing is
    sent once ``finished()``. The signals sent, in order.
    """
    steps = (
        (signal.SIGINT, interrupt_s),
        (signal.SIGTERM, terminate_s),
        (signal.SIGKILL, kill_s),
    )
    sent: list[signal.Signals] = []
    for sig, wait_s in steps:
        if wait_s is None:
            continue
        if finished():
            return sent
        deadline = time.monotonic() + wait_s
        send(sig)
        sent.append(sig)
        while not finished() and time.monotonic() < deadline:
            time.sleep(min(_POLL_S, max(deadline - time.monotonic(), 0.0)))
            if sig is signal.SIGKILL and not finished():
                send(sig)
    return sent


class Sink(Protocol):
    """Where a reader thread puts a child's output: blocks of at most :data:`CHUNK_BYTES`."""

    def append(self, raw: bytes) -> None:
        """Keep a block of output, cut anywhere (within a line, across many)."""

    def end(self) -> None:
        """The output has ended."""

    def drain(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the end of the output; True once it is all read."""


class BoundedOutput:
    """The first ``head_bytes`` and the last ``tail_bytes`` of a stream, and how much was cut."""

    def __init__(self, head_bytes: int = 1 << 20, tail_bytes: int = 1 << 18) -> None:
        self._head_bytes, self._tail_bytes = head_bytes, tail_bytes
        self._head = bytearray()
        self._tail = bytearray()
        self.dropped = 0  # bytes between the head and the tail, kept by neither
        self._ended = threading.Event()
        self._lock = threading.Lock()

    def append(self, raw: bytes) -> None:
        """Keep ``raw`` in the head while it has room, else in the tail (its oldest bytes go)."""
        with self._lock:
            room = self._head_bytes - len(self._head)
            if room > 0:
                self._head += raw[:room]
                raw = raw[room:]
            self._tail += raw
            excess = len(self._tail) - self._tail_bytes
            if excess > 0:
                del self._tail[:excess]
                self.dropped += excess

    def end(self) -> None:
        """The output has ended."""
        self._ended.set()

    def drain(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the end of the output; True once it is all read."""
        return self._ended.wait(max(timeout_s, 0.0))

    def text(self) -> str:
        """What was kept, decoded; a line between head and tail says how much was cut."""
        with self._lock:
            head, tail, dropped = bytes(self._head), bytes(self._tail), self.dropped
        cut = f"\n[... {dropped} bytes left out ...]\n".encode() if dropped else b""
        return (head + cut + tail).decode("utf-8", errors="replace")


class ManagedProcess:
    """A child process in its own session and process group, with its output kept within bounds.

    By default its output (stdout and stderr, merged) goes to :attr:`output`, a
    :class:`~grader.lines.LineLog`: every byte and line counted, the first lines and the last
    ``keep_lines`` lines kept. ``log``: the output goes to that file instead, and is not
    kept. ``stdout`` and ``stderr``: kept in those sinks instead (stderr apart from stdout).
    ``cwd`` None: the grader's own directory. ``pipe_bytes``: the size of its output pipes
    (:data:`BIG_PIPE_BYTES` for a program that may flood them), else the system's default.

    A process of a grading run is started with :meth:`ProcessTracker.spawn`, which also owns
    what it starts and stops it all; a process of its own is stopped with :meth:`stop`.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path | None,
        env: Mapping[str, str],
        keep_lines: int = 200,
        preexec: Callable[[], None] | None = None,
        log: IO[bytes] | None = None,
        stdout: Sink | None = None,
        stderr: Sink | None = None,
        pipe_bytes: int | None = None,
    ) -> None:
        self.name = name
        self._pipe_bytes = pipe_bytes
        self.output = LineLog(keep_lines)
        self._sinks: list[Sink] = []
        self._popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else subprocess.PIPE,
            stderr=subprocess.PIPE if stderr is not None and log is None else subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
            bufsize=0,  # the reader's read() is one read(2) of whatever the pipe holds
        )
        stat = proc_stat(self._popen.pid)
        self.start = stat.start if stat is not None else 0  # with pid: names it for good
        self._readers: list[threading.Thread] = []
        if log is None:
            self._read(self._popen.stdout, stdout or self.output, "output")
            self._read(self._popen.stderr, stderr, "errors")

    def _read(self, stream: IO[bytes] | None, sink: Sink | None, what: str) -> None:
        if stream is None or sink is None:
            return
        self._sinks.append(sink)
        if self._pipe_bytes is not None:
            with contextlib.suppress(OSError, AttributeError):  # not Linux, or over a limit
                fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, self._pipe_bytes)
        reader = threading.Thread(
            target=_pump, args=(stream, sink), name=f"{self.name}-{what}", daemon=True
        )
        self._readers.append(reader)
        reader.start()

    @property
    def pid(self) -> int:
        """The process id (also its process group and session id)."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited, else None."""
        return self._popen.poll()

    def drain(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the end of the output; True once it is all read.

        After the process exits, its last lines may still be on their way through the pipe, or
        a process it left behind may still hold the pipe open: hence the bound.
        """
        deadline = time.monotonic() + timeout_s
        return all(sink.drain(deadline - time.monotonic()) for sink in self._sinks)

    def tail(self, n: int = 15) -> tuple[str, ...]:
        """The last ``n`` lines of output."""
        return self.output.tail(n)

    def mark(self) -> int:
        """A position in the output, for :meth:`since`."""
        return self.output.mark()

    def summary(self) -> OutputSummary:
        """How much it printed, with its first and its last lines."""
        return self.output.summary()

    def since(self, mark: int, n: int = 15) -> tuple[str, ...]:
        """At most the last ``n`` lines printed after ``mark``."""
        return self.output.since(mark, n)

    def wait_for_line(self, predicate: Callable[[str], bool], timeout_s: float) -> str | None:
        """The first kept line matching ``predicate``, waiting at most ``timeout_s``."""
        return self.output.wait_for_line(predicate, timeout_s)

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the whole process group, if it is still there."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def wait(self, timeout_s: float) -> bool:
        """Wait for the leader to exit; True when it has."""
        try:
            self._popen.wait(timeout=max(timeout_s, 0.0))
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(
        self,
        *,
        interrupt_s: float | None = None,
        terminate_s: float | None = None,
        kill_s: float = KILL_WAIT_S,
    ) -> list[signal.Signals]:
        """Stop the process group by :func:`escalate`, until its leader has exited.

        Only the group: what the process started elsewhere is its own (or its tracker's) to stop.
        """
        return escalate(
            self.signal_group,
            lambda: self.returncode is not None,
            interrupt_s=interrupt_s,
            terminate_s=terminate_s,
            kill_s=kill_s,
        )

    def release(self) -> None:
        """After the group is gone: stop reading its output and close the pipes."""
        deadline = time.monotonic() + 2.0
        for reader in self._readers:
            reader.join(timeout=max(deadline - time.monotonic(), 0.0))
        for stream in (self._popen.stdout, self._popen.stderr):
            if stream is not None:
                stream.close()


def _pump(stream: IO[bytes], sink: Sink) -> None:
    """Read ``stream`` (unbuffered) into ``sink`` to its end, whatever the pipe holds each time.

    One read(2) of up to :data:`CHUNK_BYTES` a block, handed over whole: the sink splits it.
    Into one buffer, allocated once: a fresh 1 MiB for every read (``read(CHUNK_BYTES)``) costs
    an mmap and a munmap each time, which delays a line the grader is waiting for.
    """
    buffer = memoryview(bytearray(CHUNK_BYTES))
    try:
        while size := stream.readinto(buffer):  # type: ignore[attr-defined]
            sink.append(bytes(buffer[:size]))
    except (OSError, ValueError):  # closed under the reader: release() gave up waiting
        pass
    finally:
        sink.end()
