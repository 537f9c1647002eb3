"""What an untrusted program printed, kept line by line: by a process or by a container."""

from __future__ import annotations

import collections
import re
import threading
import time
from collections.abc import Callable

# Control sequences (colours, cursor moves, OSC hyperlinks) and other control characters: a
# learner's output must not be able to restyle or overwrite the grader's report.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f]"
)


def sanitize(line: str, limit: int = 300) -> str:
    """One line of untrusted output, safe to show: no control characters, bounded length."""
    clean = _CONTROL.sub("", line.rstrip("\r\n").replace("\n", " ")).replace("\t", "    ")
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


class LineLog:
    """The last lines a program printed, written by one reader thread, read by the grader."""

    def __init__(self, keep_lines: int = 200) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self._changed = threading.Condition()
        self._eof = False
        self._count = 0  # lines seen so far, kept or not: marks for since()

    def append(self, raw: bytes) -> None:
        """Keep one line of raw output, sanitized."""
        line = sanitize(raw.decode("utf-8", errors="replace"))
        with self._changed:
            self._lines.append(line)
            self._count += 1
            self._changed.notify_all()

    def end(self) -> None:
        """The output has ended."""
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def ended(self) -> bool:
        """Whether the output has ended."""
        with self._changed:
            return self._eof

    def drain(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the end of the output; True once it is all read."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not self._eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def tail(self, n: int = 15) -> tuple[str, ...]:
        """The last ``n`` lines."""
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
