"""Every check has a mutant that fails it, and every mutant still applies: without grading.

The mutants are graded for real in tests/e2e/test_milestones.py (slow); this holds their
bookkeeping to the registered checks and their edits to today's reference solution, so that a
renamed check, a new check without a mutant, or a reference edit that a mutant no longer
matches is caught in a second, not after minutes of grading.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from grader.cli.app import catalog
from tests.e2e.test_milestones import EVIDENCE
from tests.mutants import MUTANTS, REFERENCE, UNMUTABLE, Mutant, materialize

SPECS = {spec.id: spec for spec in catalog().specs}


def test_every_check_is_failed_by_a_mutant() -> None:
    """Each registered check is in some mutant's `fails`, or is exempt with a reason."""
    failed = {check_id for mutant in MUTANTS for check_id in mutant.fails}
    missing = sorted(set(SPECS) - failed - set(UNMUTABLE))
    assert missing == [], f"checks without a mutant that fails them: {missing}"


def test_exemptions_cannot_fail() -> None:
    """An exempt check is registered, no mutant claims it, and its code has no FAIL path."""
    claimed = {check_id for mutant in MUTANTS for check_id in mutant.fails}
    for check_id, reason in UNMUTABLE.items():
        assert check_id in SPECS, f"{check_id} is exempt but not registered"
        assert reason, f"{check_id} is exempt without a reason"
        assert check_id not in claimed, f"{check_id} has a mutant now: drop its exemption"
        # If the check learns to FAIL, a learner's repo can fail it, and so can a mutant.
        source = inspect.getsource(SPECS[check_id].func)
        assert "CheckFailed" not in source, f"{check_id} can FAIL now: give it a mutant"


def test_mutant_names_are_unique() -> None:
    """Test ids are mutant names, and `-k NAME` must pick exactly one."""
    names = [mutant.name for mutant in MUTANTS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_verdicts_name_checks_of_its_milestone(mutant: Mutant) -> None:
    """`fails` and `skips` name registered checks of the mutant's own milestone, disjointly."""
    milestone = {spec.id for spec in catalog().for_milestone(mutant.milestone)}
    assert milestone, f"{mutant.milestone} has no checks"
    assert mutant.fails, "a mutant that fails nothing proves nothing"
    assert mutant.fails <= milestone, sorted(mutant.fails - milestone)
    assert mutant.skips <= milestone, sorted(mutant.skips - milestone)
    assert not mutant.fails & mutant.skips, sorted(mutant.fails & mutant.skips)


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_edits_apply_to_the_reference(mutant: Mutant, tmp_path: Path) -> None:
    """Each edit matches exactly once, changes something, and leaves files that still parse."""
    assert mutant.edits
    # materialize() raises unless each edit's text occurs exactly once where it is applied.
    repo = materialize(REFERENCE, tmp_path / "repo", mutant.edits)
    for path in {edit.path for edit in mutant.edits}:
        text = (repo / path).read_text("utf-8")
        assert text != (REFERENCE / path).read_text("utf-8"), f"{path} is unchanged"
        # A mutant must break a behaviour, not the import: a syntax error fails every check.
        if path.endswith(".py"):
            compile(text, path, "exec")
        elif path.endswith((".yaml", ".yml")):
            yaml.safe_load(text)


def test_evidence_expectations_name_mutants_and_their_targets() -> None:
    """Each expectation on a mutant's evidence names a mutant and a check it fails."""
    by_name = {mutant.name: mutant for mutant in MUTANTS}
    for name, (check_id, shown) in EVIDENCE.items():
        assert name in by_name, f"EVIDENCE names no mutant {name!r}"
        assert check_id in by_name[name].fails, f"{name} does not fail {check_id}"
        assert shown


def test_only_a_statistical_miss_earns_a_second_grading() -> None:
    """A mutant is graded again only when m3's storm checks alone missed their verdict."""
    mutant = next(m for m in MUTANTS if m.name == "fixed-delay-instead-of-backoff")
    ids = ["m3.transient-heals", "m3.jitter-spread", "m3.backoff-grows"]
    wanted = mutant.verdicts(ids)
    assert not mutant.missed_by_chance(wanted)
    assert mutant.missed_by_chance({**wanted, "m3.backoff-grows": "PASS"})
    assert mutant.missed_by_chance({**wanted, "m3.jitter-spread": "INCONCLUSIVE"})
    assert not mutant.missed_by_chance({**wanted, "m3.transient-heals": "FAIL"})
    both = {**wanted, "m3.backoff-grows": "PASS", "m3.transient-heals": "ERROR"}
    assert not mutant.missed_by_chance(both)
