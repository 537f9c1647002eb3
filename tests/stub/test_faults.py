"""Rule parsing and matching: pure logic, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from reference.stub.faults import (
    FAULT_TYPES,
    Decline,
    Delay,
    Dribble,
    ErrorStatus,
    Fault,
    Hang,
    LostResponse,
    Match,
    Reset,
    Rule,
    RuleBook,
    RuleError,
    parse_fault,
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
        ({"type": "status", "status": 429}, ErrorStatus(status=429, retry_after_s=None)),
        ({"type": "status", "status": 503, "delay_ms": 300}, ErrorStatus(503, None, 300)),
        ({"type": "status", "status": 503, "retry_after_s": 2}, ErrorStatus(503, 2)),
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


@pytest.mark.parametrize(
    ("fault", "rendered"),
    [
        (Delay(5), {"type": "delay", "delay_ms": 5, "jitter_ms": 0}),
        (Dribble(), {"type": "dribble", "interval_ms": 100, "body_bytes": 100}),
        (Hang(), {"type": "hang", "max_hold_ms": 60_000}),
        (
            ErrorStatus(503, delay_ms=7),
            {"type": "status", "status": 503, "retry_after_s": None, "delay_ms": 7},
        ),
        (Decline(), {"type": "decline"}),
        (Reset(), {"type": "reset"}),
        (LostResponse(), {"type": "lost_response"}),
    ],
)
def test_faults_render_and_parse_back(fault: Fault, rendered: dict[str, Any]) -> None:
    """to_dict gives the type then every field in order (the journal shows it), and parses back."""
    assert fault.to_dict() == rendered
    assert list(fault.to_dict()) == list(rendered)
    assert parse_fault(rendered) == fault


def test_every_fault_type_is_parsed_and_named_when_unknown() -> None:
    """The parser knows every type of the Fault union, and lists them all for an unknown one."""
    assert len(FAULT_TYPES) == 7
    with pytest.raises(RuleError) as refused:
        parse_fault({"type": "explode"})
    assert str(refused.value).endswith(", ".join(cls.TYPE for cls in FAULT_TYPES))


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"type": "dribble", "interval_ms": None}, Dribble()),
        ({"type": "status", "status": 503, "retry_after_s": None}, ErrorStatus(503)),
        ({"type": "status", "status": 503, "delay_ms": None}, ErrorStatus(503)),
    ],
)
def test_null_gives_the_default(fault: dict[str, Any], expected: Fault) -> None:
    """A null field takes its default, None for an optional one, as an absent field does."""
    assert parse_fault(fault) == expected


@pytest.mark.parametrize(
    ("fault", "complaint"),
    [
        ({"type": "delay", "delay_ms": None}, "'delay_ms' must be an integer >= 0"),
        ({"type": "status", "retry_after_s": 1}, "a status fault needs 'status'"),
        ({"type": "status", "status": 503, "retry_after_s": -1}, "'retry_after_s' must be"),
        ({"type": "dribble", "body_bytes": 0}, "'body_bytes' must be an integer >= 1"),
        ({"type": "hang", "max_hold_ms": "1"}, "'max_hold_ms' must be an integer >= 0"),
        ({"type": "reset", "delay_ms": 1}, r"unknown key 'delay_ms' in reset fault \(expected: no"),
        ({"type": None}, "unknown fault type None"),
        ("status", "'fault' must be a JSON object"),
    ],
)
def test_bad_faults_are_refused_with_a_reason(fault: object, complaint: str) -> None:
    """Each fault field is read from its dataclass field: required, minimum, no unknown keys."""
    with pytest.raises(RuleError, match=complaint):
        parse_fault(fault)


def test_faults_check_their_fields_when_built() -> None:
    """A fault the stub would refuse cannot be built in Python either (the grader builds them)."""
    with pytest.raises(RuleError, match="4xx or 5xx"):
        ErrorStatus(600)
    with pytest.raises(RuleError, match="'status' must be an integer >= 400"):
        ErrorStatus(200)
    with pytest.raises(RuleError, match="'delay_ms' must be an integer >= 0"):
        Delay(delay_ms=-1)


def test_match_bounds_are_inclusive() -> None:
    """amount_min and amount_max include their own values; amount_cents is exact."""
    ranged = Match(amount_min=10, amount_max=20)
    assert [ranged.matches(a) for a in (9, 10, 20, 21)] == [False, True, True, False]
    exact = Match(amount_cents=15)
    assert [exact.matches(a) for a in (14, 15, 16)] == [False, True, False]


def test_an_attempt_without_an_amount_passes_only_an_unbounded_match() -> None:
    """No amount passes Match() and fails any bound: the journal's rule for unreadable bodies."""
    assert Match().matches(None)
    assert not any(m.matches(None) for m in (Match(amount_cents=1), Match(amount_min=0)))
    assert not Match(amount_max=10).matches(None)


def test_match_within_a_range_takes_exactly_its_amounts() -> None:
    """Match.within(range) bounds a match to the range's own amounts (stop excluded)."""
    match = Match.within(range(100, 105))
    assert match == Match(amount_min=100, amount_max=104)
    assert [match.matches(a) for a in (99, 100, 104, 105)] == [False, True, True, False]


@pytest.mark.parametrize("amounts", [range(5, 5), range(1, 10, 2)])
def test_match_within_refuses_what_bounds_cannot_say(amounts: range) -> None:
    """An empty range or a stepped one cannot be two inclusive bounds: a ValueError."""
    with pytest.raises(ValueError, match="step 1"):
        Match.within(amounts)


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
    chosen = [book.select(amount) for amount in range(1, 50)]
    holds = [s.hold_ms for s in chosen if s is not None]
    assert len(holds) == 49
    assert all(100 <= h <= 150 for h in holds) and len(set(holds)) > 1
    last = chosen[-1]
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
