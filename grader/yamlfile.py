"""YAML files of the learner contract, validated against the schemas the grader ships.

Errors name the file, the line and the field, in words a learner understands, e.g.
``budgets.yaml:5: layers.payments.read_timeout_s must be a number of seconds, not null``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from grader.model import Location


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a contract file, located."""

    file: str
    line: int | None  # 1-based; None when the whole file is at fault
    field: str  # dotted path, "" for the document
    message: str
    # True when the value is simply not filled in yet (null), as in the learner template.
    unfilled: bool = False

    @property
    def location(self) -> Location:
        """Where the problem is."""
        return Location(self.file, self.line)

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True, slots=True)
class Loaded:
    """A contract file's data and everything wrong with it (empty when it is valid)."""

    data: Any
    problems: tuple[Problem, ...]
    node: yaml.Node | None = None
    file: str = ""  # relative to the repo root

    def line(self, *path: str) -> int | None:
        """The 1-based line of the field at ``path``."""
        return _line_of(self.node, path)

    def location(self, *path: str) -> Location:
        """Where the field at ``path`` is, for evidence like ``budgets.yaml:4``."""
        return Location(self.file, self.line(*path))


@cache
def schema(name: str) -> dict[str, Any]:
    """One of the JSON Schemas shipped in grader/schemas, e.g. ``budgets``."""
    text = resources.files("grader").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def load(path: Path, schema_name: str) -> Loaded:
    """Parse ``path`` and validate it; a missing file or bad YAML is a problem, not an exception."""
    name = path.name
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return Loaded(None, (Problem(name, None, "", f"{name} was not found"),))
    except (OSError, UnicodeDecodeError) as exc:
        return Loaded(None, (Problem(name, None, "", f"{name} cannot be read: {exc}"),))
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        return Loaded(None, (Problem(name, line, "", f"is not valid YAML: {reason}"),))
    if data is None:
        data = {}
    validator = jsonschema.Draft202012Validator(schema(schema_name))
    explained = (_explain(name, node, error) for error in validator.iter_errors(data))
    problems = tuple(sorted(explained, key=lambda p: (p.line or 0, p.field)))
    return Loaded(data, problems, node, name)


def _explain(file: str, root: yaml.Node | None, error: jsonschema.ValidationError) -> Problem:
    path = list(error.absolute_path)
    field = ".".join(str(p) for p in path)
    line = _line_of(root, path)
    # jsonschema types these as "maybe unset"; for a raised error they are always set.
    value: Any = error.instance
    validator: Any = error.validator
    schema_part: Any = error.schema
    wanted_value: Any = error.validator_value
    unfilled = False
    if validator == "required":
        missing = str(error.message).split("'")[1]
        field_name = f"{field}.{missing}" if field else missing
        message = f"{field_name} is missing"
    elif validator == "additionalProperties":
        extra = sorted(set(value) - set(schema_part.get("properties", {})))
        allowed = ", ".join(schema_part.get("properties", {}))
        where = f"under {field}" if field else "at the top level"
        message = f"unexpected key {', '.join(map(repr, extra))} {where} (allowed: {allowed})"
        line = _line_of(root, [*path, extra[0]]) if extra else line
    elif validator == "type" or (validator == "$ref" and value is None):
        unfilled = value is None
        wanted = {"number": "a number of seconds", "integer": "a whole number"}.get(
            str(wanted_value), f"of type {wanted_value}"
        )
        if field.endswith("_s") and wanted.startswith("of type"):
            wanted = "a number of seconds"
        message = f"{field} must be {wanted}, not {_show(value)}"
    elif validator == "enum":
        choices = " | ".join(str(c) for c in wanted_value)
        unfilled = value is None
        message = f"{field} must be one of {choices}, not {_show(value)}"
    elif validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        words = {
            "minimum": "at least",
            "exclusiveMinimum": "greater than",
            "maximum": "at most",
            "exclusiveMaximum": "less than",
        }[str(validator)]
        message = f"{field} must be {words} {wanted_value}, not {_show(value)}"
    else:
        message = f"{field or 'the document'}: {error.message}"
    return Problem(file, line, field, message, unfilled)


def _show(value: Any) -> str:
    return "null" if value is None else json.dumps(value)


def _line_of(node: yaml.Node | None, path: Sequence[Any]) -> int | None:
    """The 1-based line of the YAML node at ``path``, or of its deepest existing ancestor."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for key in path:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(key):
                    child = value_node
                    # A key's own line is clearer than its value's (flow mappings share it).
                    line = key_node.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
