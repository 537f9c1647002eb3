"""Processes the grader starts: captured output, tracked however they detach, always stopped.

A :class:`ProcessTracker` starts every process of a grading run (the stub, Redis, each instance
of the learner's API) and owns everything those start in turn, however it detaches:

- each process starts in a session of its own, so a learner's shell, its server and the
  server's workers share a process group that one signal reaches;
- the grader becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``), so a process that leaves
  its parent (``&``, ``nohup``, a double fork) is reparented to the grader instead of to init
  and is still found under it; a daemon that starts a session of its own (``setsid``) is found
  the same way, and its session is remembered;
- where a cgroup v2 hierarchy is writable, the run's processes also join a cgroup of their own
  (``failfast-<pid>-<start>`` beside the grader's), which nothing can leave;
- a thread looks for new processes (``/proc``) every second, four times a second just after a
  start, and writes what it found to a state file (:func:`runs_dir`), so that what a killed
  grader left is killed: at once by the run's watchdog (a small process that sees the grader's
  end as the end of a pipe), or else by the next run or ``failfast doctor``
  (:func:`sweep_dead_runs`).

A process is named by its pid and its start time (``/proc/<pid>/stat`` field 22): a pid the
kernel has since given to another process is never signalled. Each process the tracker starts
also gets ``PR_SET_PDEATHSIG``, so a grader killed with SIGKILL takes its direct children with
it at once. Away from Linux only the process groups remain.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.lines import LineLog, sanitize

# Variables a learner's API may inherit from the grader's environment: enough to find its
# interpreter and speak UTF-8, nothing that could carry a secret (tokens, cloud credentials).
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# How often the tracker looks for new processes: often just after a start (a server starts its
# workers and daemons then), seldom afterwards. A look costs a few milliseconds.
_SCAN_FAST_S, _SCAN_SLOW_S, _FAST_FOR_S = 0.25, 1.0, 5.0
# Killing is repeated until nothing is found: a process may fork while it is being killed.
_KILL_ROUNDS_S = 3.0
STATE_VERSION = 1


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


# ---------------------------------------------------------------------------------------------
# /proc


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


def _may_sweep(pid: int) -> bool:
    """Whether a sweep may kill ``pid``: the sweeper's own, or anything when it is root.

    A root grader's run starts processes that drop privileges (nginx's workers become nobody);
    a dead run's are found by session and start time, so root kills them whoever they run as.
    """
    uid = os.getuid()
    try:
        return uid == 0 or os.stat(f"/proc/{pid}").st_uid == uid
    except OSError:
        return False


def _ancestors() -> set[int]:
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


def _prctl(option: int, value: int) -> bool:
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    """Which pids these are: a pid (and its start time) means nothing in another namespace."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# Where runs are recorded


def runs_dir() -> Path | None:
    """The directory of the state files of running graders; None when none can be had.

    ``$XDG_RUNTIME_DIR/failfast/runs`` (private to the user, emptied at logout and boot), else
    ``$XDG_CACHE_HOME/failfast/runs`` (``~/.cache/failfast/runs``), else a private directory in
    the temporary directory.
    """
    candidates = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        candidates.append(Path(runtime) / "failfast" / "runs")
    cache = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(cache):
        candidates.append(Path(cache) / "failfast" / "runs")
    with contextlib.suppress(RuntimeError, KeyError):
        candidates.append(Path.home() / ".cache" / "failfast" / "runs")
    candidates.append(Path(tempfile.gettempdir()) / f"failfast-{os.getuid()}" / "runs")
    for directory in candidates:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = directory.lstat()
        except OSError:
            continue
        # Only a real directory of the user's own: someone else's could feed the sweep pids.
        if (
            not directory.is_symlink()
            and info.st_uid == os.getuid()
            and os.access(directory, os.W_OK)
        ):
            return directory
    return None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(temporary, path)  # whole or not at all: a sweep never reads half a file
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()


# ---------------------------------------------------------------------------------------------
# cgroup v2


def _cgroup2_mount() -> Path | None:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if right.split()[:1] == ["cgroup2"] and len(fields) >= 5 and fields[3] == "/":
            return Path(fields[4])
    return None


def _own_cgroup() -> Path | None:
    """The cgroup v2 directory the grader runs in, when there is a cgroup2 hierarchy."""
    mount = _cgroup2_mount()
    if mount is None:
        return None
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::/"):
            relative = line[4:].strip()
            directory = mount / relative if relative else mount
            return directory if directory.is_dir() else None
    return None


_CGROUP_NAME = re.compile(r"failfast-(\d+)-(\d+)")


class Cgroup:
    """A cgroup v2 of the run's own: every process in it, however detached, is the run's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.usable = True  # cleared if a child turns out not to have joined

    @classmethod
    def create(cls, name: str) -> Cgroup | None:
        """A new cgroup beside the grader's, or None where that is not allowed (most places)."""
        if os.environ.get("FAILFAST_NO_CGROUP") or sys.platform != "linux":
            return None
        parent = _own_cgroup()
        if parent is None:
            return None
        path = parent / name
        try:
            path.mkdir()
        except OSError:  # read-only (containers), not delegated to this user, ...
            return None
        if not os.access(path / "cgroup.procs", os.W_OK):
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path)

    @classmethod
    def of_run(cls, path: str) -> Cgroup | None:
        """A run's cgroup recorded in a state file, if it is one of the grader's."""
        candidate = Path(path)
        mount = _cgroup2_mount()
        if (
            mount is None
            or not _CGROUP_NAME.fullmatch(candidate.name)
            or not candidate.is_relative_to(mount)
            or not candidate.is_dir()
        ):
            return None
        return cls(candidate)

    def joiner(self) -> Callable[[], None]:
        """What a child runs between fork and exec to join the cgroup (never raises)."""
        procs = str(self.path / "cgroup.procs")

        def join() -> None:
            try:
                fd = os.open(procs, os.O_WRONLY)
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)
            except OSError:
                pass

        return join

    def holds(self, pid: int) -> bool:
        """Whether process ``pid`` is in this cgroup."""
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False
        return any(
            line.startswith("0::") and line[3:].strip() == "/" + self._relative()
            for line in text.splitlines()
        )

    def _relative(self) -> str:
        mount = _cgroup2_mount()
        return str(self.path.relative_to(mount)) if mount is not None else ""

    def pids(self) -> list[int]:
        """The processes in the cgroup."""
        try:
            return [int(word) for word in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill(self) -> None:
        """SIGKILL everything in the cgroup at once (``cgroup.kill``, Linux 5.14), or one by one."""
        try:
            (self.path / "cgroup.kill").write_text("1")
        except OSError:
            for pid in self.pids():
                if (stat := proc_stat(pid)) is not None:
                    signal_process(pid, stat.start, signal.SIGKILL)

    def remove(self, timeout_s: float = 2.0) -> bool:
        """Kill what is left and remove the cgroup; True once it is gone."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
            self.kill()
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# One process and its output


class ManagedProcess:
    """A child process in its own session and process group, with its output kept line by line.

    Start it with :meth:`ProcessTracker.spawn`, which also owns what it starts.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        keep_lines: int = 200,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.output = LineLog(keep_lines)
        self._popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        )
        stat = proc_stat(self._popen.pid)
        self.start = stat.start if stat is not None else 0  # with pid: names it for good
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The process id (also its process group and session id)."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited, else None."""
        return self._popen.poll()

    def _read(self) -> None:
        assert self._popen.stdout is not None
        for raw in iter(self._popen.stdout.readline, b""):
            self.output.append(raw)
        self.output.end()

    def drain(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the end of the output; True once it is all read.

        After the process exits, its last lines may still be on their way through the pipe, or
        a process it left behind may still hold the pipe open: hence the bound.
        """
        return self.output.drain(timeout_s)

    def tail(self, n: int = 15) -> tuple[str, ...]:
        """The last ``n`` lines of output."""
        return self.output.tail(n)

    def mark(self) -> int:
        """A position in the output, for :meth:`since`."""
        return self.output.mark()

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

    def release(self) -> None:
        """After the group is gone: stop reading its output and close the pipe."""
        self._reader.join(timeout=2.0)
        if self._popen.stdout is not None:
            self._popen.stdout.close()


# ---------------------------------------------------------------------------------------------
# Every process of a run


def _in_session(
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


@dataclass(slots=True)
class _Member:
    """A process found to be the run's, and the managed process it came from (None: unknown)."""

    owner: ManagedProcess | None
    first_ppid: int  # its parent when first seen: another than the grader's means reparented
    comm: str


_subreapers = 0  # trackers alive in this process: the grader is a subreaper while any is
_serial = 0  # trackers started in this process: each records its run in a file of its own
_subreaper_lock = threading.Lock()


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
        self._watchdog: subprocess.Popen[bytes] | None = None
        global _serial
        with _subreaper_lock:
            serial, _serial = _serial, _serial + 1
        # Without /proc (away from Linux) there is nothing to record: process groups only.
        directory = runs_dir() if me is not None else None
        name = f"{self._pid}-{serial}" if serial else str(self._pid)
        self.state_file = directory / f"{name}.json" if directory is not None else None
        self.cgroup = Cgroup.create(f"failfast-{self._pid}-{self._start}") if not serial else None
        self.subreaper = self._become_subreaper()
        self._deathsig = self._deathsig_setter()
        self._record()
        self._watchdog, self._watchdog_pipe = self._start_watchdog()
        self._watcher = threading.Thread(target=self._watch, name="process-tracker", daemon=True)
        self._watcher.start()

    def _start_watchdog(self) -> tuple[subprocess.Popen[bytes] | None, int | None]:
        """A process that sweeps the run's state file as soon as the grader dies.

        It reads a pipe only the grader writes to: end of file means the grader is gone (or has
        closed the run, and removed the file). It runs in a session of its own, so a Ctrl-C
        or a terminal's hangup meant for the grader does not reach it.
        """
        if self.state_file is None or sys.platform != "linux":
            return None, None
        package_root = str(Path(__file__).resolve().parent.parent)
        env = child_env({})
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p
        )
        read_end, write_end = os.pipe()
        try:
            watchdog = subprocess.Popen(
                [sys.executable, "-m", "grader.process.procs", "--watchdog", str(self.state_file)],
                cwd="/",
                env=env,
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            os.close(write_end)
            return None, None
        finally:
            os.close(read_end)
        return watchdog, write_end

    def _stop_watchdog(self) -> None:
        if self._watchdog_pipe is not None:
            os.close(self._watchdog_pipe)  # with the state file gone, it exits at once
            self._watchdog_pipe = None
        if self._watchdog is not None:
            try:
                self._watchdog.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()

    @staticmethod
    def _become_subreaper() -> bool:
        global _subreapers
        with _subreaper_lock:
            ok = _subreapers > 0 or _prctl(_PR_SET_CHILD_SUBREAPER, 1)
            if ok:
                _subreapers += 1
            return ok

    def _stop_being_subreaper(self) -> None:
        global _subreapers
        if not self.subreaper:
            return
        self.subreaper = False
        with _subreaper_lock:
            _subreapers -= 1
            if _subreapers == 0:
                _prctl(_PR_SET_CHILD_SUBREAPER, 0)

    @staticmethod
    def _deathsig_setter() -> Callable[[], None] | None:
        # Prepared before any fork: between fork and exec the child only calls into libc.
        if sys.platform != "linux":
            return None
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            return None

        grader = os.getpid()

        def die_with_parent() -> None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != grader:  # it died before the request: too late to be told
                os._exit(128 + signal.SIGKILL)

        return die_with_parent

    # -- starting

    def spawn(
        self, name: str, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]
    ) -> ManagedProcess:
        """Start ``argv`` in a session of its own, as one of the run's; OSError if it cannot."""
        steps: list[Callable[[], None]] = []
        if self._deathsig is not None:
            steps.append(self._deathsig)
        if self.cgroup is not None and self.cgroup.usable:
            steps.append(self.cgroup.joiner())

        def preexec() -> None:
            for step in steps:
                with contextlib.suppress(Exception):
                    step()

        process = ManagedProcess(name, argv, cwd=cwd, env=env, preexec=preexec if steps else None)
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
            if _in_session(stat, self._sessions, table, self._start):
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
            "boot_id": _boot_id(),
            "pid_namespace": _pid_namespace(),
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
            _write_json(self.state_file, state)
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
        for process in processes:
            process.signal_group(signal.SIGTERM)
        for stat, _ in self.members(owners):
            if stat.pgid not in groups:  # a group signalled already got it once
                signal_process(stat.pid, stat.start, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in processes:
            process.wait(deadline - time.monotonic())
        while self.members(owners) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._kill(processes, owners)
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

    def _kill(self, processes: list[ManagedProcess], owners: list[ManagedProcess] | None) -> None:
        """SIGKILL the groups of ``processes`` and the members of ``owners`` (None: all)."""
        deadline = time.monotonic() + _KILL_ROUNDS_S
        while True:
            for process in processes:
                # Also reaps what a leader that exited may have left behind in its group.
                process.signal_group(signal.SIGKILL)
            left = self.members(owners)
            if not left or time.monotonic() >= deadline:
                return
            for stat, _ in left:
                signal_process(stat.pid, stat.start, signal.SIGKILL)
            time.sleep(0.01)

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
            self._stop_watchdog()


# ---------------------------------------------------------------------------------------------
# What killed graders left


def sweep_dead_runs() -> list[str]:
    """Kill what graders that died without stopping it left running; a line per process killed.

    A state file whose grader is no longer running (its pid is gone or names another process)
    is read, every process it names that still runs as the same process is killed, and so is
    every process since started in a session the run recorded, or in its cgroup; then the file
    (and the cgroup) are removed. Never raises.
    """
    killed: list[str] = []
    if proc_stat(os.getpid()) is None:
        return killed  # no /proc: no run was recorded, and none can be judged dead
    with contextlib.suppress(Exception):
        directory = runs_dir()
        if directory is not None:
            for path in sorted(directory.glob("*.json")):
                with contextlib.suppress(Exception):
                    killed += _sweep_file(path)
    return killed


def _sweep_file(path: Path) -> list[str]:
    try:
        state = json.loads(path.read_text("utf-8"))
        grader = state["grader"]
        pid, start = int(grader["pid"]), int(grader["start"])
        processes = [(int(p["pid"]), int(p["start"])) for p in state["processes"]]
        sessions = {int(sid): (int(leader), None) for sid, leader in state["sessions"]}
        cgroup = state.get("cgroup")
        boot = state.get("boot_id", "")
        namespace = state.get("pid_namespace", "")
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)  # not a state file of ours: nothing in it can be trusted
        return []
    if namespace != _pid_namespace() and boot == _boot_id():
        return []  # a grader in another container: its pids are not ours to judge
    if is_running(pid, start):
        return []  # a grader still at work
    killed: list[str] = []
    if boot == _boot_id():  # after a reboot, every process it names is long gone
        spare = _ancestors()
        group = Cgroup.of_run(cgroup) if isinstance(cgroup, str) else None
        deadline = time.monotonic() + _KILL_ROUNDS_S
        while time.monotonic() < deadline:
            victims = {key for key in processes if proc_stat(key[0]) is not None}
            table = proc_table()
            victims |= {
                stat.key for stat in table.values() if _in_session(stat, sessions, table, start)
            }
            if group is not None:
                victims |= {stat.key for p in group.pids() if (stat := proc_stat(p)) is not None}
            victims = {
                (p, s) for p, s in victims if p not in spare and is_running(p, s) and _may_sweep(p)
            }
            if not victims:
                break
            for victim_pid, victim_start in sorted(victims):
                what = describe(victim_pid)
                if signal_process(victim_pid, victim_start, signal.SIGKILL):
                    killed.append(f"{victim_pid} {what}")
            time.sleep(0.02)
        if group is not None:
            group.remove()
    path.unlink(missing_ok=True)
    return killed


def _watchdog(state_file: Path) -> int:
    """Wait for the grader to die (end of stdin), then sweep its run's state file."""
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(4096):
            pass
    # The pipe closes a moment before the grader's process is gone: wait for that, briefly.
    deadline = time.monotonic() + 5.0
    while state_file.exists() and time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            grader = json.loads(state_file.read_text("utf-8"))["grader"]
            if not is_running(int(grader["pid"]), int(grader["start"])):
                _sweep_file(state_file)
                return 0
        time.sleep(0.02)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--watchdog":
        for sig in (signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        sys.exit(_watchdog(Path(sys.argv[2])))
    sys.exit("usage: python -m grader.process.procs --watchdog STATE_FILE")
