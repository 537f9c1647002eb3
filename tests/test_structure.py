"""What the import contracts (.importlinter, tests/test_layout.py) cannot say about the structure.

The layers themselves (CLI above engine above model, formats and checks on their own surfaces,
no circle) are import-linter's contracts; these are the two rules about the checks package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

GRADER = ROOT / "grader"


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, top-level or deferred, as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def grader_imports(path: Path) -> set[str]:
    """The grader's and the checks' own modules a file imports."""
    return {m for m in imports_of(path) if m.split(".")[0] in ("grader", "checks")}


def test_importing_the_registry_leaves_the_checks_alone() -> None:
    """The registry never imports the checks package: the CLI names it."""
    code = "import grader.engine.registry, sys; assert 'checks' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()


def test_only_the_cli_names_the_checks_package() -> None:
    """No module of the grader imports the checks; only the CLI says where they are."""
    for path in GRADER.rglob("*.py"):
        assert not {m for m in grader_imports(path) if m.startswith("checks")}, path.name
    assert 'CHECKS_PACKAGE = "checks"' in (GRADER / "cli" / "app.py").read_text("utf-8")
