"""What ``failfast doctor`` checks for the docker backend: the engine, the images, the firewall.

Each probe is bounded in time and returns a :class:`~grader.backends.base.Finding`; the doctor
names the row, says what it is needed for and turns an exception into a failing finding.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from grader.backends.base import Finding, Requirement
from grader.backends.docker.engine import connect, socket_denied, socket_path
from grader.backends.docker.images import (
    STUB_BASE_IMAGE,
    base_images,
    missing_base_images,
    nginx_image,
)
from grader.backends.docker.options import DEFAULT_OPTIONS
from grader.backends.docker.sweep import isolate_from_host, sweep_dead_runs
from grader.learner.repo import LearnerRepo, Manifest

DOCKER_TIMEOUT_S = 3.0
DOCKER_FIX = (
    "install Docker Engine and start it (Debian/Ubuntu: sudo apt-get install docker.io && "
    "sudo systemctl start docker), or set DOCKER_HOST"
)
START_FIX = (
    "start the engine (sudo systemctl start docker; without systemd, bash scripts/setup.sh "
    "engine), or set DOCKER_HOST"
)
ENGINE = "Docker engine"


def requirements(repo: Path) -> list[Requirement]:
    """The engine first; once it answers, what dead runs left, the images and the firewall."""
    return [
        Requirement(ENGINE, _engine),
        Requirement("earlier runs", _sweep, required=False, after=ENGINE),
        Requirement("images", lambda: _images(repo), after=ENGINE),
        Requirement("host firewall", _firewall, required=False, after=ENGINE),
    ]


def _engine() -> Finding:
    outcome: list[Any] = []

    def ask() -> None:
        try:
            import docker

            client = docker.from_env(timeout=int(DOCKER_TIMEOUT_S))
            try:
                client.ping()
                version = client.version()
                outcome.append(
                    f"{version.get('Version', 'of unknown version')} (API "
                    f"{version.get('ApiVersion', '?')})"
                )
            finally:
                client.close()
        except Exception as exc:
            outcome.append(exc)

    # A thread bounds the whole exchange, however many requests the SDK makes.
    thread = threading.Thread(target=ask, name="doctor-docker", daemon=True)
    thread.start()
    thread.join(DOCKER_TIMEOUT_S + 0.5)
    where = os.environ.get("DOCKER_HOST") or "the default socket"
    if not outcome:
        found = f"no answer from {where} within {DOCKER_TIMEOUT_S:.0f} s"
        return Finding.probed(False, found, DOCKER_FIX)
    if isinstance(outcome[0], Exception):
        denied = socket_denied(outcome[0])
        if denied is not None:  # installed, maybe running: this user lacks the socket's group
            return Finding.probed(False, f"permission denied on {denied.found}", denied.fix)
        socket = socket_path()
        if socket is not None and os.path.exists(socket):
            return Finding.probed(False, f"no engine answered at {socket}", START_FIX)
        return Finding.probed(False, f"no engine answered at {where}", DOCKER_FIX)
    return Finding.probed(True, f"Docker Engine {outcome[0]} at {where}")


def _manifest(repo: Path) -> Manifest | None:
    """The repo's manifest, or None where it cannot be read (the doctor says why elsewhere)."""
    try:
        return LearnerRepo.open(repo).manifest()
    except Exception:
        return None


def _images(repo: Path) -> Finding:
    """The images --backend docker needs here: the Dockerfile's bases, the stub's, Redis's."""
    manifest = _manifest(repo)
    dockerfile = repo / "Dockerfile"
    client = connect()
    try:
        wanted = [STUB_BASE_IMAGE]
        if manifest is not None and "redis" in manifest.services:
            wanted.append(DEFAULT_OPTIONS.redis_image)
        if dockerfile.is_file():
            wanted += base_images(dockerfile.read_text("utf-8", errors="replace"))
        missing = missing_base_images(
            client, "".join(f"FROM {image}\n" for image in dict.fromkeys(wanted))
        )
        nginx = nginx_image(client, DEFAULT_OPTIONS)
    finally:
        client.close()
    found = ", ".join(dict.fromkeys(wanted)) + (f"; nginx: {nginx}" if nginx else "; no nginx")
    if missing:
        return Finding.probed(
            False,
            f"missing: {', '.join(missing)}",
            "bash scripts/setup.sh images (builds them without a registry), or docker pull "
            "them where a registry is reachable",
        )
    return Finding.probed(True, f"present: {found}")


def _sweep() -> Finding:
    """Remove what docker-backend runs whose grader was killed left behind."""
    client = connect()
    try:
        swept = sweep_dead_runs(client)
    finally:
        client.close()
    found = f"removed what {len(swept)} dead run(s) left" if swept else "none left"
    return Finding.probed(True, found)


def _firewall() -> Finding:
    """Whether runs' containers are kept from the host's own services."""
    why_not = isolate_from_host()
    if why_not is None:
        return Finding.probed(True, "runs' bridges cannot open connections to this host")
    return Finding.probed(
        False,
        f"containers could reach this host's services ({why_not})",
        "sudo bash scripts/setup.sh isolate, or grade as root",
    )
