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
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import crossplane

from grader.errors import FailfastError
from grader.learner import learnerfile
from grader.learner.learnerfile import describe_size

CONF_PATH = "nginx/nginx.conf"  # where the learner contract puts the edge proxy's config
URI = "/checkout"
METHOD = "POST"
DEFAULT_READ_TIMEOUT_MS = 60_000  # ngx_http_proxy_merge_loc_conf: read_timeout defaults to 60000

# NGX_MAX_INT_T_VALUE on the 64-bit builds nginx images ship: the overflow bound of parse_time.
_NGX_MAX_INT = 2**63 - 1

# The directives whose handler sets a location's auto_redirect (when its name ends with "/").
_PASS_DIRECTIVES = frozenset(
    {"proxy_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "memcached_pass", "grpc_pass"}
)
# Where nginx allows proxy_read_timeout (NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF).
_TIMEOUT_CONTEXTS = frozenset({"http", "server", "location"})
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
_Kind = Literal["exact", "prefix", "noregex", "regex", "iregex", "named"]


class NginxConfError(FailfastError):
    """A config nginx would reject, or one this module cannot evaluate; ``line`` points at it.

    ``file`` is the file the line is in (an included file, or the config itself); both are None
    when the problem has no single place, such as a config without an ``http`` block.
    """

    def __init__(self, message: str, line: int | None = None, file: str | None = None) -> None:
        where = f"{file or 'nginx.conf'}:{line}: " if line is not None else ""
        if line is None and file is not None:
            where = f"{file}: "
        super().__init__(f"{where}{message}")
        self.message, self.line, self.file = message, line, file


@dataclass(frozen=True, slots=True)
class Include:
    """An ``include`` whose files were not read: none matched here, or they were not followed."""

    file: str
    line: int
    pattern: str


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


# --- time values ----------------------------------------------------------------------------------

# ngx_parse_time's steps: units must come largest first, each at most once.
(
    _ST_START,
    _ST_YEAR,
    _ST_MONTH,
    _ST_WEEK,
    _ST_DAY,
    _ST_HOUR,
    _ST_MIN,
    _ST_SEC,
    _ST_MSEC,
    _ST_LAST,
) = range(10)
_UNIT_STEP = {
    "y": (_ST_YEAR, 365 * 86400),
    "M": (_ST_MONTH, 30 * 86400),
    "w": (_ST_WEEK, 7 * 86400),
    "d": (_ST_DAY, 86400),
    "h": (_ST_HOUR, 3600),
    "m": (_ST_MIN, 60),
    "s": (_ST_SEC, 1),
    " ": (_ST_LAST, 1),  # a space ends a bare number of seconds, as in "1 2" (= 3 s)
}


def parse_time(text: str, *, is_sec: bool = False) -> int | None:
    """The value in ms (``is_sec`` False) or s, as nginx's ``ngx_parse_time``; None if rejected.

    ``proxy_read_timeout`` is an msec directive (``ngx_conf_set_msec_slot``), read with ``is_sec``
    False: a bare number is seconds; units ms, s, m, h, d, w, largest first and each once, as in
    ``1m30s``; a bare number at the end adds seconds. ``y`` (365 days) and ``M`` (30 days) exist
    only for second directives (``is_sec`` True), which in turn reject ``ms``: nginx refuses
    ``proxy_read_timeout 1y``. Fractions, signs and other letters are rejected, as is a value
    above nginx's integer range.
    """
    valid = False
    value = total = 0
    cutoff, cutlim = divmod(_NGX_MAX_INT, 10)
    step = _ST_START if is_sec else _ST_MONTH  # msec values start below months: no y, no M
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        i += 1
        if "0" <= char <= "9":
            digit = ord(char) - ord("0")
            if value > cutoff or (value == cutoff and digit > cutlim):
                return None
            value = value * 10 + digit
            valid = True
            continue
        if char == "m" and i < end and text[i] == "s":
            if is_sec or step >= _ST_MSEC:
                return None
            i += 1
            step, scale, bound = _ST_MSEC, 1, _NGX_MAX_INT
        elif char in _UNIT_STEP:
            unit_step, scale = _UNIT_STEP[char]
            # Each unit must be smaller than the one before. "y" is tested with ">" in nginx, a
            # no-op difference as no unit is larger; msec values start at months, so y fails.
            if step >= unit_step:
                return None
            step, bound = unit_step, _NGX_MAX_INT // scale
        else:
            return None
        if step != _ST_MSEC and not is_sec:
            scale *= 1000
            bound //= 1000
        if value > bound:
            return None
        value *= scale
        if total > _NGX_MAX_INT - value:
            return None
        total += value
        value = 0
        while i < end and text[i] == " ":
            i += 1
    if not valid:
        return None
    if not is_sec:
        if value > _NGX_MAX_INT // 1000:
            return None
        value *= 1000
    if total > _NGX_MAX_INT - value:
        return None
    return total + value


def time_seconds(text: str) -> float | None:
    """Seconds in the value of an msec directive such as proxy_read_timeout, None if rejected."""
    ms = parse_time(text)
    return None if ms is None else ms / 1000


# --- the config as a tree, includes spliced in ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stmt:
    """One directive, with the file it is written in (includes are spliced into their block)."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int
    block: tuple[_Stmt, ...] | None

    @property
    def text(self) -> str:
        return " ".join((self.name, *self.args))

    def children(self, name: str) -> list[_Stmt]:
        return [s for s in self.block or () if s.name == name]


def _strip_where(message: str, file: str, line: int | None) -> str:
    # crossplane appends " in FILE:LINE" to its messages; the error carries them separately.
    suffix = f" in {file}:{line}"
    return message[: -len(suffix)] if message.endswith(suffix) else message


def _tree(payload: Mapping[str, Any]) -> tuple[tuple[_Stmt, ...], tuple[Include, ...]]:
    """The main file's statements with includes spliced in, and the includes that read nothing."""
    configs: Sequence[Mapping[str, Any]] = payload.get("config") or ()
    if not configs:
        raise NginxConfError("crossplane returned no config to judge")
    unresolved: list[Include] = []

    def build(
        raw_block: Sequence[Mapping[str, Any]], file: str, seen: tuple[int, ...]
    ) -> list[_Stmt]:
        out: list[_Stmt] = []
        for raw in raw_block:
            name, line = str(raw["directive"]), int(raw.get("line") or 0)
            args = tuple(str(a) for a in raw.get("args", ()))
            if name == "#":  # a comment, when parsed with comments=True
                continue
            if name == "include" and "block" not in raw:
                indices: Sequence[int] = raw.get("includes") or ()
                if not indices:  # no file matched here, or parsed with single=True
                    unresolved.append(Include(file, line, " ".join(args)))
                for index in indices:
                    if index in seen:  # nginx would recurse until it runs out of files
                        raise NginxConfError(
                            f"include {' '.join(args)} leads back to a file that includes it",
                            line,
                            file,
                        )
                    included = configs[index]
                    out += build(included.get("parsed", ()), str(included["file"]), (*seen, index))
                continue
            block = build(raw["block"], file, seen) if "block" in raw else None
            out.append(_Stmt(name, args, file, line, None if block is None else tuple(block)))
        return out

    statements = tuple(build(configs[0].get("parsed", ()), str(configs[0]["file"]), (0,)))
    # An include that cannot be opened here is tolerated (see the module docstring); any other
    # problem crossplane met is one nginx would refuse the config for.
    unreadable = {(i.file, i.line) for i in unresolved}
    for config in configs:
        for error in config.get("errors", ()):
            file, line = str(error.get("file") or config["file"]), error.get("line")
            if (file, line) in unreadable:
                continue
            raise NginxConfError(_strip_where(str(error.get("error")), file, line), line, file)
    return statements, tuple(unresolved)


# --- locations ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Loc:
    """A location as nginx's ngx_http_core_location reads it."""

    stmt: _Stmt
    kind: _Kind
    name: str  # without its modifier: the prefix, the exact URI or the regex
    nested: tuple[_Loc, ...]

    @property
    def inclusive(self) -> bool:
        return self.kind in ("prefix", "noregex")

    @property
    def auto_redirect(self) -> bool:
        # ngx_http_proxy_pass and its siblings: a location whose name ends with "/" redirects
        # the URI without that slash. Only their direct use counts: inside an `if` or a
        # limit_except they set another (nameless) location configuration.
        return self.name.endswith("/") and any(
            s.name in _PASS_DIRECTIVES for s in self.stmt.block or ()
        )


def _modifier(stmt: _Stmt) -> tuple[_Kind, str]:
    """The kind and name of a location, with nginx's errors for what it refuses."""
    if len(stmt.args) == 2:
        mod, name = stmt.args
        kinds: dict[str, _Kind] = {"=": "exact", "^~": "noregex", "~": "regex", "~*": "iregex"}
        if mod not in kinds:
            raise NginxConfError(f'invalid location modifier "{mod}"', stmt.line, stmt.file)
        return kinds[mod], name
    if len(stmt.args) != 1:
        raise NginxConfError(
            'invalid number of arguments in "location" directive', stmt.line, stmt.file
        )
    # One argument: the modifier may be glued to the name, as in "=/checkout" or "~*\.php$".
    (name,) = stmt.args
    if name.startswith("="):
        return "exact", name[1:]
    if name.startswith("^~"):
        return "noregex", name[2:]
    if name.startswith("~*"):
        return "iregex", name[2:]
    if name.startswith("~"):
        return "regex", name[1:]
    if name.startswith("@"):
        return "named", name
    return "prefix", name


def _locations(block: _Stmt, parent: _Loc | None) -> tuple[_Loc, ...]:
    """The locations directly in ``block`` (a server or a location), each with its nested ones."""
    found: list[_Loc] = []
    for stmt in block.children("location"):
        if stmt.block is None:
            continue
        kind, name = _modifier(stmt)
        if parent is not None:  # the checks of ngx_http_core_location on nested locations
            problem = None
            if parent.kind == "exact":
                problem = f'location "{name}" cannot be inside the exact location "{parent.name}"'
            elif parent.kind == "named":
                problem = f'location "{name}" cannot be inside the named location "{parent.name}"'
            elif kind == "named":
                problem = f'named location "{name}" can be on the server level only'
            elif kind not in ("regex", "iregex") and not name.startswith(parent.name):
                problem = f'location "{name}" is outside location "{parent.name}"'
            if problem:
                raise NginxConfError(problem, stmt.line, stmt.file)
        loc = _Loc(stmt, kind, name, ())
        loc = _Loc(stmt, kind, name, _locations(stmt, loc))
        for other in found:  # ngx_http_join_exact_locations
            same_kind = (other.kind == kind == "exact") or (other.inclusive and loc.inclusive)
            if other.name == name and same_kind:
                raise NginxConfError(f'duplicate location "{name}"', stmt.line, stmt.file)
        found.append(loc)
    return tuple(found)


def _pcre_to_python(pattern: str) -> str:
    # PCRE's named groups (?<name>...) and (?'name'...) are spelled (?P<name>...) in Python;
    # lookbehinds (?<= and (?<! are the same in both.
    pattern = re.sub(r"(?<!\\)\(\?<(?![=!])", "(?P<", pattern)
    return re.sub(r"(?<!\\)\(\?'(\w+)'", r"(?P<\1>", pattern)


def _regex_matches(loc: _Loc, uri: str) -> bool:
    flags = re.IGNORECASE if loc.kind == "iregex" else 0
    try:
        compiled = re.compile(_pcre_to_python(loc.name), flags)
    except re.error as exc:
        raise NginxConfError(
            f'cannot evaluate the regex of "{loc.stmt.text}" with Python\'s re '
            f"(nginx uses PCRE): {exc}",
            loc.stmt.line,
            loc.stmt.file,
        ) from exc
    return compiled.search(uri) is not None


# Outcomes of nginx's search: OK exact match, DONE auto redirect, AGAIN prefix, DECLINED none.
_Rc = Literal["ok", "done", "again", "declined"]


def _find_static(uri: str, level: Sequence[_Loc]) -> tuple[_Rc, _Loc | None]:
    """ngx_http_core_find_static_location over one level's exact and prefix locations."""
    static = [loc for loc in level if loc.kind == "exact" or loc.inclusive]
    for loc in static:
        if loc.kind == "exact" and loc.name == uri:
            return "ok", loc
    for loc in static:
        if loc.inclusive and loc.name == uri:
            return "again", loc
    # The tree node of uri + "/" is met after any shorter prefix, so its redirect wins over it;
    # nginx uses the exact location's configuration when both share the name.
    slash = [loc for loc in static if loc.name == uri + "/"]
    if any(loc.auto_redirect for loc in slash):
        return "done", next((loc for loc in slash if loc.kind == "exact"), slash[0])
    prefixes = [loc for loc in static if loc.inclusive and uri.startswith(loc.name)]
    if prefixes:
        return "again", max(prefixes, key=lambda loc: len(loc.name))
    return "declined", None


def _find(uri: str, level: Sequence[_Loc]) -> tuple[_Rc, tuple[_Loc, ...]]:
    """ngx_http_core_find_location: the outcome and the chosen chain, outermost first."""
    rc, static = _find_static(uri, level)
    chain: tuple[_Loc, ...] = () if static is None else (static,)
    noregex = False
    if rc == "again" and static is not None:
        noregex = static.kind == "noregex"
        rc, inner = _find(uri, static.nested)
        chain += inner
    if rc in ("ok", "done"):
        return rc, chain
    # A ^~ on the longest prefix of this level skips this level's regexes; a ^~ nested in it
    # only skips the nested level's own, as in nginx.
    if not noregex:
        for loc in level:
            if loc.kind in ("regex", "iregex") and _regex_matches(loc, uri):
                _, inner = _find(uri, loc.nested)
                # nginx returns OK here even when a nested search would redirect.
                return "ok", (loc, *inner)
    return rc, chain


# --- servers and inheritance ----------------------------------------------------------------------


def _check_timeouts(statements: Sequence[_Stmt], context: str, in_http: bool) -> None:
    """Refuse what nginx refuses of proxy_read_timeout anywhere in the config, with its line."""
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


def _timeout_of(stmt: _Stmt) -> int:
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


def _own_timeout(block: _Stmt) -> _Stmt | None:
    """The proxy_read_timeout set directly in a block; nginx refuses a second one."""
    found = block.children("proxy_read_timeout")
    if len(found) > 1:
        raise NginxConfError(
            '"proxy_read_timeout" directive is duplicate', found[1].line, found[1].file
        )
    return found[0] if found else None


def _pick_server(http: _Stmt) -> tuple[_Stmt, ServerChoice, int]:
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


def _applies(limit_except: _Stmt, method: str) -> bool:
    """Whether a limit_except block's configuration is used for ``method``."""
    listed = set()
    for arg in limit_except.args:
        if arg.upper() not in _METHODS:
            raise NginxConfError(f'invalid method "{arg}"', limit_except.line, limit_except.file)
        listed.add(arg.upper())
    if "GET" in listed:
        listed.add("HEAD")  # allowing GET allows HEAD too
    return method.upper() not in listed


def _proxies(loc: _Loc, method: str) -> bool:
    if loc.stmt.children("proxy_pass"):
        return True
    # A limit_except that applies to the method is the configuration used for it; it inherits
    # the location's proxy_pass, and may have its own.
    return any(
        _applies(block, method) and block.children("proxy_pass")
        for block in loc.stmt.children("limit_except")
        if block.block is not None
    )


def judge(payload: Mapping[str, Any], uri: str = URI, method: str = METHOD) -> Judged:
    """Judge a crossplane payload: which location serves ``method uri``, with which read timeout.

    ``payload`` is what ``crossplane.parse`` returns, with includes followed (``combine=False``,
    the default) or not (``single=True``; the includes are then listed as unresolved). Raises
    :class:`NginxConfError` for an error crossplane reported (other than an include that
    matched no file), for a config without ``http`` or ``server``, and for what nginx refuses in
    the directives judged here: locations, ``limit_except`` methods and ``proxy_read_timeout``.
    """
    statements, unresolved = _tree(payload)
    https = [s for s in statements if s.name == "http" and s.block is not None]
    if not https:
        raise NginxConfError("the config has no http block: nginx would serve no HTTP at all")
    if len(https) > 1:
        raise NginxConfError('"http" directive is duplicate', https[1].line, https[1].file)
    _check_timeouts(statements, "main", in_http=False)
    http = https[0]
    server, choice, count = _pick_server(http)
    for other in http.children("server"):  # nginx refuses a bad location in any server
        _locations(other, None)
    rc, chain = _find(uri, _locations(server, None))

    # Innermost first: the chosen location, the locations it is nested in, server, http.
    levels: list[tuple[InheritedFrom, _Stmt]] = [("http", http), ("server", server)]
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
        proxies=chosen is not None and not redirects and _proxies(chosen, method),
        redirects=redirects,
        unresolved_includes=unresolved,
    )


# Bounds on reading a learner's config: learnerfile.NGINX_CONF_* says why these.
MAX_CONF_BYTES = learnerfile.NGINX_CONF_MAX_BYTES
MAX_CONF_FILES = learnerfile.NGINX_CONF_MAX_FILES
MAX_CONF_TOTAL_BYTES = learnerfile.NGINX_CONF_TOTAL_MAX_BYTES
_UTF8_BOM = b"\xef\xbb\xbf"
_TOO_DEEP = (
    "blocks are nested hundreds of levels deep, deeper than the grader reads: "
    "a real config nests a few levels; remove the extra nesting"
)


def parse(path: str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """The crossplane payload of an nginx config, with its includes followed.

    crossplane's own context and argument checks are off: its directive table is older than
    the nginx a learner runs, and :func:`judge` checks what it relies on the way nginx does.

    Every file is read by :func:`grader.learner.learnerfile.read_bytes` (a regular file inside
    ``root``,
    by default the config's directory, of at most :data:`MAX_CONF_BYTES`) and handed to
    crossplane as a private copy, so crossplane never opens a learner's file itself: a FIFO,
    a device or a symlink out of the repo is a :class:`~grader.learner.learnerfile.LearnerFileError`
    naming the file, never a hang. Includes are followed as crossplane follows them (relative
    to the config's directory, globs sorted); one that names a file outside ``root``, such as
    the nginx image's ``/etc/nginx/mime.types``, is left unresolved, like one that names no
    file here: the grader does not read the machine it runs on.
    """
    main = str(path)
    top = Path(main).parent if root is None else Path(root)
    config_dir = os.path.dirname(main)
    payload: dict[str, Any] = {"status": "ok", "errors": [], "config": []}
    # Each file once, in the order crossplane would read them, with the include that named it.
    files: list[tuple[str, tuple[str, int] | None]] = [(main, None)]
    index_of = {main: 0}
    total = 0
    with tempfile.TemporaryDirectory(prefix="failfast-nginx-") as scratch:
        for index, (file, included_at) in enumerate(files):  # grows as includes are found
            data = _read_conf(top, file, included_at)
            total += len(data)
            if total > MAX_CONF_TOTAL_BYTES:
                where = included_at or (file, None)
                raise NginxConfError(
                    f"the config and the files it includes are more than "
                    f"{describe_size(MAX_CONF_TOTAL_BYTES)} together, more than the grader "
                    f"reads: include fewer or smaller files",
                    where[1],
                    where[0],
                )
            if data.startswith(_UTF8_BOM):
                raise NginxConfError(
                    "the file starts with a UTF-8 byte order mark (BOM), which nginx reads as "
                    'part of the first directive ("unknown directive"): save it as UTF-8 '
                    "without a BOM",
                    1,
                    file,
                )
            copy = os.path.join(scratch, f"{index}.conf")
            Path(copy).write_bytes(data)
            parsed: dict[str, Any] = crossplane.parse(
                copy, single=True, comments=False, check_ctx=False, check_args=False
            )
            config: dict[str, Any] = parsed["config"][0]
            config["file"] = file
            for error in config.get("errors", ()):
                error["error"] = str(error["error"]).replace(copy, file)
                if "maximum recursion depth" in error["error"]:  # crossplane recurses per block
                    error["error"] = _TOO_DEEP
                payload["errors"].append({"file": file, **error})
            if config.get("status") == "failed":
                payload["status"] = "failed"
            for stmt in _include_statements(config.get("parsed", ())):
                stmt["includes"] = []
                for match in _include_matches(top, config_dir, stmt, file):
                    if match not in index_of:
                        if len(files) >= MAX_CONF_FILES:
                            raise NginxConfError(
                                f"the config includes more than {MAX_CONF_FILES} files, more "
                                f"than the grader reads: include fewer files",
                                int(stmt["line"]),
                                file,
                            )
                        index_of[match] = len(files)
                        files.append((match, (file, int(stmt["line"]))))
                    stmt["includes"].append(index_of[match])
            payload["config"].append(config)
    return payload


def _read_conf(top: Path, file: str, included_at: tuple[str, int] | None) -> bytes:
    """One file of the config, read the one safe way; an include says where it was named."""
    relative = os.path.relpath(file, top)
    try:
        return learnerfile.read_bytes(top, relative, MAX_CONF_BYTES)
    except learnerfile.LearnerFileError as error:
        if included_at is None:
            raise
        including = Path(os.path.relpath(included_at[0], top)).as_posix()
        raise learnerfile.LearnerFileError(
            error.file,
            f"(included at {including}:{included_at[1]}) {error.problem}",
            error.fix,
            missing=error.missing,
        ) from None


def _include_statements(block: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``include`` directives of a parsed file, at any depth, in order.

    A loop, not a recursion: the nesting can be as deep as crossplane's own recursion reached.
    """
    found: list[dict[str, Any]] = []
    pending = list(reversed(block))
    while pending:
        stmt = pending.pop()
        if stmt.get("directive") == "include" and "block" not in stmt:
            found.append(stmt)
        pending += reversed(stmt.get("block", ()))
    return found


def _include_matches(top: Path, config_dir: str, stmt: Mapping[str, Any], file: str) -> list[str]:
    """The files an include names, as crossplane finds them, if they are inside ``top``."""
    args = stmt.get("args") or []
    if len(args) != 1:
        raise NginxConfError(
            'invalid number of arguments in "include" directive', int(stmt["line"]), file
        )
    pattern = args[0] if os.path.isabs(args[0]) else os.path.join(config_dir, args[0])
    inside = Path(os.path.abspath(pattern)).is_relative_to(os.path.abspath(top))
    if not inside:  # the container's own file, e.g. /etc/nginx/mime.types: unknown here
        return []
    if glob.has_magic(pattern):
        return sorted(glob.glob(pattern))
    return [pattern] if os.path.lexists(pattern) else []


def judge_file(
    path: str | Path, uri: str = URI, method: str = METHOD, *, root: str | Path | None = None
) -> Judged:
    """Parse an nginx config with crossplane (:func:`parse`, files inside ``root``), judge it."""
    payload = parse(path, root)
    try:
        return judge(payload, uri, method)
    except RecursionError:  # nesting crossplane could still parse, judged one frame per level
        raise NginxConfError(_TOO_DEEP, None, str(path)) from None
