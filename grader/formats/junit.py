"""The JUnit XML report, for CI systems that show test results (GitLab, Jenkins, GitHub apps).

One ``<testsuite>`` per milestone, one ``<testcase>`` per check. FAIL is a ``<failure>``, ERROR
and INCONCLUSIVE are an ``<error>`` (the grader could not grade, or could not tell: not a
verdict on the learner's code), SKIP is ``<skipped>``. The evidence and the hint are the
failure's text, so a CI's test view says what to fix without the terminal log.
"""

from __future__ import annotations

import math
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from grader import __version__
from grader.model import CheckResult, NotGraded, Report, Status

# Characters XML 1.0 cannot carry at all; a learner's output may contain any of them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_COUNTED = {
    "failures": (Status.FAIL,),
    "errors": (Status.ERROR, Status.INCONCLUSIVE),
    "skipped": (Status.SKIP,),
}


def _xml(text: str) -> str:
    return _NOT_XML.sub("", text)


def _seconds(value: float) -> str:
    """A ``time`` attribute JUnit's readers parse: a non-negative decimal, never nan or inf."""
    return f"{value:.3f}" if math.isfinite(value) and value >= 0 else "0.000"


def _counts(element: ET.Element, results: Iterable[CheckResult], time_s: float) -> None:
    listed = list(results)
    element.set("tests", str(len(listed)))
    for name, statuses in _COUNTED.items():
        element.set(name, str(sum(r.status in statuses for r in listed)))
    element.set("time", _seconds(time_s))


def _text(result: CheckResult) -> str:
    lines = [result.summary, ""]
    lines += [f"{label}: {text}" for label, text in result.evidence_parts()]
    if result.figure:
        lines += ["", *result.figure]
    if result.api_output:
        lines += ["", "your API's last output lines:", *(f"  | {x}" for x in result.api_output)]
    return _xml("\n".join(lines))


class JUnitFormat:
    """JUnit XML as the common consumers read it (the Jenkins/Ant dialect)."""

    def render(self, report: Report) -> str:
        """The report as a ``<testsuites>`` document."""
        if report.not_graded is not None:
            return self._not_graded(report, report.not_graded)
        root = ET.Element("testsuites", name=f"failfast {report.milestone}")
        _counts(root, report.results, report.duration_s)
        for milestone in report.milestones:
            results = report.results_of(milestone)
            suite = ET.SubElement(
                root,
                "testsuite",
                name=milestone,
                timestamp=report.started_at,
                hostname=socket.gethostname(),
            )
            _counts(suite, results, sum(r.duration_s for r in results))
            properties = ET.SubElement(suite, "properties")
            for name, value in (("failfast_version", __version__), ("repo", report.repo)):
                ET.SubElement(properties, "property", name=name, value=_xml(value))
            for result in results:
                self._case(suite, result)
        return self._document(root)

    def _case(self, suite: ET.Element, result: CheckResult) -> None:
        case = ET.SubElement(
            suite,
            "testcase",
            name=result.id,
            classname=f"failfast.{result.milestone}",
            time=_seconds(result.duration_s),
        )
        if result.location is not None:
            case.set("file", _xml(result.location.path))
            if result.location.line:
                case.set("line", str(result.location.line))
        message = _xml(f"{result.title}: {result.summary}")
        if result.status is Status.FAIL:
            ET.SubElement(case, "failure", message=message, type="FAIL").text = _text(result)
        elif result.status in (Status.ERROR, Status.INCONCLUSIVE):
            kind = result.status.value
            ET.SubElement(case, "error", message=message, type=kind).text = _text(result)
        elif result.status is Status.SKIP:
            ET.SubElement(case, "skipped", message=message)
        else:
            ET.SubElement(case, "system-out").text = _text(result)

    def _not_graded(self, report: Report, problem: NotGraded) -> str:
        """Why grading was impossible: one suite with one errored case, so CI shows it."""
        milestone, repo = report.milestone, report.repo
        root = ET.Element("testsuites", name=f"failfast {milestone}")
        root.attrib.update(tests="1", failures="0", errors="1", skipped="0", time="0")
        suite = ET.SubElement(root, "testsuite", name=milestone, hostname=socket.gethostname())
        suite.attrib.update(tests="1", failures="0", errors="1", skipped="0", time="0")
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="repo", value=_xml(repo))
        case = ET.SubElement(suite, "testcase", name="grading", classname="failfast", time="0")
        text = "\n".join([problem.message, *problem.details])
        ET.SubElement(case, "error", message=_xml(problem.message), type=problem.kind).text = _xml(
            text
        )
        return self._document(root)

    @staticmethod
    def _document(root: ET.Element) -> str:
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
