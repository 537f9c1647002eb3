"""Processes the grader starts: own process group, captured output, always stopped.

Every process runs in a new session, so stopping it kills its whole process group (a learner's
command may be a shell that starts uvicorn that starts workers). On Linux each also gets
``PR_SET_PDEATHSIG``, so a grader killed with SIGKILL still takes its direct children with it.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Variables a learner's API may inherit from the grader's environment: enough to find its
# interpreter and speak UTF-8, nothing that could carry a secret (tokens, cloud credentials).
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")

# Control sequences (colours, cursor moves, OSC hyperlinks) and other control characters: a
# learner's output must not be able to restyle or overwrite the grader's report.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f]"
)


def sanitize(line: str, limit: int = 300) -> str:
    """One line of untrusted output, safe to show: no control characters, bounded length."""
    clean = _CONTROL.sub("", line.rstrip("\r\n").replace("\n", " ")).replace("\t", "    ")
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


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


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGKILL it when the grader dies.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ManagedProcess:
    """A child process in its own process group, with its output kept line by line."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        keep_lines: int = 200,
    ) -> None:
        self.name = name
        self._lines: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self._changed = threading.Condition()
        self._eof = False
        self._count = 0  # lines seen so far, kept or not: marks for output_since()
        self._popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited, else None."""
        return self._popen.poll()

    def _read(self) -> None:
        assert self._popen.stdout is not None
        for raw in iter(self._popen.stdout.readline, b""):
            line = sanitize(raw.decode("utf-8", errors="replace"))
            with self._changed:
                self._lines.append(line)
                self._count += 1
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def tail(self, n: int = 15) -> tuple[str, ...]:
        """The last ``n`` lines of output."""
        with self._changed:
            return tuple(self._lines)[-n:]

    def mark(self) -> int:
        """A position in the output, for :meth:`since`."""
        with self._changed:
            return self._count

    def since(self, mark: int, n: int = 15) -> tuple[str, ...]:
        """At most the last ``n`` lines printed after ``mark``."""
        with self._changed:
            new = min(self._count - mark, len(self._lines), n)
            return tuple(self._lines)[len(self._lines) - new :] if new > 0 else ()

    def wait_for_line(self, predicate: Callable[[str], bool], timeout_s: float) -> str | None:
        """The first kept line matching ``predicate``, waiting at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for line in self._lines:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    return None
                self._changed.wait(remaining)

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

    def release(self) -> None:
        """After the group is gone: stop reading its output and close the pipe."""
        self._reader.join(timeout=2.0)
        if self._popen.stdout is not None:
            self._popen.stdout.close()


def stop_all(processes: Sequence[ManagedProcess], grace_s: float = 1.5) -> None:
    """Stop every process group together: SIGTERM, then SIGKILL for whatever outlives ``grace_s``.

    Stopping them together bounds shutdown at ``grace_s`` however many there are; a learner's
    uvicorn with requests still in flight would otherwise wait on them for ever.
    """
    for process in processes:
        process.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.wait(deadline - time.monotonic())
    for process in processes:
        # Also reaps what a leader that exited may have left behind in its group.
        process.signal_group(signal.SIGKILL)
        process.wait(5.0)
        process.release()
