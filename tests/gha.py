"""How the GitHub Actions runner reads a step's output, for tests: workflow commands and fences.

After actions/runner (ActionCommandManager, ActionCommand.TryParseV2): a line is a command when,
leading blanks trimmed, it starts with ``::``; ``::stop-commands::TOKEN`` turns processing off
until a line ``::TOKEN::``. Values are unescaped as the runner does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_DATA = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))
_PROPERTY = (("%3A", ":"), ("%2C", ","), *_DATA)


def _unescape(text: str, escapes: tuple[tuple[str, str], ...]) -> str:
    for escaped, raw in escapes:
        text = text.replace(escaped, raw)
    return text


@dataclass(frozen=True)
class Command:
    """One workflow command the runner would act on."""

    name: str
    data: str
    properties: dict[str, str] = field(default_factory=dict)


def commands(output: str) -> list[Command]:
    """The workflow commands in a step's output, in order, as the runner processes them."""
    found: list[Command] = []
    stop_token: str | None = None
    for raw in output.splitlines():
        line = raw.lstrip()
        if not line.startswith("::"):
            continue
        head, sep, data = line[2:].partition("::")
        if not sep:
            continue
        if stop_token is not None:
            if head == stop_token and data == "":
                stop_token = None
            continue
        name, _, props = head.partition(" ")
        if name == "stop-commands":
            stop_token = data
            continue
        properties = {}
        for pair in filter(None, props.split(",")):
            key, _, value = pair.partition("=")
            properties[key] = _unescape(value, _PROPERTY)
        found.append(Command(name, _unescape(data, _DATA), properties))
    return found
