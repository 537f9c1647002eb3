"""The line log a learner's output goes to: exact counts, a bounded head and tail, lazy sanitising.

Pure logic: bytes are fed to a LineLog as a reader thread would, cut anywhere; the engine's
attach stream is demultiplexed (Frames) however it is cut, and read from a socket pair.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from dataclasses import replace

import jsonschema
import pytest

import grader.lines
from grader.backends.docker.containers import ContainerOutput, Frames
from grader.formats.json import JsonFormat, report_from_dict
from grader.formats.markdown import MarkdownFormat
from grader.formats.terminal import TerminalFormat
from grader.learner.yamlfile import schema
from grader.lines import HEAD_LINES, LINE_BYTES, SHOWN_CHARS, TAIL_LINES, LineLog, OutputSummary
from tests.test_formats import REPORT


def fed(data: bytes, cuts: list[int], log: LineLog | None = None) -> LineLog:
    """A log fed ``data`` in blocks of the sizes ``cuts`` cycles through, then ended."""
    log = log or LineLog()
    pos, turn = 0, 0
    while pos < len(data):
        size = cuts[turn % len(cuts)]
        log.append(data[pos : pos + size])
        pos, turn = pos + size, turn + 1
    log.end()
    return log


def lines_of(data: bytes) -> list[bytes]:
    """The lines of ``data`` as a program's reader sees them: a last one without newline too."""
    lines = data.split(b"\n")
    return lines[:-1] if lines[-1] == b"" else lines


@pytest.mark.parametrize("seed", range(40))
def test_counts_head_and_tail_are_exact_however_the_output_is_cut(seed: int) -> None:
    """Random lines in random blocks: every byte and line counted, the right lines kept."""
    rnd = random.Random(seed)
    sizes = [0, 1, 40, 299, 2000, 5000]
    data = b"\n".join(
        f"{n}:".encode() + b"a" * rnd.choice(sizes) for n in range(rnd.randint(0, 600))
    )
    data += b"\n" if rnd.random() < 0.5 else b""
    log = fed(data, [rnd.choice([1, 3, 64, 4096, 1 << 20]) for _ in range(5)])
    expected = [line.decode() for line in lines_of(data)]

    summary = log.summary()
    assert summary.bytes == len(data) and summary.lines == len(expected)
    assert [line.split(":")[0] for line in summary.head] == [
        line.split(":")[0] for line in expected[:HEAD_LINES]
    ]
    rest = expected[HEAD_LINES:]
    assert [line.split(":")[0] for line in summary.tail] == [
        line.split(":")[0] for line in rest[-10:]
    ]
    tail = log.tail(15)
    assert [x.split(":")[0] for x in tail] == [x.split(":")[0] for x in expected[-15:]]
    for shown, line in zip(tail, expected[-15:], strict=True):
        if len(line) > LINE_BYTES:
            assert shown.endswith(f"... [a line of {len(line):,} bytes]")
        else:
            assert shown == grader.lines.sanitize(line)
    assert summary.left_out == max(len(expected) - len(summary.head) - len(summary.tail), 0)


def test_a_line_longer_than_it_keeps_says_how_long_it_was() -> None:
    """A 50 MB line fed in 1 MiB blocks: one line, its start, and its length in bytes."""
    block = b"x" * (1 << 20)
    log = LineLog()
    for _ in range(50):
        log.append(block)
    log.append(b"\nafter\n")
    log.end()
    summary = log.summary()
    assert summary.lines == 2 and summary.bytes == 50 * (1 << 20) + 7
    assert summary.head[0] == "x" * (SHOWN_CHARS - 3) + "... [a line of 52,428,800 bytes]"
    assert summary.head[1] == "after" and summary.tail == ()


def test_sanitize_sees_only_what_is_kept_and_only_when_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing is sanitised while output flows; then never more than a kept line's bytes."""
    seen: list[int] = []
    real = grader.lines.sanitize

    def spy(line: str, limit: int = 300) -> str:
        seen.append(len(line))
        return real(line, limit)

    monkeypatch.setattr(grader.lines, "sanitize", spy)
    log = LineLog()
    for _ in range(20):  # ten 2 MiB lines, and 100-byte lines
        log.append(b"z" * (2 << 20) + b"\n" + (b"y" * 99 + b"\n") * 10_000)
    assert seen == []
    log.end()
    log.summary()
    log.tail(15)
    assert seen and max(seen) <= LINE_BYTES


def test_memory_is_bounded_whatever_is_printed() -> None:
    """The bytes kept stay under (head + tail + 1) lines of LINE_BYTES, for any amount printed."""
    log = LineLog()
    kept: list[int] = []
    for block in (b"y" * 99 + b"\n") * 10_486, b"x" * (1 << 20), b"\n" * (1 << 20):
        for _ in range(50):
            log.append(block)
            kept.append(log.kept_bytes())
    assert max(kept) <= (HEAD_LINES + TAIL_LINES + 1) * LINE_BYTES
    assert log.summary().bytes == 50 * (1_048_600 + 2 * (1 << 20))


def test_since_a_mark_and_waiting_for_a_line() -> None:
    """Marks count every line; a line is waited for and found once printed, in head or tail."""
    log = LineLog()
    log.append(b"starting\n" + b"noise\n" * 1000)
    mark = log.mark()
    assert mark == 1001
    log.append(b"one\ntwo")
    assert log.since(mark) == ("one",)  # "two" has not ended yet
    found: list[str | None] = []
    waiter = threading.Thread(
        target=lambda: found.append(log.wait_for_line(lambda x: x.startswith("ready"), 5.0))
    )
    waiter.start()
    log.append(b"\n" + b"noise\n" * 50 + b"ready on port 1\n")
    waiter.join(5.0)
    assert found == ["ready on port 1"]
    assert log.wait_for_line(lambda x: x == "starting", 0.0) == "starting"  # the head
    assert log.wait_for_line(lambda x: x == "absent", 0.05) is None
    log.end()
    assert log.since(mark, 2) == ("noise", "ready on port 1")


def test_a_last_line_without_newline_counts() -> None:
    """Output that ends without a newline: its last line is counted and shown."""
    log = fed(b"a\nb", [1])
    assert log.summary() == OutputSummary(head=("a", "b"), tail=(), bytes=3, lines=2)
    assert log.tail() == ("a", "b")
    assert fed(b"", [1]).summary() == OutputSummary()
    assert OutputSummary().lines == 0


def test_summaries_of_several_instances_combine() -> None:
    """Counts add up; the head is the first instance's, the tail the last one's that printed."""
    first = OutputSummary(head=("a1", "a2"), tail=("a9",), bytes=100, lines=9)
    quiet = OutputSummary()
    last = OutputSummary(head=("c1", "c2"), tail=(), bytes=6, lines=2)
    both = OutputSummary.combine([first, quiet, last])
    assert both == OutputSummary(
        head=("a1", "a2"), tail=("c1", "c2"), bytes=106, lines=11, instances=3
    )
    assert both.describe() == "106 bytes in 11 lines (over 3 instances)"
    assert OutputSummary.combine([]) is None
    big = OutputSummary(bytes=524_288_000, lines=10)
    assert big.loud and big.describe() == "524.3 MB (524,288,000 bytes) in 10 lines"


FLOODED = OutputSummary(
    head=("INFO:     Started server process [7]", "x" * 297 + "... [a line of 52,428,799 bytes]"),
    tail=("\u202eevil\x1b[31m", "INFO:     Finished server process [7]"),
    bytes=524_288_123,
    lines=14,
    instances=2,
)


def test_the_json_report_carries_the_output_and_reads_it_back() -> None:
    """Head, tail and counts in the JSON report, valid by its schema, read back the same."""
    report = replace(REPORT, api_output=FLOODED)
    document = json.loads(JsonFormat().render(report))
    jsonschema.validate(document, schema("report"))
    assert document["api_output"]["bytes"] == 524_288_123
    assert document["api_output"]["lines"] == 14
    back = report_from_dict(document).api_output
    assert back == replace(FLOODED, tail=back.tail if back else ())
    assert back is not None and back.tail[1] == FLOODED.tail[1]
    assert "\u202e" not in back.tail[0] and "\x1b" not in back.tail[0]  # neutralised
    quiet = json.loads(JsonFormat().render(REPORT))
    assert "api_output" not in quiet and report_from_dict(quiet).api_output is None


def test_the_terminal_shows_a_flood_and_not_a_quiet_api() -> None:
    """A flood: how much, the first and the last lines, each on one line; a quiet API: nothing."""
    text = TerminalFormat.for_file().render(replace(REPORT, api_output=FLOODED))
    assert "your API printed 524.3 MB (524,288,123 bytes) in 14 lines (over 2 instances)" in (
        " ".join(text.split())
    )
    assert "first │ INFO:     Started server process [7]" in text
    assert "… x... [a line of 52,428,799 bytes]" in text
    assert "10 lines not kept" in text
    assert "last  │ INFO:     Finished server process [7]" in text
    assert "\u202e" not in text and "\x1b" not in text
    quiet = replace(FLOODED, bytes=2_000, lines=30)
    assert "api out" not in TerminalFormat.for_file().render(replace(REPORT, api_output=quiet))


def test_the_markdown_summary_shows_a_flood_and_not_a_quiet_api() -> None:
    """The job summary says how much a flooding API printed, with its first and last lines."""
    text = MarkdownFormat().render(replace(REPORT, api_output=FLOODED))
    assert "Your API printed 524\\.3 MB (524,288,123 bytes) in 14 lines" in text
    assert "INFO:     Started server process [7]" in text
    assert "INFO:     Finished server process [7]" in text
    assert "\u202e" not in text and "\x1b" not in text
    quiet = replace(FLOODED, bytes=2_000)
    assert "Your API printed" not in MarkdownFormat().render(replace(REPORT, api_output=quiet))


def framed(frames: list[tuple[int, bytes]]) -> bytes:
    """The engine's multiplexed attach stream carrying ``frames`` (stream 1 stdout, 2 stderr)."""
    return b"".join(
        bytes([kind, 0, 0, 0]) + len(data).to_bytes(4, "big") + data for kind, data in frames
    )


@pytest.mark.parametrize("seed", range(20))
def test_frames_give_every_payload_byte_however_the_stream_is_cut(seed: int) -> None:
    """Headers and payloads cut anywhere (inside a header too): exactly the payload, in order."""
    rnd = random.Random(seed)
    frames = [
        (rnd.choice([1, 2]), bytes([65 + n % 26]) * rnd.choice([0, 1, 7, 8, 9, 4096, 32768]))
        for n in range(rnd.randint(0, 60))
    ]
    stream = framed(frames)
    demux, got, pos = Frames(), bytearray(), 0
    while pos < len(stream):
        size = rnd.choice([1, 3, 7, 8, 9, 100, 40_000, 1 << 20])
        got += demux.payload(memoryview(stream)[pos : pos + size])
        pos += size
    assert bytes(got) == b"".join(data for _, data in frames)


def test_a_header_cut_at_every_byte_is_still_read() -> None:
    """One frame split at each offset of its header: the same payload, and no header bytes."""
    stream = framed([(1, b"hello\n"), (2, b"oops\n")])
    for cut in range(1, 16):
        demux = Frames()
        assert demux.payload(stream[:cut]) + demux.payload(stream[cut:]) == b"hello\noops\n"


def _engine_side() -> tuple[socket.socket, ContainerOutput]:
    """A connected socket pair: the engine's end, and a ContainerOutput reading the other."""
    engine, grader_end = socket.socketpair()
    return engine, ContainerOutput("test", grader_end)


def test_a_stream_read_to_its_end_is_complete() -> None:
    """The engine sends frames and closes: every byte counted, the summary complete."""
    engine, output = _engine_side()
    engine.sendall(framed([(1, b"a\n" * 1000), (2, b"b" * 70_000 + b"\n")]))
    engine.close()
    output.finish(time.monotonic() + 5)
    summary = output.summary()
    assert (summary.bytes, summary.lines, summary.complete) == (2000 + 70_001, 1001, True)


def test_a_stream_cut_before_its_end_says_its_counts_are_lower_bounds() -> None:
    """The engine still sending at the deadline: the grader stops reading, and says so."""
    engine, output = _engine_side()
    engine.sendall(framed([(1, b"partial line, more to come")]))
    started = time.monotonic()
    output.finish(time.monotonic() + 0.2)
    assert time.monotonic() - started < 3  # bounded: the socket is shut down, the reader ends
    summary = output.summary()
    assert output.log.ended and not summary.complete and summary.bytes == 26
    engine.close()
    described = OutputSummary.combine([OutputSummary(bytes=5, lines=1), summary])
    assert described is not None and not described.complete
    assert described.describe() == (
        "at least 31 bytes in at least 2 lines (over 2 instances); the engine was still "
        "delivering output when the container stopped"
    )


def test_counts_that_are_lower_bounds_say_so_in_every_report() -> None:
    """JSON carries complete: false (valid, read back); terminal and Markdown say "at least"."""
    short = replace(FLOODED, complete=False)
    document = json.loads(JsonFormat().render(replace(REPORT, api_output=short)))
    jsonschema.validate(document, schema("report"))
    assert document["api_output"]["complete"] is False
    back = report_from_dict(document).api_output
    assert back is not None and not back.complete
    exact = json.loads(JsonFormat().render(replace(REPORT, api_output=FLOODED)))
    assert "complete" not in exact["api_output"]
    assert report_from_dict(exact).api_output == replace(
        FLOODED,
        tail=report_from_dict(exact).api_output.tail,  # type: ignore[union-attr]
    )
    text = " ".join(TerminalFormat.for_file().render(replace(REPORT, api_output=short)).split())
    assert "printed at least 524.3 MB (524,288,123 bytes) in at least 14 lines" in text
    assert "still delivering output" in text
    markdown = MarkdownFormat().render(replace(REPORT, api_output=short))
    assert "Your API printed at least 524.3 MB" in markdown
