"""The HTML report in a real browser: Debian's Chromium, driven by Playwright, network off.

Real reports written by `failfast check ... --report html=FILE` (the reference's `check all`,
the template's `milestone-3 --through`, and a template whose API prints and answers markup) are
opened from disk in headless Chromium with the network off. Each test asserts what a person
would see: charts laid out at a real size, no console error, no request but the file itself,
and a learner's `<script>` shown as text, never run. Full-page screenshots are written to
build/screenshots/ (ignored by git) for a person to look at.

Playwright drives the system's Chromium (`scripts/setup.sh` installs Debian's `chromium`;
`FAILFAST_CHROMIUM` names another); it downloads no browser. Without one, these tests fail:
the suite's set-up provides it, and a skip would hide a page nobody opened.

The progress chart: the learner template, a git checkout, graded at milestone 1 with ``--db``
in a tmp file, then again after a commit; the second page opens with a Progress section (a
chart at a real size, a table row per grading with both commits); the first and a
``--no-history`` run's have none, and the JSON report carries nothing of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright  # the dev extra installs it; it downloads no browser
import pytest

from tests.conftest import ROOT, Run, run_failfast
from tests.e2e.conftest import CiRun
from tests.gitclass import commit
from tests.mutants import REFERENCE, TEMPLATE, Edit, materialize

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("FAILFAST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

SCREENSHOTS = ROOT / "build" / "screenshots"
SCRIPT = "<script>document.title='pwned'</script>"
IMG = "<img src=x onerror=\"document.title='pwned-img'\">"
# The template, printing markup on every checkout and answering it as the payment's status: its
# output and its values reach the report (m2.healthy-checkout FAILs on that body).
FORGING_HTML = (
    Edit(
        "app/main.py",
        '    """Charge the customer and report the outcome."""\n',
        '    """Charge the customer and report the outcome."""\n'
        f"    print({SCRIPT!r}, flush=True)\n"
        f"    print({IMG!r}, flush=True)\n",
    ),
    Edit(
        "app/main.py",
        'return JSONResponse({"status": "ok", "payment": resp.json()})',
        f'return JSONResponse({{"status": {SCRIPT!r}, "payment": resp.json()}})',
    ),
)
# Checks that attach a chart's series (grader/series.py): each gets a chart where it ran (not
# SKIP or ERROR), drawn from the series its JSON report carries.
REFERENCE_CHARTS = {
    "m2.read-timeout",
    "m2.slow-body",
    "m2.connect-timeout",
    "m2.healthz-under-load",
    "m3.attempts-bounded",
    "m3.retries-fit-budget",
    "m3.jitter-spread",
    "m3.backoff-grows",
    "m4.outage-capped",
    "m4.budget-shared",
    "lt.k6-run",
}
TEMPLATE_CHARTS = {
    "m2.read-timeout",
    "m2.slow-body",
    "m2.connect-timeout",
    "m2.healthz-under-load",
    "m3.attempts-bounded",
    "m3.retries-fit-budget",
}
# The kind of series each of them attaches: its JSON report's chart.kind.
KINDS = {
    "m2.read-timeout": "checkout-timeline",
    "m2.slow-body": "checkout-timeline",
    "m2.connect-timeout": "connect-timeline",
    "m2.healthz-under-load": "probe-latencies",
    "m3.attempts-bounded": "attempt-counts",
    "m3.retries-fit-budget": "checkout-timeline",
    "m3.jitter-spread": "retry-storm",
    "m3.backoff-grows": "retry-storm",
    "m4.outage-capped": "outage-attempts",
    "m4.budget-shared": "outage-attempts",
    "lt.k6-run": "latency-by-phase",
}


@dataclass
class Written:
    """An HTML report the real CLI wrote, with the run that wrote it."""

    path: Path
    run: Run
    statuses: dict[str, str]
    kinds: dict[str, str]  # check id -> the kind of its chart, for checks whose JSON has one


def chart_kinds(report: dict[str, Any]) -> dict[str, str]:
    """Check id -> its chart's kind, from a JSON report."""
    return {c["id"]: c["chart"]["kind"] for c in report["checks"] if c.get("chart")}


def write_report(tmp: Path, repo: Path, *args: str) -> Written:
    """Grade ``repo`` with the real CLI, writing the HTML report (and JSON, for the statuses)."""
    page, report = tmp / "report.html", tmp / "report.json"
    run = run_failfast(
        "check", *args, "--report", f"html={page}", "--json", str(report), repo=repo,
        timeout_s=300,
    )  # fmt: skip
    document = json.loads(report.read_text("utf-8"))
    statuses = {c["id"]: c["status"] for c in document["checks"]}
    return Written(page, run, statuses, chart_kinds(document))


@pytest.fixture(scope="module")
def reference_page(reference_all: CiRun) -> Written:
    """`failfast check all` on the reference solution, as an HTML report (the CI run's)."""
    return Written(
        reference_all.page,
        reference_all.run,
        reference_all.statuses(),
        chart_kinds(reference_all.report),
    )


@pytest.fixture(scope="module")
def template_page(template_through_3: CiRun) -> Written:
    """`failfast check milestone-3 --through` on the learner template, as an HTML report."""
    return Written(
        template_through_3.page,
        template_through_3.run,
        template_through_3.statuses(),
        chart_kinds(template_through_3.report),
    )


@pytest.fixture(scope="module")
def forging_page(tmp_path_factory: pytest.TempPathFactory) -> Written:
    """Milestones 1-2 of a template whose API prints and answers markup, as an HTML report."""
    tmp = tmp_path_factory.mktemp("html-forging")
    repo = materialize(TEMPLATE, tmp / "repo", FORGING_HTML)
    return write_report(tmp, repo, "milestone-2", "--through")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, the system's own."""
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@dataclass
class Opened:
    """A report open in a tab, and everything the tab asked for or complained about."""

    page: Any
    url: str
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)  # errors and warnings
    errors: list[str] = field(default_factory=list)  # uncaught exceptions

    def charts(self) -> dict[str, dict[str, float]]:
        """Check id -> the laid-out box of its chart's SVG."""
        found = {}
        for figure in self.page.query_selector_all("figure.chart[data-check]"):
            svg = figure.query_selector("svg")
            box = svg.bounding_box() if svg is not None else None
            found[figure.get_attribute("data-check")] = box or {"width": 0.0, "height": 0.0}
        return found

    def screenshot(self, name: str) -> Path:
        """A full-page screenshot under build/screenshots/, checked not to be blank."""
        from PIL import Image

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        with Image.open(path) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 20, f"{path} looks blank"
        return path


@pytest.fixture
def open_report(browser: Any) -> Iterator[Any]:
    """Open a report file in a fresh tab with the network off, recording what it does."""
    contexts = []

    def open_(path: Path) -> Opened:
        context = browser.new_context(offline=True, viewport={"width": 1100, "height": 900})
        contexts.append(context)
        page = context.new_page()
        opened = Opened(page, path.resolve().as_uri())
        page.on("request", lambda request: opened.requests.append(request.url))
        page.on(
            "console",
            lambda m: (
                opened.console.append(f"{m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda error: opened.errors.append(str(error)))
        page.goto(opened.url, wait_until="load")
        return opened

    yield open_
    for context in contexts:
        context.close()


def assert_quiet(opened: Opened) -> None:
    """Nothing fetched but the file, nothing logged, nothing thrown."""
    assert opened.requests == [opened.url]
    assert opened.console == [] and opened.errors == []


def expected_charts(written: Written, wanted: set[str]) -> set[str]:
    """The wanted charts of checks that ran: a SKIP or ERROR measured nothing to draw."""
    return {c for c in wanted if written.statuses.get(c) not in (None, "SKIP", "ERROR")}


def assert_drawn_from_the_series(
    written: Written, charts: dict[str, dict[str, float]], wanted: set[str]
) -> None:
    """The page draws a chart for exactly the checks whose JSON report carries a series."""
    assert set(charts) == set(written.kinds), written.kinds
    assert {c: written.kinds.get(c) for c in wanted} == {c: KINDS[c] for c in wanted}


def test_reference_check_all_page_draws_its_charts(
    reference_page: Written, open_report: Any
) -> None:
    """Every measured check of the reference has a chart of real size; the page is quiet."""
    assert reference_page.path.stat().st_size < 1_000_000
    opened = open_report(reference_page.path)
    charts = opened.charts()
    wanted = expected_charts(reference_page, REFERENCE_CHARTS)
    assert wanted >= REFERENCE_CHARTS - {"lt.k6-run"}, reference_page.statuses
    assert set(charts) >= wanted
    assert_drawn_from_the_series(reference_page, charts, wanted)
    assert all(box["width"] > 100 and box["height"] > 50 for box in charts.values()), charts
    assert opened.page.evaluate("navigator.onLine") is False  # it rendered with the network off
    assert_quiet(opened)
    opened.screenshot("reference-check-all")


def test_template_milestone_3_page_draws_its_charts(
    template_page: Written, open_report: Any
) -> None:
    """The template's failures are drawn too: answers past the budget, too few attempts."""
    opened = open_report(template_page.path)
    charts = opened.charts()
    assert expected_charts(template_page, TEMPLATE_CHARTS) == TEMPLATE_CHARTS
    assert set(charts) >= TEMPLATE_CHARTS
    assert_drawn_from_the_series(template_page, charts, TEMPLATE_CHARTS)
    assert all(box["width"] > 100 and box["height"] > 50 for box in charts.values()), charts
    statuses = opened.page.eval_on_selector_all(
        "article.check", "els => els.map(e => e.dataset.status)"
    )
    assert len(statuses) == len(template_page.statuses) and "FAIL" in statuses
    assert_quiet(opened)
    opened.screenshot("template-milestone-3-through")


def test_a_learners_markup_is_shown_as_text_and_never_runs(
    forging_page: Written, open_report: Any
) -> None:
    """The app's <script> and <img onerror> are on the page as text; the title is untouched."""
    assert forging_page.statuses["m2.healthy-checkout"] == "FAIL"
    opened = open_report(forging_page.path)
    page = opened.page
    assert page.title().startswith("failfast milestone-2 --through")
    assert "pwned" not in page.evaluate("document.title")
    text = page.inner_text("body")
    assert SCRIPT in text and IMG in text
    assert page.query_selector_all("body script, body img, iframe, object, embed") == []
    assert_quiet(opened)  # a blocked inline script would have been a console error
    opened.screenshot("forging-app-milestone-2")


# The progress chart (#24): a grading history's scores per milestone.
def _grade_m1(repo: Path, out: Path, name: str, *extra: str) -> tuple[Path, dict[str, Any]]:
    """`failfast check milestone-1` with the HTML and JSON reports; the page and the JSON."""
    page, report = out / f"{name}.html", out / f"{name}.json"
    run = run_failfast(
        "check", "milestone-1", "--report", f"html={page}", "--json", str(report), *extra,
        repo=repo,
    )  # fmt: skip
    assert run.returncode in (0, 1), run.stdout + run.stderr
    return page, json.loads(report.read_text("utf-8"))


def _progress_score(document: dict[str, Any]) -> str:
    """A JSON report's milestone-1 score as the progress table shows it: ``3/5 (60 %)``."""
    scores = document["scores"]["milestone-1"]
    score, most = Decimal(str(scores["score"])), Decimal(str(scores["max_score"]))
    percent = 100 * score / most if most else Decimal(0)
    return f"{score.normalize():f}/{most.normalize():f} ({percent:.0f} %)"


def test_a_second_grading_shows_the_progress_chart_and_table(
    tmp_path: Path, open_report: Any
) -> None:
    """Graded, fixed, graded: the page draws both gradings; the first and --no-history none."""
    if shutil.which("git") is None:
        pytest.fail("git is not installed: the suite's set-up provides it")
    repo = tmp_path / "checkout"
    shutil.copytree(TEMPLATE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    naive = commit(repo, "the template")[:7]
    db = ("--db", str(tmp_path / "history.sqlite3"))
    first_page, first = _grade_m1(repo, tmp_path, "first", *db)
    shutil.copy(REFERENCE / "budgets.yaml", repo / "budgets.yaml")
    fixed = commit(repo, "budgets")[:7]
    second_page, second = _grade_m1(repo, tmp_path, "second", *db)
    untracked_page, untracked = _grade_m1(repo, tmp_path, "untracked", *db, "--no-history")

    assert 'id="progress"' not in first_page.read_text("utf-8")
    assert 'id="progress"' not in untracked_page.read_text("utf-8")
    # The JSON report is what grading found, nothing of the history in it.
    assert set(second) == set(first) == set(untracked)
    assert "progress" not in json.dumps(second)

    opened = open_report(second_page)
    page = opened.page
    section = page.query_selector("section#progress")
    assert section is not None and section.get_attribute("data-gradings") == "2"
    svg = section.query_selector("figure.progress-chart svg")
    assert svg is not None
    box = svg.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100, box
    assert "milestone-1" in svg.inner_html()
    # Not a check's chart: tests/e2e/test_html_browser.py counts those by data-check.
    assert section.query_selector("figure[data-check]") is None
    rows = section.query_selector_all("table.progress tbody tr")
    assert len(rows) == 2
    cells = [[td.inner_text().strip() for td in row.query_selector_all("td")] for row in rows]
    assert [row[1] for row in cells] == [naive, fixed]
    assert [row[2] for row in cells] == [_progress_score(first), _progress_score(second)]
    assert "(this run)" in cells[1][0] and "(this run)" not in cells[0][0]
    assert_quiet(opened)
    opened.screenshot("progress-milestone-1")
