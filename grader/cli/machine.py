"""What the grader's process needs of the machine before any command runs.

A working directory that exists, and a place where matplotlib may keep its caches.

:func:`prepare` runs first thing in :func:`grader.cli.app.main`. A working directory that was
deleted under the grader (``mkdir d; cd d; rmdir ../d; failfast check ...``) is left for ``/``, so
that every program the grader starts (k6, nginx, the learner's API) has one; a relative path
given on the command line would then mean nothing, and each command refuses it with
:func:`refuse_relative`. An unwritable HOME would make matplotlib warn on stderr, in the middle
of the report, when a chart is first drawn: it gets a private directory instead.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from grader.errors import RepoError

# Where the grader ran from, when that directory was deleted before it started (else empty).
_deleted_cwd: list[str] = []


def prepare() -> None:
    """Make the process safe to run on an odd machine: a cwd, and matplotlib's directory."""
    _leave_deleted_cwd()
    _private_matplotlib_dir()


def refuse_relative(paths: Mapping[str, Path | None]) -> None:
    """Raise :func:`relative_paths_error`'s error, if there is one."""
    error = relative_paths_error(paths)
    if error is not None:
        raise error


def relative_paths_error(paths: Mapping[str, Path | None]) -> RepoError | None:
    """Relative paths (option -> path) when the grader's working directory was deleted.

    The error names the deleted directory, every relative path and the fix; None when there is
    nothing to refuse.
    """
    if not _deleted_cwd:
        return None
    relative = [
        f"{option} {json.dumps(str(path))}"
        for option, path in paths.items()
        if path and not path.is_absolute()
    ]
    if not relative:
        return None
    return RepoError(
        f"failfast was run from {_deleted_cwd[0]}, a directory that has been deleted, so "
        f"relative paths cannot be found from it: {', '.join(relative)}. cd to a directory "
        "that exists (your checkout, for `failfast check`), or give these paths as absolute "
        "paths, and run the command again."
    )


def _leave_deleted_cwd() -> None:
    """If the working directory was deleted, say where it was and move to ``/``."""
    try:
        os.getcwd()
    except FileNotFoundError:
        where = "the current directory"
        with contextlib.suppress(OSError):
            where = os.readlink("/proc/self/cwd").removesuffix(" (deleted)")
        _deleted_cwd[:] = [where]
        os.chdir("/")


def _private_matplotlib_dir() -> None:
    """Give matplotlib a private directory when its default one cannot be written.

    matplotlib keeps its configuration and font cache in ``$MPLCONFIGDIR``, else in
    ``~/.config/matplotlib`` and ``~/.cache/matplotlib``; when those cannot be written it warns
    on stderr (``Matplotlib created a temporary cache directory...``) in the middle of the
    report. A private temporary directory, removed at exit, avoids that: the `failfast check`
    processes of `failfast grade` inherit it and share one font cache. The matplotlib logger
    keeps only errors: its warnings (a font not found) are not the learner's concern.
    """
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    if os.environ.get("MPLCONFIGDIR") or _writable(_matplotlib_dirs(os.environ)):
        return
    with contextlib.suppress(OSError):
        private = tempfile.mkdtemp(prefix="failfast-matplotlib-")
        atexit.register(shutil.rmtree, private, ignore_errors=True)
        os.environ["MPLCONFIGDIR"] = private


def _matplotlib_dirs(environ: Mapping[str, str]) -> list[Path]:
    """The default configuration and cache directories (as it finds them on Linux)."""
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    config = environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    cache = environ.get("XDG_CACHE_HOME") or str(home / ".cache")
    return [Path(config) / "matplotlib", Path(cache) / "matplotlib"]


def _writable(directories: list[Path]) -> bool:
    """Whether each directory is, or could be created as, a writable directory.

    Judged by its nearest existing ancestor, so nothing is created to find out.
    """
    for directory in directories:
        if not directory.is_absolute():
            return False
        existing = directory
        while not os.path.lexists(existing) and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            return False
    return True
