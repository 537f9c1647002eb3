"""Processes as ``/proc`` shows them, named for good by their pid and start time.

A process is named by its pid and its start time (``/proc/<pid>/stat`` field 22): a pid the
kernel has since given to another process is never signalled (:func:`signal_process`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from grader.lines import sanitize


@dataclass(frozen=True, slots=True)
class ProcStat:
    """A process as ``/proc/<pid>/stat`` shows it; ``(pid, start)`` names it for good."""

    pid: int
    state: str  # R, S, D, ... Z (exited, not yet reaped), X
    ppid: int
    pgid: int
    sid: int
    start: int  # clock ticks after boot, proc(5) field 22
    comm: str

    @property
    def key(self) -> tuple[int, int]:
        """The process's name for good: a reused pid has another start time."""
        return self.pid, self.start

    @property
    def running(self) -> bool:
        """Not yet exited (a zombie has exited: only its parent's wait is missing)."""
        return self.state not in "ZXx"


def proc_stat(pid: int) -> ProcStat | None:
    """Process ``pid`` as ``/proc`` shows it now; None when there is none (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            text = file.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    try:
        # The command name is in parentheses and may itself hold spaces or parentheses.
        close = text.rindex(")")
        rest = text[close + 2 :].split()
        # rest[0] is field 3 (state): 4 is the parent, 5 the group, 6 the session, 22 the start.
        return ProcStat(
            pid,
            rest[0],
            int(rest[1]),
            int(rest[2]),
            int(rest[3]),
            int(rest[19]),
            text[text.index("(") + 1 : close],
        )
    except (ValueError, IndexError):
        return None


def proc_table() -> dict[int, ProcStat]:
    """Every process visible in ``/proc``."""
    table = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    for name in entries:
        if name.isdigit() and (stat := proc_stat(int(name))) is not None:
            table[stat.pid] = stat
    return table


def is_running(pid: int, start: int) -> bool:
    """Whether the process ``(pid, start)`` still runs (not a zombie, pid not reused)."""
    stat = proc_stat(pid)
    return stat is not None and stat.start == start and stat.running


def describe(pid: int) -> str:
    """A process's command line, for a message; empty once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return sanitize(raw.replace(b"\0", b" ").decode("utf-8", errors="replace").strip(), 120)


def in_session(
    stat: ProcStat,
    sessions: Mapping[int, tuple[int, object]],
    table: Mapping[int, ProcStat],
    since: int,
) -> bool:
    """Whether ``stat`` is in one of ``sessions`` (id -> leader's start), started since ``since``.

    A session id is its leader's pid, and the kernel gives that number to no new process while
    any process is still in the session: the session is the recorded one unless a process with
    that pid now runs with another start time (the session ended, and the pid was reused).
    """
    if stat.sid not in sessions or stat.start < since:
        return False
    leader = table.get(stat.sid)
    return leader is None or leader.start == sessions[stat.sid][0]


def may_sweep(pid: int) -> bool:
    """Whether a sweep may kill ``pid``: the sweeper's own, or anything when it is root.

    A root grader's run starts processes that drop privileges (nginx's workers become nobody);
    a dead run's are found by session and start time, so root kills them whoever they run as.
    """
    uid = os.getuid()
    try:
        return uid == 0 or os.stat(f"/proc/{pid}").st_uid == uid
    except OSError:
        return False


def ancestors() -> set[int]:
    """The grader and every process above it: never to be signalled by a sweep."""
    found, pid = {0, 1}, os.getpid()
    for _ in range(256):
        found.add(pid)
        stat = proc_stat(pid)
        if stat is None or stat.ppid in found:
            break
        pid = stat.ppid
    return found


def signal_process(pid: int, start: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to the process ``(pid, start)``, never to another that reuses its pid.

    With a pidfd (Linux 5.3) the process is pinned before its start time is checked, so the
    check and the signal are about the same process; without one the window is a few
    microseconds wide.
    """
    if pid <= 1 or pid == os.getpid():
        return False
    fd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        fd = os.pidfd_open(pid)
    try:
        stat = proc_stat(pid)
        if stat is None or stat.start != start or not stat.running:
            return False
        try:
            if fd is not None:
                signal.pidfd_send_signal(fd, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    finally:
        if fd is not None:
            os.close(fd)


def prctl(option: int, value: int) -> bool:
    """``prctl(option, value)`` for this process; False where it failed or there is none."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def boot_id() -> str:
    """This boot of the machine (``/proc/sys/kernel/random/boot_id``); empty without /proc.

    A pid and start time recorded under another boot name no process of this one.
    """
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    """Which pids these are: a pid (and its start time) means nothing in another namespace."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
