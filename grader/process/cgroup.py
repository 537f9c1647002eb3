"""A cgroup v2 of the run's own, where the hierarchy is writable: nothing in it can leave it.

Where a cgroup v2 hierarchy is writable, the run's processes join a cgroup of their own
(``failfast-<pid>-<start>`` beside the grader's), which a process cannot leave however it
detaches; a sweep kills what is in a dead run's cgroup and removes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from grader.process.proctable import proc_stat, signal_process


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
