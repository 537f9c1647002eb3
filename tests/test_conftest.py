"""The suite's own helpers: what counts as the grader crashing."""

from __future__ import annotations

from tests.conftest import grader_crashed

# Quoted in a report by the template, whose API dies of a read timeout (the CI run of stop 17).
LEARNER_TRACEBACK = """Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/httpcore/_exceptions.py", line 14, in map
    raise to_exc(exc) from exc
httpcore.ReadTimeout
  File "/app/app/main.py", line 40, in checkout
"""

GRADER_TRACEBACK = """Traceback (most recent call last):
  File "/work/main/grader/cli/app.py", line 212, in check
    report = run(plan)
  File "/work/main/checks/m3_backoff.py", line 80, in backoff_grows
KeyError: 'attempts'
"""


def test_a_learner_traceback_in_the_report_is_not_a_grader_crash() -> None:
    """Tracebacks of the learner's API, quoted as its output, do not count as the grader's."""
    assert not grader_crashed(LEARNER_TRACEBACK)


def test_a_traceback_through_the_grader_is_a_crash() -> None:
    """A traceback with a frame in grader/ or checks/ is the grader crashing."""
    assert grader_crashed(GRADER_TRACEBACK)
    assert grader_crashed(LEARNER_TRACEBACK + GRADER_TRACEBACK)
