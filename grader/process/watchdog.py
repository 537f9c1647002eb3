"""A run's watchdog: a small process that sweeps the run's state file as soon as the grader dies.

Started by :func:`start` as ``python -m grader.process.watchdog STATE_FILE``. It reads a pipe
only the grader writes to: end of file means the grader is gone (or has closed the run, and
removed the file).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from grader.process.process import child_env
from grader.process.proctable import is_running
from grader.process.sweep import sweep_file

MODULE = "grader.process.watchdog"


class Watchdog:
    """The watchdog of one run, and the end of the pipe the grader holds."""

    def __init__(self, process: subprocess.Popen[bytes], pipe: int) -> None:
        self._process = process
        self._pipe: int | None = pipe

    @property
    def pid(self) -> int:
        """The watchdog's process id."""
        return self._process.pid

    @classmethod
    def start(cls, state_file: Path) -> Watchdog | None:
        """A watchdog for the run of ``state_file``; None where it cannot run (away from Linux).

        It runs in a session of its own, so a Ctrl-C or a terminal's hangup meant for the grader
        does not reach it.
        """
        if sys.platform != "linux":
            return None
        package_root = str(Path(__file__).resolve().parent.parent.parent)
        env = child_env({})
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p
        )
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", MODULE, str(state_file)],
                cwd="/",
                env=env,
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            os.close(write_end)
            return None
        finally:
            os.close(read_end)
        return cls(process, write_end)

    def stop(self) -> None:
        """The run is closed (its state file gone): end the watchdog, within two seconds."""
        if self._pipe is not None:
            os.close(self._pipe)  # with the state file gone, it exits at once
            self._pipe = None
        try:
            self._process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self._process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=2.0)


def watch(state_file: Path) -> int:
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
                sweep_file(state_file)
                return 0
        time.sleep(0.02)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 2:
        for sig in (signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        sys.exit(watch(Path(sys.argv[1])))
    sys.exit(f"usage: python -m {MODULE} STATE_FILE")
