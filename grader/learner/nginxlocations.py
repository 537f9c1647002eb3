"""Which location nginx chooses for a request, over the config as a tree (nginx 1.25-1.27).

:func:`tree` is the config with its includes spliced in (:func:`grader.learner.nginxread.splice`),
as :class:`Stmt` values; :func:`locations` reads a server's locations as
``ngx_http_core_location`` does, refusing what nginx refuses; :func:`find` is
``ngx_http_core_find_location``. :mod:`grader.learner.nginxconf` says what this reproduces of
nginx and what it does not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from grader.learner.nginxread import Include, NginxConfError, splice

# The directives whose handler sets a location's auto_redirect (when its name ends with "/").
_PASS_DIRECTIVES = frozenset(
    {"proxy_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "memcached_pass", "grpc_pass"}
)
_Kind = Literal["exact", "prefix", "noregex", "regex", "iregex", "named"]
# Outcomes of nginx's search: OK exact match, DONE auto redirect, AGAIN prefix, DECLINED none.
Rc = Literal["ok", "done", "again", "declined"]


@dataclass(frozen=True, slots=True)
class Stmt:
    """One directive, with the file it is written in (includes are spliced into their block)."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int
    block: tuple[Stmt, ...] | None

    @property
    def text(self) -> str:
        """The directive as written: its name and arguments."""
        return " ".join((self.name, *self.args))

    def children(self, name: str) -> list[Stmt]:
        """The statements named ``name`` directly in this one's block."""
        return [s for s in self.block or () if s.name == name]


def _strip_where(message: str, file: str, line: int | None) -> str:
    # crossplane appends " in FILE:LINE" to its messages; the error carries them separately.
    suffix = f" in {file}:{line}"
    return message[: -len(suffix)] if message.endswith(suffix) else message


def tree(payload: Mapping[str, Any]) -> tuple[tuple[Stmt, ...], tuple[Include, ...]]:
    """The main file's statements with includes spliced in, and the includes that read nothing."""
    statements, unresolved = splice(payload)
    # An include that cannot be opened here is tolerated (see nginxconf's docstring); any other
    # problem crossplane met is one nginx would refuse the config for.
    unreadable = {(i.file, i.line) for i in unresolved}
    for config in payload["config"]:
        for error in config.get("errors", ()):
            file, line = str(error.get("file") or config["file"]), error.get("line")
            if (file, line) in unreadable:
                continue
            raise NginxConfError(_strip_where(str(error.get("error")), file, line), line, file)
    return tuple(_stmt(raw) for raw in statements), unresolved


def _stmt(raw: Mapping[str, Any]) -> Stmt:
    block = raw.get("block")
    return Stmt(
        raw["directive"],
        tuple(raw["args"]),
        raw["file"],
        raw["line"],
        None if block is None else tuple(_stmt(child) for child in block),
    )


@dataclass(frozen=True, slots=True)
class Loc:
    """A location as nginx's ngx_http_core_location reads it."""

    stmt: Stmt
    kind: _Kind
    name: str  # without its modifier: the prefix, the exact URI or the regex
    nested: tuple[Loc, ...]

    @property
    def inclusive(self) -> bool:
        """Whether it matches by prefix (plain or ``^~``)."""
        return self.kind in ("prefix", "noregex")

    @property
    def auto_redirect(self) -> bool:
        """Whether nginx redirects the URI without the trailing slash of its name."""
        # ngx_http_proxy_pass and its siblings: a location whose name ends with "/" redirects
        # the URI without that slash. Only their direct use counts: inside an `if` or a
        # limit_except they set another (nameless) location configuration.
        return self.name.endswith("/") and any(
            s.name in _PASS_DIRECTIVES for s in self.stmt.block or ()
        )


def _modifier(stmt: Stmt) -> tuple[_Kind, str]:
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


def locations(block: Stmt, parent: Loc | None) -> tuple[Loc, ...]:
    """The locations directly in ``block`` (a server or a location), each with its nested ones."""
    found: list[Loc] = []
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
        loc = Loc(stmt, kind, name, ())
        loc = Loc(stmt, kind, name, locations(stmt, loc))
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


def _regex_matches(loc: Loc, uri: str) -> bool:
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


def _find_static(uri: str, level: Sequence[Loc]) -> tuple[Rc, Loc | None]:
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


def find(uri: str, level: Sequence[Loc]) -> tuple[Rc, tuple[Loc, ...]]:
    """ngx_http_core_find_location: the outcome and the chosen chain, outermost first."""
    rc, static = _find_static(uri, level)
    chain: tuple[Loc, ...] = () if static is None else (static,)
    noregex = False
    if rc == "again" and static is not None:
        noregex = static.kind == "noregex"
        rc, inner = find(uri, static.nested)
        chain += inner
    if rc in ("ok", "done"):
        return rc, chain
    # A ^~ on the longest prefix of this level skips this level's regexes; a ^~ nested in it
    # only skips the nested level's own, as in nginx.
    if not noregex:
        for loc in level:
            if loc.kind in ("regex", "iregex") and _regex_matches(loc, uri):
                _, inner = find(uri, loc.nested)
                # nginx returns OK here even when a nested search would redirect.
                return "ok", (loc, *inner)
    return rc, chain
