"""A throwaway PostgreSQL server for the tests: Debian's own binaries, a cluster of the session's.

``initdb`` and ``pg_ctl`` run as the ``postgres`` user when the tests run as root (the server
refuses to run as root), in a directory of their own, listening on a free port of 127.0.0.1
only, with one password user. The session stops the server and removes the directory at its end.
Without the binaries (``bash scripts/setup.sh packages`` installs Debian's ``postgresql``) the
tests that need it are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

USER = "failfast"
START_TIMEOUT_S = 60


@dataclass(frozen=True, slots=True)
class Server:
    """A running cluster: where it listens, and its password user."""

    port: int
    password: str

    def url(self, database: str, *, password: str | None = None) -> str:
        """``postgresql://failfast:PASSWORD@127.0.0.1:PORT/DB``, or with another password."""
        given = self.password if password is None else password
        return f"postgresql://{USER}:{given}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new, empty database of its own; its URL."""
        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def binaries() -> Path | None:
    """Debian's server binaries (/usr/lib/postgresql/N/bin), the newest; None without them."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
    )
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def server() -> Iterator[Server]:
    """A new cluster, started; stopped and removed on the way out."""
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin): "
            "run `bash scripts/setup.sh packages`"
        )
    as_root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="failfast-pg-"))
    password = secrets.token_urlsafe(16)
    (base / "pw").write_text(password + "\n")
    if as_root:
        shutil.chown(base, "postgres", "postgres")
        shutil.chown(base / "pw", "postgres", "postgres")
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []

    def run(*argv: str) -> None:
        done = subprocess.run(
            [*run_as, *argv], capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False
        )
        assert done.returncode == 0, f"{argv[0]}: {done.stdout}{done.stderr}"

    port = _free_port()
    data = base / "data"
    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            f"--pwfile={base / 'pw'}",
            "--auth=scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(base / "log"),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
        )
        yield Server(port, password)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=START_TIMEOUT_S,
                check=False,
            )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    """The session's PostgreSQL server (started on first use)."""
    with server() as running:
        yield running
