"""Run the real stub as a subprocess and talk to it, for the stub's tests."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def stub_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Build the environment of a stub: ours without the knobs, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PORT", "ADMIN_PORT", "LATENCY_MS", "FAIL_RATE", "SEED"}
    }
    return env | dict(extra or {})


def read_line(proc: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """Read one line of the process's stdout within ``timeout_s``; b"" if it did not come."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    buffer = b""
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b""
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                return b""
            buffer += chunk
    return buffer.split(b"\n", 1)[0]


@dataclass
class Stub:
    """A running stub process and its ports."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    admin_port: int
    connect_hang_port: int
    stderr_path: Path

    @property
    def url(self) -> str:
        """Return the provider's base URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        """Return the admin API's base URL."""
        return f"http://{self.host}:{self.admin_port}"

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the admin API."""
        return httpx.request(method, self.admin_url + path, timeout=5.0, **kwargs)

    def add_rule(self, fault: Mapping[str, Any], **rule: Any) -> int:
        """Program a fault rule; return its id."""
        response = self.admin("POST", "/faults", json={"fault": dict(fault), **rule})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def journal(self, **params: int) -> list[dict[str, Any]]:
        """Return the journal's attempts, filtered by ``params``."""
        response = self.admin("GET", "/journal", params=params)
        assert response.status_code == 200, response.text
        attempts: list[dict[str, Any]] = response.json()["attempts"]
        return attempts

    def ledger(self, **params: int) -> list[dict[str, Any]]:
        """Return the ledger's charges, filtered by ``params``."""
        response = self.admin("GET", "/ledger", params=params)
        assert response.status_code == 200, response.text
        charges: list[dict[str, Any]] = response.json()["charges"]
        return charges

    def wait_for_attempts(
        self,
        count: int,
        *,
        timeout_s: float = 3.0,
        done: Callable[[dict[str, Any]], bool] = lambda a: a["outcome"] != "in_progress",
        **params: int,
    ) -> list[dict[str, Any]]:
        """Poll the journal until ``count`` attempts are there and over (or ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            attempts = self.journal(**params)
            if len(attempts) >= count and all(done(a) for a in attempts):
                return attempts
            if time.monotonic() >= deadline:
                raise AssertionError(f"journal did not settle: {attempts}")
            time.sleep(0.02)

    def stderr(self) -> str:
        """Return what the stub wrote on stderr so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the stub, then kill it if it lingers; return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


class StubFactory(Protocol):
    """Starts extra stubs with their own knobs (the ``make_stub`` fixture)."""

    def __call__(
        self,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        owner_pid: int | None = None,
    ) -> Stub:
        """Start a stub with these arguments, environment and owner process."""
        ...


def start_stub(
    stderr_path: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    owner_pid: int | None = None,
) -> Stub:
    """Start ``python -m reference.stub`` and wait for its ready line."""
    argv = [sys.executable, "-m", "reference.stub", "--owner-pid", str(owner_pid or os.getpid())]
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [*argv, *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=stub_env(env),
            cwd=REPO_ROOT,
        )
    line = read_line(proc, READY_TIMEOUT_S)
    if not line:
        proc.kill()
        proc.wait()
        message = stderr_path.read_text(errors="replace")
        raise AssertionError(f"the stub did not get ready: {message}")
    ready = json.loads(line)
    assert ready["event"] == "ready"
    return Stub(
        proc=proc,
        host=ready["host"],
        port=ready["port"],
        admin_port=ready["admin_port"],
        connect_hang_port=ready["connect_hang_port"],
        stderr_path=stderr_path,
    )
