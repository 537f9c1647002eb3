"""The k6 runner and both summary parsers, on output the real k6 binary writes.

Each trap of k6's summaries gets a test against a real run: k6 runs on loopback against the
real stub, for about a second each.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from grader.engine import k6
from grader.errors import ToolTimeout
from grader.process.proctable import proc_table
from grader.process.tracker import ProcessTracker, current_tracker
from tests.stub._support import Stub, start_stub

TRAPS = """
import http from 'k6/http';
export const options = {
  iterations: 5,
  thresholds: {
    'http_req_duration': ['p(95)<0'],
    'http_req_duration{scenario:nowhere}': ['p(95)<1'],
    'http_req_failed': ['rate<1'],
  },
};
export default function () {
  http.post(`${__ENV.BASE_URL}/charge`, JSON.stringify({amount_cents: 5}),
            {headers: {'Content-Type': 'application/json'}});
}
export function handleSummary(data) {
  return {[__ENV.SUMMARY_PATH]: JSON.stringify(data), stdout: ''};
}
"""


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stub]:
    """A real stub for k6 to load."""
    started = start_stub(tmp_path_factory.mktemp("k6-stub") / "stderr.txt")
    yield started
    started.stop()


def run(tmp_path: Path, source: str, stub: Stub) -> k6.Run:
    """Run a k6 script for real against the stub."""
    script = tmp_path / "script.js"
    script.write_text(source)
    return asyncio.run(k6.run(script, {"BASE_URL": stub.url}, timeout_s=60))


@pytest.fixture(scope="module")
def traps(tmp_path_factory: pytest.TempPathFactory, stub: Stub) -> k6.Run:
    """One real run whose summaries hold every trap."""
    return run(tmp_path_factory.mktemp("traps"), TRAPS, stub)


def test_crossed_threshold_exits_99(traps: k6.Run) -> None:
    """Crossed thresholds end k6 with exit code 99, which is a result, not a problem."""
    assert traps.exit_code == k6.EXIT_THRESHOLDS_CROSSED
    assert traps.problem is None


def test_export_true_means_failed(traps: k6.Run) -> None:
    """In --summary-export, a threshold's true means FAILED; both parsers agree on the verdict."""
    exported = traps.export.metrics["http_req_duration"].thresholds
    summarised = traps.summary.metrics["http_req_duration"].thresholds
    assert [(t.expression, t.passed) for t in exported] == [("p(95)<0", False)]
    assert [(t.expression, t.passed) for t in summarised] == [("p(95)<0", False)]


def test_vacuous_threshold_passes_without_samples(traps: k6.Run) -> None:
    """k6 passes a threshold on a sub-metric with no samples: the model shows zero samples."""
    nowhere = traps.summary.metrics["http_req_duration{scenario:nowhere}"]
    assert nowhere.thresholds[0].passed is True
    assert not nowhere.samples


def test_p99_absent_unless_asked(traps: k6.Run) -> None:
    """Without summaryTrendStats asking for it, p(99) is not in the summary."""
    values = traps.summary.metrics["http_req_duration"].values
    assert "p(95)" in values and "p(99)" not in values


def test_rate_metric_counts_samples(traps: k6.Run) -> None:
    """A rate metric's samples are its passes plus fails."""
    assert traps.summary.metrics["http_req_failed"].samples == 5


def test_thrown_iteration_still_exits_0(tmp_path: Path, stub: Stub) -> None:
    """An iteration that throws does not fail the run: k6 exits 0 (the grader's script counts)."""
    source = "export const options = {iterations: 2};\nexport default function () { throw 1; }"
    assert run(tmp_path, source, stub).exit_code == 0


def test_bad_threshold_is_104(tmp_path: Path, stub: Stub) -> None:
    """A threshold k6 cannot parse is exit 104, a problem the grader reports."""
    source = TRAPS.replace("'p(95)<0'", "'p95 less than 3'")
    result = run(tmp_path, source, stub)
    assert result.exit_code == 104
    assert result.problem is not None and "invalid" in result.problem


def test_script_error_is_107(tmp_path: Path, stub: Stub) -> None:
    """A script that fails in its init code is exit 107."""
    result = run(tmp_path, "throw new Error('broken');\nexport default function () {}", stub)
    assert result.exit_code == 107


@pytest.mark.parametrize(
    ("text", "aggregate", "operator", "limit"),
    [
        ("p(95)<3000", "p(95)", "<", 3000),
        ("rate < 0.01", "rate", "<", 0.01),
        ("count>=1", "count", ">=", 1),
        ("p(99.9)<=250", "p(99.9)", "<=", 250),
        ("avg===5", "avg", "==", 5),
    ],
)
def test_expression_grammar(text: str, aggregate: str, operator: str, limit: float) -> None:
    """Threshold expressions parse into aggregate, operator and limit."""
    assert k6.Expression.parse(text) == k6.Expression(aggregate, operator, limit)


def test_expression_rejects_nonsense() -> None:
    """What k6 would reject does not parse."""
    with pytest.raises(ValueError, match="not a k6 threshold"):
        k6.Expression.parse("p95<3")


def test_metric_tags() -> None:
    """A metric name splits from its tag filter."""
    parsed = k6.MetricName.parse("http_req_duration{name:checkout, scenario:slow}")
    assert parsed == k6.MetricName("http_req_duration", {"name": "checkout", "scenario": "slow"})


# -- k6 is one of the run's processes

SLEEPER = "import { sleep } from 'k6';\nexport default function () { sleep(%s); }\n"


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own directory of run state files."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    return tmp_path / "runtime" / "failfast" / "runs"


def k6_children() -> list[int]:
    """The k6 processes the test's process started, still running."""
    return [
        stat.pid
        for stat in proc_table().values()
        if stat.comm == "k6" and stat.ppid == os.getpid() and stat.running
    ]


async def watch_run(script: Path, seen: Callable[[], bool], timeout_s: float = 60) -> bool:
    """Run ``script`` with k6, looking meanwhile (bounded) for ``seen()`` to hold once."""
    task = asyncio.create_task(k6.run(script, {}, timeout_s=timeout_s))
    found = False
    deadline = time.monotonic() + 30
    while not task.done() and not found and time.monotonic() < deadline:
        found = seen()
        await asyncio.sleep(0.05)
    await task
    return found


def test_k6_is_tracked_by_the_runs_tracker(tmp_path: Path, runs: Path) -> None:
    """With a run open, k6 is one of its processes: recorded in its state file, then stopped."""
    script = tmp_path / "sleep.js"
    script.write_text(SLEEPER % 2)
    tracker = ProcessTracker()
    try:
        assert tracker.state_file is not None
        state = tracker.state_file

        def recorded() -> bool:
            members = {stat.comm for stat, _ in tracker.members()}
            processes = json.loads(state.read_text())["processes"]
            return "k6" in members and "k6" in {p["comm"] for p in processes}

        assert asyncio.run(watch_run(script, recorded)), "k6 was never among the run's processes"
        assert tracker.members() == []
        assert json.loads(state.read_text())["processes"] == []
    finally:
        tracker.close()


def test_k6_without_a_run_is_tracked_by_one_of_its_own(tmp_path: Path, runs: Path) -> None:
    """No run open: k6 gets a tracker of its own, whose state file names it until it ends."""
    script = tmp_path / "sleep.js"
    script.write_text(SLEEPER % 2)

    def recorded() -> bool:
        return any(
            "k6" in {p["comm"] for p in json.loads(path.read_text())["processes"]}
            for path in runs.glob("*.json")
        )

    assert asyncio.run(watch_run(script, recorded)), "no state file ever named k6"
    assert current_tracker() is None
    assert not list(runs.glob("*.json"))
    assert k6_children() == []


def test_k6_overrun_is_a_tool_timeout_and_k6_is_gone(tmp_path: Path, runs: Path) -> None:
    """k6 past its limit: ToolTimeout naming it, and no k6 left running."""
    script = tmp_path / "sleep.js"
    script.write_text(SLEEPER % 60)
    started = time.monotonic()
    with pytest.raises(ToolTimeout, match="k6 run"):
        asyncio.run(k6.run(script, {}, timeout_s=1.0))
    assert time.monotonic() - started < 10
    assert k6_children() == []
