"""Every check proven both ways: the reference passes, each mutant fails exactly its target.

These grade real learner repos: the reference stub and the learner's uvicorn run as processes on
loopback, driven by the real `failfast` CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from grader.cli.app import catalog
from tests.e2e.conftest import CiRun
from tests.mutants import MUTANTS, REFERENCE, TEMPLATE, Mutant, materialize

pytestmark = pytest.mark.slow


# The reference passing every milestone is proven by one `failfast check all` run, in
# tests/e2e/test_ci.py; the template's milestones 1 to 3 by one `--through` run (conftest.py).


def test_template_fails_budget_table(template_through_3: CiRun) -> None:
    """The template's table is not filled in: m1 fails on it and skips what depends on it."""
    run = template_through_3
    assert run.statuses("milestone-1") == {
        "m1.budgets-valid": "FAIL",
        "m1.layers-ordered": "SKIP",
        "m1.retry-policy": "SKIP",
        "m1.nginx-agrees": "SKIP",
        "m1.k6-thresholds": "SKIP",
    }
    assert (
        "budgets.yaml:14: layers.nginx.timeout_s must be a number"
        in run.check("m1.budgets-valid")["measured"]
    )
    assert run.run.returncode == 1


def test_template_fails_live_timeouts(template_through_3: CiRun) -> None:
    """The naive template waits on httpx's 5 s defaults: each timeout check fails, with evidence."""
    run = template_through_3
    assert run.statuses("milestone-2") == {
        "m2.healthy-checkout": "PASS",
        "m2.read-timeout": "FAIL",
        "m2.slow-body": "FAIL",
        "m2.connect-timeout": "FAIL",
        # The template's client is async, so stuck checkouts do not starve the event loop.
        "m2.healthz-under-load": "PASS",
        # Through nginx only once the api gives up on its own (m2.read-timeout).
        "m2.edge-answers-first": "SKIP",
    }
    assert run.report["budgets"]["origin"] == "course"
    read = run.check("m2.read-timeout")
    # httpx's default read timeout is 5 s, and the template lets the timeout escape as a 500.
    assert read["data"]["status"] == 500
    assert read["data"]["attempts"][0]["abandoned_after_s"] == pytest.approx(5.0, abs=0.3)
    assert read["api_output"], "a failing live check shows the API's last output lines"
    assert run.run.returncode == 1


def test_template_does_not_retry(template_through_3: CiRun) -> None:
    """The template never retries: the retry checks fail, with the course's policy as the bar."""
    run = template_through_3
    assert run.statuses("milestone-3") == {
        "m3.transient-heals": "FAIL",
        "m3.attempts-bounded": "FAIL",
        # One attempt is also what a decline should get, and one slow attempt fits the budget.
        "m3.no-retry-on-decline": "PASS",
        "m3.retries-fit-budget": "PASS",
        "m3.jitter-spread": "SKIP",
        "m3.backoff-grows": "SKIP",
    }
    assert "course's example policy" in run.check("m3.attempts-bounded")["expected"]
    assert run.run.returncode == 1


def test_template_has_no_retry_budget_to_recover(tmp_path: Path, grade_json: Any) -> None:
    """Without retries, a blip is never absorbed; an outage is not amplified either."""
    run = grade_json("milestone-4", materialize(TEMPLATE, tmp_path / "repo"))
    assert run.statuses() == {
        "m4.blip-heals": "FAIL",
        "m4.outage-capped": "PASS",
        "m4.budget-shared": "PASS",
        "m4.recovers": "FAIL",
    }
    assert run.check("m4.outage-capped")["data"]["per_checkout"] == 1.0


def test_a_bucket_that_holds_is_sent_every_outage_checkout(reference_all: CiRun) -> None:
    """Sending stops early only once FAIL is certain: the reference gets all 200 checkouts."""
    for check_id in ("m4.outage-capped", "m4.budget-shared"):
        data = reference_all.check(check_id)["data"]
        assert (data["checkouts"], data["stopped_early"]) == (200, False), data


def test_the_reference_reports_the_load_it_held(reference_all: CiRun) -> None:
    """m5's race and the load test's slow phase held, and each check says how much of them."""
    race = reference_all.check("m5.concurrent-double-submit")
    data = race["data"]
    # Both submits in flight together, the later sent before the provider answered the first.
    assert data["race_held"] is True and data["in_flight_together_s"] > 0, data
    # The provider answers the first attempt hold_ms after it arrived, and the first attempt
    # arrives a few ms after the submits are sent: hold_ms plus how long it took to get there.
    assert 0 < data["second_sent_before_first_answer_s"] < data["hold_ms"] / 1000 + 1.0, data
    assert data["sent_apart_s"] < data["hold_ms"] / 1000
    assert "in flight together for" in race["measured"]
    for check_id in LOAD_TEST:
        check = reference_all.check(check_id)
        held = check["data"]
        # The reference gives up on a held charge at its 2.8 s deadline: k6's 10 checkouts a
        # second keep about 28 held at the provider at once.
        assert 1 <= held["slow_held_most"] <= held["slow_checkouts_at_provider"], held
        assert 0 < held["slow_held_median"] <= held["slow_held_most"], held
        assert held["k6_vus_max"] >= 1 and held["k6_dropped_iterations"] >= 0, held
        assert held["recovery_requests"] > 0 and held["recovery_rate_per_s"] > 0, held
        assert "slow phase: the provider held up to" in check["measured"]


LOAD_TEST = (
    "lt.k6-run",
    "lt.slow-phase-fails-fast",
    "lt.recovery-latency",
    "lt.recovery-succeeds",
    "lt.healthz-fast",
)


def test_template_charges_twice(tmp_path: Path, grade_json: Any) -> None:
    """The template ignores Idempotency-Key: a double submit is a double charge."""
    run = grade_json("milestone-5", materialize(TEMPLATE, tmp_path / "repo"))
    assert run.statuses() == {
        "m5.double-submit": "FAIL",
        "m5.replayed-from-store": "FAIL",
        "m5.shared-across-instances": "SKIP",
        "m5.concurrent-double-submit": "SKIP",
        "m5.lost-response": "FAIL",
        "m5.key-reuse-other-body": "FAIL",
        "m5.distinct-keys": "PASS",
    }
    story = run.check("m5.double-submit")["figure"]
    assert "charged 2 time(s) in 2 provider attempt(s)" in story[0]
    assert sum("CHARGED" in line for line in story) == 2


def test_template_load_test_shows_the_hang(tmp_path: Path, grade_json: Any) -> None:
    """Under real k6 the template's slow phase crosses its threshold, with the p95 measured."""
    run = grade_json("loadtest", materialize(TEMPLATE, tmp_path / "repo"))
    assert run.statuses() == {
        "lt.k6-run": "PASS",
        "lt.slow-phase-fails-fast": "FAIL",
        "lt.recovery-latency": "PASS",
        "lt.recovery-succeeds": "PASS",
        "lt.healthz-fast": "PASS",
    }
    slow = run.check("lt.slow-phase-fails-fast")
    # httpx's default 5 s timeout is what the template's customers wait.
    assert slow["data"]["value"] == pytest.approx(5000, abs=400)
    assert "p(95) = 5," in slow["measured"] and slow["figure"]
    # Each held checkout stays at the provider until httpx gives up at 5 s.
    assert slow["data"]["slow_held_most"] >= 1 and "held up to" in slow["measured"]


# Where a mutant could fail its target for another reason than the one it was written for,
# what the target's evidence (measured, then figure) must show.
EVIDENCE = {
    # Not a late answer: the api's 504 in time, replaced by the error_page's HTML.
    "nginx-replaces-the-api-answer": ("m2.edge-answers-first", "a body that is not JSON: '<html>"),
    # Not a missing payment or a second charge: a payment without the charge's id.
    "payment-is-not-the-charge": ("m2.healthy-checkout", "payment id None is not the charge"),
    # The repeat reached the provider, which replayed the charge: no second charge.
    "completed-key-replayed-by-the-provider": ("m5.replayed-from-store", ", replayed ch_"),
    # The two keys met at the provider as one, which replayed the first charge.
    "provider-key-from-the-body": ("m5.distinct-keys", ", replayed ch_"),
    # The trickled body held the checkout open: the timeouts per read never fired.
    "per-attempt-timeouts-no-deadline": ("m2.slow-body", "still open after"),
    # Three attempts a checkout: the count passed what 200 checkouts may make, and sending
    # stopped there.
    "no-retry-budget": ("m4.outage-capped", "; stopped there: 200 checkouts may make no more"),
}


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_fails_its_target_only(mutant: Mutant, tmp_path: Path, grade_json: Any) -> None:
    """A mutant fails the checks it breaks, and passes (or skips) every other check."""
    repo = materialize(REFERENCE, tmp_path / "repo", mutant.edits)
    run = grade_json(mutant.milestone, repo)
    if mutant.missed_by_chance(run.statuses()):
        run = grade_json(mutant.milestone, repo)
    expected = mutant.verdicts(spec.id for spec in catalog().for_milestone(mutant.milestone))
    assert run.statuses() == expected, run.report
    assert run.returncode == 1
    for check_id in mutant.fails:
        entry = run.check(check_id)
        assert entry["measured"] and entry["expected"] and entry["hint"], entry
    if mutant.name in EVIDENCE:
        check_id, shown = EVIDENCE[mutant.name]
        entry = run.check(check_id)
        assert shown in "\n".join([entry["measured"], *(entry.get("figure") or [])]), entry
