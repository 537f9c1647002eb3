"""The stub's fault vocabulary: which charge attempts a rule matches, when it fires, what it does.

Pure logic, no sockets: ``server.py`` asks a ``RuleBook`` what to do with each well-formed
``POST /charge`` and carries it out. A rule, as posted to the admin API (``POST /faults``)::

    {"match": {"amount_min": 5000, "amount_max": 5999},
     "fault": {"type": "status", "status": 503, "retry_after_s": 1},
     "first_n": 2, "rate": null, "times": null}

match: which attempts (all keys optional, bounds inclusive; ``{}`` matches every charge attempt)
    amount_cents   exactly this amount
    amount_min     at least this amount
    amount_max     at most this amount

firing: when a matching attempt gets the fault (all optional and combinable; none = always)
    first_n: N     only the first N matching attempts of each distinct amount, then let it through
                   ("fail the first N attempts of each checkout": a check gives each checkout its
                   own amount)
    rate: p        with probability p, drawn from an RNG seeded with (seed, rule id)
    times: N       at most N times in total

Rules are tried in the order they were added; the first that matches and fires applies and the
rest are not consulted, so an attempt gets at most one fault.

fault: what the stub does ("type" plus these fields; "=" gives a default)
    delay          delay_ms, jitter_ms=0    hold delay_ms + uniform [0, jitter_ms] before the
                                            headers, then charge and answer 200. A client that
                                            gives up during the hold is not charged.
    dribble        interval_ms=100,         charge, send the 200 headers at once with
                   body_bytes=100           Content-Length = body_bytes, then the JSON body
                                            padded with spaces, one byte every interval_ms.
    hang           max_hold_ms=60000        never answer: hold until the client gives up or
                                            max_hold_ms passes, then close.
    status         status, retry_after_s=   answer ``status`` (400-599) with {"error": ...}, and
                   null, delay_ms=0         a Retry-After header when retry_after_s is given;
                                            after holding delay_ms first (a slow failure).
                                            No charge.
    decline        (none)                   402 {"error": "card_declined"}. No charge.
    reset          (none)                   read the request, then close with a TCP RST.
                                            No charge.
    lost_response  (none)                   charge (a replayed Idempotency-Key charges nothing
                                            new), then close without answering (FIN).

Each fault is a frozen dataclass whose fields are its JSON fields, all integers with a minimum (null
on a field with a default gives the default). ``parse_fault`` reads them generically from the
dataclass fields, refusing unknown keys, missing required fields and values out of range, and
``to_dict`` writes them back. The grader builds the same dataclasses (``grader.stubclient``),
so a misspelled fault type or field there is a type error rather than a 400 from the stub.

Two course knobs act when no rule fires, and the journal shows them as faults of their own:
FAIL_RATE answers 503 to that fraction of attempts (``{"type": "fail_rate"}``), LATENCY_MS holds
every request before the stub acts on it (``{"type": "latency", "delay_ms": N}``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, ClassVar, TypeAlias, get_args, get_type_hints

DEFAULT_DRIBBLE_INTERVAL_MS = 100
DEFAULT_DRIBBLE_BODY_BYTES = 100
DEFAULT_HANG_MAX_HOLD_MS = 60_000


class RuleError(ValueError):
    """A fault rule or fault that cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Match:
    """Which charge attempts a rule applies to; every bound is inclusive, None is no bound."""

    amount_cents: int | None = None
    amount_min: int | None = None
    amount_max: int | None = None

    @classmethod
    def within(cls, amounts: range) -> Match:
        """Match exactly the amounts of ``amounts``: a non-empty range of consecutive amounts."""
        # Bounds cannot express a step, and an empty range would be a rule that never fires.
        if amounts.step != 1 or not amounts:
            raise ValueError(f"a match needs a non-empty range with step 1, not {amounts!r}")
        return cls(amount_min=amounts.start, amount_max=amounts.stop - 1)

    @property
    def bounded(self) -> bool:
        """Whether any bound is set (a match without bounds takes every attempt)."""
        return any(b is not None for b in (self.amount_cents, self.amount_min, self.amount_max))

    def matches(self, amount_cents: int | None) -> bool:
        """Whether an attempt charging ``amount_cents`` falls under this match.

        An attempt without an amount (the stub could not read one from its body) falls only
        under a match without bounds.
        """
        if amount_cents is None:
            return not self.bounded
        if self.amount_cents is not None and amount_cents != self.amount_cents:
            return False
        if self.amount_min is not None and amount_cents < self.amount_min:
            return False
        return self.amount_max is None or amount_cents <= self.amount_max

    def to_dict(self) -> dict[str, Any]:
        """Render as the admin API shows it: only the bounds that are set."""
        bounds = {
            "amount_cents": self.amount_cents,
            "amount_min": self.amount_min,
            "amount_max": self.amount_max,
        }
        return {name: value for name, value in bounds.items() if value is not None}


def _at_least(minimum: int) -> dict[str, int]:
    """Field metadata of a fault's integer field: the least value it accepts."""
    return {"minimum": minimum}


@dataclass(frozen=True, slots=True)
class _FaultBase:
    """What every fault shares: a wire name, checks on construction, and its JSON form.

    A fault's fields are its JSON fields: ``parse_fault`` reads them, ``to_dict`` writes them,
    and every integer field is checked against its ``_at_least`` minimum when the fault is
    built, so the grader cannot build a fault the stub would refuse.
    """

    TYPE: ClassVar[str]

    def __post_init__(self) -> None:
        """Refuse what the stub would refuse: a field below its minimum, or what ``_check`` says."""
        for spec in _INT_FIELDS[type(self)]:
            value = getattr(self, spec.name)
            if value is not None or not spec.nullable:
                _int_at_least(spec.name, value, spec.minimum)
        self._check()

    def _check(self) -> None:
        """Check what a field's minimum cannot say; raise ``RuleError``."""

    def to_dict(self) -> dict[str, Any]:
        """Render as the admin API and the journal show it: the type, then every field."""
        return {"type": self.TYPE, **{f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True, slots=True)
class Delay(_FaultBase):
    """Hold the headers for ``delay_ms`` plus up to ``jitter_ms``, then charge and answer 200."""

    TYPE: ClassVar[str] = "delay"
    delay_ms: int = field(metadata=_at_least(0))
    jitter_ms: int = field(default=0, metadata=_at_least(0))


@dataclass(frozen=True, slots=True)
class Dribble(_FaultBase):
    """Charge, send the headers at once, then the body one byte every ``interval_ms``."""

    TYPE: ClassVar[str] = "dribble"
    interval_ms: int = field(default=DEFAULT_DRIBBLE_INTERVAL_MS, metadata=_at_least(0))
    body_bytes: int = field(default=DEFAULT_DRIBBLE_BODY_BYTES, metadata=_at_least(1))


@dataclass(frozen=True, slots=True)
class Hang(_FaultBase):
    """Never answer; close once the client gives up or ``max_hold_ms`` passes."""

    TYPE: ClassVar[str] = "hang"
    max_hold_ms: int = field(default=DEFAULT_HANG_MAX_HOLD_MS, metadata=_at_least(0))


@dataclass(frozen=True, slots=True)
class ErrorStatus(_FaultBase):
    """Answer ``status`` with a JSON error and no charge, with Retry-After when it is set.

    ``delay_ms`` holds first, watching the client: a provider that is slow *and* failing.
    """

    TYPE: ClassVar[str] = "status"
    status: int = field(metadata=_at_least(400))
    retry_after_s: int | None = field(default=None, metadata=_at_least(0))
    delay_ms: int = field(default=0, metadata=_at_least(0))

    def _check(self) -> None:
        """Refuse a status past 599: the field's minimum already refused those under 400."""
        if self.status > 599:
            raise RuleError("'status' must be a 4xx or 5xx code")


@dataclass(frozen=True, slots=True)
class Decline(_FaultBase):
    """Answer 402 card_declined, no charge: a 4xx that a client must never retry."""

    TYPE: ClassVar[str] = "decline"


@dataclass(frozen=True, slots=True)
class Reset(_FaultBase):
    """Read the request, then abort the connection with a TCP RST; no charge."""

    TYPE: ClassVar[str] = "reset"


@dataclass(frozen=True, slots=True)
class LostResponse(_FaultBase):
    """Commit the charge, then close without answering: the client cannot know it succeeded."""

    TYPE: ClassVar[str] = "lost_response"


# The one list of fault types: the parser's dispatch and its "known: ..." message derive from it.
Fault: TypeAlias = Delay | Dribble | Hang | ErrorStatus | Decline | Reset | LostResponse
FAULT_TYPES: tuple[type[Fault], ...] = get_args(Fault)


@dataclass(frozen=True, slots=True)
class _IntField:
    """How one integer field of a fault is read and checked."""

    name: str
    minimum: int
    nullable: bool  # typed `int | None`: JSON null is a value of its own
    required: bool  # no default: the JSON form must name it


def _int_fields(cls: type[Fault]) -> tuple[_IntField, ...]:
    """Read ``cls``'s fields; refuse, at import, a field the generic parser cannot read."""
    hints = get_type_hints(cls)
    specs = []
    for f in fields(cls):
        hint = hints[f.name]
        if hint not in (int, int | None) or "minimum" not in f.metadata:
            raise TypeError(
                f"{cls.__name__}.{f.name}: a fault field is an int or int | None with a minimum "
                f"(field(metadata=_at_least(n))), or parse_fault must learn to read it"
            )
        required = f.default is MISSING and f.default_factory is MISSING
        specs.append(_IntField(f.name, f.metadata["minimum"], hint is not int, required))
    return tuple(specs)


_INT_FIELDS: dict[type[_FaultBase], tuple[_IntField, ...]] = {
    cls: _int_fields(cls) for cls in FAULT_TYPES
}

# Faults that still go down the charge path (and so take part in idempotency): the others answer
# before any charge exists.
CHARGING_FAULTS: tuple[type[Fault], ...] = (Delay, Dribble, LostResponse)


@dataclass(frozen=True, slots=True)
class Rule:
    """A fault rule: what it matches, what it does, and when it fires."""

    match: Match
    fault: Fault
    first_n: int | None = None
    rate: float | None = None
    times: int | None = None
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Render as the admin API shows it."""
        return {
            "id": self.id,
            "match": self.match.to_dict(),
            "fault": self.fault.to_dict(),
            "first_n": self.first_n,
            "rate": self.rate,
            "times": self.times,
        }


@dataclass(frozen=True, slots=True)
class ChosenFault:
    """The fault chosen for one attempt; ``hold_ms`` is the delay drawn for it (jitter included)."""

    rule_id: int
    fault: Fault
    hold_ms: float = 0.0

    def describe(self) -> dict[str, Any]:
        """Render the fault as the journal records it, with the hold drawn for a delay."""
        described = self.fault.to_dict()
        if isinstance(self.fault, Delay):
            described["hold_ms"] = round(self.hold_ms, 3)
        return described


@dataclass(slots=True)
class _RuleState:
    """A rule's counters and RNGs: what makes ``first_n``, ``rate`` and ``times`` stateful."""

    rule: Rule
    rate_rng: random.Random
    jitter_rng: random.Random
    seen_by_amount: dict[int, int] = field(default_factory=dict)
    matched: int = 0
    fired: int = 0


class RuleBook:
    """The ordered fault rules of one stub, and the choice of a fault for each attempt."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._states: list[_RuleState] = []
        # Ids are never reused, even across clears, so a stale DELETE cannot hit a newer rule.
        self._next_id = 1

    def add(self, rule: Rule) -> Rule:
        """Append ``rule`` (its id is assigned here) and return it."""
        rule = replace(rule, id=self._next_id)
        self._next_id += 1
        # Strings seed random.Random through SHA-512, so the draws do not depend on PYTHONHASHSEED.
        self._states.append(
            _RuleState(
                rule=rule,
                rate_rng=random.Random(f"{self._seed}:rule:{rule.id}:rate"),
                jitter_rng=random.Random(f"{self._seed}:rule:{rule.id}:jitter"),
            )
        )
        return rule

    def remove(self, rule_id: int) -> bool:
        """Drop the rule with this id; False when there is none."""
        before = len(self._states)
        self._states = [s for s in self._states if s.rule.id != rule_id]
        return len(self._states) != before

    def clear(self) -> int:
        """Drop every rule; returns how many there were."""
        count = len(self._states)
        self._states = []
        return count

    def rules(self) -> list[dict[str, Any]]:
        """Every rule as the admin API shows it, with how often it matched and fired."""
        return [{**s.rule.to_dict(), "matched": s.matched, "fired": s.fired} for s in self._states]

    def select(self, amount_cents: int) -> ChosenFault | None:
        """Choose the fault for an attempt charging ``amount_cents``, or None to let it through."""
        for state in self._states:
            rule = state.rule
            if not rule.match.matches(amount_cents):
                continue
            state.matched += 1
            seen = state.seen_by_amount.get(amount_cents, 0) + 1
            state.seen_by_amount[amount_cents] = seen
            if rule.first_n is not None and seen > rule.first_n:
                continue
            if rule.times is not None and state.fired >= rule.times:
                continue
            # Drawn last, and only when the other conditions allow firing, so that the draws a
            # rule consumes depend only on the attempts it could have fired on.
            if rule.rate is not None and state.rate_rng.random() >= rule.rate:
                continue
            state.fired += 1
            hold_ms = 0.0
            if isinstance(rule.fault, Delay):
                hold_ms = rule.fault.delay_ms + state.jitter_rng.uniform(0, rule.fault.jitter_ms)
            return ChosenFault(rule_id=rule.id, fault=rule.fault, hold_ms=hold_ms)
        return None


# Parsing: the admin API's JSON to the values above, strictly, so that a typo in a rule is a 400
# that names it rather than a rule that silently never fires.

_MATCH_KEYS = frozenset({"amount_cents", "amount_min", "amount_max"})
_RULE_KEYS = frozenset({"match", "fault", "first_n", "rate", "times"})


def parse_rule(data: object) -> Rule:
    """Build a rule (id 0, assigned by ``RuleBook.add``) from its JSON form; raise ``RuleError``."""
    if not isinstance(data, Mapping):
        raise RuleError("a rule is a JSON object with 'fault' and optional 'match'")
    _reject_unknown(data, _RULE_KEYS, "rule")
    if "fault" not in data:
        raise RuleError("a rule needs a 'fault'")
    rate = data.get("rate")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0
    ):
        raise RuleError("'rate' must be a number from 0 to 1, or null")
    return Rule(
        match=parse_match({} if data.get("match") is None else data["match"]),
        fault=parse_fault(data["fault"]),
        first_n=_optional_int(data, "first_n", minimum=1),
        rate=None if rate is None else float(rate),
        times=_optional_int(data, "times", minimum=1),
    )


def parse_match(data: object) -> Match:
    """Build a ``Match`` from its JSON form; raise ``RuleError``."""
    if not isinstance(data, Mapping):
        raise RuleError("'match' must be a JSON object")
    _reject_unknown(data, _MATCH_KEYS, "match")
    match = Match(
        amount_cents=_optional_int(data, "amount_cents", minimum=1),
        amount_min=_optional_int(data, "amount_min", minimum=0),
        amount_max=_optional_int(data, "amount_max", minimum=0),
    )
    if (
        match.amount_min is not None
        and match.amount_max is not None
        and match.amount_min > match.amount_max
    ):
        raise RuleError("'amount_min' is above 'amount_max': the rule would match nothing")
    return match


_FAULTS_BY_TYPE: dict[str, type[Fault]] = {cls.TYPE: cls for cls in FAULT_TYPES}


def parse_fault(data: object) -> Fault:
    """Build a fault from its JSON form (``{"type": ..., ...}``); raise ``RuleError``."""
    if not isinstance(data, Mapping):
        raise RuleError("'fault' must be a JSON object with a 'type'")
    kind = data.get("type")
    cls = _FAULTS_BY_TYPE.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise RuleError(f"unknown fault type {kind!r}; known: {', '.join(_FAULTS_BY_TYPE)}")
    given = {k: v for k, v in data.items() if k != "type"}
    specs = _INT_FIELDS[cls]
    _reject_unknown(given, {spec.name for spec in specs}, f"{cls.TYPE} fault")
    values: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in given:
            if spec.required:
                article = "an" if cls.TYPE[0] in "aeiou" else "a"
                raise RuleError(f"{article} {cls.TYPE} fault needs {spec.name!r}")
            continue
        value = given[spec.name]
        # Null means the default, as absence does; but null is a value of an `int | None` field,
        # and a required field has no default (the construction checks refuse the null).
        if value is None and not spec.nullable and not spec.required:
            continue
        values[spec.name] = value
    # The fault checks its own fields on construction (``_FaultBase.__post_init__``).
    return cls(**values)


def _reject_unknown(data: Mapping[str, Any], allowed: set[str] | frozenset[str], what: str) -> None:
    """Raise ``RuleError`` naming the first key of ``data`` that ``allowed`` lacks."""
    for key in data:
        if key not in allowed:
            expected = ", ".join(sorted(allowed)) or "nothing"
            raise RuleError(f"unknown key {key!r} in {what} (expected: {expected})")


def _optional_int(data: Mapping[str, Any], key: str, minimum: int) -> int | None:
    """Read an optional integer field of at least ``minimum``; None when absent or null."""
    value = data.get(key)
    if value is None:
        return None
    return _int_at_least(key, value, minimum)


def _int_at_least(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an integer of at least ``minimum``; raise ``RuleError``."""
    # bool is an int in Python, but `true` is never a sensible count or duration.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RuleError(f"{name!r} must be an integer >= {minimum}")
    return value
