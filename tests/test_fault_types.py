"""A check's fault is typed: a misspelled fault type or field fails mypy, not the stub at run time.

One mypy run over two tiny modules, one written as a check would be and one with the typos a
dict-shaped fault let through until the stub answered 400 mid-grading.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CORRECT = """
from grader.checkkit import (
    Context, Decline, Delay, Dribble, ErrorStatus, Fault, Hang, LostResponse, Reset,
)


async def program(ctx: Context) -> None:
    stub = ctx.stack.stub
    faults: list[Fault] = [
        ErrorStatus(503),
        ErrorStatus(503, delay_ms=250),
        ErrorStatus(429, retry_after_s=1),
        Delay(delay_ms=10_000),
        Delay(delay_ms=100, jitter_ms=50),
        Dribble(interval_ms=100, body_bytes=100),
        Hang(max_hold_ms=1_000),
        Decline(),
        Reset(),
        LostResponse(),
    ]
    for fault in faults:
        await stub.add_fault(fault, amounts=range(100, 110), first_n=1, rate=0.5, times=3)
"""

# Each typo is on its own line, tagged with the mypy error code it must raise.
MISSPELLED = """
import grader.checkkit as checkkit
from grader.checkkit import Context, Delay, ErrorStatus


async def program(ctx: Context) -> None:
    admin = ctx.stack.stub
    amounts = range(100, 110)
    await admin.add_fault(ErrorStatus(statsu=503), amounts=amounts)  # expect: call-arg
    await admin.add_fault(checkkit.ErrorStauts(503), amounts=amounts)  # expect: attr-defined
    await admin.add_fault(Delay(delay_ms=10, jitter=5), amounts=amounts)  # expect: call-arg
    await admin.add_fault(Delay(), amounts=amounts)  # expect: call-arg
    await admin.add_fault({"type": "status", "status": 503}, amounts=amounts)  # expect: arg-type
"""

_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], set[str]]:
    """Run mypy once over both modules; map (module file name, line) to the error codes there."""
    tmp = tmp_path_factory.mktemp("fault_types")
    for name, source in (("correct.py", CORRECT), ("misspelled.py", MISSPELLED)):
        (tmp / name).write_text(textwrap.dedent(source).lstrip())
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(REPO / "pyproject.toml"),
            # The grader's own modules are checked by the project's mypy run; silencing them
            # here keeps this test about the two modules, whatever else is being edited.
            "--follow-imports",
            "silent",
            "--cache-dir",
            str(tmp / "cache"),
            "correct.py",
            "misspelled.py",
        ],
        cwd=tmp,
        env={**os.environ, "MYPYPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # 0: no errors, 1: errors found; anything else is mypy failing to run at all.
    assert completed.returncode in (0, 1), completed.stdout + completed.stderr
    errors: dict[tuple[str, int], set[str]] = {}
    for line in completed.stdout.splitlines():
        if found := _ERROR.match(line):
            key = (Path(found["file"]).name, int(found["line"]))
            errors.setdefault(key, set()).add(found["code"])
    return errors


def test_typed_faults_type_check(mypy_errors: dict[tuple[str, int], set[str]]) -> None:
    """Every fault type, built as the checks build them, passes to add_fault without an error."""
    assert [key for key in mypy_errors if key[0] == "correct.py"] == []


def test_misspelled_faults_are_type_errors(mypy_errors: dict[tuple[str, int], set[str]]) -> None:
    """A misspelled field, fault class, missing field or raw dict is a mypy error on its line."""
    lines = textwrap.dedent(MISSPELLED).lstrip().splitlines()
    expected = {
        ("misspelled.py", number): {line.rsplit("# expect: ", 1)[1]}
        for number, line in enumerate(lines, start=1)
        if "# expect: " in line
    }
    assert len(expected) == 5
    found = {key: codes for key, codes in mypy_errors.items() if key[0] == "misspelled.py"}
    assert found == expected
