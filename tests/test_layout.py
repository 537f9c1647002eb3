"""The layout holds: import-linter's contracts (.importlinter) and the module size rule.

The contracts are run by import-linter itself, on this tree; a copy of the tree with one
deliberate violation per kind proves they can fail.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CONTRACTS = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the packages under ``root``, with the contract file there."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / ".importlinter"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_contracts_hold() -> None:
    """Every contract of .importlinter is kept: layers, forbidden imports, no circle."""
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("where", "line", "contract"),
    [
        ("grader/formats/_probe.py", "import grader.engine.runner", "Formats import only"),
        ("grader/model.py", "import grader.cli.app", "The CLI above"),
        ("checks/_probe.py", "import grader.engine.runner", "Checks import the grader only"),
        ("grader/engine/_probe.py", "import grader.backends.local.stack", "Nothing outside"),
        # grader.course imports grader.learner: the reverse closes a circle.
        ("grader/learner/_probe.py", "import grader.course.file", "No import circle"),
    ],
)
def test_a_deliberate_violation_breaks_its_contract(
    tmp_path: Path, where: str, line: str, contract: str
) -> None:
    """A copy of the tree with one forbidden import: lint-imports fails and names the contract."""
    for name in ("grader", "checks", "reference"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(CONTRACTS, tmp_path / ".importlinter")
    # A new module, or a line added to an existing one (the model itself).
    probe = tmp_path / where
    before = probe.read_text("utf-8") if probe.exists() else '"""A deliberate violation."""\n'
    probe.write_text(f"{before}\n{line}\n", "utf-8")
    done = lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout
    assert f"{contract}" in done.stdout and "BROKEN" in done.stdout, done.stdout


def size_rule() -> tuple[int, dict[str, str]]:
    """The module size limit and its exceptions (path: reason), from the contract file."""
    config = configparser.ConfigParser()
    config.read(CONTRACTS, encoding="utf-8")
    section = config["failfast:module-size"]
    exceptions = {}
    for entry in section.get("exceptions", "").strip().splitlines():
        path, _, reason = entry.partition(":")
        assert reason.strip(), f"an exception needs its one-line reason: {entry!r}"
        exceptions[path.strip()] = reason.strip()
    return int(section["max_lines"]), exceptions


def test_no_module_of_the_grader_or_the_checks_is_over_the_size_limit() -> None:
    """Each module of grader/ and checks/ has at most 500 lines, or a stated exception."""
    limit, exceptions = size_rule()
    over = {
        str(path.relative_to(ROOT)): count
        for folder in ("grader", "checks")
        for path in (ROOT / folder).rglob("*.py")
        if (count := len(path.read_text("utf-8").splitlines())) > limit
        and str(path.relative_to(ROOT)) not in exceptions
    }
    assert not over, f"over {limit} lines: {over}"
    assert all((ROOT / path).exists() for path in exceptions), exceptions
