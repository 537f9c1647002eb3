"""Reports are always written, signals are honoured at once, and bad answers are the learner's.

Interrupted runs still write every report (the checks done, the rest SKIP "interrupted") and
exit 130; one unwritable report path does not stop the others; Ctrl-C and SIGTERM stop `k6
inspect` and `k6 run` at once, k6 included; an API whose body never ends FAILs within the
budget, never ERROR; a FAILFAST_K6 that names nothing is named.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import jsonschema
import pytest
from junitparser import JUnitXml, Skipped

from grader.backends.base import Stack
from grader.engine import registry
from grader.engine.context import AMOUNT_BLOCK
from grader.engine.driver import CheckoutResult, Driver
from grader.learner.yamlfile import schema
from tests.conftest import grader_crashed, leftovers, run_failfast
from tests.e2e.test_bad_input import GraderRun, _listening_ports
from tests.junit_schemas import validate_junit
from tests.mutants import REFERENCE, Edit, materialize

pytestmark = pytest.mark.slow

STOPS = [signal.SIGINT, signal.SIGTERM]


def block_of(check_id: str, milestone: str) -> range:
    """The amounts a run of ``milestone`` alone hands ``check_id``, as the runner numbers them."""
    specs = registry.load("checks").for_milestone(milestone)
    index = next(i for i, spec in enumerate(specs) if spec.id == check_id)
    return range((index + 1) * AMOUNT_BLOCK, (index + 2) * AMOUNT_BLOCK)


def strict_json(path: Path) -> dict[str, Any]:
    """A JSON report read as strictly as any consumer would, and valid against its schema."""

    def no_constant(name: str) -> None:
        raise AssertionError(f"{path} holds {name}, which is not JSON")

    document: dict[str, Any] = json.loads(path.read_text("utf-8"), parse_constant=no_constant)
    jsonschema.validate(document, schema("report"))
    return document


def wait_for(grader: GraderRun, found: Callable[[], bool], what: str, timeout_s: float) -> None:
    """Wait until ``found()``, failing if the grader exits first or it takes ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not found():
        if grader.proc.poll() is not None:
            output, _ = grader.proc.communicate()
            pytest.fail(f"the grader exited ({grader.proc.returncode}) before {what}:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.05)


def stop(grader: GraderRun, sig: signal.Signals) -> tuple[float, str]:
    """Send ``sig``; how long the grader took to exit, and what it printed."""
    sent = time.monotonic()
    grader.proc.send_signal(sig)
    output, _ = grader.proc.communicate(timeout=20)
    return time.monotonic() - sent, output


def command_lines(grader: GraderRun) -> dict[int, str]:
    """The grader's live processes and their command lines, read afresh.

    ``GraderRun.running()`` keeps the command line it first saw, and a child seen between fork
    and exec would keep the grader's own for ever.
    """
    lines = {}
    for proc in grader.running():
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            lines[proc.pid] = raw.replace(b"\0", b" ").decode(errors="replace")
    return lines


def k6_running(grader: GraderRun, subcommand: str) -> bool:
    """Whether a `k6 <subcommand>` of the grader's is running."""
    return any(re.search(rf"\bk6 {subcommand} ", line) for line in command_lines(grader).values())


def stub_admin(grader: GraderRun, timeout_s: float = 15.0) -> str:
    """The admin URL of the grader's stub: the port of its whose /info names its pid."""
    admin: list[str] = []

    def found() -> bool:
        owner = f"--owner-pid {grader.proc.pid}"
        for pid in (pid for pid, line in command_lines(grader).items() if owner in line):
            for port in sorted(_listening_ports(pid)):
                url = f"http://127.0.0.1:{port}"
                # The connect-hang port never accepts: a short timeout passes it by.
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    info = httpx.get(f"{url}/info", timeout=0.5).json()
                    if isinstance(info, dict) and info.get("pid") == pid:
                        admin.append(url)
                        return True
        return False

    wait_for(grader, found, "the grader's stub answered /info", timeout_s)
    return admin[0]


# --- reports of an interrupted run ------------------------------------------------------------


@pytest.mark.parametrize("sig", STOPS, ids=lambda s: s.name)
def test_an_interrupted_run_writes_every_report(sig: signal.Signals, tmp_path: Path) -> None:
    """Interrupted once a check finished: JSON and JUnit hold it, the rest are SKIP, exit 130."""
    repo = materialize(REFERENCE, tmp_path / "repo")
    report, junit = tmp_path / "report.json", tmp_path / "reports" / "junit.xml"
    with GraderRun(repo, "milestone-2", "--json", str(report), "--junit", str(junit)) as grader:
        admin = stub_admin(grader)
        # m2.read-timeout starts only once m2.healthy-checkout has finished: its first attempt
        # at the stub proves one check is done, and it holds the provider for seconds more.
        grader.wait_for_attempt(admin, block_of("m2.read-timeout", "milestone-2"))
        took, output = stop(grader, sig)
        assert grader.proc.returncode == 130, output
        # Grading stops at once; the API's graceful stop has a grace of 1.5 s.
        assert took < 3.0, f"took {took:.1f} s to exit"
        assert not grader_crashed(output)
        assert re.search(r"grading interrupted after 1 of 6 checks", output), output
        assert "exit code 130: grading was interrupted" in output
        assert not grader.left_after(2.0)
        assert leftovers(grader.proc.pid, repo) == []

    document = strict_json(report)
    assert document["exit_code"] == 130
    statuses = {c["id"]: c["status"] for c in document["checks"]}
    assert statuses["m2.healthy-checkout"] == "PASS"
    rest = [c for c in document["checks"] if c["id"] != "m2.healthy-checkout"]
    assert len(rest) == 5 and all(c["status"] == "SKIP" for c in rest), statuses
    assert all(c["data"] == {"interrupted": True} for c in rest)
    assert all("grading was interrupted" in c["summary"] for c in rest)
    running = next(c for c in rest if c["id"] == "m2.read-timeout")
    assert running["summary"].startswith("not finished: grading was interrupted")

    validate_junit(junit)
    cases = {case.name: case for suite in JUnitXml.fromfile(str(junit)) for case in suite}
    assert cases["m2.healthy-checkout"].is_passed
    skipped = [case for name, case in cases.items() if name != "m2.healthy-checkout"]
    assert all(isinstance(case.result[0], Skipped) for case in skipped)
    assert all("grading was interrupted" in str(case.result[0].message) for case in skipped)


def test_an_unwritable_report_path_spares_the_others(tmp_path: Path) -> None:
    """A report whose directory is a file is named on one line; the other two are written."""
    (tmp_path / "afile").write_text("a file, not a directory")
    bad, junit, markdown = tmp_path / "afile" / "r.json", tmp_path / "r.xml", tmp_path / "r.md"
    run = run_failfast(
        "check",
        "milestone-1",
        "--json",
        str(bad),
        "--junit",
        str(junit),
        "--report",
        f"markdown={markdown}",
        repo=REFERENCE,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.splitlines() == [
        f"failfast could not write the json report to {bad}: {tmp_path / 'afile'} is a file, "
        "not a directory"
    ]
    validate_junit(junit)
    assert len([c for s in JUnitXml.fromfile(str(junit)) for c in s]) == 5
    assert "| ✅ | `m1.budgets-valid`" in markdown.read_text("utf-8")
    assert "5 passed" in run.stdout


# --- signals during k6 --------------------------------------------------------------------------

# Init code that never ends: `k6 inspect` runs it before it can say anything.
LOOPING_INIT = Edit(
    "loadtest/checkout.js",
    "import exec from 'k6/execution';\n",
    "import exec from 'k6/execution';\nwhile (true) {}\n",
)


@pytest.mark.parametrize("sig", STOPS, ids=lambda s: s.name)
def test_a_signal_stops_k6_inspect_at_once(sig: signal.Signals, tmp_path: Path) -> None:
    """During `k6 inspect` of a script whose init loops, a signal ends grading and k6 in 1 s."""
    repo = materialize(REFERENCE, tmp_path / "repo", (LOOPING_INIT,))
    report = tmp_path / "report.json"
    with GraderRun(repo, "milestone-1", "--json", str(report)) as grader:
        wait_for(grader, lambda: k6_running(grader, "inspect"), "k6 inspect started", 20)
        took, output = stop(grader, sig)
        assert grader.proc.returncode == 130, output
        assert took < 1.5, f"took {took:.1f} s to exit"
        left = grader.left_after(0.5)
        assert not left, "still running:\n" + "\n".join(left)
    statuses = {c["id"]: (c["status"], c["summary"]) for c in strict_json(report)["checks"]}
    status, summary = statuses["m1.k6-thresholds"]
    assert status == "SKIP" and summary.startswith("not finished: grading was interrupted")
    assert statuses["m1.budgets-valid"][0] == "PASS"


@pytest.mark.parametrize("sig", STOPS, ids=lambda s: s.name)
def test_a_signal_stops_the_load_test_and_k6(sig: signal.Signals, tmp_path: Path) -> None:
    """During `k6 run`, a signal ends grading at once and leaves no k6 (nor anything) behind."""
    repo = materialize(REFERENCE, tmp_path / "repo")
    junit = tmp_path / "junit.xml"
    with GraderRun(repo, "loadtest", "--junit", str(junit)) as grader:
        wait_for(grader, lambda: k6_running(grader, "run"), "k6 run started", 30)
        took, output = stop(grader, sig)
        assert grader.proc.returncode == 130, output
        assert took < 3.0, f"took {took:.1f} s to exit"
        left = grader.left_after(2.0)
        assert not left, "still running:\n" + "\n".join(left)
        assert leftovers(grader.proc.pid, repo) == []
    validate_junit(junit)
    cases = {case.name: case for suite in JUnitXml.fromfile(str(junit)) for case in suite}
    assert isinstance(cases["lt.k6-run"].result[0], Skipped)


def test_a_failfast_k6_naming_nothing_is_named(tmp_path: Path) -> None:
    """FAILFAST_K6 wins over PATH: a wrong one is named, with the fix, never 'no k6 here'."""
    missing = tmp_path / "no-k6-here"
    run = run_failfast(
        "check",
        "milestone-1",
        "--format",
        "json",
        repo=REFERENCE,
        env={"FAILFAST_K6": str(missing)},
    )
    assert run.returncode == 2
    k6 = run.check("m1.k6-thresholds")
    assert k6["status"] == "ERROR"
    assert k6["summary"].startswith(
        f"FAILFAST_K6 is set to '{missing}', and there is no file there"
    )
    assert "Point FAILFAST_K6 at a k6 binary, or unset it" in k6["summary"]
    assert "this machine has none" not in k6["summary"]
    assert "grade again" in k6["hint"] and "not your code" in k6["hint"]


# --- answers that never end, or are not what they say ---------------------------------------

ENDLESS_APP = """\
import asyncio

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/checkout")
async def checkout() -> StreamingResponse:
    async def forever():
        yield b'{"status": "ok", '
        while True:
            await asyncio.sleep(0.1)
            yield b" "

    return StreamingResponse(forever(), media_type="application/json")
"""


def test_a_body_that_never_ends_fails_within_the_budget(tmp_path: Path) -> None:
    """200, then a body streamed for ever: m2.healthy-checkout FAILs on time, never ERROR."""
    repo = materialize(REFERENCE, tmp_path / "repo")
    (repo / "app" / "endless.py").write_text(ENDLESS_APP)
    (repo / "failfast.yaml").write_text(
        "command: uvicorn app.endless:app --host 127.0.0.1 --port $PORT\n"
    )
    run = run_failfast("check", "milestone-2", "--format", "json", repo=repo)
    assert run.returncode == 1, run.stdout + run.stderr
    healthy = run.check("m2.healthy-checkout")
    assert healthy["status"] == "FAIL"
    assert "no complete answer (status 200 came, but its body had not ended)" in healthy["measured"]
    # The grader waits api 3 s + 0.5 s tolerance + 2 s for an answer; the check's limit is 20 s.
    assert healthy["duration_s"] < 8.0


@dataclass(frozen=True, slots=True)
class _Api:
    """Just enough of an ApiInstance for a Driver to send checkouts to ``base_url``."""

    base_url: str
    name: str = "api"

    def output_mark(self) -> int:
        return 0

    def output_since(self, mark: int, n: int = 15) -> tuple[str, ...]:
        return ()

    def exit_description(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class _Stack:
    api: _Api


@asynccontextmanager
async def answering(head: bytes, body: bytes, *, endless: bool = False) -> AsyncIterator[Driver]:
    """A Driver whose API answers every request with ``head`` and ``body`` (then never ends)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + b"\r\n\r\n" + body)
        while endless:
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"1\r\n \r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, httpx.AsyncClient() as http:
        yield Driver(cast(Stack, _Stack(_Api(f"http://127.0.0.1:{port}"))), http)


def _answer(status: str, content_type: str, body: bytes) -> tuple[bytes, bytes]:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}"
    return head.encode(), body


async def _checkout(head: bytes, body: bytes, **kwargs: Any) -> CheckoutResult:
    async with answering(head, body, **kwargs) as driver:
        return await driver.checkout(1, timeout_s=1.0)


def test_driver_bounds_the_whole_answer() -> None:
    """Headers at once, then a chunked body without end: 'no complete answer' at the timeout."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
    started = time.monotonic()
    result = asyncio.run(_checkout(head, b"1\r\n{\r\n", endless=True))
    assert result.status is None and 0.9 < time.monotonic() - started < 2.0
    assert result.error == "no complete answer (status 200 came, but its body had not ended)"
    assert result.describe().startswith("no complete answer") and "after 1.0" in result.describe()


def test_driver_keeps_a_body_that_is_not_json_as_text() -> None:
    """A plain-text 500 is shown as its text, bounded and without control characters."""
    text = b"Internal Server Error\x1b[31m " + b"x" * 500
    result = asyncio.run(_checkout(*_answer("500 Oops", "text/plain; charset=utf-8", text)))
    assert result.status == 500 and result.body is None and not result.body_is_json
    assert result.text.startswith("Internal Server Error xxx") and len(result.text) == 200
    assert result.describe_body().startswith("a body that is not JSON: 'Internal Server Error")
    assert "None" not in result.describe_body()


def test_driver_records_the_content_type() -> None:
    """A JSON body labelled text/plain is JSON, and says how it was labelled."""
    body = b'{"error": "payments_unavailable"}'
    mislabelled = asyncio.run(_checkout(*_answer("503 Unavailable", "text/plain", body)))
    assert mislabelled.body == {"error": "payments_unavailable"} and not mislabelled.labelled_json
    assert mislabelled.describe_body() == (
        'a JSON body labelled text/plain (not application/json): {"error": "payments_unavailable"}'
    )
    labelled = asyncio.run(_checkout(*_answer("503 Unavailable", "application/json", body)))
    assert labelled.labelled_json and labelled.content_type == "application/json"
    assert labelled.describe_body() == 'the JSON body {"error": "payments_unavailable"}'
    problem = CheckoutResult(1, 0, 0, 503, {}, text="{}", content_type="application/problem+json")
    assert problem.labelled_json
    assert CheckoutResult(1, 0, 0, 200, None, text="").describe_body() == "an empty body"
