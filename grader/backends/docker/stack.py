"""The docker backend: the learner's image, the stub, Redis and nginx in containers of one run.

For course authors who grade strangers' repos. Each run gets its own internal network (no route
out): the API reaches the stub and Redis by name, the grader reaches every container by its
address. The learner's API runs with the contract's environment only, under limits
(:class:`Limits`). Every container, network and image of a run carries the label
``failfast.run=<id>`` and the grader's identity (``failfast.owner``): all of it is removed when
the run ends, however it ends, and a run whose grader was SIGKILLed is swept by the next run and
by ``failfast doctor``.

This module is the one boundary with the docker SDK: its errors become ``EnvironmentProblem``
(the engine), ``ImageBuildError`` (the learner's Dockerfile) or ``ApiStartError`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from grader.backends.base import ApiInstance, Edge
from grader.backends.local.stack import OUTPUT_DRAIN_S, READY_POLL_S, poll_healthz
from grader.engine.stubclient import StubAdmin
from grader.errors import (
    ApiStartError,
    EdgeUnavailable,
    EnvironmentProblem,
    GradingError,
    ImageBuildError,
)
from grader.learner.nginxconf import CONF_PATH, NginxConfError, parse
from grader.learner.repo import LearnerRepo, Manifest
from grader.lines import LineLog
from grader.process.procs import proc_stat

RUN_LABEL = "failfast.run"
OWNER_LABEL = "failfast.owner"  # "<boot id>:<pid>:<start>" of the grader that made it
ROLE_LABEL = "failfast.role"
STUB_IMAGE_LABEL = "failfast.stub-image"
API_PORT = 8000  # the contract's PORT inside the container (prod-sim.yml wires `api:8000`)
STUB_PORT, STUB_ADMIN_PORT = 8081, 8082
ENGINE_TIMEOUT_S = 60  # any one call to the engine (builds stream: see Limits.build_timeout_s)
STUB_READY_TIMEOUT_S = 20.0
REDIS_READY_TIMEOUT_S = 20.0
EDGE_READY_TIMEOUT_S = 10.0
# The base of the stub's image: the Python image learners' Dockerfiles start from.
STUB_BASE_IMAGE = "python:3.11-slim"
# nginx images tried in order when --nginx-image is not given: the one prod-sim.yml names, then
# the Debian build scripts/setup.sh makes where no registry is reachable.
NGINX_IMAGES = ("nginx:1.27-alpine", "failfast/nginx:bookworm")
# Firewall rules that keep a run's containers from opening connections to the host itself: an
# internal network has no route out, but its gateway is the host (scripts/setup.sh isolate adds
# the same rules). Bridges of runs are named ffbr-<run>.
BRIDGE_PREFIX = "ffbr-"
_ISOLATION_RULES = (
    ("-i", "ffbr+", "-j", "DROP"),
    ("-i", "ffbr+", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"),
)


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
    - build: 2 GiB and 10 minutes for `docker build` (pip installs of large wheels fit).
    """

    memory: str = "512m"
    cpus: float = 1.0
    pids: int = 256
    tmpfs_size: str = "64m"
    build_memory: str = "2g"
    build_timeout_s: float = 600.0


@dataclass(frozen=True, slots=True)
class DockerOptions:
    """How the docker backend builds and runs a learner's repo."""

    limits: Limits = Limits()
    pull: bool = False  # never pull a base image unless asked: no registry is the normal case
    redis_image: str = "redis:7-alpine"  # the image prod-sim.yml names
    nginx_image: str | None = None  # None: the first of NGINX_IMAGES present


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def owner_id() -> str:
    """This grader process, named for good: boot id, pid and start time."""
    stat = proc_stat(os.getpid())
    return f"{_boot_id()}:{os.getpid()}:{stat.start if stat is not None else 0}"


def owner_alive(owner: str) -> bool:
    """Whether the grader that labelled something ``owner`` still runs."""
    try:
        boot, pid_text, start_text = owner.split(":")
        pid, start = int(pid_text), int(start_text)
    except ValueError:
        return False
    if boot != _boot_id():
        return False  # made before this machine last booted
    stat = proc_stat(pid)
    return stat is not None and stat.start == start


@contextlib.contextmanager
def _engine_errors(what: str) -> Iterator[None]:
    """Translate the docker SDK's errors about the engine at this one boundary."""
    try:
        yield
    except docker.errors.DockerException as exc:
        raise EnvironmentProblem(
            f"The Docker engine failed while {what}: {exc}. Check it with `failfast doctor` "
            "(on a machine without systemd, `bash scripts/setup.sh engine` starts one)."
        ) from exc
    except OSError as exc:  # a socket the engine dropped, a build context unreadable
        raise EnvironmentProblem(
            f"Talking to the Docker engine failed while {what}: {exc}."
        ) from exc


def connect() -> docker.DockerClient:
    """A client of the local engine, or a clear message that there is none."""
    try:
        client = docker.from_env(timeout=ENGINE_TIMEOUT_S)
        client.ping()
    except docker.errors.DockerException as exc:
        raise EnvironmentProblem(
            "--backend docker needs a running Docker engine, and none answered "
            f"({exc}). Start one (`bash scripts/setup.sh engine` on a machine without systemd, "
            "or `sudo systemctl start docker`), check it with `failfast doctor`, or grade with "
            "--backend local."
        ) from exc
    return client


def sweep_dead_runs(client: docker.DockerClient) -> list[str]:
    """Remove what runs whose grader died (SIGKILL, a closed CI runner) left; their ids."""
    dead: set[str] = set()
    with _engine_errors("looking for what earlier runs left"):
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
    threads = [threading.Thread(target=_remove, args=(c,)) for c in containers]
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


# ---------------------------------------------------------------------------------------------
# Images


_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.I | re.M)


def base_images(dockerfile: str) -> list[str]:
    """The images a Dockerfile's FROM lines name, without its own stages, scratch or ${ARG}s."""
    stages: set[str] = set()
    found: list[str] = []
    for match in _FROM.finditer(dockerfile):
        image, stage = match.group(1), match.group(2)
        if image.lower() not in stages and image != "scratch" and "$" not in image:
            found.append(image)
        if stage:
            stages.add(stage.lower())
    return found


def missing_base_images(client: docker.DockerClient, dockerfile: str) -> list[str]:
    """The base images a Dockerfile names that this engine does not have."""
    missing = []
    with _engine_errors("looking up base images"):
        for image in base_images(dockerfile):
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                missing.append(image)
    return missing


def build_learner_image(
    client: docker.DockerClient,
    repo: LearnerRepo,
    tag: str,
    labels: Mapping[str, str],
    options: DockerOptions,
) -> str:
    """Build the learner's Dockerfile as ``tag``; its id, or ImageBuildError with the log's tail."""
    dockerfile = repo.path / "Dockerfile"
    if not dockerfile.is_file():
        raise ImageBuildError(
            "--backend docker builds your API from the Dockerfile at the root of your repo, and "
            f"there is none in {repo.path}. Add one (the learner template's builds as is), or "
            "grade with --backend local."
        )
    text = dockerfile.read_text("utf-8", errors="replace")
    if not options.pull:
        missing = missing_base_images(client, text)
        if missing:
            present = sorted(
                tag for image in client.images.list() for tag in image.tags if ":" in tag
            )
            raise ImageBuildError(
                f"Your Dockerfile starts FROM {', '.join(missing)}, which this machine does not "
                "have, and the grader pulls no image unless asked to (--pull). Use a base image "
                f"this machine has ({', '.join(present[:8]) or 'none'}), or grade with --pull "
                "where a registry is reachable."
            )
    log: list[str] = []
    deadline = time.monotonic() + options.limits.build_timeout_s
    limits = options.limits
    memory = _bytes(limits.build_memory)
    try:
        stream = client.api.build(
            path=str(repo.path),
            tag=tag,
            pull=options.pull,
            rm=True,
            forcerm=True,
            labels=dict(labels),
            container_limits={"memory": memory, "memswap": memory},
            decode=True,
            timeout=limits.build_timeout_s,
        )
        for chunk in stream:
            for line in str(chunk.get("stream", "")).splitlines():
                if line.strip():
                    log.append(line.rstrip())
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
                raise _build_failed(str(detail), log)
            if time.monotonic() > deadline:
                raise _build_failed(f"the build took longer than {limits.build_timeout_s:g} s", log)
    except docker.errors.APIError as exc:
        raise _build_failed(str(exc.explanation or exc), log) from exc
    except (docker.errors.DockerException, OSError) as exc:
        raise _build_failed(str(exc), log) from exc
    with _engine_errors("reading the built image"):
        image = client.images.get(tag)
    return str(image.id)


def _build_failed(reason: str, log: Sequence[str]) -> ImageBuildError:
    return ImageBuildError(
        f"Your Dockerfile did not build: {reason.strip()}. Run `docker build .` in your repo "
        "to see the whole log; the build's last lines are below.",
        details=tuple(log[-15:]),
    )


def _bytes(size: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    size = size.strip().lower()
    return int(float(size[:-1]) * units[size[-1]]) if size[-1:] in units else int(size)


def stub_image(client: docker.DockerClient) -> str:
    """The reference stub's image, built from the installed failfast package once per version.

    The stub needs the `reference` package and h11 only, both pure Python: they are copied
    from this interpreter, so the build needs no network and no pip.
    """
    import h11

    import reference

    sources = [Path(reference.__file__).parent, Path(h11.__file__).parent]
    digest = hashlib.sha256()
    for root in sources:
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    tag = f"failfast/stub:{digest.hexdigest()[:12]}"
    with _engine_errors("building the payments stub's image"):
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        with tempfile.TemporaryDirectory(prefix="failfast-stub-") as tmp:
            context = Path(tmp)
            for root in sources:
                shutil.copytree(
                    root, context / "site" / root.name, ignore=shutil.ignore_patterns("__pycache__")
                )
            (context / "Dockerfile").write_text(
                f"FROM {STUB_BASE_IMAGE}\n"
                "COPY site/ /opt/failfast/\n"
                "ENV PYTHONPATH=/opt/failfast PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1\n"
                "USER 65534:65534\n"
                'ENTRYPOINT ["python", "-m", "reference.stub"]\n'
            )
            try:
                client.images.build(
                    path=str(context),
                    tag=tag,
                    pull=False,
                    rm=True,
                    forcerm=True,
                    labels={STUB_IMAGE_LABEL: "1"},
                )
            except docker.errors.BuildError as exc:
                raise EnvironmentProblem(
                    f"The grader could not build its payments stub's image from {STUB_BASE_IMAGE}"
                    f": {exc.msg}. `failfast doctor` lists the base images the docker backend "
                    "needs (`bash scripts/setup.sh images` makes them without a registry)."
                ) from exc
    return tag


def nginx_image(client: docker.DockerClient, options: DockerOptions) -> str | None:
    """The nginx image to run the learner's conf with: the one asked for, or the first present."""
    wanted = (options.nginx_image,) if options.nginx_image else NGINX_IMAGES
    with _engine_errors("looking up the nginx image"):
        for image in wanted:
            try:
                client.images.get(image)
                return image
            except docker.errors.ImageNotFound:
                continue
    return None


# ---------------------------------------------------------------------------------------------
# Containers


class ContainerOutput:
    """A container's output, read by a thread into a LineLog; the log ends when it stops."""

    def __init__(self, container: Container) -> None:
        self.log = LineLog()
        self._thread = threading.Thread(
            target=self._read, args=(container,), name=f"{container.name}-logs", daemon=True
        )
        self._thread.start()

    def _read(self, container: Container) -> None:
        pending = b""
        try:
            for chunk in container.logs(stream=True, follow=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.log.append(line)
        except (docker.errors.DockerException, OSError, ValueError):
            pass  # the container was removed while its output was read
        finally:
            if pending:
                self.log.append(pending)
            self.log.end()


@dataclass(slots=True)
class DockerApi:
    """An instance of the learner's API: one container of the run's image."""

    name: str
    base_url: str
    container: Container
    output: ContainerOutput
    memory: str
    _exit: str | None = field(default=None)

    def alive(self) -> bool:
        """Whether the container still runs: its output stream ends when it stops."""
        return not self.output.log.ended

    def exit_description(self) -> str | None:
        """How the container ended, in words, or None while it runs."""
        if self.alive():
            return None
        if self._exit is None:
            try:
                self.container.reload()
                state = self.container.attrs.get("State", {})
            except docker.errors.DockerException:
                state = {}
            code = state.get("ExitCode")
            if state.get("OOMKilled"):
                self._exit = (
                    f"was killed by the kernel at its memory limit ({self.memory}; exit code "
                    f"{code})"
                )
            elif state.get("Running"):
                return None
            else:
                self._exit = f"exited with code {code}"
        return self._exit

    def output_tail(self, n: int = 15) -> tuple[str, ...]:
        """The last lines the container printed."""
        return self.output.log.tail(n)

    def output_mark(self) -> int:
        """A position in its output."""
        return self.output.log.mark()

    def output_since(self, mark: int, n: int = 15) -> tuple[str, ...]:
        """At most the last ``n`` lines printed after ``mark``."""
        return self.output.log.since(mark, n)


@dataclass(frozen=True, slots=True)
class DockerEdge:
    """The learner's nginx in a container, in front of the main API instance."""

    base_url: str
    config: str
    output: ContainerOutput

    def output_tail(self, n: int = 15) -> tuple[str, ...]:
        """The last lines nginx printed."""
        return self.output.log.tail(n)


def _listen_port(conf: Path) -> int:
    """The port the first `listen` of the config's servers names (nginx's default: 80)."""
    pending = [stmt for file in parse(conf)["config"] for stmt in file.get("parsed", [])]
    while pending:
        stmt = pending.pop(0)
        if stmt.get("directive") == "listen" and stmt.get("args"):
            address = str(stmt["args"][0])
            port = address.rsplit(":", 1)[-1] if not address.endswith("]") else "80"
            if port.isdigit():
                return int(port)
            if ":" not in address and not address.isdigit():
                return 80  # a host alone listens on 80
        pending = [*stmt.get("block", []), *pending]
    return 80


def _address(container: Container, network: str) -> str:
    container.reload()
    address: str = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    return address


class DockerStack:
    """The stub, Redis, nginx and the learner's API as containers on one internal network."""

    def __init__(
        self,
        repo: LearnerRepo,
        manifest: Manifest,
        options: DockerOptions,
        client: docker.DockerClient,
    ) -> None:
        self.repo, self.manifest, self.options, self.client = repo, manifest, options, client
        self.run = uuid.uuid4().hex[:10]
        self.network = f"failfast-{self.run}"
        self.labels = {RUN_LABEL: self.run, OWNER_LABEL: owner_id()}
        self.image = f"failfast/learner:{self.run}"
        self.image_user: str | None = None
        self._apis: list[DockerApi] = []
        self._env_extra: dict[str, str] = {}
        self.stub: StubAdmin
        self.payments_url = f"http://payments-stub:{STUB_PORT}"
        self.provider_url: str
        self.connect_hang_url: str
        self.api: ApiInstance
        self.notes: tuple[str, ...] = ()
        # The build, and the whole start (build, stub, Redis, API ready): for the benchmark.
        self.timings: dict[str, float] = {}

    @classmethod
    async def start(
        cls, repo: LearnerRepo, manifest: Manifest, options: DockerOptions = DockerOptions()
    ) -> DockerStack:
        """Build the learner's image, then start the stub, Redis and the API on a new network."""
        client = await asyncio.to_thread(connect)
        stack = cls(repo, manifest, options, client)
        try:
            await asyncio.to_thread(sweep_dead_runs, client)
            why_not = await asyncio.to_thread(isolate_from_host)
            if why_not is not None:
                stack.notes = (
                    "The API's container could open connections to services on this host's own "
                    f"addresses: the grader could not add the firewall rule that prevents it "
                    f"({why_not}). Run `sudo bash scripts/setup.sh isolate` once, or grade as "
                    "root.",
                )
            started = time.monotonic()
            await asyncio.to_thread(stack._create_network)

            async def build() -> None:
                await asyncio.to_thread(stack._build)
                stack.timings["build_s"] = time.monotonic() - started

            # The stub and Redis need the network, not the learner's image: they start while
            # it builds. Every step ends before a failure is raised, so that the teardown
            # below finds every container a step made.
            steps = [build(), asyncio.to_thread(stack._start_stub)]
            if "redis" in manifest.services:
                steps.append(asyncio.to_thread(stack._start_redis))
            for outcome in await asyncio.gather(*steps, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
            stack.api = await stack.start_api("api")
            stack.timings["start_s"] = time.monotonic() - started
        except BaseException:
            await stack.aclose()
            raise
        return stack

    def _build(self) -> None:
        tag = self.image
        build_learner_image(self.client, self.repo, tag, self.labels, self.options)
        with _engine_errors("reading the learner's image"):
            user = str(self.client.images.get(tag).attrs.get("Config", {}).get("User") or "")
        # The image's own user, unless that is root: then nobody. Never root.
        self.image_user = None if user not in ("", "root", "0", "0:0") else "65534:65534"

    def _create_network(self) -> None:
        with _engine_errors("creating the run's network"):
            self.client.networks.create(
                self.network,
                driver="bridge",
                internal=True,
                labels=self.labels,
                options={"com.docker.network.bridge.name": f"{BRIDGE_PREFIX}{self.run}"},
            )

    def _run(self, image: str, role: str, aliases: Sequence[str], **kwargs: Any) -> Container:
        endpoint = self.client.api.create_endpoint_config(aliases=list(aliases))
        with _engine_errors(f"starting the {role} container"):
            container: Container = self.client.containers.run(
                image,
                detach=True,
                name=f"failfast-{self.run}-{role}",
                labels={**self.labels, ROLE_LABEL: role},
                network=self.network,
                networking_config={self.network: endpoint},
                security_opt=["no-new-privileges"],
                **kwargs,
            )
        return container

    def _start_stub(self) -> None:
        image = stub_image(self.client)
        container = self._run(
            image,
            "payments-stub",
            ["payments-stub"],
            command=[
                "--host",
                "0.0.0.0",
                "--port",
                str(STUB_PORT),
                "--admin-port",
                str(STUB_ADMIN_PORT),
            ],
            read_only=True,
            cap_drop=["ALL"],
            mem_limit="256m",
        )
        output = ContainerOutput(container)
        line = output.log.wait_for_line(
            lambda text: text.startswith("{") and '"ready"' in text, STUB_READY_TIMEOUT_S
        )
        if line is None:
            raise EnvironmentProblem(
                f"The grader's payments stub did not start within {STUB_READY_TIMEOUT_S:.0f} s "
                "in its container. This is not your fault; its output ends with: "
                + " / ".join(output.log.tail(5) or ("(nothing)",))
            )
        ready = json.loads(line)
        address = _address(container, self.network)
        self.provider_url = f"http://{address}:{ready['port']}"
        self.connect_hang_url = f"http://payments-stub:{ready['connect_hang_port']}"
        self.stub = StubAdmin(f"http://{address}:{ready['admin_port']}")

    def _start_redis(self) -> None:
        image = self.options.redis_image
        with _engine_errors("looking up the Redis image"):
            try:
                self.client.images.get(image)
            except docker.errors.ImageNotFound:
                raise EnvironmentProblem(
                    f"Your failfast.yaml lists the service `redis`, and this machine has no "
                    f"image {image} (the grader pulls none). Make one (`bash scripts/setup.sh "
                    "images`), or name another with --redis-image."
                ) from None
        container = self._run(
            image,
            "redis",
            ["redis"],
            command=[
                "redis-server",
                "--bind",
                "0.0.0.0",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                "/tmp",
            ],
            read_only=True,
            tmpfs={"/tmp": "rw,size=64m", "/data": "rw,size=16m"},
            mem_limit="256m",
        )
        address = _address(container, self.network)
        deadline = time.monotonic() + REDIS_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((address, 6379), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        self._env_extra["REDIS_URL"] = "redis://redis:6379/0"
                        return
            except OSError:
                time.sleep(0.05)
        raise EnvironmentProblem(
            f"Redis ({image}) did not answer PING within {REDIS_READY_TIMEOUT_S:.0f} s in its "
            "container."
        )

    async def start_api(self, name: str, *, payments_url: str | None = None) -> ApiInstance:
        """Start a container of the learner's image with the contract's environment only."""
        limits = self.options.limits
        environment = {
            "PORT": str(API_PORT),
            "PAYMENTS_URL": payments_url or self.payments_url,
        } | self._env_extra
        aliases = ["api"] if name == "api" else []
        container = await asyncio.to_thread(
            self._run,
            self.image,
            f"{name}-{uuid.uuid4().hex[:4]}",
            aliases,
            environment=environment,
            user=self.image_user,
            mem_limit=limits.memory,
            memswap_limit=limits.memory,  # no swap: a hog meets the limit, not the disk
            nano_cpus=int(limits.cpus * 1e9),
            pids_limit=limits.pids,
            read_only=True,
            tmpfs={"/tmp": f"rw,size={limits.tmpfs_size},mode=1777"},
            cap_drop=["ALL"],
        )
        output = ContainerOutput(container)
        address = await asyncio.to_thread(_address, container, self.network)
        api = DockerApi(name, f"http://{address}:{API_PORT}", container, output, limits.memory)
        self._apis.append(api)
        await self._wait_healthy(api)
        return api

    async def _wait_healthy(self, api: DockerApi) -> None:
        async def raise_if_exited() -> None:
            exited = api.exit_description()
            if exited is None:
                return
            await asyncio.to_thread(api.output.log.drain, OUTPUT_DRAIN_S)
            tail = api.output_tail()
            said = "Its output ends with the lines below." if tail else "It printed nothing."
            raise ApiStartError(
                f"Your API's container {exited} before it answered GET /healthz. The grader "
                "ran your image's own command (its CMD) with PORT=8000 and PAYMENTS_URL set, "
                "on a read-only filesystem (only /tmp is writable) as a user other than root. "
                f"`docker run -e PORT=8000 <image>` shows the same. {said}",
                details=tail,
            )

        timeout_s = self.manifest.startup_timeout_s
        last = await poll_healthz(api.base_url, timeout_s, raise_if_exited)
        if last is not None:
            raise ApiStartError(
                f"Your API's container did not answer GET /healthz with 200 within "
                f"{timeout_s:g} s (last try: {last}). Under --backend docker it must listen on "
                "0.0.0.0:$PORT (PORT=8000); raise startup_timeout_s in failfast.yaml if it is "
                "just slow to start. Its output ends with the lines below.",
                details=api.output_tail(),
            )

    async def restart_api(self) -> None:
        """Remove every instance of the learner's API, then start a fresh main one as ``api``."""
        old, self._apis = self._apis, []
        await asyncio.gather(*(asyncio.to_thread(_remove, api.container) for api in old))
        self.api = await self.start_api("api")

    async def start_edge(self) -> Edge:
        """The learner's nginx.conf, unchanged, in an nginx container in front of ``api:8000``."""
        conf = self.repo.path / CONF_PATH
        if not conf.is_file():
            raise EdgeUnavailable("your repo has no nginx/nginx.conf to run")
        try:
            port = await asyncio.to_thread(_listen_port, conf)
        except (NginxConfError, GradingError) as exc:
            raise EdgeUnavailable(f"your nginx/nginx.conf cannot be read: {exc}") from exc
        image = await asyncio.to_thread(nginx_image, self.client, self.options)
        if image is None:
            raise EdgeUnavailable(
                f"this machine has none of the nginx images {', '.join(NGINX_IMAGES)} (the "
                "grader pulls none; `bash scripts/setup.sh images` makes one)"
            )
        container = await asyncio.to_thread(
            self._run,
            image,
            "nginx",
            ["nginx"],
            volumes={str(conf): {"bind": "/etc/nginx/nginx.conf", "mode": "ro"}},
            read_only=True,
            tmpfs={
                path: "rw,size=16m"
                for path in ("/tmp", "/run", "/var/lib/nginx", "/var/cache/nginx")
            },
            cap_drop=["ALL"],
            cap_add=["CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE", "DAC_OVERRIDE"],
            mem_limit="128m",
        )
        output = ContainerOutput(container)
        address = await asyncio.to_thread(_address, container, self.network)
        deadline = time.monotonic() + EDGE_READY_TIMEOUT_S
        while time.monotonic() < deadline and not output.log.ended:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 1.0)
                writer.close()
                return DockerEdge(
                    f"http://{address}:{port}",
                    f"your {CONF_PATH}, unchanged, in {image}, in front of api:{API_PORT}",
                    output,
                )
            except (OSError, TimeoutError):
                await asyncio.sleep(READY_POLL_S)
        raise EdgeUnavailable(
            f"nginx ({image}) did not start with your nginx/nginx.conf within "
            f"{EDGE_READY_TIMEOUT_S:g} s; its output ends with: "
            + " / ".join(output.log.tail(5) or ("(nothing)",))
        )

    async def aclose(self) -> None:
        """Remove every container, the network and the learner's image of this run."""
        stub = getattr(self, "stub", None)
        if stub is not None:
            await stub.aclose()
        with contextlib.suppress(EnvironmentProblem):
            await asyncio.to_thread(self._remove_all)
        await asyncio.to_thread(self.client.close)

    def _remove_all(self) -> None:
        with _engine_errors("removing the run's containers"):
            remove_run(self.client, self.run)


def _remove(container: Container) -> None:
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        container.remove(force=True, v=True)
