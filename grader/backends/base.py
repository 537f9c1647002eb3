"""The seam between grading and what runs the learner's code: the protocols every backend meets.

Checks see a :class:`Stack`; the runner gets a :data:`StartStack` from the CLI. Nothing here
knows how a backend starts anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from grader.engine.stubclient import StubAdmin
from grader.learner.repo import LearnerRepo, Manifest


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

    async def aclose(self) -> None:
        """Stop everything the stack started."""


# How the CLI hands the runner a backend: start a stack for this repo and manifest.
StartStack = Callable[[LearnerRepo, Manifest], Awaitable[Stack]]
