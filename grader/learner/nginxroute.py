"""Where a learner's nginx sends POST /checkout, and whether the local backend can send it there.

prod-sim.yml runs the api as the compose service ``api`` on port 8000, and a learner's config
names it in the forms docker-compose users write: ``proxy_pass http://api:8000`` (with or
without a URI part), an ``upstream`` block of ``server api:8000``, or a variable set to the
address with ``set``, ``map``, ``geo`` or ``split_clients`` (``resolver 127.0.0.11; set $api
http://api:8000; proxy_pass $api;``, so that nginx starts before the api does). The local
backend runs that config on the host, where no host ``api`` exists: :func:`rewire_address`
replaces the address where it is written whole, and :func:`refusal` says, with the directive
and its file:line, what the rewired config still cannot do here, so that the check reports
"cannot grade this form here" instead of blaming the learner for nginx's 502 or a hang:

* the proxy_pass that serves POST /checkout (the one :func:`grader.learner.nginxconf.judge`
  finds) must reach the API's loopback address, directly, through an upstream block whose
  servers all are the api, or through variables whose every value does; a unix socket, another
  host, a host built from pieces (``http://$name:8000``) or from a variable the grader cannot
  know (``$http_host``) is refused;
* a host name in a static ``proxy_pass`` or an upstream's ``server`` anywhere in the config is
  refused: nginx resolves those when it starts, and prod-sim.yml's other services do not exist
  on the host;
* an include that names a file outside the repo is refused, except nginx's stock files
  (``mime.types``, ``*_params``): what it holds in the container is unknown here.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.errors import EdgeUnavailable
from grader.learner.nginxread import Include

API_HOST, API_PORT = "api", 8000  # the api as prod-sim.yml runs it
API_UPSTREAM = f"{API_HOST}:{API_PORT}"
# Files every nginx image ships for what they declare (MIME types, FastCGI parameters): a
# config includes them from the image, and the local nginx does without them.
STOCK_INCLUDES = frozenset(
    {
        "mime.types",
        "fastcgi_params",
        "fastcgi.conf",
        "proxy_params",
        "scgi_params",
        "uwsgi_params",
        "koi-utf",
        "koi-win",
        "win-utf",
    }
)
# Blocks whose entries are "key value;" pairs defining a variable, not directives.
VALUE_BLOCKS = frozenset({"map", "geo", "split_clients"})
# geo's own parameters, which are not entries.
_GEO_PARAMETERS = frozenset({"ranges", "delete", "proxy", "proxy_recursive"})
# A value with a scheme, its authority ending where a path, a query or a variable begins.
_URL = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<authority>[^/?$]*)(?P<rest>.*)$", re.I | re.S
)
# A bare authority such as api:8000, as `set $api api:8000;` for `proxy_pass http://$api;`.
_BARE = re.compile(r"^(?P<authority>[^/?$:]+:\d+)(?P<rest>(?:[/?$].*)?)$", re.S)
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
# Past this many possible values of one proxy_pass the grader stops guessing and refuses.
MAX_EXPANSIONS = 64
# Bounds on the work of expanding variables defined from variables: a learner's config could
# otherwise make it exponential. Real configs use a few steps and values under 200 characters.
MAX_EXPANSION_STEPS = 2_000
MAX_VALUE_CHARS = 8_192
# Marks a variable the grader cannot know in an expanded value: _UNKNOWN, its name, _END.
_UNKNOWN, _END = "\x00", "\x01"


class NginxFormUnsupported(EdgeUnavailable):
    """The local backend cannot run this form of the learner's nginx.conf; it names the line.

    Not the learner's fault: the config may be right for docker compose. ``file`` is relative
    to the repo, ``line`` 1-based; ``directive`` is the directive as written.
    """

    def __init__(self, directive: str, file: str, line: int, why: str) -> None:
        super().__init__(f"{file}:{line}: `{directive}`: {why}")
        self.directive, self.file, self.line, self.why = directive, file, line, why


@dataclass(frozen=True, slots=True)
class Refusal:
    """What the local backend cannot run: the directive as written, where, and why."""

    directive: str
    file: str
    line: int
    why: str

    def error(self, root: str | Path) -> NginxFormUnsupported:
        """The refusal as the edge raises it, its file relative to the repo ``root``."""
        shown = Path(os.path.relpath(self.file, root)).as_posix()
        return NginxFormUnsupported(self.directive, shown, self.line, self.why)


def rewire_address(value: str, api: str) -> str:
    """``value`` with the api's compose address replaced by ``api`` where it is written whole.

    ``http://api:8000``, ``http://api:8000/v1/``, ``http://api:8000$request_uri`` and a bare
    ``api:8000`` (a variable for ``proxy_pass http://$api``) are rewired; anything else is
    returned as written.
    """
    url = _URL.match(value)
    if url is not None:
        if url["authority"].lower() != API_UPSTREAM:
            return value
        return f"{url['scheme']}{api}{url['rest']}"
    bare = _BARE.match(value)
    if bare is not None and bare["authority"].lower() == API_UPSTREAM:
        return f"{api}{bare['rest']}"
    return value


def _walk(statements: Sequence[Mapping[str, Any]]) -> Iterator[tuple[Mapping[str, Any], str]]:
    """Every statement with the name of its enclosing block, in order, without recursion."""
    pending: list[tuple[Mapping[str, Any], str]] = [(s, "main") for s in reversed(statements)]
    while pending:
        stmt, parent = pending.pop()
        yield stmt, parent
        pending += [(c, stmt["directive"]) for c in reversed(stmt.get("block") or ())]


def definitions(statements: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Every value each variable may take: variable name -> statements holding its value.

    The value is the statement's last argument: ``set $v VALUE``, and the entries of ``map``,
    ``geo`` and ``split_clients`` blocks (``default VALUE`` included). nginx evaluates ``set``
    in order at run time and a ``map`` by its key; the grader takes every value as possible.
    """
    found: dict[str, list[Mapping[str, Any]]] = {}
    for stmt, _ in _walk(statements):
        name, args = stmt["directive"], stmt["args"]
        if name == "set" and len(args) == 2 and args[0].startswith("$"):
            found.setdefault(args[0][1:], []).append(stmt)
        elif name in VALUE_BLOCKS and args and args[-1].startswith("$"):
            for entry in stmt.get("block") or ():
                if len(entry["args"]) != 1 or "block" in entry:
                    continue
                if name == "geo" and entry["directive"] in _GEO_PARAMETERS:
                    continue
                found.setdefault(args[-1][1:], []).append(entry)
    return found


def expand(template: str, defs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """The values ``template`` may take, each unknown variable marked (:func:`shown` prints it).

    At most :data:`MAX_EXPANSIONS` values; a variable that leads back to itself is unknown.
    More values than that, or more work than :data:`MAX_EXPANSION_STEPS` or values longer than
    :data:`MAX_VALUE_CHARS` (variables defined from variables, many times over), give
    ``MAX_EXPANSIONS + 1`` values: too many to follow.
    """
    steps = 0

    def values(text: str, seen: tuple[str, ...]) -> list[str]:
        nonlocal steps
        steps += 1
        if steps > MAX_EXPANSION_STEPS:
            raise _TooMany
        out = [""]
        position = 0
        for match in _VARIABLE.finditer(text):
            name = match[1] or match[2]
            literal = text[position : match.start()]
            position = match.end()
            if name in defs and name not in seen:
                options = [v for d in defs[name] for v in values(d["args"][-1], (*seen, name))]
            else:
                options = [f"{_UNKNOWN}{name}{_END}"]
            out = [o + literal + v for o in out for v in options][: MAX_EXPANSIONS + 1]
            if any(len(o) > MAX_VALUE_CHARS for o in out):
                raise _TooMany
        return [o + text[position:] for o in out]

    try:
        return values(template, ())
    except _TooMany:
        return [""] * (MAX_EXPANSIONS + 1)


class _TooMany(Exception):
    """More to expand than the grader follows."""


def shown(value: str) -> str:
    """An expanded value as nginx spells it: its unknown variables as $name."""
    return value.replace(_UNKNOWN, "$").replace(_END, "")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _host(authority: str) -> str:
    """The host of ``host:port`` (an IPv6 address in brackets kept whole)."""
    if authority.startswith("["):
        return authority.split("]", 1)[0] + "]"
    return authority.rsplit(":", 1)[0] if ":" in authority else authority


def _text(stmt: Mapping[str, Any]) -> str:
    return " ".join((stmt["directive"], *stmt["args"]))


def _at(stmt: Mapping[str, Any]) -> tuple[str, int]:
    return str(stmt.get("file") or "nginx.conf"), int(stmt.get("line") or 0)


def _upstreams(statements: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {
        s["args"][0].lower(): s
        for s, parent in _walk(statements)
        if s["directive"] == "upstream" and parent == "http" and s["args"] and "block" in s
    }


def _startup_refusal(
    statements: Sequence[Mapping[str, Any]], upstreams: Mapping[str, Any], api: str
) -> Refusal | None:
    """A host name nginx would resolve when it starts, which does not exist here."""
    for stmt, parent in _walk(statements):
        address: str | None = None
        if stmt["directive"] == "proxy_pass" and stmt["args"] and "$" not in stmt["args"][0]:
            url = _URL.match(stmt["args"][0])
            if url is None or url["authority"].lower().startswith("unix:"):
                continue  # nginx's own error, or a socket: judged where it serves the request
            if url["authority"].lower() in upstreams:
                continue
            address = url["authority"]
        elif stmt["directive"] == "server" and parent == "upstream" and stmt["args"]:
            address = stmt["args"][0]
            if address.lower().startswith("unix:"):
                continue
        if address is None or address == api:
            continue
        host = _host(address)
        if not _is_ip(host) and host.lower() != "localhost":
            file, line = _at(stmt)
            why = _other_port(address) or (
                f"nginx resolves {host} when it starts, and only the api ({API_UPSTREAM} in "
                f"prod-sim.yml) has an address the local backend knows: no host {host} exists "
                f"on this machine"
            )
            return Refusal(_text(stmt), file, line, why)
    return None


def _other_port(authority: str) -> str | None:
    """Why the api on a port other than prod-sim.yml's cannot be run here, if it is that."""
    if _host(authority).lower() != API_HOST:
        return None
    port = authority.rsplit(":", 1)[1] if ":" in authority else "80 (none given)"
    return (
        f"it names the api on port {port}, but prod-sim.yml runs it on {API_PORT}: "
        f"under compose nginx would find nothing listening there, and the local backend "
        f"rewires only {API_UPSTREAM}"
    )


def _target_refusal(
    target: Mapping[str, Any],
    value: str,
    upstreams: Mapping[str, Mapping[str, Any]],
    api: str,
    root: str | Path,
) -> str | None:
    """Why one value of the checkout's proxy_pass does not reach the API here, or None."""
    url = _URL.match(value)
    if url is None and not value.startswith(_UNKNOWN):
        return (
            f"its address comes to {shown(value)!r}, which is not a URL (nginx needs http:// "
            f"before the host, and answers 500 without it)"
        )
    if url is None or url["authority"].startswith(_UNKNOWN):
        return (
            f"its address comes to {shown(value)}, whose host the grader cannot know before "
            f"nginx runs: the local backend can only point an address it reads in the config "
            f"(http://{API_UPSTREAM}, an upstream block, a variable set to it) at its API"
        )
    authority = url["authority"].split(_UNKNOWN, 1)[0]
    if authority.lower().startswith("unix:"):
        return (
            "it proxies to a unix socket; the API the local backend starts listens on a "
            "loopback TCP port, so there is no socket to send to"
        )
    if authority == api:
        return None
    upstream = upstreams.get(authority.lower())
    if upstream is not None:
        for server in upstream.get("block") or ():
            if server["directive"] == "server" and server["args"] and server["args"][0] != api:
                file, line = _at(server)
                shown_file = Path(os.path.relpath(file, root)).as_posix()
                return (
                    f"upstream {upstream['args'][0]} has `{_text(server)}` ({shown_file}:{line}), "
                    f"which is not the api as prod-sim.yml names it ({API_UPSTREAM})"
                )
        return None
    if authority.lower() == API_UPSTREAM:
        return (
            f"it reaches {API_UPSTREAM} through an address built from pieces ({target['args'][0]}"
            f"), which the grader cannot rewire; write the address whole in one place, as in "
            f"`set $api http://{API_UPSTREAM};` and `proxy_pass $api;`"
        )
    return _other_port(authority) or (
        f"it sends the request to {authority}, which is not the api as prod-sim.yml names it "
        f"({API_UPSTREAM}), so the local backend cannot tell which of its processes that is"
    )


def refusal(
    statements: Sequence[Mapping[str, Any]],
    checkout: tuple[str, int] | None,
    api: str,
    unresolved: Sequence[Include] = (),
    *,
    root: str | Path,
    config_dir: str | Path,
) -> Refusal | None:
    """What the local backend cannot run of a rewired config (:func:`rewire_address` applied).

    ``statements`` are the rewired statements, each with the ``file`` and ``line`` it came
    from; ``checkout`` is the file and line of the proxy_pass that serves POST /checkout;
    ``api`` the API's loopback ``host:port``; ``unresolved`` the includes that read no file,
    whose patterns are resolved against ``config_dir`` and must name no file outside ``root``
    (nginx's stock files excepted).
    """
    for include in unresolved:
        pattern = os.path.join(config_dir, include.pattern)  # an absolute pattern stays as is
        inside = Path(os.path.abspath(pattern)).is_relative_to(os.path.abspath(root))
        if not inside and os.path.basename(include.pattern) not in STOCK_INCLUDES:
            return Refusal(
                f"include {include.pattern}",
                include.file,
                include.line,
                "it names a file outside your repo, which the grader does not read: what it "
                "holds in the container is unknown here (the nginx image's conf.d holds a "
                "default server of its own). Remove it if nginx.conf has all you need; else "
                "keep the files in the repo (nginx/conf.d/…), include them by a path relative "
                "to nginx.conf and mount them in prod-sim.yml",
            )
    upstreams = _upstreams(statements)
    startup = _startup_refusal(statements, upstreams, api)
    if startup is not None:
        return startup
    if checkout is None:
        return None  # nginx does not proxy POST /checkout: m1.nginx-agrees says so
    target = next(
        (
            s
            for s, _ in _walk(statements)
            if s["directive"] == "proxy_pass" and _at(s) == checkout and s["args"]
        ),
        None,
    )
    if target is None:
        return None
    values = expand(target["args"][0], definitions(statements))
    file, line = _at(target)
    if len(values) > MAX_EXPANSIONS:
        why = (
            f"its address may take more than {MAX_EXPANSIONS} values through its variables "
            f"(or is built through more variables than the grader follows)"
        )
        return Refusal(_text(target), file, line, why)
    for value in values:
        problem = _target_refusal(target, value, upstreams, api, root)
        if problem is not None:
            return Refusal(_text(target), file, line, problem)
    return None
