"""The HTML report's progress chart: the series from the history (pure), and the page it draws.

:func:`grader.cli.history.progress_of` turns a repo's recorded gradings into a
:class:`grader.series.ProgressSeries`; :class:`grader.formats.html.HtmlFormat` given one opens
with a "Progress" section (a chart and a table), and no other format sees it. Recording through
a real SQLite file: a second `check` gets a series, a class's submission never does.
tests/e2e/test_progress_browser.py grades a real repo twice and opens the page in Chromium.
"""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from grader.cli.history import PROGRESS_STEPS, Recorded, progress_of, record
from grader.cli.output import Delivery, ReportFile
from grader.formats import OutputFormat
from grader.formats.html import HtmlFormat
from grader.formats.html.progress import progress_chart
from grader.formats.json import JsonFormat
from grader.history import CheckRow, Grading
from grader.model import Report, Status
from grader.series import MilestoneScore, ProgressSeries, ProgressStep
from tests.test_html import FORGED, IMG, SCRIPT, Page, assert_inert, check, report_of

M2 = ("m2.healthy-checkout", "m2.read-timeout", "m2.slow-body")
M3 = ("m3.attempts-bounded", "m3.jitter-spread")


def _grading(
    id_: int,
    passed: set[str],
    ran: tuple[str, ...] = M2 + M3,
    **changes: object,
) -> Grading:
    """Grading number ``id_`` of /repo: these checks ran, worth 1 point each; ``passed`` PASS."""
    checks = tuple(
        CheckRow(
            c,
            "milestone-2" if c.startswith("m2") else "milestone-3",
            "PASS" if c in passed else "FAIL",
            Decimal(c in passed),
            Decimal(1),
            "",
            "",
        )
        for c in ran
    )
    base = Grading(
        started_at=f"2026-12-0{id_ % 9 + 1}T10:00:00+00:00",
        duration_s=1.0,
        repo_path="/repo",
        grader_version="0.3.0",
        course_digest="",
        backend="local",
        selection="milestone-3 --through",
        milestones=tuple(dict.fromkeys(c.milestone for c in checks)),
        score=sum((c.score for c in checks), Decimal(0)),
        max_score=Decimal(len(checks)),
        exit_code=1,
        complete=True,
        report_json="{}",
        checks=checks,
        commit=f"{id_:07d}" + "f" * 33,
        dirty=False,
        recorded_at=f"2026-12-07T1{id_ % 10}:00:00.000+00:00",
        id=id_,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _fractions(series: ProgressSeries, milestone: str) -> list[float | None]:
    """One milestone's line: its share of the points at each grading, None for a gap."""
    n = series.milestones.index(milestone)
    scores = [step.scores[n] for step in series.steps]
    return [None if score is None else score.fraction for score in scores]


def test_each_milestone_is_scored_at_each_grading_this_one_last() -> None:
    """Three gradings: each milestone's points over its max, oldest first, the current last."""
    history = [
        _grading(1, set()),
        _grading(2, {"m2.healthy-checkout", "m3.attempts-bounded"}),
        _grading(3, set(M2) | {"m3.attempts-bounded"}),
    ]
    series = progress_of(history, history[-1])
    assert series is not None
    assert series.milestones == ("milestone-2", "milestone-3")
    assert [s.commit for s in series.steps] == ["0000001", "0000002", "0000003"]
    assert _fractions(series, "milestone-2") == [0.0, 1 / 3, 1.0]
    assert _fractions(series, "milestone-3") == [0.0, 0.5, 0.5]
    assert series.steps[-1].scores[0] == MilestoneScore(3.0, 3.0)


def test_a_first_grading_has_nothing_to_compare() -> None:
    """No earlier grading: no series, so no chart."""
    only = _grading(1, set(M2))
    assert progress_of([only], only) is None


def test_only_earlier_gradings_count_not_later_ones() -> None:
    """A grading recorded after this one (another terminal) is not on this run's chart."""
    history = [_grading(1, set()), _grading(2, set(M2)), _grading(3, set())]
    series = progress_of(history, history[1])
    assert series is not None and [s.commit for s in series.steps] == ["0000001", "0000002"]


def test_an_earlier_grading_of_other_milestones_is_nothing_to_compare() -> None:
    """Milestone 3 before, milestone 2 now: no milestone in common, no series."""
    history = [_grading(1, set(), ran=M3), _grading(2, set(M2), ran=M2)]
    assert progress_of(history, history[-1]) is None


def test_a_grading_that_ran_part_of_a_milestone_is_a_gap_on_its_line() -> None:
    """A --target run of one m2 check is no m2 score; its m3 is, and the m2 line has a gap."""
    history = [
        _grading(1, set()),
        _grading(2, {"m2.read-timeout"}, ran=("m2.read-timeout", *M3)),
        _grading(3, set(M2)),
    ]
    series = progress_of(history, history[-1])
    assert series is not None
    assert _fractions(series, "milestone-2") == [0.0, None, 1.0]
    assert _fractions(series, "milestone-3") == [0.0, 0.0, 0.0]


def test_a_milestone_is_scored_on_the_checks_this_run_shows() -> None:
    """A check this run did not show (a hidden one) counts in no earlier grading's score."""
    hidden = "m2.slow-body"
    history = [
        _grading(1, {hidden}),
        _grading(2, {"m2.read-timeout"}, ran=tuple(c for c in M2 + M3 if c != hidden)),
    ]
    series = progress_of(history, history[-1])
    assert series is not None
    first, now = (step.scores[0] for step in series.steps)
    assert first == MilestoneScore(0.0, 2.0) and now == MilestoneScore(1.0, 2.0)


def test_interrupted_gradings_are_left_out_and_an_interrupted_run_draws_none() -> None:
    """An incomplete earlier grading is no point; an incomplete current one gets no series."""
    history = [_grading(1, set()), _grading(2, set(M2), complete=False), _grading(3, set(M2))]
    series = progress_of(history, history[-1])
    assert series is not None and [s.commit for s in series.steps] == ["0000001", "0000003"]
    assert progress_of(history, dataclasses.replace(history[-1], complete=False)) is None


def test_the_chart_shows_the_latest_gradings_only() -> None:
    """Thirty gradings: the latest PROGRESS_STEPS, this one last."""
    history = [_grading(n, set(M2[: n % 4])) for n in range(1, 31)]
    series = progress_of(history, history[-1])
    assert series is not None and len(series.steps) == PROGRESS_STEPS
    assert series.steps[-1].commit == "0000030"
    assert series.steps[0].commit == f"{31 - PROGRESS_STEPS:07d}"


# --- The page ---------------------------------------------------------------------------------


def _series(steps: int, commit: str = "abc1234") -> ProgressSeries:
    """``steps`` gradings of two milestones, the score rising."""
    return ProgressSeries(
        ("milestone-2", "milestone-3"),
        tuple(
            ProgressStep(
                f"2026-12-07T1{n}:0{n}:00.000+00:00",
                f"{commit}{n}",
                (MilestoneScore(float(n), float(steps)), None if n == 0 else MilestoneScore(1, 2)),
            )
            for n in range(steps)
        ),
    )


def _report() -> Report:
    """A graded report of two milestones."""
    return report_of(check("m2.read-timeout"), check("m3.attempts-bounded", Status.FAIL))


def _progress_rows(html: str) -> int:
    """How many gradings the progress table lists."""
    table = html.split('<table class="progress">', 1)[1].split("</table>", 1)[0]
    return table.count("<tr") - 1  # the header's row


def test_a_page_with_progress_opens_with_a_chart_and_a_table_of_each_grading() -> None:
    """Four gradings: a Progress section, its SVG chart titled, four rows, this run marked."""
    html = HtmlFormat(_series(4)).render(_report())
    page = Page(html)
    assert_inert(page)
    (section,) = [a for a in page.named("section") if a.get("id") == "progress"]
    assert section["data-gradings"] == "4"
    (figure,) = [f for f in page.named("figure") if "progress-chart" in (f.get("class") or "")]
    assert "data-check" not in figure  # not a check's chart: the browser test counts those
    assert html.index('id="progress"') < html.index('id="milestone-2"')
    assert _progress_rows(html) == 4
    assert "Your score per milestone, grading by grading" in page.all_text
    assert "2026-12-07 13:03" in page.all_text and "abc12343" in page.all_text
    assert "(this run)" in page.all_text and "3/4 (75 %)" in page.all_text
    assert page.all_text.count("–") >= 1  # milestone-3's first grading: a gap
    svg = html.split('class="chart progress-chart">', 1)[1].split("</figure>", 1)[0]
    assert "<svg" in svg and "milestone-3" in svg and "100 %" in svg


def test_a_page_without_progress_has_no_progress_section() -> None:
    """No series (first grading, --no-history, a class's submission): the page as before."""
    for html in (HtmlFormat().render(_report()), HtmlFormat(_series(1)).render(_report())):
        assert 'id="progress"' not in html and "progress-chart" not in html
    assert HtmlFormat().render(_report()) == OutputFormat.HTML.to_format().render(_report())


def test_an_unusable_series_keeps_the_table_and_drops_the_chart() -> None:
    """A score that is not a number draws no chart; the page and its table are written."""
    broken = _series(3)
    step = dataclasses.replace(broken.steps[0], scores=(MilestoneScore(math.nan, 1.0), None))
    broken = dataclasses.replace(broken, steps=(step, *broken.steps[1:]))
    assert progress_chart(broken) is None
    html = HtmlFormat(broken).render(_report())
    assert 'id="progress"' in html and "progress-chart" not in html
    assert _progress_rows(html) == 3


def test_dates_and_commits_from_the_history_are_text_in_the_chart_and_the_table() -> None:
    """A shared database's forged commit and date: shown as text, never markup."""
    forged = _series(3, commit=FORGED)
    forged = dataclasses.replace(
        forged, steps=(dataclasses.replace(forged.steps[0], recorded_at=IMG), *forged.steps[1:])
    )
    html = HtmlFormat(forged).render(_report())
    page = Page(html)
    assert_inert(page)
    assert SCRIPT[:20] in page.all_text and IMG[:16] in page.all_text
    assert "<script" not in html.lower() and "<img" not in html.lower()


def test_the_json_and_other_files_are_written_as_without_progress(tmp_path: Path) -> None:
    """--report html and json with a series: the HTML has it, the JSON file is byte-equal."""
    files = [
        ReportFile(OutputFormat.HTML, tmp_path / "with.html"),
        ReportFile(OutputFormat.JSON, tmp_path / "with.json"),
        ReportFile(OutputFormat.MARKDOWN, tmp_path / "with.md"),
    ]
    delivery = Delivery(Console(file=None), files=files, step_outputs=None)
    assert delivery.write_files(_report(), progress=_series(3)) == []
    assert 'id="progress"' in (tmp_path / "with.html").read_text("utf-8")
    assert (tmp_path / "with.json").read_text("utf-8") == JsonFormat().render(_report())
    assert "progress" not in (tmp_path / "with.md").read_text("utf-8").lower()
    plain = Delivery(Console(file=None), files=files[:1], step_outputs=None)
    assert plain.write_files(_report()) == []
    assert 'id="progress"' not in (tmp_path / "with.html").read_text("utf-8")


# --- Recording, through a real SQLite file ----------------------------------------------------


def _recorded(tmp_path: Path, db: Path, submission: str | None = None) -> Recorded | None:
    """`check`'s recording of a graded report of the repo at tmp_path/repo."""
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    report = dataclasses.replace(_report(), repo=str(repo))
    return record(
        report,
        JsonFormat().render(report),
        repo=repo,
        course_file=None,
        db=str(db),
        submission=submission,
    )


def test_a_second_check_of_a_repo_gets_its_progress_and_a_submission_never(
    tmp_path: Path,
) -> None:
    """First grading: no series; second: two steps; a class's submission: none, ever."""
    db = tmp_path / "history.sqlite3"
    first = _recorded(tmp_path, db)
    assert first is not None and first.progress is None
    second = _recorded(tmp_path, db)
    assert second is not None and second.progress is not None
    series = second.progress
    assert len(series.steps) == 2
    assert series.milestones == ("milestone-2", "milestone-3")
    for n in (1, 2):
        graded = _recorded(tmp_path, tmp_path / "class.sqlite3", submission="alice")
        assert graded is not None and graded.progress is None, n
