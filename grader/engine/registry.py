"""Checks are small decorated functions, registered by milestone (after check50's ``@check``).

A check takes a :class:`grader.engine.context.Context` and returns :class:`grader.model.Passed`, or
raises :class:`grader.errors.CheckFailed` with the evidence. Its id is ``<prefix>.<name>`` (``m2``
for milestone 2, ``lt`` for the load test: :data:`grader.model.MILESTONES`); the function lives in
``checks/<prefix>_*.py`` under the same name with dashes as underscores.

The registry never imports the checks: whoever grades names the package that holds them
(:func:`load`), as check50's runner takes its checks by path. The CLI is the one place that does.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import pkgutil
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from grader.errors import GradingError
from grader.model import ALL, MILESTONE_KEYS, MILESTONES, Passed, Selection, milestone_of

if TYPE_CHECKING:
    from grader.engine.context import Context
    from grader.learner.budgets import Budgets

CheckFunc: TypeAlias = Callable[["Context"], Passed | Awaitable[Passed]]
# A check's time limit in seconds: fixed, or computed from the budget table it holds the service
# to (a check that waits out the api budget needs longer for a longer budget).
TimeLimit: TypeAlias = float | Callable[["Budgets"], float]
F = TypeVar("F", bound=CheckFunc)

# A check's id: its milestone's prefix, whichever MILESTONES has, a dot and a kebab-case name.
_PREFIXES = "|".join(re.escape(m.prefix) for m in MILESTONES)
_ID = re.compile(rf"^(?:{_PREFIXES})\.[a-z0-9]+(-[a-z0-9]+)*$")


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
    timeout_s: TimeLimit = 30.0
    # An exclusive check runs alone: it loads the service, which would distort what others time.
    exclusive: bool = False
    # An eager check starts with the checks it depends on, not after them, and its verdict
    # counts only if they pass (else SKIP): for a check that only needs them to be judged fair,
    # and would otherwise add its whole length to every grading.
    eager: bool = False
    # A live check drives the learner's running API; a static one reads files only, and a run
    # of static checks starts nothing.
    live: bool = True

    def limit_s(self, budgets: Budgets) -> float:
        """How long the check may run when it holds the service to ``budgets``."""
        return self.timeout_s(budgets) if callable(self.timeout_s) else self.timeout_s

    @property
    def prefix(self) -> str:
        """The id's prefix: ``m2``, ``lt``."""
        return self.id.split(".", 1)[0]

    @property
    def milestone(self) -> str:
        """The key of the milestone this check belongs to, from its id's prefix."""
        found = milestone_of(self.id)
        assert found is not None, "ids are validated when checks register"
        return found.key


# Filled by @check as modules of checks are imported; read through a Catalog.
_REGISTERED: dict[str, CheckSpec] = {}


def check(
    id: str,
    title: str,
    *,
    why: str,
    hint: str,
    depends: tuple[str, ...] = (),
    timeout_s: TimeLimit = 30.0,
    exclusive: bool = False,
    eager: bool = False,
    live: bool = True,
) -> Callable[[F], F]:
    """Register a check under ``id``; its docstring says what it does."""
    if _ID.match(id) is None:
        raise ValueError(f"check id {id!r} is not of the form <{_PREFIXES}>.<kebab-name>")
    if eager and (exclusive or not depends):
        raise ValueError(
            f"{id}: an eager check runs alongside its dependencies, so it needs some "
            "and cannot be exclusive"
        )

    def register(func: F) -> F:
        if id in _REGISTERED:
            raise ValueError(f"check id {id!r} is registered twice")
        for dep in depends:
            if dep not in _REGISTERED:
                raise ValueError(f"{id} depends on {dep!r}, which is not registered before it")
        _REGISTERED[id] = CheckSpec(
            id=id,
            title=title,
            func=func,
            what=inspect.cleandoc(func.__doc__ or title),
            why=why,
            hint=hint,
            depends=depends,
            timeout_s=timeout_s,
            exclusive=exclusive,
            eager=eager,
            live=live,
        )
        return func

    return register


@dataclass(frozen=True, slots=True)
class Catalog:
    """The checks one grading run may use, in registration order (milestone by milestone)."""

    specs: tuple[CheckSpec, ...]

    def for_milestone(self, milestone: str) -> tuple[CheckSpec, ...]:
        """The checks of one milestone, in registration order."""
        return tuple(spec for spec in self.specs if spec.milestone == milestone)

    def get(self, check_id: str) -> CheckSpec | None:
        """The check with this id, if there is one."""
        return next((spec for spec in self.specs if spec.id == check_id), None)

    def needed_by(self, check_ids: Iterable[str]) -> frozenset[str]:
        """The checks named and every check they depend on, however indirectly."""
        needed: set[str] = set()
        todo = list(check_ids)
        while todo:
            check_id = todo.pop()
            spec = self.get(check_id)
            if spec is not None and check_id not in needed:
                needed.add(check_id)
                todo.extend(spec.depends)
        return frozenset(needed)


def load(package: str) -> Catalog:
    """Import every module of ``package`` (registering its checks) and return its checks."""
    root = importlib.import_module(package)
    modules = [f"{package}.{m.name}" for m in pkgutil.iter_modules(getattr(root, "__path__", []))]
    for module in modules:
        importlib.import_module(module)
    # Module by module in the package's order, each in its own registration order: the same
    # catalog whichever module someone imported first (a test, a benchmark, the CLI).
    place = {module: index for index, module in enumerate(modules)}
    ours = [spec for spec in _REGISTERED.values() if spec.func.__module__ in place]
    return Catalog(tuple(sorted(ours, key=lambda spec: place[spec.func.__module__])))


def select(
    name: str,
    *,
    through: bool = False,
    targets: Sequence[str] = (),
    catalog: Catalog | None = None,
) -> Selection:
    """The milestones ``name`` stands for; ``through`` adds every milestone before it.

    ``targets`` (check ids, from ``--target``, as check50's) narrows the run to those checks
    and the checks they depend on; each must be a check of the milestones chosen.
    """
    if name == ALL:
        milestones = MILESTONE_KEYS
    elif name not in MILESTONE_KEYS:
        raise GradingError(
            f"There is no milestone {name!r}; choose one of {', '.join(MILESTONE_KEYS)}, or {ALL} "
            f"(`failfast list` shows their checks)."
        )
    elif through:
        milestones = MILESTONE_KEYS[: MILESTONE_KEYS.index(name) + 1]
    else:
        milestones = (name,)
    selection = Selection(name, milestones, through=through and name != ALL)
    if not targets:
        return selection
    if catalog is None:
        raise ValueError("select() needs the catalog to resolve targets")
    for target in targets:
        spec = catalog.get(target)
        if spec is None:
            close = difflib.get_close_matches(target, [s.id for s in catalog.specs], n=1)
            also = f"; did you mean {close[0]}?" if close else ""
            raise GradingError(
                f"There is no check {target!r} to --target{also} `failfast list` shows every "
                "check id."
            )
        if spec.milestone not in milestones:
            raise GradingError(
                f"--target {target} is a check of {spec.milestone}, which this run does not "
                f"grade: run `failfast check {spec.milestone} --target {target}`."
            )
    unique = tuple(dict.fromkeys(targets))
    return dataclasses.replace(selection, targets=unique, only=catalog.needed_by(unique))
