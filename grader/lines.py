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


# What neutralise() makes visible: C0 controls but tab, LF and CR (which callers split on or
# escape), DEL, the C1 controls (NEL, and CSI where a terminal reads 8-bit codes), the
# bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) that reorder
# how the text around them is shown, and lone surrogates, which no UTF-8 file or stream can carry.
_SPOOFING = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_CONTROL_PICTURES = 0x2400  # U+2400 SYMBOL FOR NULL ... U+241F; U+2421 is SYMBOL FOR DELETE


def _stand_in(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(_CONTROL_PICTURES + code)
    return "\u2421" if code == 0x7F else "\ufffd"


def neutralise(text: str) -> str:
    """Untrusted text with nothing that could restyle, overwrite or reorder what is around it.

    Each such character becomes a visible stand-in instead of vanishing, so no text is lost: a C0
    control its Unicode control picture (ESC is ``␛``, so a colour code reads ``␛[31m``), DEL
    ``␡``, a C1 control, a bidi override or isolate, or a lone surrogate U+FFFD ``�``. Tab, LF
    and CR are left to the caller: a workflow command escapes them, a report splits lines on them.
    """
    return _SPOOFING.sub(_stand_in, text)


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
