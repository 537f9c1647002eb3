"""``--backend docker``: the learner's image, the stub and Redis in containers.

Owns: ``options`` (DockerOptions, Limits and the CLI options they come from), ``engine`` (the
client, its errors, a socket this user may not open, the run labels), ``context`` (what the
build would send, measured and bounded), ``build`` (the learner's image: checked, built within
its time limit, cleaned up), ``images`` (base images, the stub's and nginx's), ``containers``
(a container's output, the API, the edge), ``sweep`` (removing runs, sweeping dead ones, the
host firewall), ``stack`` (DockerStack) and ``doctor`` (what ``failfast doctor`` checks). The
only package that imports the docker SDK, and only once a stack starts or the doctor asks:
registering :data:`BACKEND` imports ``options`` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from grader.backends.base import Backend, Requirement, StartStack
from grader.backends.docker.options import OPTIONS, from_settings


def _starter(settings: Mapping[str, object]) -> StartStack:
    import functools

    from grader.backends.docker.stack import DockerStack

    return functools.partial(DockerStack.start, options=from_settings(settings))


def _requirements(repo: Path) -> list[Requirement]:
    from grader.backends.docker.doctor import requirements

    return requirements(repo)


BACKEND = Backend(
    name="docker",
    summary=(
        "containers built from the repo's Dockerfile, isolated and limited: for grading "
        "strangers' repos"
    ),
    options=OPTIONS,
    starter=_starter,
    requirements=_requirements,
)
