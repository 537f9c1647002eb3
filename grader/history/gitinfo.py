"""What git says of a repo: its remote, its commit and whether its tree has uncommitted changes.

Read with the real ``git``, each call bounded: a repo that is no checkout, a machine without
git, or a checkout git refuses to read (another user's, "dubious ownership") is recorded with
no commit, never an error.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class GitState:
    """A repo as git sees it; every field None when it is no checkout git will read."""

    commit: str | None = None
    dirty: bool | None = None
    remote: str | None = None


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            # HOME for the user's safe.directory; nothing of the grader's own environment else.
            env={
                "GIT_TERMINAL_PROMPT": "0",
                "LC_ALL": "C",
                "HOME": os.environ.get("HOME", "/"),
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            },
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def read(repo: Path) -> GitState:
    """The repo's commit, dirty flag and origin remote (or its first remote)."""
    commit = _git(repo, "rev-parse", "--verify", "HEAD")
    if commit is None:
        return GitState()
    status = _git(repo, "status", "--porcelain", "--untracked-files=normal")
    remote = _git(repo, "remote", "get-url", "origin")
    if remote is None:
        first = (_git(repo, "remote") or "").splitlines()
        remote = _git(repo, "remote", "get-url", first[0]) if first else None
    return GitState(commit, None if status is None else bool(status), without_credentials(remote))


# https://user:token@host/...: a token in a remote URL is never stored.
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)


def without_credentials(remote: str | None) -> str | None:
    """The remote URL with any user name and password taken out of it."""
    return None if remote is None else _USERINFO.sub(r"\1", remote)
