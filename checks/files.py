"""The learner's files milestone 1 reads, each the one safe way, and its budget table as read.

Shared by m1_budget_table.py and m1_k6.py: a file that is missing, too big or not a regular file
inside the repo is the check's FAIL saying why (grader.learner.learnerfile), never a hang.
"""

from __future__ import annotations

from pathlib import Path

from grader.checkkit import Budgets, CheckFailed, Context, Loaded, learnerfile, nginxconf
from grader.checkkit import budgets as budgets_mod

# The learner's files these checks read, relative to the repo root (CI annotates them).
NGINX_FILE = nginxconf.CONF_PATH
K6_SCRIPT = "loadtest/checkout.js"


def learner_file(ctx: Context, relative: str, what: str, limit_bytes: int) -> Path:
    """A file the learner's repo must have, readable the one safe way, or the FAIL saying why.

    Read through :mod:`grader.learner.learnerfile` (a regular file inside the repo, at most
    ``limit_bytes``), so that what reads it next (crossplane, ``k6 inspect``) gets a file that
    cannot hang or flood it.
    """
    path = ctx.repo.path / relative
    try:
        learnerfile.read_bytes(ctx.repo.path, relative, limit_bytes)
    except learnerfile.LearnerFileError as error:
        raise unreadable(error, what) from None
    return path


def unreadable(error: learnerfile.LearnerFileError, what: str) -> CheckFailed:
    """The FAIL for a learner's file the grader will not read as it is."""
    if error.missing and error.problem == "was not found":
        return CheckFailed(
            f"{error.file} was not found",
            measured=f"no file at {error.file}",
            expected=f"{what} at {error.file}",
            location=error.location,
        )
    return CheckFailed(
        f"{error.file} cannot be read as it is",
        measured=error.message,
        expected=f"{what}: a regular file inside your repository",
        hint=f"{error.fix[:1].upper()}{error.fix[1:]}.",
        location=error.location,
    )


def table(ctx: Context) -> tuple[Budgets, Loaded]:
    """The learner's table as m1.budgets-valid read it (that check passed before this runs)."""
    loaded = budgets_mod.load(ctx.repo.path)
    if loaded.problems:  # unreachable after m1.budgets-valid passed, unless the file changed
        raise CheckFailed("budgets.yaml changed while grading", measured=str(loaded.problems[0]))
    return budgets_mod.from_data(loaded.data), loaded
