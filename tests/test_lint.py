"""The code stays ruff- and mypy-clean: part of the suite so that CI enforces it."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def tool(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a Python tool of this environment in the repo root."""
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_lint() -> None:
    """Ruff finds nothing to complain about."""
    done = tool("ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format() -> None:
    """The code is formatted as ruff formats it."""
    done = tool("ruff", "format", "--check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict() -> None:
    """Mypy in strict mode passes on the grader, the checks, the stub and the tests."""
    done = tool("mypy")
    assert done.returncode == 0, done.stdout + done.stderr
