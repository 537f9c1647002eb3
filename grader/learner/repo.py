"""The learner's repo and its optional manifest, ``failfast.yaml``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from grader.errors import ManifestError, RepoError
from grader.learner import yamlfile
from grader.paths import followed

MANIFEST_FILE = "failfast.yaml"  # at the learner's repo root; optional
DEFAULT_COMMAND = "uvicorn app.main:app --host 127.0.0.1 --port $PORT"
DEFAULT_STARTUP_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class Manifest:
    """How to start the learner's API and which services it needs."""

    command: str = DEFAULT_COMMAND
    services: tuple[str, ...] = ()
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class LearnerRepo:
    """A learner's checkout, resolved to an absolute path."""

    path: Path

    @classmethod
    def open(cls, path: Path) -> LearnerRepo:
        """Resolve ``path``, or say clearly why it is not a learner repo."""
        resolved = followed(path.expanduser())
        if resolved is None:
            raise RepoError(
                f"{path} cannot be followed: a symlink on the way leads back to itself (a "
                "symlink loop). Pass --repo the real directory of your checkout, or replace the "
                "symlink with one that leads to it."
            )
        if not resolved.exists():
            raise RepoError(
                f"There is no directory at {path}. Pass the root of your checkout with "
                f"--repo PATH (it defaults to the current directory)."
            )
        if not resolved.is_dir():
            raise RepoError(f"{path} is a file; --repo needs the root directory of your checkout.")
        return cls(resolved)

    def manifest(self) -> Manifest:
        """Read failfast.yaml; a missing one means the defaults of the contract."""
        file = self.path / MANIFEST_FILE
        if not os.path.lexists(file):  # a dangling symlink is not "no manifest": it is said
            return Manifest()
        loaded = yamlfile.load(file, "manifest", root=self.path)
        if loaded.problems:
            raise ManifestError(
                f"failfast.yaml tells the grader how to start your API, and it cannot be used: "
                f"{loaded.problems[0]}. Fix it, or delete it to use the default command "
                f"`{DEFAULT_COMMAND}`.",
                details=[str(p) for p in loaded.problems[1:]],
                location=loaded.problems[0].location,
            )
        data = loaded.data
        return Manifest(
            command=str(data.get("command", DEFAULT_COMMAND)),
            services=tuple(data.get("services") or ()),
            startup_timeout_s=float(data.get("startup_timeout_s", DEFAULT_STARTUP_TIMEOUT_S)),
        )
