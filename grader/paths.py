"""Following a path that may not lead anywhere: the one place a symlink loop is caught.

``Path.resolve`` raises RuntimeError on a symlink loop before Python 3.13 and OSError (ELOOP)
from 3.13 on; each caller says in its own words which path it was and what to pass instead.
"""

from __future__ import annotations

from pathlib import Path


def followed(path: Path) -> Path | None:
    """``path`` made absolute with every symlink followed; None if a symlink loop is on its way."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return None
