"""What an untrusted program printed, kept line by line: by a process or by a container."""

from __future__ import annotations

import collections
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# The ANSI control sequences sanitize() strips, in their 7-bit (ESC [, ESC ]) and 8-bit (CSI
# U+009B, OSC U+009D) forms: CSI (colours, cursor moves, erasing) up to its final byte, or to the
# end of a cut line; OSC (window titles, hyperlinks) up to its terminator (BEL, ESC \ or ST
# U+009C) or the end. Each alternative's classes are disjoint, so matching is linear. A
# learner's output must not be able to restyle or overwrite the grader's report; whatever
# control is left (a lone ESC, a C1 control) neutralise() makes visible.
_CONTROL = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*(?:[@-~]|$)|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
)


# What neutralise() makes visible: C0 controls but tab, LF and CR (which callers split on or
# escape), DEL, the C1 controls (NEL, and CSI where a terminal reads 8-bit codes), the
# bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) that reorder
# how the text around them is shown, the bidi marks (LRM U+200E, RLM U+200F, ALM U+061C), and
# lone surrogates, which no UTF-8 file or stream can carry. A mark is an invisible letter of a
# direction: it reorders the numbers and punctuation next to it (RLM before "10 20" shows "20
# 10"), so it can make a measurement read otherwise. Zero-width joiners and spaces, and the line
# and paragraph separators U+2028/U+2029, reorder nothing and no reader of failfast's reports
# breaks a line on them: they stay.
_SPOOFING = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_CONTROL_PICTURES = 0x2400  # U+2400 SYMBOL FOR NULL ... U+241F; U+2421 is SYMBOL FOR DELETE


def _stand_in(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(_CONTROL_PICTURES + code)
    return "\u2421" if code == 0x7F else "\ufffd"


def neutralise(text: str, *, keep_cr: bool = True) -> str:
    """Untrusted text with nothing that could restyle, overwrite or reorder what is around it.

    Each such character becomes a visible stand-in instead of vanishing, so no text is lost: a C0
    control its Unicode control picture (ESC is ``␛``, so a colour code reads ``␛[31m``), DEL
    ``␡``, a C1 control, a bidi override, isolate or mark, or a lone surrogate U+FFFD ``�``. Tab,
    LF and CR are left to the caller: a workflow command escapes them, a report splits lines on
    them; ``keep_cr=False`` makes a CR visible too (``␍``), for a format that would take it for
    a line end or let it overwrite a line. Each character keeps its place (one for one), so
    spans over the text stay valid.
    """
    shown = _SPOOFING.sub(_stand_in, text)
    return shown if keep_cr else shown.replace("\r", "\u240d")


# How much of a line sanitize() reads, per character it may show: the escape sequences it strips
# may come first. The rest of a longer line is not read, so a 50 MB line costs what a short one
# does, and it is said to be cut.
_READ_PER_CHAR = 8


def sanitize(line: str, limit: int = 300) -> str:
    """One line of untrusted output, safe to show, in at most ``limit`` characters.

    ANSI escape sequences are stripped (:data:`_CONTROL`); every other control, bidi or
    surrogate character is made visible (:func:`neutralise`), an inner CR as ``␍`` (it would
    overwrite the line), a tab as four spaces, an LF as a space. A longer line ends in
    ``...``. Time and memory are linear in ``limit``, whatever the length of ``line``.
    """
    read = limit * _READ_PER_CHAR + 64
    cut = len(line) > read
    head = line[:read] if cut else line.rstrip("\r\n")
    clean = neutralise(
        _CONTROL.sub("", head).replace("\t", "    ").replace("\n", " "), keep_cr=False
    )
    if not cut and len(clean) <= limit:
        return clean
    return clean[: max(limit - 3, 0)] + "..."


def decimal_size(size: int) -> str:
    """A size in bytes in decimal units, as `docker build` prints it: 3.2 GB, 412.0 kB, 12 B."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


# Past this much output, a report says how much the learner's API printed, with its first and
# last lines, whatever the verdicts.
LOUD_OUTPUT_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class OutputSummary:
    """What the learner's API printed over a run: how much, its first and its last lines.

    Every byte and line is counted; only the first and the last few lines are kept (each cut to
    a bounded length and made safe to show), so a flood of hundreds of MB costs no memory.
    Where the output was still on its way when the grader stopped reading it (a container's,
    from the engine), ``complete`` is False and the counts are lower bounds.
    """

    head: tuple[str, ...] = ()  # the first lines
    tail: tuple[str, ...] = ()  # the last lines, none of them also in ``head``
    bytes: int = 0
    lines: int = 0  # a last line without a newline counts too
    instances: int = 1  # API instances (processes, containers) the counts add up
    complete: bool = True  # False: more was printed than was read; the counts are "at least"

    @property
    def left_out(self) -> int:
        """Lines counted but not kept: those between the head and the tail."""
        return max(self.lines - len(self.head) - len(self.tail), 0)

    @property
    def loud(self) -> bool:
        """Printed so much that a report should say so (the JSON report always carries it)."""
        return self.bytes >= LOUD_OUTPUT_BYTES

    def describe(self) -> str:
        """In words: ``512.0 MB (512,000,000 bytes) in 10 lines (over 2 instances)``.

        Counts that are lower bounds say so: ``at least 512.0 MB (...) in at least 10 lines
        (...); the engine was still delivering output when the container stopped``.
        """
        size = f"{self.bytes:,} bytes"
        if self.bytes >= 1000:
            size = f"{decimal_size(self.bytes)} ({size})"
        lines = f"{self.lines:,} line" + ("" if self.lines == 1 else "s")
        over = f" (over {self.instances} instances)" if self.instances > 1 else ""
        if self.complete:
            return f"{size} in {lines}{over}"
        return (
            f"at least {size} in at least {lines}{over}; the engine was still delivering output "
            "when the container stopped"
        )

    @classmethod
    def combine(cls, parts: Sequence[OutputSummary]) -> OutputSummary | None:
        """Several instances' output as one: counts added, the first's head, the last's tail.

        The head is the first lines of the first instance that printed any, the tail the last
        lines of the last one that did; None when there were no instances. Complete only if
        every part is.
        """
        if not parts:
            return None
        printed = [part for part in parts if part.lines]
        head = printed[0].head if printed else ()
        tail = printed[-1].tail if printed else ()
        if len(printed) > 1:  # the last instance's first lines may be its last ones too
            last = printed[-1]
            tail = (last.head + last.tail)[-max(len(last.tail), len(last.head)) :]
        return cls(
            head=head,
            tail=tail,
            bytes=sum(part.bytes for part in parts),
            lines=sum(part.lines for part in parts),
            instances=sum(part.instances for part in parts),
            complete=all(part.complete for part in parts),
        )


# What a line log keeps of a program's output: the first lines, the last lines, and of each line
# its first bytes (shown as at most SHOWN_CHARS characters). Everything else is only counted.
HEAD_LINES = 10
TAIL_LINES = 200
LINE_BYTES = 1200  # room for SHOWN_CHARS characters of UTF-8 text, with control codes removed
SHOWN_CHARS = 300
SUMMARY_LINES = 10  # of the last lines, what a report shows

_Kept = tuple[bytes, int]  # a line's first bytes (no newline), and its whole length in bytes


def _show(kept: _Kept) -> str:
    """A kept line as it is shown: safe, bounded, and saying how long it was if it was cut."""
    raw, length = kept
    text = sanitize(raw.decode("utf-8", errors="replace"), SHOWN_CHARS)
    if length <= len(raw):
        return text
    return f"{text.removesuffix('...')}... [a line of {length:,} bytes]"


class LineLog:
    """What a program printed: every byte and line counted, its first and last lines kept.

    One reader thread feeds it blocks of any size and shape (:meth:`append`); the grader reads
    it. A line is cut to ``line_bytes`` before anything else is done with it, and is made safe
    to show (:func:`sanitize`) only when shown. Splitting is done by ``bytes.find``/``count``
    in C, and only the lines that will be kept are sliced out, so a flood of 50 MB lines or of
    millions of short ones costs time linear in its size and memory bounded by what is kept.
    """

    def __init__(
        self,
        keep_lines: int = TAIL_LINES,
        *,
        head_lines: int = HEAD_LINES,
        line_bytes: int = LINE_BYTES,
    ) -> None:
        self._head: list[_Kept] = []
        self._tail: collections.deque[_Kept] = collections.deque(maxlen=keep_lines)
        self._head_lines, self._line_bytes = head_lines, line_bytes
        self._partial = bytearray()  # the line being printed: its first line_bytes bytes
        self._partial_len = 0  # and its length so far
        self._changed = threading.Condition()
        self._eof = False
        self._count = 0  # whole lines seen so far, kept or not: marks for since()
        self._bytes = 0

    def append(self, raw: bytes) -> None:
        """Take the next block of output, however it is cut into lines."""
        with self._changed:
            self._bytes += len(raw)
            first = raw.find(b"\n")
            if first < 0:
                self._grow(raw, 0, len(raw))
                return
            self._grow(raw, 0, first)
            self._close_line()
            last = raw.rfind(b"\n")
            if last > first:
                self._whole_lines(raw, first + 1, last)
            self._grow(raw, last + 1, len(raw))
            self._changed.notify_all()

    def _grow(self, raw: bytes, start: int, end: int) -> None:
        """Add ``raw[start:end]`` to the line being printed, keeping its first bytes only."""
        self._partial_len += end - start
        room = self._line_bytes - len(self._partial)
        if room > 0 and end > start:
            self._partial += raw[start : min(end, start + room)]

    def _close_line(self) -> None:
        self._keep_one((bytes(self._partial), self._partial_len))
        self._partial.clear()
        self._partial_len = 0

    def _keep_one(self, line: _Kept) -> None:
        if len(self._head) < self._head_lines:
            self._head.append(line)
        self._tail.append(line)
        self._count += 1

    def _whole_lines(self, raw: bytes, start: int, last: int) -> None:
        """The lines of ``raw[start:last + 1]``, each ending in a newline: count, keep a few."""
        count = raw.count(b"\n", start, last + 1)
        cut = self._line_bytes
        pos = start
        for _ in range(min(max(self._head_lines - len(self._head), 0), count)):
            end = raw.find(b"\n", pos)
            self._head.append((raw[pos : min(end, pos + cut)], end - pos))
            pos = end + 1
        newest: list[_Kept] = []
        end = last
        for _ in range(min(self._tail.maxlen or 0, count)):
            newline = raw.rfind(b"\n", start, end)
            begin = start if newline < 0 else newline + 1
            newest.append((raw[begin : min(end, begin + cut)], end - begin))
            end = begin - 1
        self._tail.extend(reversed(newest))
        self._count += count

    def end(self) -> None:
        """The output has ended: a last line without a newline is a line too."""
        with self._changed:
            if self._partial_len and not self._eof:
                self._close_line()
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
            kept = list(self._tail)[-n:] if n > 0 else []
        return tuple(_show(line) for line in kept)

    def mark(self) -> int:
        """A position in the output, for :meth:`since`."""
        with self._changed:
            return self._count

    def kept_bytes(self) -> int:
        """How many bytes of output are held: bounded, however much was printed."""
        with self._changed:
            kept = [*self._head, *self._tail]
            return len(self._partial) + sum(len(raw) for raw, _ in kept)

    def since(self, mark: int, n: int = 15) -> tuple[str, ...]:
        """At most the last ``n`` lines printed after ``mark``."""
        with self._changed:
            new = min(self._count - mark, len(self._tail), n)
            kept = list(self._tail)[len(self._tail) - new :] if new > 0 else []
        return tuple(_show(line) for line in kept)

    def summary(self, lines: int = SUMMARY_LINES) -> OutputSummary:
        """How much was printed, the first lines and the last ``lines`` (a line not ended too)."""
        with self._changed:
            head = self._head[:lines]
            first_in_tail = self._count - len(self._tail)  # the index of the tail's oldest line
            newest = list(self._tail)[max(len(head) - first_in_tail, 0) :]
            if self._partial_len:
                newest.append((bytes(self._partial), self._partial_len))
            count = self._count + (1 if self._partial_len else 0)
            total = self._bytes
        return OutputSummary(
            head=tuple(_show(line) for line in head),
            tail=tuple(_show(line) for line in newest[-lines:] if lines > 0),
            bytes=total,
            lines=count,
        )

    def _unseen(self, seen: int) -> list[_Kept]:
        """The kept lines from index ``seen`` on, oldest first (lines no longer kept are gone)."""
        head = self._head[seen:]
        first_in_tail = self._count - len(self._tail)
        skip = max(seen, len(self._head)) - first_in_tail
        return head + list(self._tail)[max(skip, 0) :]

    def wait_for_line(self, predicate: Callable[[str], bool], timeout_s: float) -> str | None:
        """The first kept line matching ``predicate``, waiting at most ``timeout_s``.

        Only what is kept is searched (the first and the last lines): a line that scrolled out
        of the tail before it was looked at is not found. Each line is looked at once.
        """
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._changed:
            while True:
                fresh, seen = self._unseen(seen), self._count
                for kept in fresh:
                    if predicate(line := _show(kept)):
                        return line
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    return None
                self._changed.wait(remaining)
