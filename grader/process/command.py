"""A tool the grader runs to its end (k6): one of the run's processes, bounded in time and output.

:func:`run_command` starts the tool with the run's :class:`~grader.process.tracker.ProcessTracker`
(or, when no run is open, one of its own for the command), so what it starts is recorded, stopped
with it and swept if the grader dies, like every other process of the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from grader.process.process import BoundedOutput, ManagedProcess
from grader.process.tracker import ProcessTracker, current_tracker

_POLL_FIRST_S, _POLL_MAX_S = 0.005, 0.05


@dataclass(frozen=True, slots=True)
class Completed:
    """A command that ran to its end: its exit code and what it printed (within bounds)."""

    exit_code: int
    stdout: str
    stderr: str


async def run_command(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout_s: float,
    cwd: Path | None = None,
    grace_s: float = 0.0,
) -> Completed:
    """Run ``argv`` (with exactly ``env``) to its end, for ``timeout_s`` at most.

    Its stdout and stderr are kept apart, each its first and last bytes
    (:class:`~grader.process.process.BoundedOutput`). Raises :class:`TimeoutError` when it
    overruns. However it ends (an overrun, a cancelled task), the command and all it started are
    stopped before this returns: SIGTERM, then SIGKILL after ``grace_s``.
    """
    tracker = current_tracker()
    own = tracker is None
    if tracker is None:
        tracker = await asyncio.to_thread(ProcessTracker)
    stdout, stderr = BoundedOutput(), BoundedOutput()
    process: ManagedProcess | None = None
    try:
        process = tracker.spawn(name, argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        deadline = time.monotonic() + timeout_s
        pause = _POLL_FIRST_S
        while (code := process.returncode) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{name} was still running after {timeout_s:g} s")
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX_S)
    finally:
        # In a thread of its own, which finishes even if this task is cancelled meanwhile.
        await asyncio.to_thread(_finish, tracker, process, grace_s, own)
    return Completed(code, stdout.text(), stderr.text())


def _finish(
    tracker: ProcessTracker, process: ManagedProcess | None, grace_s: float, own: bool
) -> None:
    try:
        if process is not None:
            tracker.stop([process], grace_s)
    finally:
        if own:
            tracker.close()
