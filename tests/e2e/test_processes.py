"""The learner's command runs as a shell runs it, and nothing it starts outlives grading.

Every test watches the grader's processes itself, from /proc: what runs under the grader
(parent links: the grader is its processes' subreaper, so even a daemon that left its parent is
found there) and in the sessions of those, plus the pid files the learner's own processes write.
A test asserts that what it expects to be stopped was seen running before it asserts it is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, grader_crashed, leftovers, run_failfast
from tests.mutants import REFERENCE, materialize

pytestmark = pytest.mark.slow

SERVER = "uvicorn app.main:app --host 127.0.0.1 --port $PORT"
BINDIR = str(Path(sys.executable).parent)
# A daemon as daemons detach: a new session (setsid) and a parent that exits at once (the
# subshell), so that it is neither in the API's process group nor under the API's process.
# One per repo (the first API instance starts it), so that daemon.pid names the only one.
DAEMON = """#!/bin/sh
mkdir daemon.lock 2> /dev/null || exit 0
( setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' < /dev/null > /dev/null 2>&1 & )
"""


def repo_with(tmp_path: Path, command: str, *, redis: bool = True) -> Path:
    """A copy of the reference solution whose failfast.yaml runs ``command``."""
    repo = materialize(REFERENCE, tmp_path / "repo")
    services = "[redis]" if redis else "[]"
    (repo / "failfast.yaml").write_text(f"command: {json.dumps(command)}\nservices: {services}\n")
    (repo / "daemon.sh").write_text(DAEMON)
    return repo


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """State, parent, session and start time of ``pid``; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return rest[0], int(rest[1]), int(rest[3]), int(rest[19])


def running(pid: int, start: int) -> bool:
    """Whether the process ``(pid, start)`` runs: not gone, not a zombie, pid not reused."""
    stat = _stat(pid)
    return stat is not None and stat[3] == start and stat[0] not in "ZX"


@dataclass
class Watched:
    """A `failfast` process and every process of its seen so far."""

    proc: subprocess.Popen[str]
    env: dict[str, str]
    repo: Path
    seen: dict[tuple[int, int], str] = field(default_factory=dict)  # (pid, start) -> cmdline
    leaders: dict[int, int] = field(default_factory=dict)  # sessions seen: id -> leader's start

    def look(self) -> None:
        """Record what runs under the grader, or in a session one of its processes leads."""
        table = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
                table[int(entry.name)] = stat

        def in_session(sid: int) -> bool:
            # A session the grader's leads, if its leader is gone or is still that process: the
            # kernel reuses no pid as long as a session of that id has a process in it.
            start = self.leaders.get(sid)
            return start is not None and (sid not in table or table[sid][3] == start)

        for pid, (state, _, sid, start) in table.items():
            if state in "ZX":
                continue
            if (pid, start) in self.seen:
                # A process seen before its exec (`sh daemon.sh` that becomes `sleep 300`) is
                # also what it runs now.
                with contextlib.suppress(OSError):
                    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                    now = raw.replace(b"\0", b" ").decode(errors="replace")
                    if now and now not in self.seen[(pid, start)]:
                        self.seen[(pid, start)] += f" | then: {now}"
                continue
            parent, under = pid, False
            for _ in range(64):
                parent = table[parent][1] if parent in table else 0
                if parent == self.proc.pid:
                    under = True
                if parent <= 1 or under:
                    break
            if under or in_session(sid):
                if sid == pid:
                    self.leaders[pid] = start
                with contextlib.suppress(OSError):
                    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                    self.seen[(pid, start)] = raw.replace(b"\0", b" ").decode(errors="replace")

    def matching(self, text: str) -> list[tuple[int, int]]:
        """The processes seen whose command line holds ``text``."""
        return [key for key, cmdline in self.seen.items() if text in cmdline]

    def wait_for(self, text: str, count: int = 1, timeout_s: float = 30.0) -> None:
        """Watch until ``count`` processes whose command line holds ``text`` were seen."""
        deadline = time.monotonic() + timeout_s
        while len(self.matching(text)) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                output = self.finish()
                seen = "\n".join(f"{pid} {start}: {c}" for (pid, start), c in self.seen.items())
                pid_file = self.repo / "daemon.pid"
                daemon = pid_file.read_text() if pid_file.exists() else "(no daemon.pid)"
                pytest.fail(
                    f"no {count} processes `{text}` under the grader; seen:\n{seen}\n"
                    f"daemon.pid: {daemon}\n{output}"
                )
            self.look()
            time.sleep(0.02)

    def finish(self, timeout_s: float = 120.0) -> str:
        """Watch until the grader exits; its output."""
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.look()
            time.sleep(0.02)
        output, _ = self.proc.communicate(timeout=10)
        return output

    def left(self, within_s: float = 0.0) -> list[str]:
        """What was seen and still runs ``within_s`` from now (empty as soon as all is gone)."""
        deadline = time.monotonic() + within_s
        while True:
            left = [f"{pid}: {c}" for (pid, start), c in self.seen.items() if running(pid, start)]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.05)

    def kill_all(self) -> None:
        """After the test: nothing it saw may leak into the next test."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        for pid, start in self.seen:
            if running(pid, start):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        # The daemon, even if it was never seen: by its pid file, if it still is that process.
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            pid = int((self.repo / "daemon.pid").read_text())
            if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00300\x00":
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def watching(tmp_path: Path, *args: str, repo: Path, env: dict[str, str] | None = None) -> Any:
    """Run `failfast ARGS --repo REPO` while watching its processes; kill leftovers after."""
    full_env = {
        **os.environ,
        "COLUMNS": "100",
        "XDG_RUNTIME_DIR": str(tmp_path / "runtime"),  # this test's runs, and no other's
        **(env or {}),
    }
    full_env = {k: v for k, v in full_env.items() if not k.startswith(("GITHUB_", "RUNNER_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "grader", *args, "--repo", str(repo)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
    )
    watched = Watched(proc, full_env, repo)
    try:
        yield watched
    finally:
        watched.kill_all()


def error_of(output: str) -> dict[str, Any]:
    """The `error` of a JSON report printed on stdout."""
    error: dict[str, Any] = json.loads(output)["error"]
    return error


def daemon_of(repo: Path, watched: Watched) -> tuple[int, int]:
    """The daemon the learner's command started, by the pid it wrote; seen under the grader."""
    pid = int((repo / "daemon.pid").read_text())
    mine = [key for key in watched.seen if key[0] == pid]
    assert mine, f"the daemon {pid} was never seen among the grader's processes"
    return mine[0]


# -- the command runs as a shell runs it


def move_app_to_api(repo: Path) -> None:
    """Put the learner's app in api/ (with the table it reads beside it): `cd api && ...`."""
    (repo / "api").mkdir()
    shutil.move(repo / "app", repo / "api" / "app")
    shutil.copy(repo / "budgets.yaml", repo / "api" / "budgets.yaml")


@pytest.mark.parametrize(
    "command",
    [f"cd api && {SERVER}", f"ENV=1 APP_MODE=grading {SERVER}", f"sleep 1 && {SERVER}"],
    ids=["cd-and", "assignments", "sleep-and"],
)
def test_compound_commands_run_as_a_shell_runs_them(tmp_path: Path, command: str) -> None:
    """`cd api && uvicorn`, `ENV=1 uvicorn` and `sleep 1 && uvicorn` start and grade."""
    repo = repo_with(tmp_path, command)
    if command.startswith("cd api"):
        move_app_to_api(repo)
    with watching(tmp_path, "check", "milestone-5", "--format", "json", repo=repo) as watched:
        output = watched.finish()
        assert watched.proc.returncode == 0, output
        assert not grader_crashed(output)
        report = json.loads(output)
        assert {c["status"] for c in report["checks"]} == {"PASS"}, output
        assert watched.matching("uvicorn app.main:app"), watched.seen
        left = watched.left(within_s=1.0)
        assert not left, "still running:\n" + "\n".join(left)
    assert leftovers(watched.proc.pid, repo) == []


def test_backgrounded_server_is_explained_and_stopped(tmp_path: Path) -> None:
    """A command that puts the server in the background and returns 0: told why, stopped."""
    server = f"sh -c 'echo $$ > server.pid; exec {SERVER}'"
    repo = repo_with(tmp_path, f"{server} &", redis=False)
    with watching(tmp_path, "check", "milestone-2", "--format", "json", repo=repo) as watched:
        output = watched.finish()
        assert watched.proc.returncode == 2, output
        assert not grader_crashed(output)
        error = error_of(output)
        message = error["message"]
        assert "exited with code 0 before it answered GET /healthz" in message
        assert "in the background" in message and "in the foreground" in message
        assert "uvicorn app.main:app" in message  # what it left running, named
        pid = int((repo / "server.pid").read_text())
        assert [key for key in watched.seen if key[0] == pid], "the server was never seen"
        left = watched.left()
        assert not left, "still running:\n" + "\n".join(left)
    assert leftovers(watched.proc.pid, repo) == []


def test_command_not_found_names_the_path(tmp_path: Path) -> None:
    """A program the shell cannot find (127): the message says so and shows the API's PATH."""
    repo = repo_with(tmp_path, "uvicornn app.main:app --port $PORT", redis=False)
    path = f"{BINDIR}:/usr/bin:/bin"
    run = run_failfast("check", "milestone-2", "--format", "json", repo=repo, env={"PATH": path})
    assert run.returncode == 2
    assert run.report is not None
    message = run.report["error"]["message"]
    assert "exited with code 127 before it answered GET /healthz" in message
    assert "could not find a program" in message
    assert f"PATH: {path}." in message
    assert any("uvicornn: not found" in line for line in run.report["error"]["details"])


# -- nothing it starts outlives grading


@pytest.mark.parametrize("cgroup", [True, False], ids=["cgroup-if-any", "no-cgroup"])
def test_setsid_daemon_is_stopped_after_grading(tmp_path: Path, cgroup: bool) -> None:
    """A daemon in a session of its own whose parent exited is stopped when grading ends."""
    repo = repo_with(tmp_path, f"sh daemon.sh && {SERVER}")
    env = {} if cgroup else {"FAILFAST_NO_CGROUP": "1"}
    with watching(tmp_path, "check", "milestone-5", repo=repo, env=env) as watched:
        output = watched.finish()
        assert watched.proc.returncode == 0, output
        assert not grader_crashed(output)
        daemon = daemon_of(repo, watched)
        assert not running(*daemon), "the daemon outlived grading"
        left = watched.left(within_s=1.0)
        assert not left, "still running:\n" + "\n".join(left)
    assert leftovers(watched.proc.pid, repo) == []


def kill_mid_run(watched: Watched, *, watchdog_too: bool) -> None:
    """Once the workers and the daemon run, SIGKILL the grader (and its watchdog).

    The grader records what runs a moment after it starts (a quarter second): a daemon that
    detaches in that moment before the grader is killed, where no cgroup holds the run, is not
    in the record. So the kill waits for the record to name the daemon.
    """
    watched.wait_for("multiprocessing.spawn", count=2)  # the workers are up
    watched.wait_for("sleep 300")  # and the daemon
    daemon = int((watched.repo / "daemon.pid").read_text())
    state = Path(watched.env["XDG_RUNTIME_DIR"]) / "failfast" / "runs" / f"{watched.proc.pid}.json"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            recorded = {p["pid"] for p in json.loads(state.read_text())["processes"]}
            if daemon in recorded:
                break
        time.sleep(0.05)
    else:
        pytest.fail(f"the grader never recorded the daemon {daemon} in {state}")
    if watchdog_too:
        # As when everything of the grader's is killed at once (OOM, a runner torn down).
        for pid, start in watched.matching("grader.process.watchdog"):
            if running(pid, start):
                os.kill(pid, signal.SIGKILL)
    watched.proc.kill()
    watched.finish()


@pytest.mark.parametrize(
    ("sweeper", "cgroup"), [("doctor", True), ("check", False)], ids=["doctor", "check-no-cgroup"]
)
def test_killed_grader_is_swept_by_the_next_run(tmp_path: Path, sweeper: str, cgroup: bool) -> None:
    """Grader and watchdog SIGKILLed: the next `failfast doctor` or check stops what is left.

    Without a cgroup, the next run has only the state file: the pids and sessions recorded.
    """
    repo = repo_with(tmp_path, f"sh daemon.sh && {SERVER} --workers 2")
    env = {} if cgroup else {"FAILFAST_NO_CGROUP": "1"}
    with watching(tmp_path, "check", "milestone-2", repo=repo, env=env) as watched:
        kill_mid_run(watched, watchdog_too=True)
        workers = watched.matching("multiprocessing.spawn")
        daemon = daemon_of(repo, watched)
        # Only the grader's direct children die with it: this is what the next run must stop.
        time.sleep(0.5)
        seen = "\n".join(f"{pid} {start}: {c}" for (pid, start), c in watched.seen.items())
        assert [w for w in workers if running(*w)], f"no worker outlived the grader:\n{seen}"
        assert running(*daemon), "the daemon did not outlive the grader"
        env = {"XDG_RUNTIME_DIR": watched.env["XDG_RUNTIME_DIR"]}
        if sweeper == "doctor":
            run = run_failfast("doctor", repo=repo, env=env)
            assert run.returncode in (0, 1), run.stdout
        else:
            other = repo_with(tmp_path / "other", "exit 3", redis=False)
            run = run_failfast("check", "milestone-2", repo=other, env=env)
            assert run.returncode == 2 and "exited with code 3" in run.stdout, run.stdout
        left = watched.left(within_s=1.0)
        assert not left, "still running:\n" + "\n".join(left)
        assert leftovers(watched.proc.pid, repo) == []
        assert not list(Path(env["XDG_RUNTIME_DIR"]).glob("failfast/runs/*.json"))


def test_killed_grader_alone_leaves_nothing(tmp_path: Path) -> None:
    """A grader SIGKILLed mid-run: its watchdog stops workers and daemon at once, no run needed."""
    repo = repo_with(tmp_path, f"sh daemon.sh && {SERVER} --workers 2")
    with watching(tmp_path, "check", "milestone-2", repo=repo) as watched:
        kill_mid_run(watched, watchdog_too=False)
        assert len(watched.matching("multiprocessing.spawn")) >= 2
        daemon_of(repo, watched)
        left = watched.left(within_s=5.0)
        assert not left, "still running:\n" + "\n".join(left)
        assert leftovers(watched.proc.pid, repo) == []


# -- what an API that exits early said


def test_early_exit_shows_every_last_line(tmp_path: Path) -> None:
    """An API that prints three lines and exits 3: all three are shown, every time."""
    lines = ("first: loading settings", "second: no database", "third: giving up")
    code = "; ".join(f"print({line!r})" for line in lines) + "; raise SystemExit(3)"
    repo = repo_with(tmp_path, f'python -c "{code}"', redis=False)
    for attempt in range(5):
        run = run_failfast("check", "milestone-2", "--format", "json", repo=repo)
        assert run.returncode == 2, run.stdout
        assert run.report is not None
        error = run.report["error"]
        assert "exited with code 3 before it answered GET /healthz" in error["message"]
        assert error["details"][-3:] == list(lines), (attempt, error["details"])


def test_output_still_on_its_way_at_exit_is_shown(tmp_path: Path) -> None:
    """A line a child of the API writes just after the API exits still makes the message."""
    late = "sh -c 'sleep 0.3; echo written late: port 8000 in use' &"
    repo = repo_with(tmp_path, f"{late} echo written first; exit 3", redis=False)
    run = run_failfast("check", "milestone-2", "--format", "json", repo=repo)
    assert run.returncode == 2, run.stdout
    assert run.report is not None
    assert run.report["error"]["details"][-2:] == [
        "written first",
        "written late: port 8000 in use",
    ]
