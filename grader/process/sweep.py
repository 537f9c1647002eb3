"""The state files of running graders, and the sweep of what graders that died left running.

A :class:`~grader.process.tracker.ProcessTracker` writes what its run started to a state file
(:func:`runs_dir`): its grader, the processes and sessions found, its cgroup. What a killed
grader left is killed from that file: at once by the run's watchdog
(:mod:`grader.process.watchdog`), or else by the next run or ``failfast doctor``
(:func:`sweep_dead_runs`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grader.process.cgroup import Cgroup
from grader.process.process import KILL_WAIT_S
from grader.process.proctable import (
    ancestors,
    boot_id,
    describe,
    in_session,
    is_running,
    may_sweep,
    pid_namespace,
    proc_stat,
    proc_table,
    signal_process,
)

STATE_VERSION = 1


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


def write_state(path: Path, data: Mapping[str, Any]) -> None:
    """Write a state file whole or not at all (never raises): a sweep never reads half a file."""
    temporary = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()


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
                    killed += sweep_file(path)
    return killed


def sweep_file(path: Path) -> list[str]:
    """Sweep what the run of the state file ``path`` left, once its grader is gone."""
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
    if namespace != pid_namespace() and boot == boot_id():
        return []  # a grader in another container: its pids are not ours to judge
    if is_running(pid, start):
        return []  # a grader still at work
    killed: list[str] = []
    if boot == boot_id():  # after a reboot, every process it names is long gone
        spare = ancestors()
        group = Cgroup.of_run(cgroup) if isinstance(cgroup, str) else None
        deadline = time.monotonic() + KILL_WAIT_S
        while time.monotonic() < deadline:
            victims = {key for key in processes if proc_stat(key[0]) is not None}
            table = proc_table()
            victims |= {
                stat.key for stat in table.values() if in_session(stat, sessions, table, start)
            }
            if group is not None:
                victims |= {stat.key for p in group.pids() if (stat := proc_stat(p)) is not None}
            victims = {
                (p, s) for p, s in victims if p not in spare and is_running(p, s) and may_sweep(p)
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
