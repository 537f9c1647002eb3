"""What the docker backend can be asked for: the API container's limits, images, pulling.

No docker SDK here: the CLI reads :data:`OPTIONS` (``--api-memory``, ``--pull``, ...) to offer
them, and :func:`from_settings` turns what it was given into :class:`DockerOptions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from grader.backends.base import BackendOption

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Limits:
    """What the learner's API container may use; every value with its reason.

    - memory 512 MiB: a FastAPI app with httpx and a Redis client uses 60-90 MB; a leak or a
      memory hog is killed by the kernel at the limit and reported as the API's crash.
    - cpus 1.0: of this machine's 2 cores, one stays for the grader and the stub, whose timing
      the checks rely on.
    - pids 256: uvicorn workers and their threads fit; a fork bomb stops at the limit.
    - /tmp 64 MiB tmpfs: the root filesystem is read-only; a learner's app may still write
      scratch files.
    - build: 2 GiB of memory (pip installs of large wheels fit) and 300 s: the learner builds
      take 14-24 s here, so a build still running after 300 s hangs (`RUN sleep infinity`, a
      prompt waiting for input) and is stopped rather than left to hold the grader.
    - build context: 200 MB, what `docker build` would send after .dockerignore. An app's repo
      is well under 1 MB; a stray dataset or virtualenv would be packed, sent and stored before
      the first step runs (a 3 GB file took 88 s and 9.3 GB of disk).
    """

    memory: str = "512m"
    cpus: float = 1.0
    pids: int = 256
    tmpfs_size: str = "64m"
    build_memory: str = "2g"
    build_timeout_s: float = 300.0
    build_context_mb: int = 200  # MB of 10**6 bytes, as `docker build` counts them


@dataclass(frozen=True, slots=True)
class DockerOptions:
    """How the docker backend builds and runs a learner's repo."""

    limits: Limits = Limits()
    pull: bool = False  # never pull a base image unless asked: no registry is the normal case
    redis_image: str = "redis:7-alpine"  # the image prod-sim.yml names
    nginx_image: str | None = None  # None: the first of NGINX_IMAGES present


DEFAULT_LIMITS = Limits()
DEFAULT_OPTIONS = DockerOptions()
PULL = BackendOption("pull", "pull missing base images (never by default).", False, bool)
API_MEMORY = BackendOption(
    "api-memory", "the API container's memory limit.", DEFAULT_LIMITS.memory, str
)
API_CPUS = BackendOption(
    "api-cpus", "the API container's CPUs.", DEFAULT_LIMITS.cpus, float, minimum=0.1
)
API_PIDS = BackendOption(
    "api-pids", "the API container's process limit.", DEFAULT_LIMITS.pids, int, minimum=16
)
REDIS_IMAGE = BackendOption(
    "redis-image", "the image Redis runs from.", DEFAULT_OPTIONS.redis_image, str
)
NGINX_IMAGE = BackendOption(
    "nginx-image", "the image the learner's nginx runs in.", DEFAULT_OPTIONS.nginx_image, str
)
BUILD_TIMEOUT = BackendOption(
    "build-timeout",
    "seconds the learner's image may take to build; a longer build is stopped.",
    DEFAULT_LIMITS.build_timeout_s,
    float,
    minimum=1.0,
)
BUILD_CONTEXT = BackendOption(
    "build-context-mb",
    "MB the build context may hold after .dockerignore; a bigger one is not sent.",
    DEFAULT_LIMITS.build_context_mb,
    int,
    minimum=1,
)
# In the order `failfast check --help` lists them.
OPTIONS = (
    PULL,
    API_MEMORY,
    API_CPUS,
    API_PIDS,
    BUILD_TIMEOUT,
    BUILD_CONTEXT,
    REDIS_IMAGE,
    NGINX_IMAGE,
)


def from_settings(settings: Mapping[str, object]) -> DockerOptions:
    """The options ``settings`` (flag -> value) ask for; an absent flag takes its default."""
    nginx_image = NGINX_IMAGE.value(settings)
    return DockerOptions(
        Limits(
            memory=_get(settings, API_MEMORY, str),
            cpus=_get(settings, API_CPUS, float),
            pids=_get(settings, API_PIDS, int),
            build_timeout_s=_get(settings, BUILD_TIMEOUT, float),
            build_context_mb=_get(settings, BUILD_CONTEXT, int),
        ),
        pull=_get(settings, PULL, bool),
        redis_image=_get(settings, REDIS_IMAGE, str),
        nginx_image=None if nginx_image is None else str(nginx_image),
    )


def _get(settings: Mapping[str, object], option: BackendOption, kind: type[_T]) -> _T:
    value = option.value(settings)  # checked against the option's kind
    assert isinstance(value, kind), option.flag
    return value
