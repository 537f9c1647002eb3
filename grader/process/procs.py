"""The public names of ``grader.process`` in one place, where callers have long imported them.

New code imports from the module that owns the name: ``process`` (ManagedProcess, escalate,
bounded output), ``tracker`` (ProcessTracker), ``command`` (run_command), ``proctable``,
``cgroup``, ``sweep``, ``watchdog`` and ``signals``.
"""

from __future__ import annotations

from grader.process.cgroup import Cgroup
from grader.process.process import (
    INHERITED_ENV,
    KILL_WAIT_S,
    BoundedOutput,
    ManagedProcess,
    child_env,
    escalate,
)
from grader.process.proctable import (
    ProcStat,
    boot_id,
    describe,
    is_running,
    proc_stat,
    proc_table,
    signal_process,
)
from grader.process.sweep import STATE_VERSION, runs_dir, sweep_dead_runs
from grader.process.tracker import ProcessTracker, current_tracker

__all__ = [
    "INHERITED_ENV",
    "KILL_WAIT_S",
    "STATE_VERSION",
    "BoundedOutput",
    "Cgroup",
    "ManagedProcess",
    "ProcStat",
    "ProcessTracker",
    "boot_id",
    "child_env",
    "current_tracker",
    "describe",
    "escalate",
    "is_running",
    "proc_stat",
    "proc_table",
    "runs_dir",
    "signal_process",
    "sweep_dead_runs",
]
