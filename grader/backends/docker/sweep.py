"""What runs leave behind: removing a run, sweeping runs whose grader died, firewalling runs.

Every container, network and image of a run is labelled with the run and its grader
(:func:`owner_id`); :func:`sweep_dead_runs` removes what a grader that no longer runs left
(SIGKILL, a closed CI runner), at the start of each docker run and in ``failfast doctor``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from typing import Any

import docker
import docker.errors

from grader.backends.docker.engine import (
    ENGINE_TIMEOUT_S,
    OWNER_LABEL,
    RUN_LABEL,
    engine_errors,
    remove_container,
)
from grader.process.proctable import boot_id, proc_stat

# Firewall rules that keep a run's containers from opening connections to the host itself: an
# internal network has no route out, but its gateway is the host (scripts/setup.sh isolate adds
# the same rules). Bridges of runs are named ffbr-<run>.
BRIDGE_PREFIX = "ffbr-"
_ISOLATION_RULES = (
    ("-i", "ffbr+", "-j", "DROP"),
    ("-i", "ffbr+", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"),
)


def owner_id() -> str:
    """This grader process, named for good: boot id, pid and start time."""
    stat = proc_stat(os.getpid())
    return f"{boot_id()}:{os.getpid()}:{stat.start if stat is not None else 0}"


def owner_alive(owner: str) -> bool:
    """Whether the grader that labelled something ``owner`` still runs."""
    try:
        boot, pid_text, start_text = owner.split(":")
        pid, start = int(pid_text), int(start_text)
    except ValueError:
        return False
    if boot != boot_id():
        return False  # made before this machine last booted
    stat = proc_stat(pid)
    return stat is not None and stat.start == start


def sweep_dead_runs(client: docker.DockerClient) -> list[str]:
    """Remove what runs whose grader died (SIGKILL, a closed CI runner) left; their ids."""
    dead: set[str] = set()
    with engine_errors("looking for what earlier runs left"):
        found: list[Any] = list(client.containers.list(all=True, filters={"label": RUN_LABEL}))
        found += client.networks.list(filters={"label": RUN_LABEL})
        found += client.images.list(filters={"label": RUN_LABEL})
        for thing in found:
            # Containers and images have .labels; a network only its attrs.
            labels = getattr(thing, "labels", None) or thing.attrs.get("Labels") or {}
            if not owner_alive(labels.get(OWNER_LABEL, "")):
                dead.add(labels.get(RUN_LABEL, ""))
        for run in sorted(dead):
            remove_run(client, run)
    return sorted(dead)


def remove_run(client: docker.DockerClient, run: str) -> None:
    """Remove every container, network and image labelled with run ``run``."""
    selector = {"label": f"{RUN_LABEL}={run}"}
    # At once: each removal waits for its container to stop, 0.1-0.2 s apiece.
    containers = client.containers.list(all=True, filters=selector)
    threads = [threading.Thread(target=remove_container, args=(c,)) for c in containers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(ENGINE_TIMEOUT_S)
    for network in client.networks.list(filters=selector):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            network.remove()
    for image in client.images.list(filters=selector):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.images.remove(image.id, force=True)


def isolate_from_host() -> str | None:
    """Add the host firewall rules for runs' bridges; None when in place, else why not."""
    iptables = shutil.which("iptables")
    if iptables is None:
        return "iptables is not installed"
    if os.geteuid() != 0:
        return "the grader is not root"
    for rule in reversed(_ISOLATION_RULES):  # inserted at the top: the ACCEPT ends up first
        present = subprocess.run(
            [iptables, "-C", "INPUT", *rule], capture_output=True, timeout=10, check=False
        )
        if present.returncode != 0:
            added = subprocess.run(
                [iptables, "-I", "INPUT", "1", *rule], capture_output=True, timeout=10, check=False
            )
            if added.returncode != 0:
                return f"iptables refused the rule: {added.stderr.decode(errors='replace')}"
    return None
