"""The JUnit XML report, for CI systems that show test results (GitLab, Jenkins, GitHub apps).

One ``<testsuite>`` per milestone, one ``<testcase>`` per check. FAIL is a ``<failure>``, ERROR
and INCONCLUSIVE are an ``<error>`` (the grader could not grade, or could not tell: not a
verdict on the learner's code), SKIP is ``<skipped>``, PASS has no child. The evidence and the
hint are the failure's text, so a CI's test view says what to fix without the terminal log.

Every document is valid against both strict dialects, so any reader takes it: the Jenkins
xUnit plugin's ``junit-10.xsd`` and the Ant JUnit/JUnitReport schema. Between them they allow
no attribute on ``<testsuites>``; a suite needs ``package``, ``id`` (0, 1, ...), a
``timestamp`` without timezone, ``hostname`` and ``time``, and holds ``<properties>``, its
cases, ``<system-out>`` and ``<system-err>`` in that order; a case has at most one child and
no ``file`` or ``line`` attribute.

So the learner's file and line reach CI the way the JUnit annotators of GitHub Actions read
them (mikepenz/action-junit-report, ``resolveFileAndLine`` and ``resolvePath`` in
src/testParser.ts): the file from the last dot-separated segment of ``classname``, which they
glob as ``**/<segment>.*``, and the line from the last `` <segment>...:<digits>`` in the
failure's text. See :func:`classname` and :func:`_text`.
"""

from __future__ import annotations

import math
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime

from grader import __version__
from grader.lines import neutralise
from grader.model import NO_POINTS, CheckResult, Location, NotGraded, Report, Status, points_text

# Characters XML 1.0 cannot carry at all; a learner's output may contain any of them. The
# controls and surrogates among them are made visible first (:func:`_xml`): only the two
# non-characters are left to drop.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_COUNTED = {
    "failures": (Status.FAIL,),
    "errors": (Status.ERROR, Status.INCONCLUSIVE),
    "skipped": (Status.SKIP,),
}
# The last classname segment of a check that points at no file of the learner's. The
# annotators take that segment for a file name: they look for it as `<segment>` (relative to
# their working directory and to the workspace) and glob `**/<segment>.*`. The milestone
# (the old last segment) was wrong on both counts: `**/milestone-2.*` may well match a
# learner's notes. The check id is no better: its last segment is `read-timeout`, and with
# the dots replaced, `m2-read-timeout.*` is still a name a learner may give a file. A segment
# with a space and parentheses names no file anyone puts in a repository, matches no glob
# beyond itself (a `(` is a glob pattern only after one of `!?+*@`), and says what it means in
# every reader's view: Jenkins shows it as the class, the annotators as the file of the title.
NO_FILE = "(no file)"


def _xml(text: str) -> str:
    """Text as the document carries it: controls and bidi overrides visible, then XML 1.0 chars.

    A CI's test view shows the text as it is, so a learner's right-to-left override or C1 control
    would reach it (:func:`grader.lines.neutralise`); XML 1.0 cannot carry a C0 control at all.
    """
    return _NOT_XML.sub("", neutralise(text, keep_cr=False))


def _seconds(value: float) -> str:
    """A ``time`` attribute JUnit's readers parse: a non-negative decimal, never nan or inf.

    Three decimals at most, digits only: Jenkins' Surefire time pattern and ``xs:decimal``.
    """
    return f"{value:.3f}" if math.isfinite(value) and value >= 0 else "0.000"


def _timestamp(started_at: str) -> str:
    """The run's start in UTC, to the second, without a timezone: what Ant's schema allows.

    The current time when ``started_at`` is missing or not ISO 8601; a time without a zone is
    taken as UTC, which is what the runner writes.
    """
    try:
        when = datetime.fromisoformat(started_at.strip())
        if when.tzinfo is not None:
            when = when.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        when = datetime.now(UTC).replace(tzinfo=None)
    return when.replace(microsecond=0).isoformat(timespec="seconds")


def _hostname() -> str:
    """This machine's name; ``localhost`` when it has none (Ant's schema wants a non-empty one)."""
    try:
        name = " ".join(_xml(socket.gethostname()).split())
    except OSError:
        name = ""
    return name or "localhost"


def file_key(path: str) -> str | None:
    """What stands for ``path`` as the last segment of a classname, so the annotators find it.

    They glob ``**/<key>.*``, and a classname's segments cannot hold a dot, so the key is the
    path without its extension: ``budgets.yaml`` -> ``budgets``, ``nginx/nginx.conf`` ->
    ``nginx/nginx``. Directories whose names hold a dot end the key where they start
    (``nginx/conf.d/api.conf`` -> ``api``), and a name with several dots keeps what comes
    before the first (``compose.override.yml`` -> ``compose``): the glob may then find a
    namesake, but nothing better can be said in a classname. None for a name that starts with
    a dot (``.gitignore``): nothing can be said at all.
    """
    parts = path.replace("\\", "/").split("/")
    stem = parts[-1].split(".", 1)[0]
    if not stem:
        return None
    key = [stem]
    for part in reversed(parts[:-1]):
        if not part or "." in part:
            break
        key.insert(0, part)
    return "/".join(key)


def classname(milestone: str, location: Location | None) -> str:
    """``failfast.<milestone>.<file key>`` for a check at a learner's file, else ``(no file)``.

    ``failfast.milestone-1.budgets`` makes the annotators open ``budgets.yaml``; see
    :data:`NO_FILE` for why a check without a file says so rather than name its milestone.
    """
    key = file_key(location.path) if location is not None else None
    return _xml(f"failfast.{milestone}.{key or NO_FILE}")


def _where(location: Location | None) -> list[str]:
    """The last line of a failure's text: where to look, the line the annotators take.

    They search the text for `` <anything><file key><anything>:<digits>`` and take the
    number of the LAST match; they trim the text first, so the line cannot be the first
    one. Being the last line, this one wins over anything the learner's API printed above;
    a whole file says line 1 (where they would put it anyway), so that nothing else wins.
    """
    if location is None:
        return []
    if location.line:
        return ["", _xml(f"where: {location.path}:{location.line}")]
    return ["", _xml(f"where: {location.path}:1 (the whole file)")]


def _text(result: CheckResult) -> str:
    lines = [result.summary, ""]
    lines += [f"{label}: {text}" for label, text in result.evidence_parts() if label != "where"]
    if result.figure:
        lines += ["", *result.figure]
    if result.api_output:
        lines += ["", "your API's last output lines:", *(f"  | {x}" for x in result.api_output)]
    return _xml("\n".join([*lines, *_where(result.location)]))


def _passed(result: CheckResult) -> str:
    """A passing check in a line: ``PASS m2.healthy-checkout: served (measured: 200 in 0.03 s)``."""
    measured = f" (measured: {result.measured})" if result.measured else ""
    return f"PASS {result.id}: {result.summary}{measured}"


def _counts(element: ET.Element, results: Iterable[CheckResult], time_s: float) -> None:
    listed = list(results)
    element.set("tests", str(len(listed)))
    for name, statuses in _COUNTED.items():
        element.set(name, str(sum(r.status in statuses for r in listed)))
    element.set("time", _seconds(time_s))


class JUnitFormat:
    """JUnit XML as the strictest common consumers read it (Jenkins xUnit, Ant JUnitReport)."""

    def render(self, report: Report) -> str:
        """The report as a ``<testsuites>`` document."""
        if report.not_graded is not None:
            return self._not_graded(report, report.not_graded)
        root = ET.Element("testsuites")
        timestamp, hostname = _timestamp(report.started_at), _hostname()
        for index, milestone in enumerate(report.milestones):
            results = report.results_of(milestone)
            suite = self._suite(root, milestone, index, timestamp, hostname)
            _counts(suite, results, sum(r.duration_s for r in results))
            self._properties(suite, report, milestone)
            for result in results:
                self._case(suite, result)
            # A passing case has no child (Ant's schema allows one, for a verdict): what the
            # passing checks measured is the suite's output instead.
            passed = [_passed(r) for r in results if r.status is Status.PASS]
            ET.SubElement(suite, "system-out").text = _xml("\n".join(passed))
            ET.SubElement(suite, "system-err")
        return self._document(root)

    @staticmethod
    def _suite(
        root: ET.Element, milestone: str, index: int, timestamp: str, host: str
    ) -> ET.Element:
        name = _xml(milestone) or "failfast"
        suite = ET.SubElement(root, "testsuite", name=name)
        suite.attrib.update(package=f"failfast.{name}", id=str(index))
        suite.attrib.update(timestamp=timestamp, hostname=host)
        return suite

    @staticmethod
    def _properties(suite: ET.Element, report: Report, milestone: str | None = None) -> None:
        """The run's facts, and its points as exact decimals: this milestone's and the run's."""
        earned, worth = report.score_of(milestone) if milestone else (NO_POINTS, report.max_score)
        properties = ET.SubElement(suite, "properties")
        for name, value in (
            ("failfast_version", __version__),
            ("repo", report.repo),
            ("score", points_text(earned)),
            ("max_score", points_text(worth)),
            ("run_score", points_text(report.score)),
            ("run_max_score", points_text(report.max_score)),
            ("gradable", "true" if report.gradable else "false"),
        ):
            ET.SubElement(properties, "property", name=name, value=_xml(value))

    def _case(self, suite: ET.Element, result: CheckResult) -> None:
        case = ET.SubElement(
            suite,
            "testcase",
            name=_xml(result.id),
            classname=classname(result.milestone, result.location),
            time=_seconds(result.duration_s),
        )
        message = _xml(f"{result.title}: {result.summary}")
        if result.status is Status.FAIL:
            ET.SubElement(case, "failure", message=message, type="FAIL").text = _text(result)
        elif result.status in (Status.ERROR, Status.INCONCLUSIVE):
            kind = result.status.value
            ET.SubElement(case, "error", message=message, type=kind).text = _text(result)
        elif result.status is Status.SKIP:
            ET.SubElement(case, "skipped", message=message)

    def _not_graded(self, report: Report, problem: NotGraded) -> str:
        """Why grading was impossible: one suite with one errored case, so CI shows it."""
        root = ET.Element("testsuites")
        timestamp = _timestamp(report.started_at)
        suite = self._suite(root, report.milestone, 0, timestamp, _hostname())
        suite.attrib.update(tests="1", failures="0", errors="1", skipped="0", time="0.000")
        self._properties(suite, report)
        case = ET.SubElement(suite, "testcase", name="grading", time="0.000")
        case.set("classname", classname(report.milestone, problem.location))
        text = "\n".join([problem.message, *problem.details, *_where(problem.location)])
        error = ET.SubElement(case, "error", message=_xml(problem.message), type=problem.kind)
        error.text = _xml(text)
        ET.SubElement(suite, "system-out")
        ET.SubElement(suite, "system-err")
        return self._document(root)

    @staticmethod
    def _document(root: ET.Element) -> str:
        # Every string the document holds passes _xml(), whatever built it: a name, an
        # attribute or a text added later cannot carry a control or bidi override through.
        for element in root.iter():
            element.text = None if element.text is None else _xml(element.text)
            element.tail = None if element.tail is None else _xml(element.tail)
            element.attrib = {_xml(key): _xml(value) for key, value in element.attrib.items()}
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
