"""The one process helper: escalation, bounded output, the run's tracker, deferred signals.

Each test runs real children (a few lines of Python), and bounds every wait of its own.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from grader.lines import LineLog
from grader.process.process import BoundedOutput, ManagedProcess, escalate
from grader.process.signals import deferred_signals
from grader.process.tracker import ProcessTracker, current_tracker

# A child that says which signals reached it, ignoring SIGINT and SIGTERM: only SIGKILL ends it.
# It writes with os.write: a print in a handler may interrupt the print of "ready" (reentrant).
STUBBORN = """
import os, signal, time
def say(signum, frame):
    os.write(1, f"got {signal.Signals(signum).name}\\n".encode())
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, say)
print("ready", flush=True)
while True:
    time.sleep(0.01)
"""


def python(
    code: str,
    tmp_path: Path,
    *,
    log: BinaryIO | None = None,
    stdout: BoundedOutput | None = None,
    stderr: BoundedOutput | None = None,
) -> ManagedProcess:
    """A ManagedProcess running ``code`` with the grader's interpreter."""
    return ManagedProcess(
        "child",
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", os.defpath)},
        log=log,
        stdout=stdout,
        stderr=stderr,
    )


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's own directory of run state files."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    yield tmp_path / "runtime" / "failfast" / "runs"


def ready(process: ManagedProcess) -> None:
    """Wait (bounded) for the child's ready line."""
    assert process.wait_for_line(lambda line: line == "ready", 10.0), process.tail()


# -- escalation


def test_escalation_goes_sigint_sigterm_sigkill_each_bounded(tmp_path: Path) -> None:
    """A child that ignores SIGINT and SIGTERM gets each in turn, then SIGKILL ends it."""
    process = python(STUBBORN, tmp_path)
    ready(process)
    started = time.monotonic()
    sent = process.stop(interrupt_s=0.5, terminate_s=0.5, kill_s=3.0)
    took = time.monotonic() - started
    process.release()
    assert sent == [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    assert process.returncode == -signal.SIGKILL
    assert process.tail() == ("ready", "got SIGINT", "got SIGTERM")
    assert 1.0 <= took < 3.0, took  # both waits in full, SIGKILL's hardly at all


def test_escalation_stops_at_the_signal_that_works(tmp_path: Path) -> None:
    """A child that ignores SIGINT only: SIGTERM ends it, and SIGKILL is never sent."""
    code = STUBBORN.replace("(signal.SIGINT, signal.SIGTERM)", "(signal.SIGINT,)")
    process = python(code, tmp_path)
    ready(process)
    started = time.monotonic()
    sent = process.stop(interrupt_s=0.3, terminate_s=5.0)
    assert time.monotonic() - started < 3.0  # not the whole of SIGTERM's wait
    process.release()
    assert sent == [signal.SIGINT, signal.SIGTERM]
    assert process.returncode == -signal.SIGTERM


def test_escalation_skips_steps_without_a_wait_and_signals_nothing_finished(
    tmp_path: Path,
) -> None:
    """No SIGINT unless asked for; nothing at all once the process has exited."""
    process = python(STUBBORN, tmp_path)
    ready(process)
    assert process.stop(terminate_s=0.2) == [signal.SIGTERM, signal.SIGKILL]
    assert process.tail() == ("ready", "got SIGTERM")
    assert process.stop(interrupt_s=1.0, terminate_s=1.0) == []
    process.release()


def test_escalation_repeats_sigkill_until_finished() -> None:
    """SIGKILL is sent again while something is left (it may fork while being killed)."""
    sent: list[signal.Signals] = []
    left = [3]

    def send(sig: signal.Signals) -> None:
        sent.append(sig)
        if sig is signal.SIGKILL:
            left[0] -= 1

    assert escalate(send, lambda: left[0] == 0, kill_s=5.0) == [signal.SIGKILL]
    assert sent == [signal.SIGKILL] * 3


# -- bounded output


def test_bounded_output_keeps_head_and_tail() -> None:
    """The first and the last bytes are kept, and what was cut between them is counted."""
    output = BoundedOutput(head_bytes=10, tail_bytes=10)
    for chunk in (b"0123456", b"789abcdef", b"ghijklmnop", b"qrstuvwxyz"):
        output.append(chunk)
    output.end()
    assert output.drain(0.0)
    assert output.dropped == 36 - 20
    assert output.text() == "0123456789\n[... 16 bytes left out ...]\nqrstuvwxyz"


def test_bounded_output_of_a_child_keeps_head_and_tail_apart_from_stderr(tmp_path: Path) -> None:
    """Megabytes of stdout keep their first and last lines; stderr is kept on its own."""
    code = """
    import sys
    print("first")
    for n in range(100_000):
        print(f"line {n:06d} " + "x" * 20)
    print("last")
    print("on stderr", file=sys.stderr)
    """
    stdout, stderr = BoundedOutput(100, 100), BoundedOutput()
    process = python(code, tmp_path, stdout=stdout, stderr=stderr)
    assert process.wait(30.0)
    assert process.drain(10.0)
    process.release()
    text = stdout.text()
    assert text.startswith("first\nline 000000 ")
    assert text.endswith("line 099999 " + "x" * 20 + "\nlast\n")
    assert stdout.dropped > 3_000_000
    assert len(text) < 300
    assert stderr.text() == "on stderr\n"
    assert process.tail() == ()  # nothing went to the line log


def test_a_line_too_long_is_kept_as_its_start(tmp_path: Path) -> None:
    """A line of megabytes with no newline neither fills memory nor becomes many lines."""
    code = """
    import sys
    sys.stdout.write("A" * 3_000_000 + "B\\n")
    print("after")
    """
    process = python(code, tmp_path)
    assert process.wait(30.0) and process.drain(10.0)
    process.release()
    lines = process.tail()
    assert len(lines) == 2, [line[:20] for line in lines]
    assert lines[0].startswith("AAAA") and lines[0].endswith("... [a line of 3,000,001 bytes]")
    assert lines[1] == "after"


def test_output_into_a_file(tmp_path: Path) -> None:
    """``log``: stdout and stderr go to the file, and nothing is kept."""
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    with (tmp_path / "log").open("wb") as log:
        process = python(code, tmp_path, log=log)
        assert process.wait(30.0)
    assert process.drain(0.0)
    process.release()
    assert sorted((tmp_path / "log").read_text().split()) == ["err", "out"]
    assert process.tail() == ()


def test_a_line_log_is_the_default_sink(tmp_path: Path) -> None:
    """By default stdout and stderr are merged into the last lines."""
    process = python("import sys; print('a', flush=True); print('b', file=sys.stderr)", tmp_path)
    assert process.wait(30.0) and process.drain(10.0)
    process.release()
    assert isinstance(process.output, LineLog)
    assert process.tail() == ("a", "b")


# -- the run's tracker


def test_trackers_open_at_once_record_apart_and_the_newest_is_current(runs: Path) -> None:
    """Each open tracker has its own state file; a closed one's name is free again."""
    first = ProcessTracker()
    second = ProcessTracker()
    try:
        assert current_tracker() is second
        assert first.state_file == runs / f"{os.getpid()}.json"
        assert second.state_file == runs / f"{os.getpid()}-1.json"
        assert json.loads(first.state_file.read_text())["grader"]["pid"] == os.getpid()
    finally:
        first.close()
    assert current_tracker() is second
    third = ProcessTracker()
    try:
        assert third.state_file == runs / f"{os.getpid()}.json"
    finally:
        third.close()
        second.close()
    assert current_tracker() is None
    assert not list(runs.glob("*.json"))


def test_tracker_stops_a_stubborn_child_and_what_it_started(runs: Path, tmp_path: Path) -> None:
    """SIGTERM, then SIGKILL after the grace: the child and its own child are gone."""
    code = STUBBORN.replace(
        'print("ready"',
        'import subprocess; subprocess.Popen(["sleep", "300"], start_new_session=True)\n'
        'print("ready"',
    )
    tracker = ProcessTracker()
    try:
        process = tracker.spawn(
            "stubborn", [sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ)
        )
        ready(process)
        deadline = time.monotonic() + 10
        while len(tracker.members([process])) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {stat.comm for stat, _ in tracker.members([process])} >= {"sleep"}
        started = time.monotonic()
        tracker.stop([process], grace_s=0.3)
        assert time.monotonic() - started < 5.0
        assert process.returncode == -signal.SIGKILL
        assert process.tail()[-1] == "got SIGTERM"
        assert tracker.members() == []
    finally:
        tracker.close()


# -- signals deferred


def test_deferred_signals_are_recorded_and_handed_on() -> None:
    """SIGINT and SIGTERM in the block interrupt nothing; they are listed, then handlers return."""
    before = signal.getsignal(signal.SIGINT)
    seen: list[int] = []
    with deferred_signals(seen.append) as received:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert received == [signal.SIGINT, signal.SIGTERM]
    assert seen == received
    assert signal.getsignal(signal.SIGINT) is before


def test_a_big_pipe_for_a_program_that_may_flood(tmp_path: Path) -> None:
    """``pipe_bytes``: the child's output pipe holds that much; by default, the system's size."""
    code = "import fcntl; print(fcntl.fcntl(1, fcntl.F_GETPIPE_SZ))"
    env = {"PATH": os.environ.get("PATH", os.defpath)}
    argv = [sys.executable, "-c", code]
    big = ManagedProcess("big", argv, cwd=tmp_path, env=env, pipe_bytes=1 << 20)
    plain = ManagedProcess("plain", argv, cwd=tmp_path, env=env)
    for process in (big, plain):
        assert process.wait(30.0) and process.drain(10.0)
        process.release()
    assert big.tail() == (str(1 << 20),)
    assert int(plain.tail()[0]) < 1 << 20
