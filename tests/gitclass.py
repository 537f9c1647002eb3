"""Classes of learner repos that are real git checkouts, each with a commit: what a course grades.

The grading history reuses a submission's grading by its commit, so the classes its tests and
benchmark grade are checkouts (`git init`, one commit); :func:`commit` adds a learner's next one.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.mutants import REFERENCE, materialize

GIT = ("git", "-c", "user.email=learner@example.com", "-c", "user.name=learner")


def commit(repo: Path, message: str) -> str:
    """Commit everything in ``repo``; its commit id."""
    subprocess.run([*GIT, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-qm", message], check=True)
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def checkout(source: Path, target: Path) -> Path:
    """A copy of the learner repo at ``source`` as a git checkout with one commit."""
    materialize(source, target)
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    commit(target, "the submission")
    return target


def git_class(where: Path, names: Sequence[str], source: Path = REFERENCE) -> Path:
    """A class directory: one checkout of ``source`` per name."""
    where.mkdir(parents=True)
    for name in names:
        checkout(source, where / name)
    return where
