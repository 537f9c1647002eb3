"""Child processes: start, track, bounded output, bounded waits, escalation, sweeping.

Owns: ``process`` (ManagedProcess, its bounded output, ``escalate``: SIGINT, SIGTERM, SIGKILL),
``tracker`` (ProcessTracker: every process of a run, however it detaches), ``command`` (a tool
run to its end as one of the run's processes: k6), ``proctable`` (``/proc``), ``cgroup``,
``sweep`` (state files, and what dead runs left), ``watchdog`` (``python -m
grader.process.watchdog``), ``signals`` (SIGINT and SIGTERM deferred) and ``procs`` (the public
names in one place, for callers of old).

May import: the model only.
"""
