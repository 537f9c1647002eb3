"""The HTML report on hand-built reports: a chart per kind of measurement, escaping, one file.

The series below are those the checks attach (checks/m2_timeouts.py, m3_retries.py, m3_storm.py,
m4_retry_budget.py, lt_loadtest.py: one class of grader/series.py per kind of chart);
tests/e2e/test_html_browser.py opens real reports in Chromium. The page is read back with the
standard library's HTML parser.
"""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

import pytest

from grader.formats import OutputFormat
from grader.formats.html import (
    CAPTIONS,
    ClassEntry,
    HtmlFormat,
    UnsafeSvg,
    chart_for,
    render_class_page,
    safe_href,
)
from grader.formats.html.drawing import inline_svg
from grader.model import BudgetSource, CheckResult, Evidence, NotGraded, Report, Status
from grader.series import (
    AttemptCounts,
    AttemptSpan,
    Chart,
    CheckoutTimeline,
    ConnectTimeline,
    LatencyByPhase,
    OutageAttempts,
    PhaseLatency,
    ProbeLatencies,
    RetryStorm,
    Threshold,
)
from tests.conftest import ROOT

SCRIPT = "<script>document.title='pwned'</script>"
IMG = "<img src=x onerror=\"document.title='pwned-img'\">"
FORGED = SCRIPT + IMG


def _storm(rows: int = 20) -> tuple[tuple[tuple[float, float], ...], ...]:
    """A storm's attempts per checkout, in ms: first attempts together, retries spread."""
    out = []
    for n in range(rows):
        start = 1.5 * n
        first_retry = start + 0.3 + (37 * n) % 100
        second = first_retry + 0.2 + (53 * n) % 200
        out.append(((start, start + 0.3), (first_retry, first_retry + 0.2), (second, second + 0.3)))
    return tuple(out)


LATENCY = LatencyByPhase(
    (
        PhaseLatency("slow", 2005.6, 2803.8, 2804.2, 2804.7, (Threshold("p95", 3500.0),)),
        PhaseLatency("recovery", 3.4, 4.6, 5.1, 6.7, (Threshold("p95", 3500.0),)),
        PhaseLatency("healthz", 1.3, 2.2, 2.4, 5.3, (Threshold("p99", 100.0),)),
    )
)
OUTAGE = OutageAttempts(
    attempts=tuple(2 if n % 10 == 5 else 1 for n in range(200)),
    ratio=0.1,
    limit=1.15,
    warmup=(3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1, 1),
    burst=10,
)
# Check id -> the series it attaches, one per kind of chart (and one check per m2 and m3 variant
# of a kind). tests/test_series.py round-trips each through the JSON report.
CHARTS: dict[str, Chart] = {
    "m2.read-timeout": CheckoutTimeline(
        elapsed_s=2.815,
        status=504,
        attempts=(
            AttemptSpan(0.013, 2.016, "client_gave_up"),
            AttemptSpan(2.076, 2.814, "client_gave_up"),
        ),
        api_budget_s=3.0,
        answer_tolerance_s=0.5,
        read_timeout_s=2.0,
    ),
    "m2.slow-body": CheckoutTimeline(
        elapsed_s=5.501,
        status=None,
        attempts=(AttemptSpan(0.003, None, "in_progress"),),
        api_budget_s=3.0,
        answer_tolerance_s=0.5,
        read_timeout_s=2.0,
    ),
    "m2.connect-timeout": ConnectTimeline(
        elapsed_s=1.601,
        status=504,
        connect_timeout_s=0.5,
        max_attempts=3,
        api_budget_s=3.0,
        answer_tolerance_s=0.5,
        connect_bound_s=2.1,
    ),
    "m2.healthz-under-load": ProbeLatencies(
        (16.8, 4.6, 2.3, 2.4, 6.9, 2.6, 2.4, 2.4, 2.5, 7.6), limit_ms=250.0
    ),
    "m3.attempts-bounded": AttemptCounts((1, 1, 1), max_attempts=3),
    "m3.retries-fit-budget": CheckoutTimeline(
        elapsed_s=2.807,
        status=504,
        attempts=(
            AttemptSpan(0.017, 1.518, "responded"),
            AttemptSpan(1.526, 2.806, "client_gave_up"),
        ),
        api_budget_s=3.0,
        answer_tolerance_s=0.5,
    ),
    "m3.jitter-spread": RetryStorm(_storm(), windows_ms=((0.0, 100.0), (0.0, 200.0))),
    "m3.backoff-grows": RetryStorm(_storm(), windows_ms=((50.0, 100.0), (100.0, 200.0))),
    "m4.outage-capped": OUTAGE,
    "lt.k6-run": LATENCY,
}
# The same numbers as the checks' data: a chart is never drawn from these.
DATA: dict[str, dict[str, Any]] = {
    "m2.healthz-under-load": {"latencies_ms": [16.8, 4.6], "in_flight": 20, "limit_ms": 250.0},
    "m3.attempts-bounded": {"attempts": [1, 1, 1], "max_attempts": 3},
    "lt.k6-run": {
        "phase_latency_ms": {"slow": {"p95": 2804.2}},
        "phase_thresholds_ms": {"slow": {"p95": 3500.0}},
    },
}
# What each chart's axes say, units included.
AXES = {
    "m2.read-timeout": ("time since the grader sent the checkout (s)",),
    "m2.slow-body": ("time since the grader sent the checkout (s)",),
    "m2.connect-timeout": ("time since the grader sent the checkout (s)",),
    "m2.healthz-under-load": ("latency (ms)",),
    "m3.attempts-bounded": ("provider attempts (count)",),
    "m3.retries-fit-budget": ("time since the grader sent the checkout (s)",),
    "m3.jitter-spread": ("time since the storm's first attempt (ms)", "checkout"),
    "m3.backoff-grows": ("time since the storm's first attempt (ms)",),
    "m4.outage-capped": ("attempts (count)", "mean so far (count)"),
    "lt.k6-run": ("latency (ms, log scale)",),
}


def check(id_: str, status: Status = Status.PASS, **evidence: Any) -> CheckResult:
    """A result of the milestone its id names, with this evidence."""
    milestone = {"m1": "milestone-1", "m2": "milestone-2", "m3": "milestone-3"}.get(
        id_.split(".")[0], "milestone-4" if id_.startswith("m4") else "loadtest"
    )
    fields = {"summary": f"{id_} {status.value.lower()}", "hint": "fix it"} | evidence
    return CheckResult(id_, f"title of {id_}", milestone, status, Evidence(**fields))


def report_of(*results: CheckResult, repo: str = "/repos/learner", **kwargs: Any) -> Report:
    """A report of ``check all`` with these results."""
    milestones = tuple(dict.fromkeys(r.milestone for r in results))
    started = "2026-11-27T10:00:00+00:00"
    return Report("all", repo, started, 30.0, results, milestones=milestones, **kwargs)


class Page(HTMLParser):
    """What a browser would build from the page: its elements, their attributes, its text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Keep every element with its attributes."""
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        """Keep the text as a reader sees it (entities decoded)."""
        self.text.append(data)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        """The attributes of every element of this name."""
        return [attrs for name, attrs in self.tags if name == tag]

    @property
    def all_text(self) -> str:
        """The text, joined."""
        return "".join(self.text)


def assert_inert(page: Page) -> None:
    """No script, image, frame, object or external resource; no event handler anywhere."""
    names = {name for name, _ in page.tags}
    assert not names & {"script", "img", "iframe", "object", "embed", "link", "base", "form"}
    for name, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], (name, attrs)
        for key in ("src", "href", "xlink:href", "action"):
            value = attrs.get(key)
            assert value is None or value.startswith("#"), (name, key, value)


@pytest.mark.parametrize("check_id", sorted(CHARTS))
def test_each_kind_of_measurement_draws_a_chart_with_axes_and_a_caption(check_id: str) -> None:
    """A fixed series gives an inline SVG with a title, units on its axes, and a caption."""
    chart = chart_for(check(check_id, chart=CHARTS[check_id]))
    assert chart is not None
    svg = str(chart.svg)
    assert svg.startswith("<svg") and "<title>" in svg and "<script" not in svg
    for label in AXES[check_id]:
        assert label.replace("'", "&#x27;") in svg or label in svg, label
    assert chart.caption.endswith(".") and len(chart.caption) < 220
    assert chart.caption == CAPTIONS.get(check_id, chart.caption)


def test_the_charts_draw_only_what_the_series_holds() -> None:
    """The limits and values a chart labels come from the check's series, not the course."""
    series = dataclasses.replace(OUTAGE, ratio=0.25, limit=1.3)
    chart = chart_for(check("m4.budget-shared", chart=series))
    assert chart is not None
    assert "1 + ratio = 1.25" in chart.svg and "limit, with slack: 1.3" in chart.svg
    slow = dataclasses.replace(LATENCY.phases[0], thresholds=(Threshold("p95", 2500.0),))
    latency = LatencyByPhase(
        (slow, *(dataclasses.replace(p, thresholds=()) for p in LATENCY.phases[1:]))
    )
    drawn = chart_for(check("lt.slow-phase-fails-fast", Status.FAIL, chart=latency))
    assert drawn is not None and "p95 &lt; 2,500 ms" in drawn.svg and "100 ms" not in drawn.svg


@pytest.mark.parametrize("check_id", sorted(DATA))
def test_a_chart_is_never_drawn_from_data(check_id: str) -> None:
    """Data shaped as a chart's numbers draws nothing without its series; with it, the series."""
    assert chart_for(check(check_id, data=DATA[check_id])) is None
    both = chart_for(check(check_id, data=DATA[check_id], chart=CHARTS[check_id]))
    alone = chart_for(check(check_id, chart=CHARTS[check_id]))
    assert both is not None and alone is not None and both.svg == alone.svg


@dataclasses.dataclass(frozen=True)
class Foreign:
    """A chart of a kind no format knows (a newer grader's, say)."""

    kind: str = "pie"


NAN, INF = math.nan, math.inf
NOTHING_TO_DRAW: dict[str, Any] = {
    "no series": None,
    "unknown kind": Foreign(),
    "no probes": ProbeLatencies((), 250.0),
    "nan probe": ProbeLatencies((NAN,), 250.0),
    "infinite answer": CheckoutTimeline(INF, 504, (), 3.0),
    "nan attempt": CheckoutTimeline(1.0, 504, (AttemptSpan(NAN, None, "x"),), 3.0),
    "empty storm": RetryStorm((), ((0.0, 100.0),)),
    "storm of no attempts": RetryStorm(((), ()), ()),
    "no outage": OutageAttempts((), 0.1, 1.15),
    "no counts": AttemptCounts((), 3),
    "no percentiles": LatencyByPhase((PhaseLatency("slow"),)),
    "no phases": LatencyByPhase(()),
}


@pytest.mark.parametrize("series", NOTHING_TO_DRAW.values(), ids=list(NOTHING_TO_DRAW))
def test_a_series_with_nothing_drawable_draws_no_chart_and_the_page_is_written(
    series: Any,
) -> None:
    """Odd or empty numbers leave the chart out, never the report; the text figure stays."""
    result = check("m2.read-timeout", Status.FAIL, chart=series, figure=("  #1 1··2",))
    assert chart_for(result) is None
    html = HtmlFormat().render(report_of(result))
    assert "<svg" not in html and "#1 1··2" in html


def test_the_learners_words_are_text_everywhere_on_the_page() -> None:
    """Summaries, evidence, API output, repo, notes and budget note are escaped, never markup."""
    forged = check(
        "m2.healthy-checkout",
        Status.FAIL,
        summary=f"checkout answered 200 with {FORGED}",
        measured=f"a body that is not JSON: {FORGED!r}\n{IMG}",
        expected=SCRIPT,
        hint=f"fix {IMG}",
    )
    forged = CheckResult(
        forged.id,
        forged.title,
        forged.milestone,
        forged.status,
        forged.evidence,
        api_output=(SCRIPT, IMG, "</pre><script>alert(1)</script>", "\x1b[31mred\x00"),
    )
    report = report_of(
        forged,
        check("m2.read-timeout", chart=CHARTS["m2.read-timeout"]),
        budgets=BudgetSource("learner", f"your budgets.yaml {SCRIPT}", {}),
        notes=(IMG,),
        repo=f"/repos/{SCRIPT}",
    )
    html = HtmlFormat().render(report)
    page = Page(html)
    assert_inert(page)
    text = page.all_text
    for line in (SCRIPT, IMG, "</pre><script>alert(1)</script>"):
        assert line in text  # shown as text, exactly as printed
    assert "\x1b" not in html and "\x00" not in html
    assert page.named("svg"), "the chart of the other check is still drawn"


def test_svg_text_is_escaped_and_only_chart_elements_pass() -> None:
    """A label is escaped by matplotlib; anything but what charts draw drops the chart."""
    from grader.formats.html.drawing import drawing, to_svg

    with drawing(7, 3) as (figure, [axes]):
        axes.plot([0, 1], [0, 1], label=f"{FORGED} $x^2$ & more")
        axes.legend()
        svg = str(to_svg(figure, "t", f"title {SCRIPT}"))
    assert "<script" not in svg and "<img" not in svg
    assert "&lt;script&gt;" in svg and "$x^2$" in svg  # no TeX: a label is literal text
    good = '<svg xmlns="http://www.w3.org/2000/svg"><defs><path id="a" d="M0 0"/></defs>'
    for bad in (
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><rect onload="alert(1)"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><foreignObject/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink">'
        '<use x:href="http://evil.example/s.svg#a"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><rect style="fill: url(http://e.example/)"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><style>@import "http://e.example/c.css";</style>'
        "</svg>",
    ):
        with pytest.raises(UnsafeSvg):
            inline_svg(bad, "k", "t")
    inlined = str(inline_svg(good + '<use href="#a" style="clip-path: url(#a)"/></svg>', "k", "t"))
    assert 'id="k-a"' in inlined and 'href="#k-a"' in inlined and "url(#k-a)" in inlined


def test_a_page_is_one_inert_file_with_unique_ids_under_a_megabyte() -> None:
    """Every chart at once: no script or fetch, a CSP that forbids both, no id twice."""
    results = [check(i, chart=c) for i, c in CHARTS.items()]
    results += [check("m4.budget-shared", chart=OUTAGE)]
    results += [check(f"m5.c{n}") for n in range(7)]
    html = HtmlFormat().render(report_of(*results))
    page = Page(html)
    assert_inert(page)
    assert len(page.named("svg")) == len(CHARTS) + 1
    figures = page.named("figure")
    assert {f["data-check"] for f in figures} == {*CHARTS, "m4.budget-shared"}
    assert all(c in page.all_text for c in CAPTIONS.values())
    csp = [a for a in page.named("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in (csp[0]["content"] or "")
    assert not re.search(r"url\((?!#)|@import|https?://(?!www\.w3\.org/)", html)
    ids = [attrs["id"] for _, attrs in page.tags if attrs.get("id")]
    assert len(ids) == len(set(ids))
    assert len(html.encode()) < 1_000_000


def test_a_report_that_could_not_grade_says_why() -> None:
    """The message and details, escaped; no milestone sections."""
    problem = NotGraded("BudgetsError", f"budgets.yaml: {SCRIPT}", details=(IMG,))
    report = Report("milestone-2", "/r", not_graded=problem)
    page = Page(HtmlFormat().render(report))
    assert_inert(page)
    assert "could not grade" in page.all_text and SCRIPT in page.all_text
    assert not page.named("article")


def test_html_is_a_report_format() -> None:
    """`--report html=FILE` finds it through the one enum."""
    assert isinstance(OutputFormat("html").to_format(), HtmlFormat)


def test_the_cli_starts_without_the_html_libraries() -> None:
    """The HTML libraries are imported when a page is written, not by every command."""
    code = (
        "import sys, grader.cli.app; "
        "assert not {'matplotlib', 'jinja2'} & set(sys.modules), sorted(sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()[-500:]


def test_safe_href_keeps_relative_and_http_links_only() -> None:
    """A submission's link may not run script when clicked."""
    assert safe_href("alice/report.html") == "alice/report.html"
    assert safe_href("https://ci.example/run/1") == "https://ci.example/run/1"
    for bad in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\tscript:x", "data:text/html,x"):
        assert safe_href(bad) is None, bad
    assert safe_href(None) is None and safe_href("") is None


def _class_entries() -> list[ClassEntry]:
    passing = report_of(*(check(i, chart=c) for i, c in CHARTS.items()))
    failing = report_of(
        *(check(i, Status.FAIL if i.startswith("m3") else Status.PASS) for i in CHARTS)
    )
    broken = Report("all", "/r", not_graded=NotGraded("ApiError", f"the API exited {SCRIPT}"))
    return [
        ClassEntry("alice", passing, "alice/report.html"),
        ClassEntry(f"bob {SCRIPT}", failing, "javascript:alert(1)"),
        ClassEntry("carol", broken, None),
    ]


def test_class_page_has_pass_rates_scores_and_links_to_each_submission() -> None:
    """Two charts, a row per submission, a link where the href is safe; names escaped."""
    html = render_class_page(_class_entries(), f"Cohort 3 {IMG}")
    page = Page(html)
    assert_inert_except_links(page)
    assert len(page.named("svg")) == 2
    assert "Share of submissions that passed each check" in html
    assert "Distribution of scores" in html
    assert [a["href"] for a in page.named("a")] == ["alice/report.html"]
    rows = page.named("tr")
    assert len(rows) == 1 + 3  # the header and a row per submission
    assert f"bob {SCRIPT}" in page.all_text and f"Cohort 3 {IMG}" in page.all_text
    assert "100 %" in page.all_text and "could not grade" in page.all_text


def assert_inert_except_links(page: Page) -> None:
    """Like assert_inert, but links to each submission's own page are the point."""
    links = [attrs for name, attrs in page.tags if name == "a"]
    others = Page("")
    others.tags = [(name, attrs) for name, attrs in page.tags if name != "a"]
    assert_inert(others)
    assert all(safe_href(attrs.get("href")) for attrs in links)


def test_class_page_pass_rates_count_only_the_submissions_that_ran_a_check() -> None:
    """A check that one of two graded submissions passed is at 50 %; the ungraded one is out."""
    from grader.formats.html.classpage import _pass_rates

    rates = {check_id: rate for check_id, rate, _ in _pass_rates(_class_entries())}
    assert rates["m2.read-timeout"] == 1.0 and rates["m3.jitter-spread"] == 0.5


def test_an_empty_class_page_is_still_a_page() -> None:
    """No submissions yet: the table is empty and there is no chart."""
    page = Page(render_class_page([], "Cohort 4"))
    assert not page.named("svg") and "0 submissions" in page.all_text


def _statuses(html: str) -> Mapping[str, str]:
    return dict(re.findall(r'id="check-([a-z0-9-]+)" data-status="([A-Z]+)"', html))


def test_every_check_has_its_status_summary_and_evidence() -> None:
    """A section per milestone; each check's status, summary, measured, expected, hint."""
    results = (
        check("m2.read-timeout", Status.FAIL, measured="cut after 5 s", expected="2 s"),
        check("m3.jitter-spread", Status.INCONCLUSIVE),
        check("m3.backoff-grows", Status.SKIP, summary="not run: m3.transient-heals is FAIL"),
    )
    html = HtmlFormat().render(report_of(*results))
    assert _statuses(html) == {
        "m2-read-timeout": "FAIL",
        "m3-jitter-spread": "INCONCLUSIVE",
        "m3-backoff-grows": "SKIP",
    }
    text = Page(html).all_text
    assert "cut after 5 s" in text and "fix it" in text and "not run: m3.transient-heals" in text
    assert 'id="milestone-2"' in html and 'id="milestone-3"' in html
