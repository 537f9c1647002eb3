"""JUnit XML validated as its strictest readers would: Jenkins' xUnit plugin and Ant's schema.

The two XSDs in tests/schemas/ are written from the rules of the Jenkins xUnit plugin's
junit-10.xsd and of the Ant JUnit/JUnitReport schema (each file's header names its source).
tests/test_junit.py validates rendered reports with them, tests/e2e the files real gradings
wrote.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from pathlib import Path

import xmlschema

SCHEMAS = Path(__file__).parent / "schemas"
JENKINS_XSD = SCHEMAS / "junit-jenkins-10.xsd"
ANT_XSD = SCHEMAS / "junit-ant.xsd"


@functools.cache
def junit_schema(path: Path) -> xmlschema.XMLSchema:
    """One of the XSDs, parsed once (an invalid XSD raises here)."""
    return xmlschema.XMLSchema(str(path))


def junit_schemas() -> dict[str, xmlschema.XMLSchema]:
    """Both dialects, by the reader's name."""
    return {"jenkins": junit_schema(JENKINS_XSD), "ant": junit_schema(ANT_XSD)}


def validate_junit(path_or_text: Path | str) -> ET.Element:
    """Raise unless the JUnit document (a file, or its text) is valid against both XSDs.

    Also checks what an XSD cannot say: Ant numbers the suites of a ``<testsuites>`` 0, 1, 2...
    Returns the document's root, for further reading.
    """
    text = path_or_text.read_text("utf-8") if isinstance(path_or_text, Path) else path_or_text
    for schema in junit_schemas().values():
        schema.validate(text)
    root = ET.fromstring(text)
    if root.tag == "testsuites":
        ids = [suite.get("id") for suite in root.findall("testsuite")]
        assert ids == [str(i) for i in range(len(ids))], f"suite ids {ids}, not 0, 1, ..."
    return root
