"""Reading a learner's nginx config: every file the one safe way, includes followed and spliced.

:func:`parse` reads the config and the files it includes into crossplane's payload, each file
through :mod:`grader.learner.learnerfile` (inside the repo, bounded); :func:`splice` puts what
each include read where the include stands, for whoever walks the config as nginx would: the
judgement of :mod:`grader.learner.nginxconf` and the local backend's rewiring of it.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crossplane

from grader.errors import FailfastError
from grader.learner import learnerfile
from grader.learner.learnerfile import describe_size


class NginxConfError(FailfastError):
    """A config nginx would reject, or one the grader cannot evaluate; ``line`` points at it.

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


# Bounds on reading a learner's config: learnerfile.NGINX_CONF_* says why these.
MAX_CONF_BYTES = learnerfile.NGINX_CONF_MAX_BYTES
MAX_CONF_FILES = learnerfile.NGINX_CONF_MAX_FILES
MAX_CONF_TOTAL_BYTES = learnerfile.NGINX_CONF_TOTAL_MAX_BYTES
_UTF8_BOM = b"\xef\xbb\xbf"
TOO_DEEP = (
    "blocks are nested hundreds of levels deep, deeper than the grader reads: "
    "a real config nests a few levels; remove the extra nesting"
)


def parse(path: str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """The crossplane payload of an nginx config, with its includes followed.

    crossplane's own context and argument checks are off: its directive table is older than
    the nginx a learner runs, and :func:`grader.learner.nginxconf.judge` checks what it relies
    on the way nginx does.

    Every file is read by :func:`grader.learner.learnerfile.read_bytes` (a regular file inside
    ``root``, by default the config's directory, of at most :data:`MAX_CONF_BYTES`) and handed
    to crossplane as a private copy, so crossplane never opens a learner's file itself: a FIFO,
    a device or a symlink out of the repo is a
    :class:`~grader.learner.learnerfile.LearnerFileError` naming the file, never a hang.
    Includes are followed as crossplane follows them (relative to the config's directory, globs
    sorted); one that names a file outside ``root``, such as the nginx image's
    ``/etc/nginx/mime.types``, is left unresolved, like one that names no file here: the grader
    does not read the machine it runs on.
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
                    error["error"] = TOO_DEEP
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


def splice(payload: Mapping[str, Any]) -> tuple[list[dict[str, Any]], tuple[Include, ...]]:
    """The main file's statements, each include replaced by the statements of what it read.

    A statement is ``{"directive", "args", "file", "line"}``, with ``"block"`` when it has one;
    comments are left out. An include that read no file (none matched inside the repo, or the
    payload was parsed with ``single=True``) is left out and returned, as written. An include
    that leads back to a file including it is an :class:`NginxConfError`: nginx would include
    it again until it gave up.
    """
    configs: Sequence[Mapping[str, Any]] = payload.get("config") or ()
    if not configs:
        raise NginxConfError("crossplane returned no config to read")
    unresolved: list[Include] = []

    def build(
        raw_block: Sequence[Mapping[str, Any]], file: str, seen: tuple[int, ...]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for raw in raw_block:
            name, line = str(raw["directive"]), int(raw.get("line") or 0)
            args = [str(a) for a in raw.get("args", ())]
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
            stmt: dict[str, Any] = {"directive": name, "args": args, "file": file, "line": line}
            if "block" in raw:
                stmt["block"] = build(raw["block"], file, seen)
            out.append(stmt)
        return out

    return build(configs[0].get("parsed", ()), str(configs[0]["file"]), (0,)), tuple(unresolved)
