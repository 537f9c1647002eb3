"""Which location nginx would choose for one request, and the proxy_read_timeout it enforces there.

The budget table is the budget of one ``POST /checkout``, so ``m1.nginx-agrees`` must judge the
location nginx would pick for that request, not every location of the config: a correct config
may leave ``location /healthz`` at nginx's defaults. This module is pure logic over crossplane's
parsed payload (:func:`judge`), plus :func:`judge_file`, which parses a file first.

What it reproduces of nginx (1.25-1.27 sources, ``ngx_http_core_find_location``,
``ngx_http_core_find_static_location``, ``ngx_parse_time``):

* Location choice, per level (server, then inside the chosen location): ``location = URI`` wins
  at once; otherwise the longest matching prefix (plain or ``^~``) is remembered and its nested
  locations are searched the same way; unless that longest prefix has ``^~``, regex locations
  (``~`` case-sensitive, ``~*`` case-insensitive) are tried in config order and the first match
  wins (its nested locations searched too); otherwise the longest prefix stands. Named locations
  (``@name``) are never matched. Prefixes compare byte for byte, as on Linux (nginx builds for
  case-insensitive file systems compare them case-insensitively).
* nginx's auto redirect: with no location equal to the URI, a ``location /checkout/`` that
  ``proxy_pass``-es (or any ``*_pass``) makes nginx answer ``POST /checkout`` with a 301 to
  ``/checkout/``, before any regex is tried. That is reported as ``redirects``.
* Regexes run with Python's ``re.search`` where nginx uses PCRE: the same for the patterns a
  location uses in practice (PCRE's ``(?<name>...)`` is translated to Python's spelling). A
  pattern Python cannot compile is an :class:`NginxConfError`; it is compiled only when the
  search reaches it, so an exotic regex elsewhere in the config does not stop the judgement.
* ``proxy_read_timeout`` inheritance: the innermost of the chosen location, its enclosing
  locations, the server and ``http`` that sets it; nginx's default of 60 s when none does.
  ``limit_except`` does not change the location (the directive is not allowed inside it), but a
  ``limit_except`` that does not list the method may hold the ``proxy_pass``.
* Time values exactly as ``ngx_parse_time`` reads them (:func:`parse_time`).

What it does not know, and says so in its docstrings:

* The Host header: with several ``server`` blocks in ``http`` it judges the one whose ``listen``
  has ``default_server`` (or its old spelling ``default``), else the first. Ports are not
  compared: the grader does not know which one the stack publishes. :attr:`Judged.server_choice`
  says why that server was judged.
* Rewrites: ``rewrite ... last``, ``return``, ``try_files`` and ``error_page`` can send the
  request to another location; they are not followed. ``proxy_pass`` inside an ``if`` is not
  counted, as the grader cannot evaluate the condition.
* Includes: :func:`judge_file` lets crossplane follow them, relative to the config's directory
  (nginx resolves them relative to its own prefix, such as ``/etc/nginx``). An include that names
  no file here (``include mime.types;`` of the nginx image) is not an error: it is listed in
  :attr:`Judged.unresolved_includes`, since what it adds in the container is unknown. A payload
  parsed with ``single=True`` has its includes listed there as well.

The modules it is made of: :mod:`grader.learner.nginxread` reads the files (:func:`parse`),
:mod:`grader.learner.nginxtime` reads time values (:func:`parse_time`) and
:mod:`grader.learner.nginxlocations` chooses the location; this one judges the request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from grader.learner.nginxlocations import Loc, Stmt, find, locations, tree
from grader.learner.nginxread import (
    MAX_CONF_BYTES,
    MAX_CONF_FILES,
    MAX_CONF_TOTAL_BYTES,
    TOO_DEEP,
    Include,
    NginxConfError,
    parse,
)
from grader.learner.nginxroute import NginxFormUnsupported
from grader.learner.nginxtime import parse_time, time_seconds

__all__ = [
    "CONF_PATH",
    "DEFAULT_READ_TIMEOUT_MS",
    "MAX_CONF_BYTES",
    "MAX_CONF_FILES",
    "MAX_CONF_TOTAL_BYTES",
    "METHOD",
    "URI",
    "Include",
    "InheritedFrom",
    "Judged",
    "NginxConfError",
    "NginxFormUnsupported",
    "ServerChoice",
    "judge",
    "judge_file",
    "parse",
    "parse_time",
    "time_seconds",
]

CONF_PATH = "nginx/nginx.conf"  # where the learner contract puts the edge proxy's config
URI = "/checkout"
METHOD = "POST"
DEFAULT_READ_TIMEOUT_MS = 60_000  # ngx_http_proxy_merge_loc_conf: read_timeout defaults to 60000

# Where nginx allows proxy_read_timeout (NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF).
_TIMEOUT_CONTEXTS = frozenset({"http", "server", "location"})
# Blocks of "key value;" entries (map, geo, split_clients, types), not of directives.
_VALUE_BLOCKS = frozenset({"map", "geo", "split_clients", "types"})
# ngx_methods_names: what limit_except accepts (case-insensitively).
_METHODS = frozenset(
    {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "MKCOL",
        "COPY",
        "MOVE",
        "OPTIONS",
        "PROPFIND",
        "PROPPATCH",
        "LOCK",
        "UNLOCK",
        "PATCH",
    }
)

ServerChoice = Literal["only", "default_server", "first"]
InheritedFrom = Literal["location", "enclosing location", "server", "http", "default"]


@dataclass(frozen=True, slots=True)
class Judged:
    """The location nginx would choose for one request, and the read timeout it enforces there.

    Lines are 1-based, each in the file next to it (an included file or the config itself).
    """

    uri: str
    method: str
    server_file: str
    server_line: int
    server_names: tuple[str, ...]
    # Why this server: the only one in http, the one marked default_server, or the first.
    server_choice: ServerChoice
    server_count: int
    # The location as written, e.g. "location = /checkout"; None: no location matches, the
    # server's own settings serve the request (nginx then serves files from root, no proxying).
    location: str | None
    location_file: str | None
    location_line: int | None
    timeout_ms: int
    timeout_file: str | None
    timeout_line: int | None  # None: nothing sets it, nginx's default applies
    inherited_from: InheritedFrom
    # The request reaches proxy_pass: the chosen location has one (nested locations do not
    # inherit it), directly or in a limit_except that applies to the method.
    proxies: bool
    # nginx answers with a 301 to uri + "/" (auto redirect) instead of serving the request.
    redirects: bool
    unresolved_includes: tuple[Include, ...] = ()
    # The proxy_pass the request reaches (None when it reaches none): the local backend points
    # its address at the API it started (grader/learner/nginxroute.py).
    proxy_pass: Stmt | None = None

    @property
    def timeout_s(self) -> float:
        """The effective proxy_read_timeout in seconds."""
        return self.timeout_ms / 1000

    @property
    def location_label(self) -> str:
        """The location as written, or what serves the request when no location matches."""
        return self.location or "server (no location matches)"

    def summary(self, root: str | Path | None = None) -> str:
        """One sentence for a check's evidence; files are shown relative to ``root`` if given."""

        def at(file: str | None, line: int | None) -> str:
            shown = file or "?"
            if root is not None and file is not None:
                shown = os.path.relpath(file, root)
            return f"{shown}:{line}"

        server = at(self.server_file, self.server_line)
        where = (
            f"{self.location} ({at(self.location_file, self.location_line)})"
            if self.location is not None
            else f"the server at {server} itself (no location matches)"
        )
        if self.server_count > 1:
            why = "marked default_server" if self.server_choice == "default_server" else "first"
            where += (
                f", in the server at {server} ({why} of {self.server_count} servers: "
                "the grader does not know the Host)"
            )
        if self.inherited_from == "default":
            timeout = f"proxy_read_timeout not set, so nginx's default {self.timeout_s:g} s applies"
        else:
            block = {"location": "the location", "http": "the http block"}.get(
                self.inherited_from, f"its {self.inherited_from} block"
            )
            timeout = (
                f"proxy_read_timeout {self.timeout_s:g} s, set in {block} "
                f"({at(self.timeout_file, self.timeout_line)})"
            )
        how = (
            f"; nginx answers it with a 301 to {self.uri}/"
            if self.redirects
            else ("" if self.proxies else "; it does not proxy_pass")
        )
        return f"{self.method} {self.uri} is served by {where}: {timeout}{how}"


# --- servers and inheritance ----------------------------------------------------------------------


def _check_timeouts(statements: Sequence[Stmt], context: str, in_http: bool) -> None:
    """Refuse what nginx refuses of proxy_read_timeout anywhere in the config, with its line."""
    if context in _VALUE_BLOCKS:
        return  # its entries are keys and values (a key may be any word), not directives
    for stmt in statements:
        if stmt.name == "proxy_read_timeout":
            # Not in `if`, limit_except, upstream, nor a stream module's server.
            if not in_http or context not in _TIMEOUT_CONTEXTS:
                raise NginxConfError(
                    '"proxy_read_timeout" directive is not allowed here', stmt.line, stmt.file
                )
            _timeout_of(stmt)
        if stmt.block is not None:
            _check_timeouts(stmt.block, stmt.name, in_http or stmt.name == "http")


def _timeout_of(stmt: Stmt) -> int:
    if len(stmt.args) != 1:
        raise NginxConfError(
            'invalid number of arguments in "proxy_read_timeout" directive', stmt.line, stmt.file
        )
    ms = parse_time(stmt.args[0])
    if ms is None:
        raise NginxConfError(
            f'invalid value "{stmt.args[0]}" in "proxy_read_timeout" directive '
            "(a time such as 10s, 500ms or 1m30s)",
            stmt.line,
            stmt.file,
        )
    return ms


def _own_timeout(block: Stmt) -> Stmt | None:
    """The proxy_read_timeout set directly in a block; nginx refuses a second one."""
    found = block.children("proxy_read_timeout")
    if len(found) > 1:
        raise NginxConfError(
            '"proxy_read_timeout" directive is duplicate', found[1].line, found[1].file
        )
    return found[0] if found else None


def _pick_server(http: Stmt) -> tuple[Stmt, ServerChoice, int]:
    servers = [s for s in http.children("server") if s.block is not None]
    if not servers:
        raise NginxConfError("the http block has no server block", http.line, http.file)
    if len(servers) == 1:
        return servers[0], "only", 1
    # Without the Host header, the default server of the listening port serves the request:
    # the one marked default_server ("default" is its old spelling), else the first.
    for server in servers:
        for listen in server.children("listen"):
            if {"default_server", "default"} & set(listen.args[1:]):
                return server, "default_server", len(servers)
    return servers[0], "first", len(servers)


def _applies(limit_except: Stmt, method: str) -> bool:
    """Whether a limit_except block's configuration is used for ``method``."""
    listed = set()
    for arg in limit_except.args:
        if arg.upper() not in _METHODS:
            raise NginxConfError(f'invalid method "{arg}"', limit_except.line, limit_except.file)
        listed.add(arg.upper())
    if "GET" in listed:
        listed.add("HEAD")  # allowing GET allows HEAD too
    return method.upper() not in listed


def _proxy_pass(loc: Loc, method: str) -> Stmt | None:
    """The proxy_pass the request reaches in a location, None if it reaches none."""
    # A limit_except that applies to the method is the configuration used for it; it inherits
    # the location's proxy_pass, and may have its own.
    for block in loc.stmt.children("limit_except"):
        if block.block is not None and _applies(block, method) and block.children("proxy_pass"):
            return block.children("proxy_pass")[0]
    own = loc.stmt.children("proxy_pass")
    return own[0] if own else None


def judge(payload: Mapping[str, Any], uri: str = URI, method: str = METHOD) -> Judged:
    """Judge a crossplane payload: which location serves ``method uri``, with which read timeout.

    ``payload`` is what ``crossplane.parse`` returns, with includes followed (``combine=False``,
    the default) or not (``single=True``; the includes are then listed as unresolved). Raises
    :class:`NginxConfError` for an error crossplane reported (other than an include that
    matched no file), for a config without ``http`` or ``server``, and for what nginx refuses in
    the directives judged here: locations, ``limit_except`` methods and ``proxy_read_timeout``.
    """
    statements, unresolved = tree(payload)
    https = [s for s in statements if s.name == "http" and s.block is not None]
    if not https:
        raise NginxConfError("the config has no http block: nginx would serve no HTTP at all")
    if len(https) > 1:
        raise NginxConfError('"http" directive is duplicate', https[1].line, https[1].file)
    _check_timeouts(statements, "main", in_http=False)
    http = https[0]
    server, choice, count = _pick_server(http)
    for other in http.children("server"):  # nginx refuses a bad location in any server
        locations(other, None)
    rc, chain = find(uri, locations(server, None))

    # Innermost first: the chosen location, the locations it is nested in, server, http.
    levels: list[tuple[InheritedFrom, Stmt]] = [("http", http), ("server", server)]
    levels += [("enclosing location", loc.stmt) for loc in chain[:-1]]
    levels += [("location", loc.stmt) for loc in chain[-1:]]
    inherited: InheritedFrom = "default"
    timeout_ms, setter = DEFAULT_READ_TIMEOUT_MS, None
    for level, block in reversed(levels):
        own = _own_timeout(block)
        if own is not None:
            inherited, timeout_ms, setter = level, _timeout_of(own), own
            break

    chosen = chain[-1] if chain else None
    redirects = rc == "done"
    passed_to = None if chosen is None or redirects else _proxy_pass(chosen, method)
    return Judged(
        uri=uri,
        method=method,
        server_file=server.file,
        server_line=server.line,
        server_names=tuple(a for s in server.children("server_name") for a in s.args),
        server_choice=choice,
        server_count=count,
        location=None if chosen is None else chosen.stmt.text,
        location_file=None if chosen is None else chosen.stmt.file,
        location_line=None if chosen is None else chosen.stmt.line,
        timeout_ms=timeout_ms,
        timeout_file=None if setter is None else setter.file,
        timeout_line=None if setter is None else setter.line,
        inherited_from=inherited,
        proxies=passed_to is not None,
        redirects=redirects,
        unresolved_includes=unresolved,
        proxy_pass=passed_to,
    )


def judge_file(
    path: str | Path, uri: str = URI, method: str = METHOD, *, root: str | Path | None = None
) -> Judged:
    """Parse an nginx config with crossplane (:func:`parse`, files inside ``root``), judge it."""
    payload = parse(path, root)
    try:
        return judge(payload, uri, method)
    except RecursionError:  # nesting crossplane could still parse, judged one frame per level
        raise NginxConfError(TOO_DEEP, None, str(path)) from None
