"""The seam between grading and what runs the learner's code: the protocols every backend meets.

Checks see a :class:`Stack`; the runner gets a :data:`StartStack` from the CLI, which finds it
through the registry at the end of this module: :func:`backend_names`, :func:`get_backend`. A
:class:`Backend` says what it is called, the options it takes (:class:`BackendOption`), how it
starts a stack, and what ``failfast doctor`` checks for it (:class:`Requirement`). Nothing here
knows how a backend starts anything: each one lives in its own package, ``grader/backends/NAME/``,
which defines ``BACKEND``, and is imported only when it is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from grader.errors import UnknownBackend
from grader.learner.repo import LearnerRepo, Manifest
from grader.lines import OutputSummary
from grader.stubclient import StubAdmin


class ApiInstance(Protocol):
    """One running instance of the learner's API."""

    name: str
    base_url: str

    def alive(self) -> bool:
        """Whether the instance is still running."""

    def exit_description(self) -> str | None:
        """How it exited ("exited with code 1"), or None while it runs."""

    def output_tail(self, n: int = 15) -> tuple[str, ...]:
        """The last lines it printed."""

    def output_mark(self) -> int:
        """A position in its output, for :meth:`output_since`."""

    def output_since(self, mark: int, n: int = 15) -> tuple[str, ...]:
        """At most the last ``n`` lines it printed after ``mark``."""


class Edge(Protocol):
    """The learner's own nginx, in front of the main API instance."""

    @property
    def base_url(self) -> str:
        """The address of the learner's nginx, as the grader reaches it."""

    @property
    def config(self) -> str:
        """Which nginx.conf runs, and how it was wired, in words."""

    def output_tail(self, n: int = 15) -> tuple[str, ...]:
        """The last lines nginx printed."""


class Stack(Protocol):
    """What checks may use: the stub's admin API, provider URLs and the learner's API."""

    stub: StubAdmin
    payments_url: str  # base URL of the provider, as the API is given it
    provider_url: str  # the same provider, as the grader itself reaches it
    connect_hang_url: str  # a provider URL whose connects hang, as the API is given it
    api: ApiInstance  # the instance started with the stack
    notes: tuple[str, ...]  # what the report should say about how this run was isolated

    async def start_api(self, name: str, *, payments_url: str | None = None) -> ApiInstance:
        """Start another instance of the learner's API, e.g. against another provider URL."""

    async def restart_api(self) -> None:
        """Stop every instance of the learner's API, then start a fresh main one as ``api``."""

    async def start_edge(self) -> Edge:
        """Start the learner's nginx.conf in front of ``api``; EdgeUnavailable says why not."""

    def output_summary(self) -> OutputSummary | None:
        """What every instance of the learner's API printed: counts, first and last lines."""

    async def aclose(self) -> None:
        """Stop everything the stack started."""


# How the CLI hands the runner a backend: start a stack for this repo and manifest.
StartStack = Callable[[LearnerRepo, Manifest], Awaitable[Stack]]


# ---------------------------------------------------------------------------------------------
# The registry: what the CLI offers, and what `failfast doctor` checks

# Every backend, in the order the CLI lists them: its name and the package that defines BACKEND.
# A new backend is one package and one line here.
_PACKAGES = {
    "local": "grader.backends.local",
    "docker": "grader.backends.docker",
}

OptionValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class BackendOption:
    """One option a backend declares; the CLI offers it as --<flag> on `check` and `grade`."""

    flag: str  # "api-memory"  (CLI: --api-memory)
    help: str  # one line for --help, without the backend's name
    default: OptionValue
    kind: type  # str, int, float or bool
    minimum: int | float | None = None  # the least value a number may take, if any

    def value(self, settings: Mapping[str, object]) -> OptionValue:
        """This option's value in ``settings`` (flag -> value), or its default when absent.

        Raises TypeError for a value not of :attr:`kind` (an int is taken for a float) and
        ValueError for a number below :attr:`minimum`: the CLI has checked both already.
        """
        value = settings.get(self.flag, self.default)
        if value is None and self.default is None:
            return None
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or isinstance(value, bool) != (self.kind is bool):
            raise TypeError(f"--{self.flag} takes a {self.kind.__name__}, not {value!r}")
        if self.minimum is not None and isinstance(value, int | float) and value < self.minimum:
            raise ValueError(f"--{self.flag} is at least {self.minimum:g}, not {value!r}")
        return cast(OptionValue, value)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the grader needs: what this machine has, and the fix when it falls short."""

    name: str
    ok: bool
    found: str
    fix: str  # "" when ok
    needed_for: str
    required: bool  # whether a missing one stops grading this repo

    @classmethod
    def probed(cls, ok: bool, found: str, fix: str = "") -> Finding:
        """What a probe found; the doctor fills in its name, needs and requirement."""
        return cls("", ok, found, "" if ok else fix, "", False)


@dataclass(frozen=True, slots=True)
class Requirement:
    """One thing `failfast doctor --backend NAME` checks."""

    name: str  # the doctor's row, e.g. "Docker engine"
    # What this machine has (:meth:`Finding.probed`), bounded in time; the doctor turns an
    # exception into a failing finding.
    probe: Callable[[], Finding]
    required: bool = True  # False: grading with the backend goes on without it
    after: str | None = None  # probed only once the requirement of this name is met


@dataclass(frozen=True, slots=True)
class Backend:
    """What runs the learner's code, as the CLI and the doctor see it."""

    name: str  # "local" | "docker"
    summary: str  # one line for --help
    options: tuple[BackendOption, ...]
    # settings (flag -> value; absent flags take their default, other backends' are ignored)
    # -> how the runner starts a stack. The backend's own modules are imported only here.
    starter: Callable[[Mapping[str, object]], StartStack]
    # A repo -> what `failfast doctor` checks for grading it with this backend, in order.
    requirements: Callable[[Path], list[Requirement]]


def backend_names() -> tuple[str, ...]:
    """Every backend's name, in registry order: ("local", "docker")."""
    return tuple(_PACKAGES)


def get_backend(name: str) -> Backend:
    """The backend called ``name``, its package imported now (docker's SDK is not, yet)."""
    package = _PACKAGES.get(name)
    if package is None:
        raise UnknownBackend(
            f"There is no backend {name!r}: the grader has {', '.join(_PACKAGES)}. Name one of "
            "them with --backend or FAILFAST_BACKEND; `failfast check --help` says what each "
            "runs the learner's code in."
        )
    backend = getattr(importlib.import_module(package), "BACKEND", None)
    if not isinstance(backend, Backend) or backend.name != name:
        raise TypeError(f"{package} defines no BACKEND named {name!r}")
    return backend
