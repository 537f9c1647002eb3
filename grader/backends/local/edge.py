"""The learner's nginx under the local backend: their nginx.conf, rewired to loopback ports.

The config runs as the learner wrote it, timeouts, locations, headers, ``error_page`` and all,
except for what a local, unprivileged nginx next to processes on loopback ports must have
(:func:`rewire`, pure, so each rule is tested on fixed configs):

* every ``listen`` of the ``http`` servers becomes ``127.0.0.1:<free port>`` (one per server,
  ``default_server`` kept on the server nginxconf judges), and a server without one gets it;
  a ``listen`` of a ``stream`` or ``mail`` server gets a free loopback port of its own;
* the api as prod-sim.yml names it, ``api:8000``, becomes the API's loopback ``host:port``
  wherever it is written whole (:func:`grader.learner.nginxroute.rewire_address`): in
  ``proxy_pass`` (``http://api:8000``, with a URI part or variables after it), in the
  ``server`` lines of ``upstream`` blocks (their ``resolve`` and ``service=`` parameters go:
  an address needs no resolving), and in the values of ``set``, ``map``, ``geo`` and
  ``split_clients`` (``set $api http://api:8000; proxy_pass $api;``);
* ``resolver`` and ``resolver_timeout`` are dropped: Docker's 127.0.0.11 does not exist on the
  host, where a name left to resolve at run time would wait 30 s for it; without a resolver
  nginx answers such a request at once, and the grader refuses beforehand the configs whose
  checkout would need one (:func:`grader.learner.nginxroute.refusal`);
* ``pid`` and the temp paths (``client_body_temp_path``, ``proxy_temp_path``, ...) move into a
  private temp directory; ``error_log`` goes to stderr and ``access_log`` to stdout, which the
  grader reads; ``user`` and ``daemon`` are dropped (nginx runs as the grader's user, in the
  foreground: ``-g "daemon off;"``);
* includes are spliced in where they are inside the repo (read and spliced by
  grader/learner/nginxread.py, as nginxconf judges them, bounded); one that names no file of
  the repo (``include /etc/nginx/mime.types;`` of the nginx image) is left out and named in
  :attr:`LocalEdge.config`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import crossplane

from grader.backends.base import Edge
from grader.backends.services import accepts, free_port
from grader.errors import EdgeUnavailable
from grader.learner import learnerfile, nginxconf
from grader.learner.nginxread import Include, splice
from grader.learner.nginxroute import API_UPSTREAM, VALUE_BLOCKS, refusal, rewire_address
from grader.learner.repo import LearnerRepo
from grader.process.procs import ManagedProcess, child_env

Spawn = Callable[[str, Sequence[str], Path, dict[str, str]], ManagedProcess]

NGINX_FILE = nginxconf.CONF_PATH
# nginx binds, checks its config and starts its workers in well under a second; past this it
# is not starting (it retries a busy port for 2.5 s before it gives up, which fits).
READY_TIMEOUT_S = 5.0
# `nginx -V` answers at once; bounded so a wrapper script named nginx cannot stall grading.
VERSION_TIMEOUT_S = 5.0
# The temp path of each module that has one: nginx creates them all at startup, and the
# compiled-in defaults (/var/lib/nginx/...) are not writable by a user who is not root.
TEMP_PATHS = {
    "client_body_temp_path": None,  # the core's: never compiled out
    "proxy_temp_path": "http_proxy",
    "fastcgi_temp_path": "http_fastcgi",
    "uwsgi_temp_path": "http_uwsgi",
    "scgi_temp_path": "http_scgi",
}
NO_NGINX = "no nginx on PATH; install nginx (Debian: nginx-light) or grade with --backend docker"
# Where Debian and Homebrew put nginx, off a user's PATH: named in the reason, never run.
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/bin")
# Main-context directives the local nginx cannot honour; its own pid is set instead.
DROPPED = frozenset({"user", "daemon", "pid"})
# Dropped wherever they are: Docker's embedded DNS (127.0.0.11) is not on the host.
RESOLVER = frozenset({"resolver", "resolver_timeout"})
# Parameters of an upstream server that ask nginx to resolve its name (nginx 1.27.3+).
_RESOLVING = re.compile(r"^(resolve|service=.*)$")


@dataclass(frozen=True, slots=True)
class Rewired:
    """A learner's config as the local nginx runs it."""

    # crossplane's parsed form, for crossplane.build; each statement keeps the "file" and
    # "line" it came from (crossplane.build ignores them), for nginxroute.refusal
    statements: list[dict[str, Any]]
    dropped_includes: tuple[str, ...]  # includes that name no file of the repo, as written
    unresolved: tuple[Include, ...] = ()  # the same, with where they are
    resolvers: int = 0  # resolver and resolver_timeout lines left out

    def text(self) -> str:
        """The config as nginx reads it."""
        return str(crossplane.build(self.statements)) + "\n"


def _ports() -> Iterator[str]:
    while True:
        yield f"127.0.0.1:{free_port()}"


def rewire(
    payload: Mapping[str, Any],
    *,
    listen: str,
    api: str,
    prefix: Path,
    other_listens: Iterator[str] | None = None,
    compiled_out: frozenset[str] = frozenset(),
) -> Rewired:
    """Rewire a crossplane payload (:func:`grader.learner.nginxconf.parse`) for a local nginx.

    ``listen`` is the ``host:port`` the http servers listen on, ``api`` the API's loopback
    ``host:port`` that replaces ``api:8000``, ``prefix`` the private directory of the pid file
    and temp paths; ``other_listens`` hands out addresses for stream and mail servers;
    ``compiled_out`` names modules the nginx binary lacks (``http_uwsgi``), whose temp paths
    are not set. The module docstring lists every rule.
    """
    spliced, unresolved = splice(payload)
    rewiring = _Rewiring(listen, api, prefix, other_listens or _ports(), compiled_out)
    statements = rewiring.main(spliced)
    patterns = tuple(include.pattern for include in unresolved)
    return Rewired(statements, patterns, unresolved, rewiring.resolvers)


class _Rewiring:
    """One rewiring: the rules of :func:`rewire`, walked over the config once."""

    def __init__(
        self,
        listen: str,
        api: str,
        prefix: Path,
        other_listens: Iterator[str],
        compiled_out: frozenset[str],
    ) -> None:
        self.listen, self.api, self.prefix = listen, api, prefix
        self.other_listens, self.compiled_out = other_listens, compiled_out
        self.default_given = False
        self.caches = 0
        self.resolvers = 0

    def main(self, statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The main context: the pid file in the prefix, no user nor daemon, every block."""
        out = [_stmt("pid", str(self.prefix / "nginx.pid"))]
        # user: only root may switch users, and everything else of the stack runs as the
        # grader's user; daemon: the grader runs nginx in the foreground (-g "daemon off;").
        out += [self.walk(s, ()) for s in statements if s["directive"] not in DROPPED]
        return out

    def walk(self, stmt: dict[str, Any], parents: tuple[str, ...]) -> dict[str, Any]:
        """One statement, rewired, with its block walked; ``parents`` are the enclosing blocks."""
        name, args = stmt["directive"], list(stmt["args"])
        if parents[-1:] and parents[-1] in VALUE_BLOCKS:
            # An entry of a map (geo, split_clients): a key and a value, not a directive.
            if len(args) == 1:
                args[0] = rewire_address(args[0], self.api)
            return {**{k: stmt[k] for k in ("file", "line") if k in stmt}, **_stmt(name, *args)}
        if name == "error_log" and args:
            args[0] = "stderr"
        elif name == "access_log" and args and args[0] != "off":
            args[0] = "/dev/stdout"
        elif name == "proxy_pass" and args:
            args[0] = rewire_address(args[0], self.api)
        elif name == "server" and parents[-1:] == ("upstream",) and args:
            if args[0].lower() == API_UPSTREAM:
                args = [self.api, *(a for a in args[1:] if not _RESOLVING.match(a))]
        elif name == "set" and len(args) == 2:
            args[1] = rewire_address(args[1], self.api)
        elif name == "proxy_cache_path" and args:
            # A cache is a directory nginx writes: one of its own, inside the prefix.
            self.caches += 1
            args[0] = str(self.prefix / f"proxy_cache_{self.caches}")
        out: dict[str, Any] = {"directive": name, "args": args}
        out.update({key: stmt[key] for key in ("file", "line") if key in stmt})
        if "block" not in stmt:
            return out
        inner = (*parents, name)
        if name not in VALUE_BLOCKS:
            self.resolvers += sum(1 for c in stmt["block"] if c["directive"] in RESOLVER)
        block = [
            self.walk(child, inner)
            for child in stmt["block"]
            # Temp paths are set once, in http; listens once per server, below.
            if name in VALUE_BLOCKS
            or not (
                (child["directive"] in TEMP_PATHS and "http" in inner)
                or (child["directive"] == "listen" and name == "server")
                or child["directive"] in RESOLVER
            )
        ]
        if name == "server" and parents == ("http",):
            block.insert(0, self._http_listen(stmt))
        elif name == "server" and any(c["directive"] == "listen" for c in stmt["block"]):
            # A stream or mail server: a loopback port of its own, so it binds nothing shared.
            block.insert(0, _stmt("listen", next(self.other_listens)))
        if name == "http":
            block[:0] = self._http_defaults(stmt)
        out["block"] = block
        return out

    def _http_listen(self, server: dict[str, Any]) -> dict[str, Any]:
        """One listen on the edge's port; default_server kept where nginxconf judges it."""
        flags = {a for c in server["block"] if c["directive"] == "listen" for a in c["args"][1:]}
        # nginx allows one default server per address: the first marked one, as nginxconf picks.
        if {"default_server", "default"} & flags and not self.default_given:
            self.default_given = True
            return _stmt("listen", self.listen, "default_server")
        return _stmt("listen", self.listen)

    def _http_defaults(self, http: dict[str, Any]) -> list[dict[str, Any]]:
        """The temp paths in the prefix, and an access log the grader reads if none is set."""
        added = [
            _stmt(directive, str(self.prefix / directive.removesuffix("_path")))
            for directive, module in TEMP_PATHS.items()
            if module is None or module not in self.compiled_out
        ]
        if not any(c["directive"] == "access_log" for c in http["block"]):
            # nginx's default, /var/log/nginx/access.log, is not the grader's to write.
            added.append(_stmt("access_log", "/dev/stdout"))
        return added


def _stmt(directive: str, *args: str) -> dict[str, Any]:
    return {"directive": directive, "args": list(args)}


@dataclass(slots=True)
class LocalEdge:
    """The learner's nginx as a local process in front of the main API instance."""

    base_url: str
    config: str
    process: ManagedProcess
    prefix: Path  # its private directory: the config, pid file and temp paths

    def output_tail(self, n: int = 15) -> tuple[str, ...]:
        """The last lines nginx printed (its error log, then its access log)."""
        return self.process.tail(n)


def find_nginx() -> str:
    """The nginx binary on PATH, or EdgeUnavailable saying why there is none."""
    found = shutil.which("nginx")
    if found is not None:
        return found
    elsewhere = [d for d in _SBIN_DIRS if os.access(os.path.join(d, "nginx"), os.X_OK)]
    if elsewhere:
        raise EdgeUnavailable(
            f"{NO_NGINX} (there is one in {elsewhere[0]}, which is not on PATH: add it)"
        )
    raise EdgeUnavailable(NO_NGINX)


def compiled_out(nginx: str) -> frozenset[str]:
    """The modules ``nginx -V`` says were left out of the build (``http_uwsgi``)."""
    try:
        done = subprocess.run(
            [nginx, "-V"],
            capture_output=True,
            timeout=VERSION_TIMEOUT_S,
            check=False,
            env=child_env({}),
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    text = (done.stdout + done.stderr).decode("utf-8", errors="replace")
    return frozenset(re.findall(r"--without-(\w+)_module", text))


async def start_local_edge(repo: LearnerRepo, api_url: str, spawn: Spawn) -> Edge:
    """Start nginx from the learner's nginx/nginx.conf in front of ``api_url``."""
    nginx = find_nginx()
    try:
        payload = nginxconf.parse(repo.path / NGINX_FILE, repo.path)
        # What nginx would refuse, said the way m1.nginx-agrees says it; and where the checkout
        # goes, for the rewiring to check it reaches the API.
        judged = nginxconf.judge(payload)
    except (nginxconf.NginxConfError, learnerfile.LearnerFileError) as error:
        raise EdgeUnavailable(
            f"the grader cannot run {NGINX_FILE} ({error}); m1.nginx-agrees judges that file"
        ) from None
    port = free_port()
    api = urlsplit(api_url).netloc
    out = await asyncio.to_thread(compiled_out, nginx)
    prefix = Path(tempfile.mkdtemp(prefix="failfast-edge-"))
    try:
        # nginx running as root starts its workers as nobody, who must reach their temp paths.
        os.chmod(prefix, 0o711)
        listen = f"127.0.0.1:{port}"
        rewired = rewire(payload, listen=listen, api=api, prefix=prefix, compiled_out=out)
        checkout = judged.proxy_pass
        refused = refusal(
            rewired.statements,
            None if checkout is None else (checkout.file, checkout.line),
            api,
            rewired.unresolved,
            root=repo.path,
            config_dir=(repo.path / NGINX_FILE).parent,
        )
        if refused is not None:  # a form the local backend cannot run: said before nginx runs
            raise refused.error(repo.path)
        conf = prefix / "nginx.conf"
        conf.write_text(rewired.text(), "utf-8")
        argv = [nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr", "-g", "daemon off;"]
        process = spawn("nginx", argv, prefix, child_env({}))
    except BaseException:
        shutil.rmtree(prefix, ignore_errors=True)
        raise
    # The directory goes once nginx and its workers are gone (their output has ended), which
    # the stack sees to when it closes; else when the grader exits.
    threading.Thread(
        target=_remove_when_done, args=(process, prefix), name="nginx-prefix", daemon=True
    ).start()
    weakref.finalize(process, shutil.rmtree, str(prefix), True)
    if not await accepts("127.0.0.1", port, READY_TIMEOUT_S, lambda: process.returncode is None):
        await asyncio.to_thread(process.drain, 0.5)
        tail = " / ".join(process.tail(8)) or "(no output)"
        raise EdgeUnavailable(
            f"nginx did not start with {NGINX_FILE} rewired to loopback ports within "
            f"{READY_TIMEOUT_S:g} s; it printed: {tail}. A config nginx refuses is for "
            f"m1.nginx-agrees to fail, not this check; if that one passed, nginx objects to "
            f"something the grader does not read, or to what the local backend changed (grade "
            f"with --backend docker to run the file unchanged)"
        )
    left_out = ", ".join(f"include {pattern}" for pattern in rewired.dropped_includes)
    dropped = f"; left out, as they name no file of your repo: {left_out}" if left_out else ""
    if rewired.resolvers:
        dropped += "; its resolver left out (Docker's 127.0.0.11 is not on this machine)"
    return LocalEdge(
        f"http://127.0.0.1:{port}",
        f"your {NGINX_FILE}, its listen and upstream rewired to loopback ports{dropped}",
        process,
        prefix,
    )


def _remove_when_done(process: ManagedProcess, prefix: Path) -> None:
    """Remove nginx's prefix once its output ends: every process that could write there is gone."""
    while not process.drain(3600.0):
        pass
    shutil.rmtree(prefix, ignore_errors=True)
