"""Checks are small decorated functions, registered by milestone (after check50's ``@check``).

A check takes a :class:`grader.context.Context` and returns :class:`grader.model.Passed`, or raises
:class:`grader.errors.CheckFailed` with the evidence. Its id is ``<prefix>.<name>`` (``m2`` for
milestone 2, ``lt`` for the load test); the function lives in ``checks/<prefix>_*.py`` under the
same name with dashes as underscores.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from grader.errors import GradingError
from grader.model import Passed

if TYPE_CHECKING:
    from grader.context import Context

CheckFunc: TypeAlias = Callable[["Context"], Passed | Awaitable[Passed]]

MILESTONES: dict[str, str] = {
    "milestone-1": "The timeout budget table",
    "milestone-2": "A budgeted client: connect, read and overall timeouts",
    "milestone-3": "Bounded retries with exponential backoff and jitter",
    "milestone-4": "A token-bucket retry budget",
    "milestone-5": "Idempotency keys on a shared store",
    "loadtest": "Load-test evidence with k6: fails fast under a slow provider, then recovers",
}
# Id prefix -> milestone; a check's module is checks/<prefix>_*.py.
PREFIXES = {**{f"m{n}": f"milestone-{n}" for n in range(1, 6)}, "lt": "loadtest"}

ALL = "all"

_ID = re.compile(r"^(?P<prefix>[a-z]+[0-9]?)\.[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """A registered check: what it is, what it needs, and how long it may take."""

    id: str
    title: str
    func: CheckFunc
    what: str  # what the check does (its docstring)
    why: str  # why it matters to a customer or an operator
    hint: str  # how to fix a failure
    depends: tuple[str, ...] = ()
    timeout_s: float = 30.0
    # An exclusive check runs alone: it loads the service, which would distort what others time.
    exclusive: bool = False

    @property
    def prefix(self) -> str:
        """The id's prefix: ``m2``, ``lt``."""
        return self.id.split(".", 1)[0]

    @property
    def milestone(self) -> str:
        """The milestone this check belongs to, from its id."""
        return PREFIXES[self.prefix]

    @property
    def is_async(self) -> bool:
        """Whether the check is a coroutine function (it drives the live service)."""
        return inspect.iscoroutinefunction(self.func)


_REGISTRY: dict[str, CheckSpec] = {}


def check(
    id: str,
    title: str,
    *,
    why: str,
    hint: str,
    depends: tuple[str, ...] = (),
    timeout_s: float = 30.0,
    exclusive: bool = False,
) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check under ``id``; its docstring says what it does."""
    match = _ID.match(id)
    if match is None or match["prefix"] not in PREFIXES:
        raise ValueError(f"check id {id!r} is not of the form <m1..m5|lt>.<kebab-name>")

    def register(func: CheckFunc) -> CheckFunc:
        if id in _REGISTRY:
            raise ValueError(f"check id {id!r} is registered twice")
        for dep in depends:
            if dep not in _REGISTRY:
                raise ValueError(f"{id} depends on {dep!r}, which is not registered before it")
        _REGISTRY[id] = CheckSpec(
            id=id,
            title=title,
            func=func,
            what=inspect.cleandoc(func.__doc__ or title),
            why=why,
            hint=hint,
            depends=depends,
            timeout_s=timeout_s,
            exclusive=exclusive,
        )
        return func

    return register


def _load() -> None:
    # Importing the checks package registers every check; done lazily so that importing the
    # registry alone stays cheap and free of cycles.
    import checks  # noqa: F401


def all_checks() -> tuple[CheckSpec, ...]:
    """Every registered check, in registration order (milestone by milestone)."""
    _load()
    return tuple(_REGISTRY.values())


def checks_for(milestone: str) -> tuple[CheckSpec, ...]:
    """The checks of one milestone, in registration order."""
    return tuple(spec for spec in all_checks() if spec.milestone == milestone)


def get(check_id: str) -> CheckSpec | None:
    """The check with this id, if there is one."""
    _load()
    return _REGISTRY.get(check_id)


@dataclass(frozen=True, slots=True)
class Selection:
    """What one `failfast check` run grades: one milestone, milestones 1 to N, or all of them."""

    name: str  # as asked for: "milestone-3", "all"
    milestones: tuple[str, ...]
    through: bool = False

    @property
    def label(self) -> str:
        """In words, for report headings."""
        if self.name == ALL:
            return "every milestone"
        if len(self.milestones) == 1:
            return MILESTONES[self.name]
        return f"{self.milestones[0]} through {self.milestones[-1]}"


def select(name: str, *, through: bool = False) -> Selection:
    """The milestones ``name`` stands for; ``through`` adds every milestone before it."""
    order = tuple(MILESTONES)
    if name == ALL:
        return Selection(ALL, order)
    if name not in MILESTONES:
        raise GradingError(
            f"There is no milestone {name!r}; choose one of {', '.join(order)}, or {ALL} "
            f"(`failfast list` shows their checks)."
        )
    if through:
        return Selection(name, order[: order.index(name) + 1], through=True)
    return Selection(name, (name,))
