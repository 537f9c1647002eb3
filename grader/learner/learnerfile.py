"""The one way the grader reads a file of the learner's repo: bounded, regular files only.

Every learner file the grader reads itself (``budgets.yaml``, ``failfast.yaml``,
``nginx/nginx.conf`` and the files it includes, ``loadtest/checkout.js`` before ``k6 inspect``)
goes through :func:`read_bytes` or :func:`read_text`, which refuse, before reading a byte:

* anything but a regular file: a directory, a named pipe (a FIFO would block the read forever),
  a socket, a device (``/dev/zero`` never ends);
* a path that resolves outside the repo, through a symlink or ``..``: the grader reads the
  learner's repo, never the machine it runs on;
* a file larger than the caller's limit, so that a 50 MB file costs nothing to refuse.

The file is opened non-blocking and without following a symlink swapped in after the checks,
and read up to its limit plus one byte, so reading takes bounded time and memory whatever the
file becomes meanwhile. Every refusal is one :class:`LearnerFileError` whose message names the
file, relative to the repo, and what to change.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from grader.errors import GradingError
from grader.model import Location
from grader.paths import followed

KIB = 1024
MIB = 1024 * KIB

# The bounds, one per kind of file, each far above what the file needs and below what could
# slow grading down. Measured on the worst input each allows (Python 3.11 on a 2-vCPU AMD EPYC
# VM, peak RSS with /usr/bin/time -v against a 23 MB interpreter baseline;
# tests/test_learner_files.py holds them to generous limits):
#
# budgets.yaml and failfast.yaml: a dozen lines (the reference's budgets.yaml, comments
# included, is 1.2 KiB). 256 KiB leaves room for any amount of comments; grader/learner/yamlfile.py
# also bounds the values (1000) and the nesting (20 levels) and refuses aliases. The slowest
# 256 KiB file (blank lines) is read and validated in 0.15 s (+1 MiB RSS; +3 MiB for the most
# memory-hungry shape, a long quoted string); the 600-byte alias bomb that took 68 s and 3.1 GB
# is refused in 1 ms; a 50 MB file, by its size, before a byte is read.
CONTRACT_MAX_BYTES = 256 * KIB
# nginx/nginx.conf and the files it includes, each and all together: the reference's is
# 1.4 KiB, a production config with every mime type a few tens of KiB. crossplane lexes in pure
# Python and keeps a dict per directive: 1 MiB of real directives takes 0.4 s; the worst 1 MiB
# (half a million one-letter directives, "a;a;a;...") 2.2-3.1 s and +190 MiB RSS.
NGINX_CONF_MAX_BYTES = 1 * MIB
NGINX_CONF_MAX_FILES = 64
NGINX_CONF_TOTAL_MAX_BYTES = 1 * MIB
# loadtest/checkout.js, checked before `k6 inspect` reads it (whose run is bounded in time on
# its own, checks/m1_budget_table.INSPECT_LIMIT_S): the reference's is 2.7 KiB; 1 MiB is more
# than any hand-written load test.
K6_SCRIPT_MAX_BYTES = 1 * MIB

BOM = "\ufeff"

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class LearnerFileError(GradingError):
    """A learner's file the grader cannot read as it is; the message says what to change.

    A :class:`~grader.errors.GradingError`: raised on its own it stops grading with exit 2, and
    the callers that grade the file turn it into the FAIL of the check concerned.
    ``problem`` and ``fix`` are the message's two halves, for callers that name the file
    themselves (``budgets.yaml: is a directory, ...``).
    """

    def __init__(self, file: str, problem: str, fix: str, *, missing: bool = False) -> None:
        super().__init__(f"{file} {problem}: {fix}", location=Location(file))
        self.file, self.problem, self.fix, self.missing = file, problem, fix, missing

    @property
    def reason(self) -> str:
        """The message without the file's name in front, e.g. ``is a directory: ...``."""
        return f"{self.problem}: {self.fix}"


def describe_size(size: int) -> str:
    """A byte count as a learner reads it: ``256 KiB``, ``1 MiB``, ``50.0 MiB``."""
    if size >= MIB:
        return f"{size // MIB} MiB" if size % MIB == 0 else f"{size / MIB:.1f} MiB"
    if size >= KIB:
        return f"{size // KIB} KiB" if size % KIB == 0 else f"{size / KIB:.1f} KiB"
    return f"{size} bytes"


def read_bytes(repo: Path, relative: str, limit_bytes: int) -> bytes:
    """The bytes of ``repo/relative``, a regular file inside ``repo`` of at most ``limit_bytes``.

    Raises :class:`LearnerFileError` otherwise (``missing`` set when there is no such file).
    """
    shown = Path(relative).as_posix()
    root = repo.resolve()
    path = root / relative
    resolved = followed(path)
    if resolved is None:
        raise LearnerFileError(
            shown, "is a symlink that leads back to itself", "replace it with the file itself"
        )
    if not resolved.is_relative_to(root):
        link = _first_symlink(root, relative)
        through = f" (through the symlink {link})" if link and link != shown else ""
        raise LearnerFileError(
            shown,
            f"leads outside your repository, to {resolved}{through}",
            "the grader reads only files inside the repository; put the file itself there",
        )
    try:
        before = os.stat(resolved)
    except OSError as error:
        raise _missing_or_unreadable(shown, path, error) from None
    _require_regular(shown, before.st_mode)
    if before.st_size > limit_bytes:
        raise _too_big(shown, before.st_size, limit_bytes)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as error:
        raise _missing_or_unreadable(shown, path, error) from None
    try:
        opened = os.fstat(fd)
        # Replaced between the checks and the open (a FIFO swapped in): judge what was opened.
        _require_regular(shown, opened.st_mode)
        chunks: list[bytes] = []
        left = limit_bytes + 1  # one byte more tells a file that grew past the limit
        while left > 0:
            chunk = os.read(fd, min(left, 64 * KIB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as error:
        raise _missing_or_unreadable(shown, path, error) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit_bytes:
        raise _too_big(shown, max(len(data), opened.st_size), limit_bytes)
    return data


def read_text(repo: Path, relative: str, limit_bytes: int) -> str:
    """The text of ``repo/relative`` as :func:`read_bytes` reads it, decoded as UTF-8.

    A UTF-8 byte order mark at the start is dropped (YAML allows one; Windows editors write
    it); bytes that are not UTF-8 are a :class:`LearnerFileError` naming the line and column.
    """
    data = read_bytes(repo, relative, limit_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        raise LearnerFileError(
            Path(relative).as_posix(),
            f"is not UTF-8 text (byte 0x{data[error.start]:02x} at line {line}, column {column})",
            "save it as UTF-8",
        ) from None
    return text.removeprefix(BOM)


def _require_regular(shown: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    fix = (
        "remove the directory and put the file in its place"
        if stat.S_ISDIR(mode)
        else "replace it with a regular file"
    )
    raise LearnerFileError(shown, f"is {kind}, not a regular file", fix)


def _too_big(shown: str, size: int, limit: int) -> LearnerFileError:
    return LearnerFileError(
        shown,
        f"is {describe_size(size)}, larger than the grader's limit of {describe_size(limit)}",
        f"make it smaller than {describe_size(limit)}",
    )


def _missing_or_unreadable(shown: str, path: Path, error: OSError) -> LearnerFileError:
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        if path.is_symlink():
            try:
                target = os.readlink(path)
            except OSError:
                target = "a path"
            return LearnerFileError(
                shown,
                f"is a symlink to {target}, which does not exist",
                "replace it with the file itself",
                missing=True,
            )
        return LearnerFileError(shown, "was not found", f"create {shown}", missing=True)
    if error.errno in (errno.EACCES, errno.EPERM):
        return LearnerFileError(
            shown, "cannot be read (permission denied)", f"make it readable: chmod a+r {shown}"
        )
    if error.errno == errno.ELOOP:
        return LearnerFileError(
            shown, "is a symlink that leads back to itself", "replace it with the file itself"
        )
    reason = error.strerror or type(error).__name__
    return LearnerFileError(shown, f"cannot be read ({reason})", "replace it with a regular file")


def _first_symlink(root: Path, relative: str) -> str | None:
    """The first component of ``relative`` that is a symlink, relative to ``root``."""
    current = root
    for part in Path(relative).parts:
        current = current / part
        if current.is_symlink():
            return Path(os.path.relpath(current, root)).as_posix()
    return None
