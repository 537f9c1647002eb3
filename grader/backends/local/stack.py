"""The local backend: the reference stub, the learner's API and its services as processes.

Checks see only the protocols of :mod:`grader.backends.base` (:class:`Stack`, :class:`ApiInstance`,
:class:`Edge`); :class:`LocalStack` meets them with processes on loopback ports. The CLI picks
the backend.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from grader.backends.base import ApiInstance, Edge
from grader.backends.services import (
    OUTPUT_DRAIN_S,
    free_port,
    poll_healthz,
    redis_answers,
    stub_ready,
)
from grader.errors import ApiStartError, EnvironmentProblem
from grader.learner.repo import LearnerRepo, Manifest
from grader.lines import OutputSummary
from grader.process.process import BIG_PIPE_BYTES
from grader.process.procs import (
    ManagedProcess,
    ProcessTracker,
    child_env,
    describe,
    sweep_dead_runs,
)
from grader.stubclient import StubAdmin

STUB_READY_TIMEOUT_S = 10.0
REDIS_READY_TIMEOUT_S = 10.0
RESTART_GRACE_S = 0.5
# The shell the learner's command runs in, as a shell runs it: `cd api && uvicorn ...`,
# `ENV=1 uvicorn ...` and `sleep 1 && uvicorn ...` all work.
SHELL = "/bin/sh"


@dataclass(slots=True)
class LocalApi:
    """A learner API instance running as a local process group."""

    name: str
    base_url: str
    process: ManagedProcess

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.returncode is None

    def exit_description(self) -> str | None:
        """How the process exited, in words."""
        code = self.process.returncode
        if code is None:
            return None
        if code < 0:
            return f"was killed by {_signal_name(-code)}"
        if code > 128 and (name := _signal_name(code - 128, None)) is not None:
            # What a shell reports for a command of it that a signal killed.
            return f"exited with code {code} (a command it ran was killed by {name})"
        return f"exited with code {code}"

    def output_tail(self, n: int = 15) -> tuple[str, ...]:
        """The last lines the process printed."""
        return self.process.tail(n)

    def output_mark(self) -> int:
        """A position in the process's output."""
        return self.process.mark()

    def output_since(self, mark: int, n: int = 15) -> tuple[str, ...]:
        """At most the last ``n`` lines printed after ``mark``."""
        return self.process.since(mark, n)


class LocalStack:
    """Everything as processes on loopback ports: needs nothing but Python (and redis-server)."""

    def __init__(self, repo: LearnerRepo, manifest: Manifest) -> None:
        self.repo = repo
        self.manifest = manifest
        self._apis: list[ManagedProcess] = []
        self._every_api: list[ManagedProcess] = []  # every instance the run started, for its output
        self._tracker: ProcessTracker | None = None
        self._env_extra: dict[str, str] = {}
        self.stub: StubAdmin
        self.payments_url: str
        self.provider_url: str
        self.connect_hang_url: str
        self.api: ApiInstance
        self.notes: tuple[str, ...] = ()

    @classmethod
    async def start(cls, repo: LearnerRepo, manifest: Manifest) -> LocalStack:
        """Start the stub, the services the manifest lists, then the learner's API."""
        stack = cls(repo, manifest)
        try:
            # What graders killed before they could stop it (SIGKILL, a closed CI runner) left.
            await asyncio.to_thread(sweep_dead_runs)
            stack._tracker = ProcessTracker()
            stack._start_stub()
            if "redis" in manifest.services:
                stack._env_extra["REDIS_URL"] = stack._start_redis()
            stack.api = await stack.start_api("api")
        except BaseException:
            await stack.aclose()
            raise
        return stack

    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        cwd: Path,
        env: dict[str, str],
        pipe_bytes: int | None = None,
    ) -> ManagedProcess:
        if self._tracker is None:
            self._tracker = ProcessTracker()
        try:
            process = self._tracker.spawn(name, argv, cwd=cwd, env=env, pipe_bytes=pipe_bytes)
        except OSError as exc:
            raise EnvironmentProblem(f"The grader could not start {name}: {exc}.") from exc
        return process

    def _start_stub(self) -> None:
        # The stub is the grader's own code: it runs with the grader's interpreter, and exits by
        # itself if the grader dies (--owner-pid), so a SIGKILLed grader leaves nothing behind.
        env = child_env({})
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        argv = [sys.executable, "-m", "reference.stub", "--owner-pid", str(os.getpid())]
        process = self._spawn("payments-stub", argv, Path.cwd(), env)
        ready = stub_ready(process, STUB_READY_TIMEOUT_S)
        host = ready.get("host", "127.0.0.1")
        self.payments_url = self.provider_url = f"http://{host}:{ready['port']}"
        self.connect_hang_url = f"http://{host}:{ready['connect_hang_port']}"
        self.stub = StubAdmin(f"http://{host}:{ready['admin_port']}")

    def _start_redis(self) -> str:
        server = shutil.which("redis-server")
        if server is None:
            raise EnvironmentProblem(
                "Your failfast.yaml lists the service `redis`, and this machine has no "
                "redis-server on PATH. Install it (Debian/Ubuntu: `sudo apt-get install "
                "redis-server`; macOS: `brew install redis`) and grade again."
            )
        port = free_port()
        argv = [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ]
        process = self._spawn("redis", argv, Path("/"), child_env({}))
        if redis_answers(
            "127.0.0.1", port, REDIS_READY_TIMEOUT_S, lambda: process.returncode is None
        ):
            return f"redis://127.0.0.1:{port}/0"
        raise EnvironmentProblem(
            f"redis-server did not answer PING within {REDIS_READY_TIMEOUT_S:.0f} s: "
            + " / ".join(process.tail(5) or ("(no output)",))
        )

    async def start_api(self, name: str, *, payments_url: str | None = None) -> ApiInstance:
        """Start the learner's command with only the contract's environment; wait for /healthz."""
        port = free_port()
        env = child_env(
            {"PORT": str(port), "PAYMENTS_URL": payments_url or self.payments_url} | self._env_extra
        )
        # As a shell runs it; the shell execs its last command itself, so the learner's server
        # usually is the process started. Whatever it starts, however it detaches, the tracker
        # finds and stops.
        argv = [SHELL, "-c", self.manifest.command]
        # A big pipe: the learner's output may flood it, and must never wait on the grader.
        process = self._spawn(name, argv, self.repo.path, env, BIG_PIPE_BYTES)
        self._apis.append(process)
        self._every_api.append(process)
        api = LocalApi(name, f"http://127.0.0.1:{port}", process)
        await _wait_healthy(api, self.manifest, self.repo.path, env, self._left_behind)
        return api

    def _left_behind(self, process: ManagedProcess) -> list[str]:
        """The command lines of what ``process`` started that still runs (it has exited)."""
        if self._tracker is None:
            return []
        return [
            describe(stat.pid)
            for stat, _ in self._tracker.members([process])
            if stat.pid != process.pid
        ]

    async def restart_api(self) -> None:
        """Stop every instance of the learner's API, then start a fresh main one as ``api``."""
        old, self._apis = self._apis, []
        # The old instances may hold requests the stub delays: nothing needs their graceful
        # shutdown, so they get a short grace, spent while the fresh one starts. Interrupted
        # here, aclose still stops them: the tracker holds every process the run started.
        tracker = self._tracker
        assert tracker is not None
        stopped = asyncio.to_thread(tracker.stop, old, RESTART_GRACE_S)
        _, api = await asyncio.gather(stopped, self.start_api("api"))
        self.api = api

    async def start_edge(self) -> Edge:
        """The learner's nginx.conf as a local nginx process, rewired to loopback ports."""
        from grader.backends.local.edge import (
            start_local_edge,  # only graders with an nginx need it
        )

        return await start_local_edge(self.repo, self.api.base_url, self._spawn)

    def output_summary(self) -> OutputSummary | None:
        """What every instance of the learner's API printed (bounded: counts, first, last lines)."""
        return OutputSummary.combine([process.summary() for process in self._every_api])

    async def aclose(self) -> None:
        """Stop every process the stack started, whatever state it is in."""
        stub = getattr(self, "stub", None)
        if stub is not None:
            await stub.aclose()
        if self._tracker is not None:
            # Everything the run started: the processes, and whatever they started.
            self._tracker.close()
        self._apis.clear()


def _signal_name(number: int, default: str | None = "") -> str | None:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}" if default == "" else default


def _why_it_exited(code: int, env: dict[str, str], left: list[str]) -> str:
    """What an exit before /healthz answered means, and what to do about it."""
    if code == 0:
        where = (
            f"leaving `{left[0]}` running in the background; the grader stopped it"
            if left
            else "perhaps after putting the server in the background"
        )
        return (
            f"The command returned, {where}. It must keep running in the foreground for as long "
            "as the API serves: no `&`, `nohup`, `--daemon` or process manager; make the server "
            "the command's last step (`cd api && uvicorn ...`)."
        )
    if code == 127:
        return (
            "The shell could not find a program the command names (its output below says "
            f"which), on the API's PATH: {env.get('PATH', '')}. Install it there (`pip install "
            "-r requirements.txt` into the environment you run failfast from, or activate the "
            "virtualenv that has it before running failfast), or name it by its path in "
            "failfast.yaml (`.venv/bin/uvicorn ...`)."
        )
    if code == 126:
        return (
            "The shell found a program the command names but could not run it: it is not "
            "executable (`chmod +x` it), it is a directory, or its `#!` line names an "
            "interpreter that is not there."
        )
    signum = -code if code < 0 else code - 128 if code > 128 else 0
    name = _signal_name(signum, None) if signum else None
    if name is not None:
        cause = {
            "SIGKILL": " (often the kernel's out-of-memory killer)",
            "SIGSEGV": " (a crash in native code)",
            "SIGABRT": " (an abort, often a failed assertion in native code)",
        }.get(name, "")
        return f"It was killed by {name}{cause}, by itself or by something outside it."
    return "It stopped by itself before it was ready."


async def _wait_healthy(
    api: LocalApi,
    manifest: Manifest,
    repo: Path,
    env: dict[str, str],
    left_behind: Callable[[ManagedProcess], list[str]],
) -> None:
    # How to see what the grader saw: the command, run as the grader runs it.
    # (`failfast stub` serves a provider on 8081.)
    redis = " REDIS_URL=redis://127.0.0.1:6379/0" if "REDIS_URL" in env else ""
    reproduce = (
        f"To run it as the grader does: cd {shlex.quote(str(repo))} && env -i "
        f'PATH="$PATH" HOME="$HOME" PORT=8000 PAYMENTS_URL=http://127.0.0.1:8081{redis} '
        f"{SHELL} -c {shlex.quote(manifest.command)}"
    )

    async def raise_if_exited() -> None:
        exited = api.exit_description()
        code = api.process.returncode
        if exited is None or code is None:
            return
        # Its last lines may still be in the pipe: read them before showing the tail.
        await asyncio.to_thread(api.process.drain, OUTPUT_DRAIN_S)
        left = await asyncio.to_thread(left_behind, api.process)
        tail = api.output_tail()
        said = "Its output ends with the lines below." if tail else "It printed nothing."
        raise ApiStartError(
            f"Your API {exited} before it answered GET /healthz. The grader ran "
            f"`{manifest.command}` with {SHELL} in your repo root. "
            f"{_why_it_exited(code, env, left)} {reproduce}. {said}",
            details=tail,
        )

    last = await poll_healthz(api.base_url, manifest.startup_timeout_s, raise_if_exited)
    if last is not None:
        raise ApiStartError(
            f"Your API did not answer GET /healthz with 200 within "
            f"{manifest.startup_timeout_s:g} s (last try: {last}). It must listen on "
            f"127.0.0.1:$PORT and answer /healthz quickly; the command was "
            f"`{manifest.command}`, run with {SHELL} in your repo root. Raise "
            f"startup_timeout_s in failfast.yaml if it is just slow to start. Its "
            f"output ends with the lines below.",
            details=api.output_tail(),
        )
