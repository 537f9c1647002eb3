"""Every process of a grading run: started, found however it detaches, recorded, stopped.

A :class:`ProcessTracker` starts every process of a grading run (the stub, Redis, each instance
of the learner's API, nginx, k6) and owns everything those start in turn, however it detaches:

- each process starts in a session of its own, so a learner's shell, its server and the
  server's workers share a process group that one signal reaches;
- the grader becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``), so a process that leaves
  its parent (``&``, ``nohup``, a double fork) is reparented to the grader instead of to init
  and is still found under it; a daemon that starts a session of its own (``setsid``) is found
  the same way, and its session is remembered;
- where a cgroup v2 hierarchy is writable, the run's processes also join a cgroup of their own
  (:mod:`grader.process.cgroup`), which nothing can leave;
- a thread looks for new processes (``/proc``) every second, four times a second just after a
  start, and writes what it found to a state file (:func:`~grader.process.sweep.runs_dir`), so
  that what a killed grader left is killed: at once by the run's watchdog
  (:mod:`grader.process.watchdog`), or else by the next run or ``failfast doctor``
  (:func:`~grader.process.sweep.sweep_dead_runs`).

Each process the tracker starts also gets ``PR_SET_PDEATHSIG``, so a grader killed with SIGKILL
takes its direct children with it at once. Away from Linux only the process groups remain.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.process.cgroup import Cgroup
from grader.process.process import ManagedProcess, Sink, escalate
from grader.process.proctable import (
    ProcStat,
    boot_id,
    in_session,
    pid_namespace,
    prctl,
    proc_stat,
    proc_table,
    signal_process,
)
from grader.process.sweep import STATE_VERSION, runs_dir, write_state
from grader.process.watchdog import Watchdog

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# How often the tracker looks for new processes: often just after a start (a server starts its
# workers and daemons then), seldom afterwards. A look costs a few milliseconds.
_SCAN_FAST_S, _SCAN_SLOW_S, _FAST_FOR_S = 0.25, 1.0, 5.0


@dataclass(slots=True)
class _Member:
    """A process found to be the run's, and the managed process it came from (None: unknown)."""

    owner: ManagedProcess | None
    first_ppid: int  # its parent when first seen: another than the grader's means reparented
    comm: str


_subreapers = 0  # trackers alive in this process: the grader is a subreaper while any is
_lock = threading.Lock()
_open: list[ProcessTracker] = []  # trackers open in this process, the newest last
_serials: set[int] = set()  # theirs: each names its run's state file


def current_tracker() -> ProcessTracker | None:
    """The newest tracker open in this process (a grading run's), if any."""
    with _lock:
        return _open[-1] if _open else None


class ProcessTracker:
    """Starts a run's processes and finds, records and stops everything they start."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        me = proc_stat(self._pid)
        self._start = me.start if me is not None else 0
        self._sid = me.sid if me is not None else os.getsid(0)
        self._lock = threading.RLock()
        self._managed: list[ManagedProcess] = []
        self._members: dict[tuple[int, int], _Member] = {}
        # Session id -> its leader's start time (a session is named by its leader) and owner.
        self._sessions: dict[int, tuple[int, ManagedProcess | None]] = {}
        self._recorded: object = None  # what the state file last said, to write only changes
        self._last_spawn = 0.0
        self._closed = threading.Event()
        self._watchdog: Watchdog | None = None
        with _lock:
            # Trackers open at once each record their run in a file of their own; the first
            # alone has the cgroup (it is named by the grader).
            self.serial = min(set(range(len(_serials) + 1)) - _serials)
            _serials.add(self.serial)
        # Without /proc (away from Linux) there is nothing to record: process groups only.
        directory = runs_dir() if me is not None else None
        name = f"{self._pid}-{self.serial}" if self.serial else str(self._pid)
        self.state_file = directory / f"{name}.json" if directory is not None else None
        self.cgroup = (
            Cgroup.create(f"failfast-{self._pid}-{self._start}") if not self.serial else None
        )
        self.subreaper = self._become_subreaper()
        self._deathsig = self._deathsig_setter()
        self._record()
        if self.state_file is not None:
            self._watchdog = Watchdog.start(self.state_file)
        self._watcher = threading.Thread(target=self._watch, name="process-tracker", daemon=True)
        self._watcher.start()
        with _lock:
            _open.append(self)

    @staticmethod
    def _become_subreaper() -> bool:
        global _subreapers
        with _lock:
            ok = _subreapers > 0 or prctl(_PR_SET_CHILD_SUBREAPER, 1)
            if ok:
                _subreapers += 1
            return ok

    def _stop_being_subreaper(self) -> None:
        global _subreapers
        if not self.subreaper:
            return
        self.subreaper = False
        with _lock:
            _subreapers -= 1
            if _subreapers == 0:
                prctl(_PR_SET_CHILD_SUBREAPER, 0)

    @staticmethod
    def _deathsig_setter() -> Callable[[], None] | None:
        # Prepared before any fork: between fork and exec the child only calls into libc.
        if sys.platform != "linux":
            return None
        try:
            libc_prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            return None

        grader = os.getpid()

        def die_with_parent() -> None:
            libc_prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != grader:  # it died before the request: too late to be told
                os._exit(128 + signal.SIGKILL)

        return die_with_parent

    # -- starting

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path | None,
        env: Mapping[str, str],
        stdout: Sink | None = None,
        stderr: Sink | None = None,
        pipe_bytes: int | None = None,
    ) -> ManagedProcess:
        """Start ``argv`` in a session of its own, as one of the run's; OSError if it cannot.

        Its output is kept as :class:`ManagedProcess` keeps it (``stdout``, ``stderr``: there;
        ``pipe_bytes``: the size of its output pipe, for a program that may flood it).
        """
        steps: list[Callable[[], None]] = []
        if self._deathsig is not None:
            steps.append(self._deathsig)
        if self.cgroup is not None and self.cgroup.usable:
            steps.append(self.cgroup.joiner())

        def preexec() -> None:
            for step in steps:
                with contextlib.suppress(Exception):
                    step()

        process = ManagedProcess(
            name,
            argv,
            cwd=cwd,
            env=env,
            preexec=preexec if steps else None,
            stdout=stdout,
            stderr=stderr,
            pipe_bytes=pipe_bytes,
        )
        with self._lock:
            self._managed.append(process)
            self._sessions[process.pid] = (process.start, process)
            self._members[(process.pid, process.start)] = _Member(process, self._pid, name)
            self._last_spawn = time.monotonic()
            if self.cgroup is not None and not self.cgroup.holds(process.pid):
                self.cgroup.usable = False  # joining failed: /proc and sessions still find all
            self._record()
        return process

    # -- finding

    def _scan(self) -> list[tuple[ProcStat, _Member]]:
        """Look for the run's processes in /proc; the running ones, each with its owner."""
        table = proc_table()
        children: dict[int, list[int]] = collections.defaultdict(list)
        for stat in table.values():
            children[stat.ppid].append(stat.pid)
        found: dict[int, ManagedProcess | None] = {}

        def claim(pid: int, owner: ManagedProcess | None) -> None:
            if pid not in found or (found[pid] is None and owner is not None):
                found[pid] = owner

        for process in self._managed:
            leader = table.get(process.pid)
            if leader is not None and leader.start == process.start:
                claim(process.pid, process)
        for (pid, start), known in self._members.items():
            seen = table.get(pid)
            if seen is not None and seen.start == start:
                claim(pid, known.owner)
        for stat in table.values():
            if in_session(stat, self._sessions, table, self._start):
                claim(stat.pid, self._sessions[stat.sid][1])
        if self.cgroup is not None:
            for pid in self.cgroup.pids():
                claim(pid, None)
        # Orphans reparented to the grader (it is their subreaper) that were never seen before:
        # anything under the grader in a session other than its own was started by the run.
        for pid in children.get(self._pid, ()):
            stat = table[pid]
            if stat.sid != self._sid and stat.start >= self._start:
                claim(pid, None)
        # Whatever runs under a process of the run is the run's, and its owner's.
        queue = list(found)
        while queue:
            pid = queue.pop()
            for child in children.get(pid, ()):
                if child not in found or (found[child] is None and found[pid] is not None):
                    found[child] = found[pid]
                    queue.append(child)
        found.pop(self._pid, None)
        if self._watchdog is not None:
            found.pop(self._watchdog.pid, None)

        live = []
        members: dict[tuple[int, int], _Member] = {}
        for pid, owner in found.items():
            now = table.get(pid)
            if now is None:
                continue
            stat = now
            member = self._members.get(stat.key) or _Member(owner, stat.ppid, stat.comm)
            if member.owner is None and owner is not None:
                member.owner = owner
            if not stat.running:
                self._reap(stat, member)
                continue
            members[stat.key] = member
            live.append((stat, member))
            if stat.sid == stat.pid and stat.sid not in self._sessions:
                self._sessions[stat.sid] = (stat.start, member.owner)  # a daemon's: setsid
        self._members = members
        return live

    def _reap(self, stat: ProcStat, member: _Member) -> None:
        """Collect an orphan that exited under the grader; never a child Python waits for."""
        if stat.ppid != self._pid:
            return
        reparented = member.first_ppid != self._pid or (
            stat.sid in self._sessions and stat.sid != stat.pid
        )
        if reparented and not any(p.pid == stat.pid for p in self._managed):
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(stat.pid, os.WNOHANG)

    def members(
        self, owners: Iterable[ManagedProcess] | None = None
    ) -> list[tuple[ProcStat, ManagedProcess | None]]:
        """The run's running processes (of ``owners`` only, if given), found now."""
        wanted = None if owners is None else set(map(id, owners))
        with self._lock:
            live = self._scan()
            self._record()
        return [
            (stat, member.owner)
            for stat, member in live
            if wanted is None or (member.owner is not None and id(member.owner) in wanted)
        ]

    def _watch(self) -> None:
        while True:
            recent = time.monotonic() - self._last_spawn < _FAST_FOR_S
            if self._closed.wait(_SCAN_FAST_S if recent else _SCAN_SLOW_S):
                return
            with contextlib.suppress(Exception), self._lock:
                if not self._closed.is_set():
                    self._scan()
                    self._record()

    # -- recording

    def _state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "boot_id": boot_id(),
            "pid_namespace": pid_namespace(),
            "grader": {"pid": self._pid, "start": self._start},
            "cgroup": str(self.cgroup.path) if self.cgroup is not None else None,
            "sessions": [[sid, start] for sid, (start, _) in sorted(self._sessions.items())],
            "processes": [
                {"pid": pid, "start": start, "comm": member.comm}
                for (pid, start), member in sorted(self._members.items())
            ],
        }

    def _record(self) -> None:
        if self.state_file is None:
            return
        state = self._state()
        if state != self._recorded:
            write_state(self.state_file, state)
            self._recorded = state

    # -- stopping

    def stop(self, processes: Sequence[ManagedProcess], grace_s: float = 1.5) -> None:
        """Stop ``processes`` and all they started: SIGTERM, then SIGKILL after ``grace_s``.

        Stopping them together bounds shutdown at ``grace_s`` however many there are; a
        learner's uvicorn with requests still in flight would otherwise wait on them for ever.
        """
        self._stop(list(processes), grace_s, everything=False)

    def _stop(self, processes: list[ManagedProcess], grace_s: float, *, everything: bool) -> None:
        # ``everything``: also what the run started that no process of it is known to own.
        owners = None if everything else processes
        groups = {p.pid for p in processes}

        def send(sig: signal.Signals) -> None:
            for process in processes:
                process.signal_group(sig)
            for stat, _ in self.members(owners):
                # A group signalled already got it once; SIGKILL is for every straggler.
                if sig is signal.SIGKILL or stat.pgid not in groups:
                    signal_process(stat.pid, stat.start, sig)

        def finished() -> bool:
            return all(p.returncode is not None for p in processes) and not self.members(owners)

        escalate(send, finished, terminate_s=grace_s)
        for process in processes:
            # Also reaps what a leader that exited may have left behind in its group.
            process.signal_group(signal.SIGKILL)
        if everything and self.cgroup is not None:
            self.cgroup.kill()  # what even /proc did not show (it forked while being killed)
            self.cgroup.remove()
        for process in processes:
            process.wait(5.0)
            process.release()  # once nothing holds its output open
        with self._lock:
            self._managed = [p for p in self._managed if p not in processes]
            self._scan()
            self._record()

    def close(self, grace_s: float = 1.5) -> None:
        """Stop everything the run started, forget the run's state file and cgroup."""
        try:
            self._stop(list(self._managed), grace_s, everything=True)
        finally:
            self._closed.set()
            self._watcher.join(timeout=2.0)
            self._stop_being_subreaper()
            if self.state_file is not None:
                with contextlib.suppress(OSError):
                    self.state_file.unlink()
            if self._watchdog is not None:
                self._watchdog.stop()
            with _lock:
                if self in _open:
                    _open.remove(self)
                _serials.discard(self.serial)
