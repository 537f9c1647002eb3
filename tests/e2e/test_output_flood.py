"""A learner's API that floods its output: the grader drains it, keeps it bounded, says how much.

Each flood is the reference solution plus a thread, started when the app is imported, that writes
more than 500 MB to stdout or to stderr while the checks run: ten 50 MiB lines, or 100-byte
lines. Graded at milestone 2, each must get exactly the quiet reference's verdicts (the app
never blocks on its pipe, the grader never falls behind), and the JSON report must carry the
output's head, tail and byte count; under ``--backend docker`` too (one flood, read from the
container's attach stream). ``benchmarks/output_flood.py`` grades the same apps and measures the
grader's peak memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.conftest import Run, run_failfast
from tests.e2e.conftest import docker_engine
from tests.e2e.test_docker_edges import left_by
from tests.mutants import APP, REFERENCE, Edit, materialize

pytestmark = pytest.mark.slow

MIB = 1 << 20
FLOOD_BYTES = 500 * MIB  # at least: each instance of the API writes this much
# Spread over the first seconds of the grading (milestone 2 takes about 6 s), so that it is
# still flooding while the checks measure: a fast write at startup would be over before them.
FLOOD_MB_PER_S = 200.0

# The flood, appended to app/main.py: a thread writes 1 MiB blocks, paced to FLOOD_MB_PER_S,
# through the same stream objects as uvicorn's log lines: a grader that reads too slowly (a full
# pipe) holds up the event loop's next log line, and with it the API.
FLOOD_CODE = '''


def _flood(fd: int, line_bytes: int, total: int, rate: float) -> None:
    """A debug print left in a loop: hundreds of MB of output while the API serves."""
    time.sleep(0.5)
    if line_bytes < MIB:  # 8 MiB of lines at once, as a print() of a big buffer writes them
        blocks = [(b"y" * (line_bytes - 1) + b"\\n") * (8 * MIB // line_bytes)]
    else:  # one long line, written 1 MiB at a time, its last block ending it
        blocks = [b"x" * MIB] * (line_bytes // MIB - 1) + [b"x" * (MIB - 1) + b"\\n"]
    # Through sys.stdout (sys.stderr) as print() writes, holding the stream's lock while its
    # pipe is full: the lock uvicorn's own log lines wait for, on the event loop.
    out = (__import__("sys").stdout if fd == 1 else __import__("sys").stderr).buffer
    started, written = time.monotonic(), 0
    while written < total:
        for block in blocks:
            out.write(block)
            out.flush()
            written += len(block)
            ahead = written / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)


MIB = 1 << 20
__import__("threading").Thread(
    target=_flood, args=({fd}, {line_bytes}, {total}, {rate}), daemon=True
).start()
'''


@dataclass(frozen=True, slots=True)
class Flood:
    """An app writing ``total`` bytes in lines of ``line_bytes`` to ``stream``."""

    name: str
    stream: str  # "stdout" or "stderr"
    line_bytes: int
    total: int = FLOOD_BYTES
    rate: float = FLOOD_MB_PER_S * 1e6

    @property
    def edits(self) -> tuple[Edit, ...]:
        """The reference with the flood started when app/main.py is imported."""
        code = FLOOD_CODE.format(
            fd=1 if self.stream == "stdout" else 2,
            line_bytes=self.line_bytes,
            total=self.total,
            rate=self.rate,
        )
        anchor = 'REDIS_URL = os.environ.get("REDIS_URL")\n'
        return (Edit(APP, anchor, anchor + code),)


FLOODS = (
    Flood("long-lines-stdout", "stdout", 50 * MIB),
    Flood("long-lines-stderr", "stderr", 50 * MIB),
    Flood("short-lines-stdout", "stdout", 100),
    Flood("short-lines-stderr", "stderr", 100),
)


DOCKER = ("--backend", "docker")


def grade_m2(repo: Path, *options: str) -> Run:
    """Milestone 2 of ``repo``, the JSON report on stdout (validated against the schema)."""
    argv = ("check", "milestone-2", "--format", "json", *options)
    return run_failfast(*argv, repo=repo, timeout_s=180)


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The reference solution graded at milestone 2, printing what it always prints."""
    return grade_m2(materialize(REFERENCE, tmp_path_factory.mktemp("quiet") / "repo"))


@pytest.mark.parametrize("flood", FLOODS, ids=[flood.name for flood in FLOODS])
def test_a_flood_changes_no_verdict_and_is_reported(
    quiet: Run, flood: Flood, tmp_path: Path
) -> None:
    """500+ MB of output: the quiet app's verdicts, and the report's head, tail and byte count."""
    run = grade_m2(materialize(REFERENCE, tmp_path / "repo", flood.edits))
    assert run.statuses() == quiet.statuses(), run.stdout[-3000:]
    assert run.returncode == quiet.returncode
    assert run.report is not None
    printed = run.report["api_output"]
    assert printed["bytes"] >= flood.total, printed["bytes"]
    assert printed["lines"] >= flood.total // flood.line_bytes
    assert printed["head"] and printed["tail"]
    shown = printed["head"] + printed["tail"]
    assert all(len(line) <= 340 for line in shown)  # 300 characters and the line's length
    filler = "x" * 50 if flood.line_bytes > 1000 else "y" * 99
    assert any(line.startswith(filler) for line in shown), shown
    if flood.line_bytes > 1000:  # a whole 50 MiB line (uvicorn's log lines may split some)
        whole = f"... [a line of {flood.line_bytes - 1:,} bytes]"  # its newline not counted
        assert any(line.endswith(whole) for line in shown), shown
    else:
        assert all("[a line of" not in line for line in shown)
    # The quiet app's output is reported too, and is small.
    assert quiet.report is not None and quiet.report["api_output"]["bytes"] < 1 << 20


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    """The local Docker engine (the test fails, saying how to get one, if there is none)."""
    client = docker_engine(60)
    yield client
    client.close()


@pytest.mark.docker
def test_a_flood_in_a_container_is_counted_to_the_last_byte(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    """Under --backend docker, 500+ MB of short lines: the quiet app's verdicts, every byte counted.

    Short lines are what the engine's log files were slowest at (the count fell to 4 %): read
    from the attach stream, the count is the whole output, and nothing of the run is left.
    """
    flood = next(flood for flood in FLOODS if flood.name == "short-lines-stdout")
    quiet = grade_m2(materialize(REFERENCE, tmp_path / "quiet"), *DOCKER)
    run = grade_m2(materialize(REFERENCE, tmp_path / "flood", flood.edits), *DOCKER)
    assert run.report is not None and run.report["backend"] == "docker", run.stdout[-3000:]
    assert run.statuses() == quiet.statuses(), run.stdout[-3000:]
    assert run.returncode == quiet.returncode
    printed = run.report["api_output"]
    assert "complete" not in printed, printed  # the stream of every instance read to its end
    assert printed["bytes"] >= flood.total, printed["bytes"]
    assert printed["lines"] >= flood.total // flood.line_bytes
    assert any(line.startswith("y" * 99) for line in printed["head"] + printed["tail"])
    assert quiet.report is not None and quiet.report["api_output"]["bytes"] < 1 << 20
    assert left_by(engine, quiet.pid) == [] and left_by(engine, run.pid) == []  # nor images


@pytest.mark.docker
def test_a_container_that_dies_at_once_shows_its_last_lines(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    """Its output, on stdout and stderr, reaches the start error though no log file is kept."""
    anchor = 'REDIS_URL = os.environ.get("REDIS_URL")\n'
    dies = anchor + 'print("about to die", flush=True)\nraise SystemExit("died on purpose")\n'
    repo = materialize(REFERENCE, tmp_path / "repo", (Edit(APP, anchor, dies),))
    run = grade_m2(repo, *DOCKER)
    assert run.returncode == 2 and run.report is not None, run.stdout + run.stderr
    error = run.report["error"]
    assert error["type"] == "ApiStartError" and "exited with code 1" in error["message"], error
    # The engine copies stdout and stderr apart: their lines may come in either order.
    assert sorted(error["details"][-2:]) == ["about to die", "died on purpose"], error
    assert left_by(engine, run.pid) == []
