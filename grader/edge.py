"""The learner's nginx under the local backend: their nginx.conf, rewired to loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from grader.errors import EdgeUnavailable
from grader.procs import ManagedProcess
from grader.repo import LearnerRepo
from grader.stack import Edge

Spawn = Callable[[str, Sequence[str], Path, dict[str, str]], ManagedProcess]


async def start_local_edge(repo: LearnerRepo, api_url: str, spawn: Spawn) -> Edge:
    """Start nginx from the learner's nginx/nginx.conf in front of ``api_url``."""
    raise EdgeUnavailable("the local nginx edge is not built yet")
