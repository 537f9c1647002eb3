"""The typed series a chart is drawn from: through the JSON report and back, and only them.

Every kind (tests/test_html.py's CHARTS holds one of each) is written into the JSON report's
``chart`` object, valid against the schema, and read back by ``report_from_dict`` into an equal
dataclass, which draws the same chart. An unreadable chart leaves the chart out, never the
report. No format reads a check's ``data`` to draw: the source of grader/formats says so.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest

from checks.stats import charted
from grader.errors import CheckFailed, CheckInconclusive
from grader.formats.html import chart_for
from grader.formats.html.charts import KINDS
from grader.formats.json import JsonFormat, report_from_dict
from grader.learner.yamlfile import schema
from grader.model import Evidence, Passed, Report, Status
from grader.series import (
    CHART_KINDS,
    AttemptSpan,
    ChartShapeError,
    CheckoutTimeline,
    ProbeLatencies,
    from_plain,
    to_plain,
)
from tests.conftest import ROOT
from tests.test_html import CHARTS, DATA, check, report_of


def _through_json(report: Report) -> tuple[dict[str, Any], Report]:
    """The report as the JSON format writes it (checked against the schema), and read back."""
    document = json.loads(JsonFormat().render(report))
    jsonschema.validate(document, schema("report"))
    return document, report_from_dict(document)


def test_the_fixtures_hold_every_kind_and_every_kind_is_drawn() -> None:
    """CHARTS has a series of each kind; the HTML page draws each kind; the schema names each."""
    assert {type(series) for series in CHARTS.values()} == set(CHART_KINDS.values())
    assert {kind.series for kind in KINDS} == set(CHART_KINDS.values())
    defined = json.loads((ROOT / "grader" / "schemas" / "report.schema.json").read_text("utf-8"))
    chart = defined["$defs"]["chart"]
    assert set(chart["properties"]["kind"]["enum"]) == set(CHART_KINDS)
    consts = {defined["$defs"][ref["$ref"].split("/")[-1]]["properties"]["kind"]["const"]
              for ref in chart["oneOf"]}  # fmt: skip
    assert consts == set(CHART_KINDS)


@pytest.mark.parametrize("check_id", sorted(CHARTS))
def test_each_series_round_trips_through_the_json_report(check_id: str) -> None:
    """Written as its kind and fields, read back equal, drawn the same; data is kept as it was."""
    series = CHARTS[check_id]
    data = DATA.get(check_id, {"n": 1})
    result = check(check_id, Status.FAIL, chart=series, data=data)
    document, back = _through_json(report_of(result))
    written = document["checks"][0]
    assert written["chart"]["kind"] == series.kind
    assert written["data"] == data  # the data keys stay as the checks write them
    read = back.results[0]
    assert read.chart == series and type(read.chart) is type(series)
    assert read.data == data
    drawn, redrawn = chart_for(result), chart_for(read)
    assert drawn is not None and redrawn is not None and drawn.svg == redrawn.svg


def test_a_check_without_a_chart_writes_none_and_reads_none() -> None:
    """No ``chart`` key where a check measured nothing to draw: the JSON is as it was."""
    document, back = _through_json(report_of(check("m2.healthy-checkout", data={"elapsed_s": 1})))
    assert "chart" not in document["checks"][0]
    assert back.results[0].chart is None


def test_a_series_with_a_number_json_cannot_carry_is_left_out() -> None:
    """NaN would be written null where the schema wants a number: no chart, a valid report."""
    series = ProbeLatencies((1.0, float("nan")), 250.0)
    document, back = _through_json(report_of(check("m2.healthz-under-load", chart=series)))
    assert "chart" not in document["checks"][0]
    assert back.results[0].chart is None


def _edited(check_id: str, edit: Any) -> dict[str, Any]:
    plain = copy.deepcopy(to_plain(CHARTS[check_id]))
    edit(plain)
    return plain


UNREADABLE = {
    "unknown kind": {"kind": "pie", "slices": [1, 2]},
    "no kind": {"latencies_ms": [1.0], "limit_ms": 250.0},
    "not an object": [1, 2, 3],
    "a field missing": _edited("m2.healthz-under-load", lambda p: p.pop("limit_ms")),
    "text for a number": _edited("m2.healthz-under-load", lambda p: p.update(limit_ms="250")),
    "true for a number": _edited("m3.attempts-bounded", lambda p: p.update(max_attempts=True)),
    "a float for a count": _edited("m3.attempts-bounded", lambda p: p.update(attempts=[1.5])),
    "null for a number": _edited("m2.read-timeout", lambda p: p.update(elapsed_s=None)),
    "a span of three": _edited("m3.jitter-spread", lambda p: p["windows_ms"].append([1, 2, 3])),
    "an unknown percentile": _edited(
        "lt.k6-run", lambda p: p["phases"][0]["thresholds"].append({"percentile": "p42"})
    ),
    "an attempt that is not an object": _edited(
        "m2.read-timeout", lambda p: p["attempts"].append([0.1, 0.2, "x"])
    ),
}


@pytest.mark.parametrize("plain", UNREADABLE.values(), ids=list(UNREADABLE))
def test_an_unreadable_chart_is_left_out_and_the_report_is_read(plain: Any) -> None:
    """The reader refuses any other shape; report_from_dict keeps the rest of the report."""
    with pytest.raises(ChartShapeError):
        from_plain(plain)
    document = json.loads(JsonFormat().render(report_of(check("m2.read-timeout", data={"a": 1}))))
    document["checks"][0]["chart"] = plain
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema("report"))
    read = report_from_dict(document).results[0]
    assert read.chart is None and read.data == {"a": 1} and read.status is Status.PASS


def test_fields_a_newer_report_adds_are_ignored_and_defaults_fill_the_rest() -> None:
    """A key the series does not have is skipped; a field with a default may be missing."""
    plain = {"kind": "checkout-timeline", "elapsed_s": 1, "status": 504, "attempts": [],
             "api_budget_s": 3, "colour": "red"}  # fmt: skip
    series = from_plain(plain)
    assert series == CheckoutTimeline(1.0, 504, (), 3.0)
    assert isinstance(series, CheckoutTimeline) and isinstance(series.elapsed_s, float)
    assert series.read_timeout_s is None and series.answer_tolerance_s == 0.0


def test_charted_gives_a_raised_verdict_its_chart_and_passes_everything_else() -> None:
    """CheckFailed and its kin take no chart: a check raises them under ``charted``."""
    series = CHARTS["m2.read-timeout"]
    with pytest.raises(CheckFailed) as failed, charted(series):
        raise CheckFailed("too slow", measured="5 s", data={"elapsed_s": 5.0})
    evidence = failed.value.evidence
    assert evidence.chart == series and evidence.data == {"elapsed_s": 5.0}
    assert evidence.summary == "too slow" and evidence.measured == "5 s"
    with pytest.raises(CheckInconclusive) as unsure, charted(None):
        raise CheckInconclusive("noisy")
    assert unsure.value.evidence.chart is None
    with pytest.raises(ValueError, match="not a verdict"), charted(series):
        raise ValueError("not a verdict")
    passed = Passed("fine", chart=series)
    assert isinstance(passed, Evidence) and passed.chart is series


def test_a_check_results_chart_is_its_evidences() -> None:
    """CheckResult.chart reads through to the evidence, like its data and figure."""
    span = AttemptSpan(0.0, 1.0, "responded")
    series = CheckoutTimeline(1.0, 200, (span,), 3.0)
    assert check("m2.slow-body", chart=series).chart is series
    assert check("m2.slow-body").chart is None


FORMATS = ROOT / "grader" / "formats"
# Reading a check's data by key: `result.data["x"]`, `data.get("x")`, `.data.get(...)`.
READS_DATA = re.compile(r"\.data\s*\[|\bdata\s*\.\s*get\s*\(|\bdata\s*\[\s*['\"]")


@pytest.mark.parametrize(
    "path", sorted(FORMATS.rglob("*.py")), ids=lambda p: str(p.relative_to(FORMATS))
)
def test_no_format_reads_a_checks_data_by_key(path: Any) -> None:
    """A chart is drawn from its typed series: no format looks a number up in ``data``."""
    found = [
        f"{n}: {line.strip()}"
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if READS_DATA.search(line)
    ]
    assert not found, found


def test_the_data_pattern_finds_what_it_is_for() -> None:
    """The pattern above matches the reads the old HTML format made (so a pass means something)."""
    for line in (
        'attempts = data.get("attempts")',
        'counts = _nums(result.data["attempts"])',
        "phases = data['phase_latency_ms']",
    ):
        assert READS_DATA.search(line), line
    for line in ('"data": dict(r.data),', 'data=check.get("data") or {},'):
        assert not READS_DATA.search(line), line
