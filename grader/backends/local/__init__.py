"""``--backend local``: the learner's API, the stub and Redis as processes on loopback ports.

Owns: ``stack`` (LocalStack) and ``edge`` (the learner's nginx.conf rewired to loopback).
Registers :data:`BACKEND`; its modules are imported when a stack is started.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from grader.backends.base import Backend, Requirement, StartStack


def _starter(settings: Mapping[str, object]) -> StartStack:
    from grader.backends.local.stack import LocalStack

    return LocalStack.start


def _requirements(repo: Path) -> list[Requirement]:
    # What a local run needs (Python, loopback ports, the API's command, redis-server) is what
    # every `failfast doctor` checks; nothing more is local's own.
    return []


BACKEND = Backend(
    name="local",
    summary="processes on loopback ports: a learner's laptop, their own CI",
    options=(),
    starter=_starter,
    requirements=_requirements,
)
