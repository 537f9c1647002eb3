"""The learner's build context: what `docker build` would send, measured before anything is sent.

The docker SDK packs the repo into a tar (in a temporary file) and sends it whole before the
first step runs: a 3 GB file costs minutes and three times its size on disk. :func:`measure`
walks the same files the SDK would pack, with the SDK's own reading of ``.dockerignore``
(``docker.utils.build.exclude_paths``, the code that makes the tar), so what is measured is what
would be sent; :func:`check_size` refuses a context over the limit and names its biggest files.
No engine is needed here.
"""

from __future__ import annotations

import heapq
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from docker.utils.build import exclude_paths

from grader.errors import ImageBuildError
from grader.learner import learnerfile
from grader.lines import decimal_size

DOCKERIGNORE = ".dockerignore"
MAX_DOCKERIGNORE_BYTES = learnerfile.MIB  # patterns: a few lines
BIGGEST_SHOWN = 5
MB = 10**6  # `docker build` counts in powers of ten ("Sending build context ... 3.221GB")


@dataclass(frozen=True, slots=True)
class ContextFile:
    """One regular file the build context holds, by its path relative to the context's root."""

    path: str
    size: int


@dataclass(frozen=True, slots=True)
class ContextSize:
    """What the build context holds: its bytes, its file count and its biggest files."""

    total: int
    files: int
    biggest: tuple[ContextFile, ...]  # biggest first, at most BIGGEST_SHOWN


def dockerignore_patterns(root: Path) -> list[str]:
    """The patterns of ``root/.dockerignore``, read as the docker SDK reads them for a build.

    Each line stripped; empty lines and lines starting with ``#`` dropped (APIClient.build).
    A .dockerignore that is not a regular UTF-8 file inside the repo is a LearnerFileError.
    """
    if not os.path.lexists(root / DOCKERIGNORE):
        return []
    # Read as every learner file is: a FIFO there would block the SDK's own read forever.
    text = learnerfile.read_text(root, DOCKERIGNORE, MAX_DOCKERIGNORE_BYTES)
    return [line for line in (raw.strip() for raw in text.splitlines()) if line and line[0] != "#"]


def measure(root: Path) -> ContextSize:
    """The files the docker SDK would send from ``root``: the bytes it would read, the biggest.

    The paths are the SDK's (``exclude_paths`` with the repo's .dockerignore and the Dockerfile
    kept, as ``docker.utils.build.tar`` packs them). Only regular files carry bytes: a symlink
    is packed as a link and a hard link to a file already packed as a link, as tarfile does.
    Sizes are apparent sizes, so a sparse file counts in full: it is sent in full.
    """
    try:
        paths = exclude_paths(str(root), dockerignore_patterns(root))
    except OSError as exc:  # a directory of the repo that cannot be listed
        raise ImageBuildError(
            f"The grader cannot list your build context {root} to measure it: {exc}. "
            "`docker build` would fail to read it too: fix its permissions or add it to "
            f"{root / DOCKERIGNORE}."
        ) from exc
    total = count = 0
    seen: set[tuple[int, int]] = set()
    files: list[ContextFile] = []
    for path in paths:
        try:
            info = os.lstat(root / path)
        except OSError:
            continue  # gone meanwhile: the SDK would fail on it, and say so
        if not stat.S_ISREG(info.st_mode):
            continue
        if info.st_nlink > 1:
            inode = (info.st_dev, info.st_ino)
            if inode in seen:
                continue
            seen.add(inode)
        if not os.access(root / path, os.R_OK):  # the SDK would fail packing it
            raise ImageBuildError(
                f"{root / path} is in your build context, and this user cannot read it, so "
                "`docker build` could not send it. Make it readable, or add it to "
                f"{root / DOCKERIGNORE} if your image does not need it."
            )
        total += info.st_size
        count += 1
        files.append(ContextFile(path, info.st_size))
    biggest = heapq.nlargest(BIGGEST_SHOWN, files, key=lambda f: (f.size, f.path))
    return ContextSize(total, count, tuple(biggest))


def check_size(root: Path, limit_mb: int) -> ContextSize:
    """The context's size, or ImageBuildError naming its biggest files when over ``limit_mb``."""
    size = measure(root)
    if size.total <= limit_mb * MB:
        return size
    biggest = "; ".join(f"{f.path} ({decimal_size(f.size)})" for f in size.biggest)
    ignore = root / DOCKERIGNORE
    example = size.biggest[0].path if size.biggest else "data/"
    raise ImageBuildError(
        f"Your build context is {decimal_size(size.total)} ({size.files} files): that is what "
        f"`docker build` would send from {root} after {DOCKERIGNORE}, and the grader sends "
        f"at most {limit_mb} MB (--build-context-mb). The biggest files: {biggest}. If your "
        f"image does not need them, exclude them in {ignore}, one pattern per line (for "
        f"example `{example}`, or their directory); if it does, grade with a higher "
        "--build-context-mb.",
    )
