"""The docker backend: the learner's image, the stub, Redis and nginx in containers of one run.

For course authors who grade strangers' repos. Each run gets its own internal network (no route
out): the API reaches the stub and Redis by name, the grader reaches every container by its
address. The learner's API runs with the contract's environment only, under limits
(:class:`~grader.backends.docker.options.Limits`). Every container, network and image of a run
carries the label ``failfast.run=<id>`` and the grader's identity (``failfast.owner``): all of it
is removed when the run ends, however it ends, and a run whose grader was SIGKILLed is swept by
the next run and by ``failfast doctor`` (``sweep``).

The docker SDK's errors become ``EnvironmentProblem`` (the engine, ``engine``),
``ImageBuildError`` (the learner's Dockerfile, ``build``) or ``ApiStartError`` (here).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from typing import Any

import docker
from docker.models.containers import Container

from grader.backends.base import ApiInstance, Edge
from grader.backends.docker.build import (
    BuildStopper,
    build_learner_image,
    preflight,
    sets_command,
    suggested_cmd,
)
from grader.backends.docker.containers import (
    LOG_CONFIG,
    ContainerOutput,
    DockerApi,
    DockerEdge,
    container_address,
    listen_port,
)
from grader.backends.docker.engine import (
    OWNER_LABEL,
    ROLE_LABEL,
    RUN_LABEL,
    connect,
    engine_errors,
    remove_container,
)
from grader.backends.docker.images import NGINX_IMAGES, has_image, nginx_image, stub_image
from grader.backends.docker.options import DEFAULT_OPTIONS, DockerOptions, Limits
from grader.backends.docker.sweep import (
    BRIDGE_PREFIX,
    isolate_from_host,
    owner_id,
    remove_run,
    sweep_dead_runs,
)
from grader.backends.services import (
    OUTPUT_DRAIN_S,
    accepts,
    poll_healthz,
    redis_answers,
    stub_ready,
)
from grader.errors import ApiStartError, EdgeUnavailable, EnvironmentProblem, GradingError
from grader.learner.nginxconf import CONF_PATH, NginxConfError
from grader.learner.repo import LearnerRepo, Manifest
from grader.lines import OutputSummary
from grader.stubclient import StubAdmin

# Until the CLI names them through the registry (grader.backends.base.get_backend): the names
# grader/cli/app.py imports from here.
__all__ = ["DockerOptions", "DockerStack", "Limits"]

API_PORT = 8000  # the contract's PORT inside the container (prod-sim.yml wires `api:8000`)
STUB_PORT, STUB_ADMIN_PORT = 8081, 8082
STUB_READY_TIMEOUT_S = 20.0
REDIS_READY_TIMEOUT_S = 20.0
EDGE_READY_TIMEOUT_S = 10.0
# Once the run's containers are removed, how long their output may take to arrive: the last
# pieces, still in the engine's pipes (about a MB), take milliseconds when the grader keeps up.
OUTPUT_FINISH_S = 5.0


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
        # Stops the build should the run end while it builds: an interrupt must not wait for it.
        self.build_stopper = BuildStopper(self.image)
        self.image_user: str | None = None
        self.dockerfile = ""  # its text, once preflight has read it
        self.image_command: tuple[str, ...] = ()
        self._apis: list[DockerApi] = []
        self._every_api: list[DockerApi] = []  # every instance the run started, for its output
        self._outputs: list[ContainerOutput] = []  # every container's, read to the end at aclose
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
        cls, repo: LearnerRepo, manifest: Manifest, options: DockerOptions = DEFAULT_OPTIONS
    ) -> DockerStack:
        """Build the learner's image, then start the stub, Redis and the API on a new network."""
        client = await asyncio.to_thread(connect)
        stack = cls(repo, manifest, options, client)
        try:
            # What cannot build here (no Dockerfile, a missing base image, a context too big to
            # send) is refused before anything starts.
            stack.dockerfile = await asyncio.to_thread(preflight, client, repo, options)
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
        built = build_learner_image(
            self.client,
            self.repo,
            self.image,
            self.labels,
            self.options,
            self.manifest.command,
            self.build_stopper,
        )
        self.image_command = built.command
        # The image's own user, unless that is root: then nobody. Never root.
        user = built.user
        self.image_user = None if user not in ("", "root", "0", "0:0") else "65534:65534"

    def _create_network(self) -> None:
        with engine_errors("creating the run's network"):
            self.client.networks.create(
                self.network,
                driver="bridge",
                internal=True,
                labels=self.labels,
                options={"com.docker.network.bridge.name": f"{BRIDGE_PREFIX}{self.run}"},
            )

    def _run(
        self, image: str, role: str, aliases: Sequence[str], **kwargs: Any
    ) -> tuple[Container, ContainerOutput]:
        """Create a container, attach to its output, then start it: none of its output is lost."""
        endpoint = self.client.api.create_endpoint_config(aliases=list(aliases))
        with engine_errors(f"starting the {role} container"):
            container: Container = self.client.containers.create(
                image,
                name=f"failfast-{self.run}-{role}",
                labels={**self.labels, ROLE_LABEL: role},
                network=self.network,
                networking_config={self.network: endpoint},
                security_opt=["no-new-privileges"],
                log_config=LOG_CONFIG,
                **kwargs,
            )
            output = ContainerOutput.attach(self.client, container)
            self._outputs.append(output)
            container.start()
        return container, output

    def _start_stub(self) -> None:
        image = stub_image(self.client)
        container, output = self._run(
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
        ready = stub_ready(output.log, STUB_READY_TIMEOUT_S, " in its container")
        address = container_address(container, self.network)
        self.provider_url = f"http://{address}:{ready['port']}"
        self.connect_hang_url = f"http://payments-stub:{ready['connect_hang_port']}"
        self.stub = StubAdmin(f"http://{address}:{ready['admin_port']}")

    def _start_redis(self) -> None:
        image = self.options.redis_image
        with engine_errors("looking up the Redis image"):
            present = has_image(self.client, image)
        if not present:
            raise EnvironmentProblem(
                f"Your failfast.yaml lists the service `redis`, and this machine has no "
                f"image {image} (the grader pulls none). Make one (`bash scripts/setup.sh "
                "images`), or name another with --redis-image."
            )
        container, _ = self._run(
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
        address = container_address(container, self.network)
        if redis_answers(address, 6379, REDIS_READY_TIMEOUT_S):
            self._env_extra["REDIS_URL"] = "redis://redis:6379/0"
            return
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
        container, output = await asyncio.to_thread(
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
        address = await asyncio.to_thread(container_address, container, self.network)
        api = DockerApi(name, f"http://{address}:{API_PORT}", container, output, limits.memory)
        self._apis.append(api)
        self._every_api.append(api)
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
                f"{self._inherited_command()}`docker run -e PORT=8000 <image>` shows the same. "
                f"{said}",
                details=tail,
            )

        timeout_s = self.manifest.startup_timeout_s
        last = await poll_healthz(api.base_url, timeout_s, raise_if_exited)
        if last is not None:
            raise ApiStartError(
                f"Your API's container did not answer GET /healthz with 200 within "
                f"{timeout_s:g} s (last try: {last}). Under --backend docker it must listen on "
                "0.0.0.0:$PORT (PORT=8000); raise startup_timeout_s in failfast.yaml if it is "
                f"just slow to start. {self._inherited_command()}Its output ends with the lines "
                "below.",
                details=api.output_tail(),
            )

    def _inherited_command(self) -> str:
        """A sentence when the image's command is its base image's, the Dockerfile setting none."""
        if sets_command(self.dockerfile) or not self.image_command:
            return ""
        return (
            f"Your Dockerfile has no CMD, so the image runs its base image's command "
            f"(`{' '.join(self.image_command)[:80]}`), not your API: add a CMD line, e.g. "
            f"{suggested_cmd(self.manifest.command)}. "
        )

    async def restart_api(self) -> None:
        """Remove every instance of the learner's API, then start a fresh main one as ``api``."""
        old, self._apis = self._apis, []
        await asyncio.gather(*(asyncio.to_thread(remove_container, api.container) for api in old))
        self.api = await self.start_api("api")

    async def start_edge(self) -> Edge:
        """The learner's nginx.conf, unchanged, in an nginx container in front of ``api:8000``."""
        conf = self.repo.path / CONF_PATH
        if not conf.is_file():
            raise EdgeUnavailable("your repo has no nginx/nginx.conf to run")
        try:
            port = await asyncio.to_thread(listen_port, conf)
        except (NginxConfError, GradingError) as exc:
            raise EdgeUnavailable(f"your nginx/nginx.conf cannot be read: {exc}") from exc
        image = await asyncio.to_thread(nginx_image, self.client, self.options)
        if image is None:
            raise EdgeUnavailable(
                f"this machine has none of the nginx images {', '.join(NGINX_IMAGES)} (the "
                "grader pulls none; `bash scripts/setup.sh images` makes one)"
            )
        container, output = await asyncio.to_thread(
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
        address = await asyncio.to_thread(container_address, container, self.network)
        if await accepts(address, port, EDGE_READY_TIMEOUT_S, lambda: not output.log.ended, 1.0):
            return DockerEdge(
                f"http://{address}:{port}",
                f"your {CONF_PATH}, unchanged, in {image}, in front of api:{API_PORT}",
                output,
            )
        raise EdgeUnavailable(
            f"nginx ({image}) did not start with your nginx/nginx.conf within "
            f"{EDGE_READY_TIMEOUT_S:g} s; its output ends with: "
            + " / ".join(output.log.tail(5) or ("(nothing)",))
        )

    def output_summary(self) -> OutputSummary | None:
        """What every instance of the learner's API printed (bounded: counts, first, last lines).

        After :meth:`aclose`, every instance's output has been read to its end, or says it was
        not (``complete``).
        """
        return OutputSummary.combine([api.output.summary() for api in self._every_api])

    async def aclose(self) -> None:
        """Remove every container, the network and the learner's image of this run."""
        self.build_stopper.stop()  # if it still builds (a run interrupted), it stops now
        stub = getattr(self, "stub", None)
        if stub is not None:
            await stub.aclose()
        with contextlib.suppress(EnvironmentProblem):
            await asyncio.to_thread(self._remove_all)
        # The containers are gone: their streams end once what was on its way is read.
        deadline = time.monotonic() + OUTPUT_FINISH_S
        for output in self._outputs:
            await asyncio.to_thread(output.finish, deadline)
        await asyncio.to_thread(self.client.close)

    def _remove_all(self) -> None:
        with engine_errors("removing the run's containers"):
            remove_run(self.client, self.run)
