"""The code's one-way structure: imports point from the CLI down to the model, never back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_the_model_imports_nothing_of_the_grader() -> None:
    """grader/model.py is the bottom: every other module may import it, it imports none."""
    assert grader_imports(GRADER / "model.py") == set()


@pytest.mark.parametrize("path", sorted((GRADER / "formats").glob("*.py")), ids=lambda p: p.name)
def test_formats_import_only_the_model(path: Path) -> None:
    """A report format renders a Report: it never reaches into the runner, registry or stack."""
    allowed = ("grader.model", "grader.formats", "grader.lines", "grader.__version__")
    imported = {m for m in grader_imports(path) if m != "grader"}
    assert not {m for m in imported if not m.startswith(allowed)}, path.name


def test_only_the_cli_names_the_checks_package() -> None:
    """No module of the grader imports the checks; only the CLI says where they are."""
    for path in GRADER.rglob("*.py"):
        assert not {m for m in grader_imports(path) if m.startswith("checks")}, path.name
    assert 'CHECKS_PACKAGE = "checks"' in (GRADER / "cli" / "app.py").read_text("utf-8")


def test_nothing_imports_the_cli_or_its_output() -> None:
    """The CLI and its output module are the top: nothing below imports them."""
    for path in [*GRADER.rglob("*.py"), *(ROOT / "checks").glob("*.py")]:
        if path.is_relative_to(GRADER / "cli") or path.name == "__main__.py":
            continue
        top = {m for m in grader_imports(path) if m.startswith("grader.cli")}
        assert not top, path.name


def test_checks_import_neither_runner_nor_registry_internals() -> None:
    """A check module sees the context, the driver and the model; the runner stays out of it."""
    for path in (ROOT / "checks").glob("*.py"):
        assert not {m for m in grader_imports(path) if m.startswith("grader.engine.runner")}, (
            path.name
        )
