"""Rule parsing and matching: pure logic, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from reference.stub.faults import (
    Decline,
    Delay,
    Dribble,
    Hang,
    LostResponse,
    Match,
    Reset,
    Rule,
    RuleBook,
    RuleError,
    Status,
    parse_rule,
)


def book_with(*rules: dict[str, Any], seed: int = 0) -> RuleBook:
    """Build a rule book holding ``rules`` in order."""
    book = RuleBook(seed)
    for rule in rules:
        book.add(parse_rule(rule))
    return book


def fired(book: RuleBook, amounts: list[int]) -> list[int | None]:
    """Return the id of the rule that fires for each amount in turn (None: none fired)."""
    return [s.rule_id if (s := book.select(a)) is not None else None for a in amounts]


def test_minimal_rule_matches_everything_always() -> None:
    """A rule with only a fault matches every amount and has no firing limits."""
    rule = parse_rule({"fault": {"type": "decline"}})
    assert rule == Rule(match=Match(), fault=Decline())
    assert rule.match.matches(1) and rule.match.matches(10**9)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"type": "delay", "delay_ms": 5}, Delay(delay_ms=5, jitter_ms=0)),
        ({"type": "dribble"}, Dribble(interval_ms=100, body_bytes=100)),
        ({"type": "dribble", "interval_ms": 0}, Dribble(interval_ms=0, body_bytes=100)),
        ({"type": "hang"}, Hang(max_hold_ms=60_000)),
        ({"type": "status", "status": 429}, Status(status=429, retry_after_s=None)),
        ({"type": "status", "status": 503, "delay_ms": 300}, Status(503, None, 300)),
        ({"type": "status", "status": 503, "retry_after_s": 2}, Status(503, 2)),
        ({"type": "reset"}, Reset()),
        ({"type": "lost_response"}, LostResponse()),
    ],
)
def test_faults_parse_with_their_defaults(fault: dict[str, Any], expected: object) -> None:
    """Each fault type parses, with the documented defaults filled in."""
    assert parse_rule({"fault": fault}).fault == expected


@pytest.mark.parametrize(
    ("rule", "complaint"),
    [
        ({"fault": {"type": "explode"}}, "unknown fault type"),
        ({"match": {}}, "needs a 'fault'"),
        ({"fault": {"type": "decline"}, "firstn": 2}, "unknown key 'firstn'"),
        ({"fault": {"type": "delay", "delay": 5}}, "unknown key 'delay'"),
        ({"fault": {"type": "delay"}}, "needs 'delay_ms'"),
        ({"fault": {"type": "delay", "delay_ms": -1}}, "'delay_ms' must be an integer"),
        ({"fault": {"type": "delay", "delay_ms": True}}, "'delay_ms' must be an integer"),
        ({"fault": {"type": "status", "status": 200}}, "'status' must be an integer >= 400"),
        ({"fault": {"type": "status", "status": 600}}, "4xx or 5xx"),
        ({"fault": {"type": "decline"}, "rate": 1.5}, "'rate' must be a number"),
        ({"fault": {"type": "decline"}, "first_n": 0}, "'first_n' must be an integer >= 1"),
        ({"fault": {"type": "decline"}, "match": {"amount_min": 5, "amount_max": 4}}, "above"),
        ({"fault": {"type": "decline"}, "match": []}, "'match' must be a JSON object"),
        ([], "a rule is a JSON object"),
    ],
)
def test_bad_rules_are_refused_with_a_reason(rule: object, complaint: str) -> None:
    """A malformed rule raises RuleError saying what is wrong, rather than never firing."""
    with pytest.raises(RuleError, match=complaint):
        parse_rule(rule)


def test_match_bounds_are_inclusive() -> None:
    """amount_min and amount_max include their own values; amount_cents is exact."""
    ranged = Match(amount_min=10, amount_max=20)
    assert [ranged.matches(a) for a in (9, 10, 20, 21)] == [False, True, True, False]
    exact = Match(amount_cents=15)
    assert [exact.matches(a) for a in (14, 15, 16)] == [False, True, False]


def test_first_n_counts_each_amount_separately() -> None:
    """first_n fires on the first N attempts of each distinct amount, then lets them through."""
    book = book_with({"fault": {"type": "decline"}, "first_n": 2})
    assert fired(book, [7, 7, 8, 7, 8, 8, 9]) == [1, 1, 1, None, 1, None, 1]


def test_times_caps_the_total() -> None:
    """A rule with ``times: N`` fires at most N times in total, whatever the amounts."""
    book = book_with({"fault": {"type": "decline"}, "times": 2})
    assert fired(book, [1, 2, 3, 4]) == [1, 1, None, None]


def test_rate_is_reproducible_from_the_seed() -> None:
    """The same seed gives the same firing sequence; another seed gives another."""
    rule = {"fault": {"type": "decline"}, "rate": 0.5}
    amounts = list(range(1, 65))
    first = fired(book_with(rule, seed=3), amounts)
    assert first == fired(book_with(rule, seed=3), amounts)
    assert first != fired(book_with(rule, seed=4), amounts)
    assert 16 < first.count(1) < 48


def test_rules_are_tried_in_order_and_the_first_firing_one_wins() -> None:
    """A rule that matches but does not fire (first_n spent) lets the next rule apply."""
    book = book_with(
        {"fault": {"type": "status", "status": 503}, "first_n": 1},
        {"fault": {"type": "decline"}, "match": {"amount_min": 100}},
    )
    assert fired(book, [5, 5, 100, 100]) == [1, None, 1, 2]
    assert [r["fired"] for r in book.rules()] == [2, 1]


def test_delay_jitter_stays_within_bounds() -> None:
    """A delay's hold is delay_ms plus a uniform draw in [0, jitter_ms], and is journaled."""
    book = book_with({"fault": {"type": "delay", "delay_ms": 100, "jitter_ms": 50}})
    selections = [book.select(amount) for amount in range(1, 50)]
    holds = [s.hold_ms for s in selections if s is not None]
    assert len(holds) == 49
    assert all(100 <= h <= 150 for h in holds) and len(set(holds)) > 1
    last = selections[-1]
    assert last is not None and last.describe()["hold_ms"] == round(last.hold_ms, 3)


def test_rule_json_round_trips() -> None:
    """A rule rendered by the admin API parses back to the same rule."""
    rule = RuleBook(0).add(
        parse_rule(
            {
                "match": {"amount_min": 1, "amount_max": 9},
                "fault": {"type": "dribble", "interval_ms": 5},
                "first_n": 1,
                "rate": 0.25,
                "times": 3,
            }
        )
    )
    rendered = rule.to_dict()
    assert rendered.pop("id") == 1
    assert parse_rule(rendered) == Rule(rule.match, rule.fault, 1, 0.25, 3)


def test_removing_and_clearing_rules() -> None:
    """Rules can be removed by id or all at once, and ids are never reused."""
    book = book_with({"fault": {"type": "decline"}}, {"fault": {"type": "reset"}})
    assert book.remove(1) and not book.remove(1)
    assert fired(book, [1]) == [2]
    assert book.clear() == 1
    assert fired(book, [1]) == [None]
    assert book.add(parse_rule({"fault": {"type": "decline"}})).id == 3
