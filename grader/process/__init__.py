"""Child processes: start, track, bounded output, bounded waits, escalation, sweeping.

Owns: ``procs`` (ManagedProcess, ProcessTracker, the watchdog and the sweep of dead runs).

May import: the model only.
"""
