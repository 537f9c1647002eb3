"""Unit tests of the budget table: schema errors with lines, worst cases, the course fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.errors import BudgetsError
from grader.learner import budgets

VALID = """\
layers:
  nginx:    {timeout_s: 10}
  api:      {timeout_s: 3}
  payments: {connect_timeout_s: 0.5, read_timeout_s: 2}
retries:
  max_attempts: 3
  base_delay_s: 0.1
  max_delay_s: 1.0
  jitter: full
"""


def write(tmp_path: Path, text: str) -> Path:
    """Write budgets.yaml into tmp_path; returns the directory."""
    (tmp_path / "budgets.yaml").write_text(text)
    return tmp_path


def test_valid_table_loads_into_value_objects(tmp_path: Path) -> None:
    """A valid table has no problems and becomes Budgets."""
    loaded = budgets.load(write(tmp_path, VALID))
    assert loaded.problems == ()
    table = budgets.from_data(loaded.data)
    assert table.layers == budgets.Layers(nginx_s=10, api_s=3, connect_s=0.5, read_s=2)
    assert table.retries is not None and table.retries.jitter == "full"


def test_problem_names_field_and_line(tmp_path: Path) -> None:
    """A wrong type is reported with the file, the line and the dotted field."""
    loaded = budgets.load(
        write(tmp_path, VALID.replace("read_timeout_s: 2", 'read_timeout_s: "2s"'))
    )
    assert [str(p) for p in loaded.problems] == [
        'budgets.yaml:4: layers.payments.read_timeout_s must be a number of seconds, not "2s"'
    ]


def test_unknown_key_points_at_its_own_line(tmp_path: Path) -> None:
    """A typo is an unexpected key, located on the typo's line, with the allowed keys."""
    loaded = budgets.load(write(tmp_path, VALID.replace("max_delay_s", "max_delay")))
    messages = [str(p) for p in loaded.problems]
    assert messages == [
        "budgets.yaml:5: retries.max_delay_s is missing",
        "budgets.yaml:8: unexpected key 'max_delay' under retries (allowed: max_attempts, "
        "base_delay_s, max_delay_s, jitter)",
    ]


def test_invalid_yaml_is_a_problem_with_a_line(tmp_path: Path) -> None:
    """Broken YAML is a located problem, not an exception."""
    loaded = budgets.load(write(tmp_path, "layers:\n  nginx: {timeout_s: 10\n  api: 3\n"))
    assert len(loaded.problems) == 1
    assert "is not valid YAML" in loaded.problems[0].message
    assert loaded.problems[0].line is not None


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    """A missing budgets.yaml is reported, not raised."""
    assert str(budgets.load(tmp_path).problems[0]) == "budgets.yaml: budgets.yaml was not found"


def test_unfilled_table_means_course_budget(tmp_path: Path) -> None:
    """Nulls everywhere (the template) hold the live checks to the course's budget."""
    text = VALID.replace("10}", "null}").replace("3}", "null}")
    table, source = budgets.for_live_checks(write(tmp_path, text))
    assert table == budgets.COURSE
    assert source.origin == "course"


def test_wrong_table_cannot_be_graded_live(tmp_path: Path) -> None:
    """A filled-in but invalid table stops live grading with a located message."""
    with pytest.raises(
        BudgetsError, match=r"budgets.yaml:3: layers.api.timeout_s must be greater than 0"
    ):
        budgets.for_live_checks(write(tmp_path, VALID.replace("timeout_s: 3", "timeout_s: -3")))


@pytest.mark.parametrize(
    ("jitter", "expected"),
    [
        ("full", 3 * 2.5 + 0.1 + 0.2),
        ("equal", 3 * 2.5 + 0.1 + 0.2),
        ("decorrelated", 3 * 2.5 + 0.3 + 0.9),
    ],
)
def test_worst_case_adds_attempts_and_longest_waits(jitter: str, expected: float) -> None:
    """The worst case is every attempt timing out plus the longest wait before each retry."""
    table = budgets.Budgets(
        budgets.COURSE.layers,
        budgets.Retries(3, 0.1, 1.0, jitter),  # type: ignore[arg-type]
    )
    assert table.worst_case_s() == pytest.approx(expected)


def test_waits_are_capped_by_max_delay() -> None:
    """No wait exceeds max_delay_s, however many retries."""
    retries = budgets.Retries(5, 0.4, 1.0, "full")
    assert [retries.max_delay_before(n) for n in range(1, 5)] == [0.4, 0.8, 1.0, 1.0]
