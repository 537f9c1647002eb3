"""A check imports the grader through grader.checkkit alone, and the kit lists what it offers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import grader.checkkit as checkkit
from tests.conftest import ROOT

CHECK_MODULES = sorted((ROOT / "checks").glob("*.py"))
KIT = ROOT / "grader" / "checkkit.py"
# What a check module may import of the grader's and the checks' own: the kit, and the helpers
# the checks share (the load held per measurement, the service's connection attempts).
# The kit, and the helper modules checks share (none of them registers a check): a check module
# never imports another check module, so each can be read, moved or split on its own.
ALLOWED = {
    "grader.checkkit",
    "checks.common",
    "checks.stats",
    "checks.held",
    "checks.connects",
    "checks.files",
    "checks.keys",
    "checks.k6summary",
    "checks.outage",
    "checks.warmup",
}


def own_imports(path: Path) -> dict[str, list[str]]:
    """The grader's and the checks' modules ``path`` imports (at any depth), with their names."""
    found: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, [])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.setdefault(node.module, []).extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):  # relative: `from . import common`
            found.setdefault(f"checks.{node.module or ''}", [])
    return {m: names for m, names in found.items() if m.split(".")[0] in ("grader", "checks")}


def test_there_are_checks_to_look_at() -> None:
    """The glob finds the check modules (an empty list would pass everything below)."""
    assert {"common.py", "m1_budget_table.py", "m5_idempotency.py"} <= {
        p.name for p in CHECK_MODULES
    }


@pytest.mark.parametrize("path", CHECK_MODULES, ids=lambda p: p.name)
def test_a_check_module_imports_the_grader_only_through_the_kit(path: Path) -> None:
    """The kit, checks.common, checks.stats and the shared helpers: nothing else of ours."""
    imported = set(own_imports(path))
    assert imported <= ALLOWED, f"{path.name} imports {sorted(imported - ALLOWED)}"


@pytest.mark.parametrize("path", CHECK_MODULES, ids=lambda p: p.name)
def test_what_a_check_takes_from_the_kit_is_on_its_list(path: Path) -> None:
    """A name a check imports from the kit is in its ``__all__``, not an accident of its imports."""
    taken = set(own_imports(path).get("grader.checkkit", []))
    assert "*" not in taken, f"{path.name}: name what you import from the kit"
    assert taken <= set(checkkit.__all__), f"{path.name}: {sorted(taken - set(checkkit.__all__))}"


def test_the_kit_lists_every_name_it_offers_once() -> None:
    """``__all__`` names each public name of the kit once, and every name on it exists."""
    listed = checkkit.__all__
    assert len(listed) == len(set(listed))
    assert all(hasattr(checkkit, name) for name in listed)
    public = {name for name in vars(checkkit) if not name.startswith("_")} - {"annotations"}
    assert public == set(listed), sorted(public ^ set(listed))


def test_each_group_of_the_kit_is_under_a_comment() -> None:
    """``__all__`` is in groups, each opened by a one-line comment saying what it is for."""
    lines = KIT.read_text("utf-8").split("__all__ = [", 1)[1].split("\n]", 1)[0].splitlines()
    body = [line.strip() for line in lines[1:] if line.strip()]
    assert body[0].startswith("# "), "the first group has no comment"
    groups = [line for line in body if line.startswith("#")]
    assert len(groups) >= 5
    assert all(len(comment) <= 100 for comment in groups)
