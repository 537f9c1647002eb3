"""The milestones are spelled once, in grader/model.py: everything else derives from MILESTONES.

A milestone's key (``milestone-2``, ``loadtest``) or title written anywhere else under grader/,
code, comment, docstring, schema or template, is a second place to change when the course
changes; this scans for them. The schemas the grader ships name the milestones by a placeholder
that :func:`grader.learner.yamlfile.schema` fills in; the registry's check ids and Gradescope's
test numbers follow MILESTONES too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from grader.engine import registry
from grader.formats.gradescope import GradescopeFormat
from grader.learner.yamlfile import MILESTONE_PLACEHOLDER, schema
from grader.model import ALL, MILESTONE_KEYS, MILESTONES, CheckResult, Passed, Report, Status
from tests.conftest import ROOT

GRADER = ROOT / "grader"
DEFINITION = GRADER / "model.py"
# Files that still spell a milestone, in files their owners were editing when this test came:
# path -> how many spellings. Each entry goes when its file derives them from MILESTONES; the
# test fails while an entry is stale, so the list only shrinks.
NOT_YET: dict[str, int] = {
    "grader/cli/doctor.py": 3,  # "milestones 2-5 and loadtest", `failfast check milestone-1`
    "grader/course/file.py": 1,  # the course file's example in the module docstring
    "grader/formats/junit.py": 2,  # two comments on `milestone-2` class names
    "grader/learner/budgets.py": 1,  # "Run `failfast check milestone-1` to see every problem"
}


def spellings() -> re.Pattern[str]:
    """A milestone's key or title as a literal; ``milestone-<digit>`` whatever MILESTONES holds.

    A key is a whole word: ``loadtest/checkout.js`` is the learner's load-test folder, not the
    milestone.
    """
    keys = [re.escape(m.key) for m in MILESTONES]
    titles = [re.escape(m.title) for m in MILESTONES]
    key = rf"(?<![\w.-])(?:{'|'.join(keys)})(?![\w-]|/)"
    return re.compile(rf"{key}|milestone-[0-9\[]|{'|'.join(titles)}")


def source_files() -> list[Path]:
    """Every text file under grader/ but the definition: code, schemas, templates."""
    return sorted(
        path
        for path in GRADER.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path != DEFINITION
        and path.suffix in (".py", ".json", ".html", ".css", ".js", ".md", ".txt", ".toml")
    )


def found_in(path: Path) -> list[str]:
    """Each spelling of a milestone in ``path``, with its line number."""
    pattern = spellings()
    return [
        f"{path.relative_to(ROOT)}:{number}: {match.group(0)!r}"
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        for match in pattern.finditer(line)
    ]


def test_the_scan_finds_what_it_looks_for() -> None:
    """The scan sees a key, the ``milestone-N`` form and a title; the definition has them all."""
    pattern = spellings()
    for text in ("run `failfast check loadtest`", "milestone-7", "^(milestone-[1-5])$"):
        assert pattern.search(text), text
    assert pattern.search(MILESTONES[2].title)
    assert not pattern.search("loadtest/checkout.js, the learner's k6 script")
    assert not pattern.search("the milestone of a check, milestone_of(id)")
    definition = DEFINITION.read_text("utf-8")
    assert all(m.key in definition and m.title in definition for m in MILESTONES)
    assert len(source_files()) > 50


def test_no_milestone_is_spelled_outside_the_model() -> None:
    """Under grader/, only grader/model.py names a milestone (and the files NOT_YET lists)."""
    spelled = {str(path.relative_to(ROOT)): found_in(path) for path in source_files()}
    unexpected = [line for file, lines in spelled.items() if file not in NOT_YET for line in lines]
    assert not unexpected, "derive these from grader.model.MILESTONES:\n" + "\n".join(unexpected)
    stale = {file: len(spelled.get(file, [])) for file in NOT_YET}
    assert stale == NOT_YET, f"NOT_YET is out of date (fixed files leave it): {stale}"


@pytest.mark.parametrize("name", ["course", "report"])
def test_a_shipped_schema_holds_the_placeholder_not_the_milestones(name: str) -> None:
    """The file names no milestone; the placeholder stands where they go."""
    text = (GRADER / "schemas" / f"{name}.schema.json").read_text("utf-8")
    assert MILESTONE_PLACEHOLDER in text
    assert not spellings().search(text)
    json.loads(text)  # still JSON


def test_the_course_schema_allows_each_milestone_and_no_other() -> None:
    """One property per milestone of MILESTONES, in order, each a milestone's settings."""
    milestones = schema("course")["properties"]["milestones"]
    assert list(milestones["properties"]) == list(MILESTONE_KEYS)
    assert {json.dumps(v) for v in milestones["properties"].values()} == {
        json.dumps({"$ref": "#/$defs/milestone"})
    }
    assert milestones["additionalProperties"] is False


def test_the_report_schema_allows_each_milestone_and_no_other() -> None:
    """``milestone`` is a key or all; ``milestones`` are keys: exactly those of MILESTONES."""
    report = schema("report")["$defs"]["report"]["properties"]
    assert report["milestone"]["enum"] == [*MILESTONE_KEYS, ALL]
    assert report["milestones"]["items"]["enum"] == list(MILESTONE_KEYS)
    assert not placeholders(schema("report")) and not placeholders(schema("course"))


def placeholders(node: object) -> list[object]:
    """Every key or item of ``node`` (at any depth) that is still the placeholder."""
    if isinstance(node, dict):
        here = [k for k in node if k == MILESTONE_PLACEHOLDER]
        return here + [p for value in node.values() for p in placeholders(value)]
    if isinstance(node, list):
        here = [item for item in node if item == MILESTONE_PLACEHOLDER]
        return here + [p for item in node for p in placeholders(item)]
    return []


def test_check_ids_take_the_prefixes_of_milestones() -> None:
    """Every milestone's prefix makes a check id; any other prefix is refused."""
    decorate = registry.check
    for m in MILESTONES:
        assert registry._ID.match(f"{m.prefix}.some-check"), m.prefix
    for bad in ("m12.some-check", "x1.some-check", "m.some-check", "lt1.some-check"):
        assert not registry._ID.match(bad), bad
        with pytest.raises(ValueError, match="not of the form"):
            decorate(bad, "t", why="w", hint="h")


def test_gradescope_numbers_milestones_by_their_place() -> None:
    """A test's number is its milestone's place in MILESTONES, then its place in the milestone."""
    results = tuple(
        CheckResult(f"{m.prefix}.first", "t", m.key, Status.PASS, Passed("ok")) for m in MILESTONES
    )
    report = Report(ALL, "/r", results=results, milestones=MILESTONE_KEYS)
    document = json.loads(GradescopeFormat().render(report))
    numbers = [test["number"] for test in document["tests"]]
    assert numbers == [f"{n}.1" for n in range(1, len(MILESTONES) + 1)]
