"""A class's gradings kept in the history (``failfast grade --db``): reused, and exported.

Before a submission is graded, its reuse key is computed as its own `failfast check` would
record it (:func:`grader.history.reuse_key` of its clean commit, the grader's version, the
course file's digest, the backend and the selection); when the history holds a complete grading
with that key, the submission is not graded again: its files are written from that grading's
JSON report, in the formats the grader would have used, with a marker (``reused.json``) that
the gradebook reads. ``failfast gradebook export`` writes the same files from each submission's
latest grading.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grader import __version__
from grader import history as kept  # its names are imported on first use: SQLAlchemy is slow
from grader.course.gradebook import PAGE_FILE, REPORT_FILE, REUSED_FILE, write_atomically
from grader.formats import OutputFormat
from grader.formats.json import report_from_dict
from grader.history import gitinfo

if TYPE_CHECKING:
    from grader.history import Grading, Store


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a class's gradings rest on besides each submission's commit."""

    grader_version: str
    digest: str
    backend: str
    selection: str

    @classmethod
    def of(cls, milestone: str, through: bool, backend: str, course: Path | None) -> Inputs:
        """The inputs of `failfast grade` with these options, as each child records them."""
        return cls(
            __version__,
            kept.course_digest(course),
            backend,
            kept.selection_text(milestone, through),
        )

    def key(self, repo: Path) -> str | None:
        """The submission's reuse key; None when it has no clean commit (never reused)."""
        git = gitinfo.read(repo)
        return kept.reuse_key(
            git.commit, git.dirty, self.grader_version, self.digest, self.backend, self.selection
        )


def reusable(store: Store, inputs: Inputs, submission: str, repo: Path) -> Grading | None:
    """The complete grading of this submission, at its commit, with these inputs; if recorded."""
    key = inputs.key(repo)
    return None if key is None else store.reusable(submission, key)


def write_from(
    folder: Path,
    grading: Grading,
    platform: Sequence[tuple[OutputFormat, str]] = (),
    *,
    store: str | None = None,
) -> None:
    """Write a submission's files from a recorded grading, replacing any already there.

    Its report.json, its page, its platform files (``(format, file name)``), and, when
    ``store`` names the history it was reused from, the marker that says so (else none).
    """
    folder.mkdir(parents=True, exist_ok=True)
    # The same report already there (a class graded again into the same --out): the files
    # beside it were rendered from it, by this grader version (the reuse key holds it), so they
    # are kept. Rendering a page draws its charts: most of what reusing would cost.
    same = _text(folder / REPORT_FILE) == grading.report_json
    if not same:  # as the grader writes it: a lone surrogate in a learner's words becomes "?"
        (folder / REPORT_FILE).write_text(grading.report_json, "utf-8", errors="replace")
    files = [(OutputFormat.HTML, PAGE_FILE), *platform]
    missing = [(f, name) for f, name in files if not (same and (folder / name).is_file())]
    report = report_from_dict(json.loads(grading.report_json)) if missing else None
    for fmt, name in missing:
        assert report is not None
        text = fmt.to_format().render(report)
        (folder / name).write_text(text, "utf-8", errors="replace")
    if store is not None:
        marker = {
            "reused_from": store,
            "grading_id": grading.id,
            "recorded_at": grading.recorded_at,
            "commit": grading.commit,
        }
        write_atomically(folder / REUSED_FILE, json.dumps(marker, indent=2) + "\n")
    else:
        (folder / REUSED_FILE).unlink(missing_ok=True)


def _text(path: Path) -> str | None:
    """The file's text, as written; None when there is none to read."""
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
