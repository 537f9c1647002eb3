"""YAML files of the learner contract, validated against the schemas the grader ships.

Errors name the file, the line and the field, in words a learner understands, e.g.
``budgets.yaml:5: layers.payments.read_timeout_s must be a number of seconds, not null``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from yaml.composer import ComposerError

from grader.learner import learnerfile
from grader.model import MILESTONE_KEYS, Location


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


# A shipped schema names the milestones by this placeholder, never by their keys, so that they
# are spelled in one place (grader.model.MILESTONES): as a key of "properties" it stands for one
# property per milestone, as an item of "enum" for the keys, in order.
MILESTONE_PLACEHOLDER = "<milestone key>"


@cache
def schema(name: str) -> dict[str, Any]:
    """One of the JSON Schemas shipped in grader/schemas, e.g. ``budgets``, milestones filled in."""
    text = resources.files("grader").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = _with_milestones(json.loads(text))
    return loaded


def _with_milestones(node: Any) -> Any:
    """``node`` with every :data:`MILESTONE_PLACEHOLDER` replaced by the milestones' keys."""
    if isinstance(node, dict):
        filled: dict[str, Any] = {}
        for key, value in node.items():
            keys = MILESTONE_KEYS if key == MILESTONE_PLACEHOLDER else (key,)
            filled.update((k, _with_milestones(value)) for k in keys)
        return filled
    if isinstance(node, list):
        items: list[Any] = []
        for value in node:
            filling = value == MILESTONE_PLACEHOLDER
            items.extend(MILESTONE_KEYS if filling else [_with_milestones(value)])
        return items
    return node


# Bounds on a contract file beyond its size (learnerfile.CONTRACT_MAX_BYTES), so that no file
# makes grading slow or big.
# Values (scalars, mappings, lists) in one file: the contract has about 20. The bound keeps
# JSON Schema's checks (uniqueItems is quadratic in a list's length) to a millisecond.
MAX_NODES = 1000
# Nesting: the contract is three levels deep; YAML's composer recurses once per level.
MAX_DEPTH = 20


class _ContractLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, refusing aliases and bounding the values it composes.

    Aliases are refused outright, not counted: a dozen of them nested turn 600 bytes into a
    billion values (the "billion laughs"), a value reached through one would be reported on the
    anchor's line, not on the line of the key that uses it, and a contract of a dozen numbers
    gains nothing from them. The message says to write the value out.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.composed = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            raise ComposerError(
                None,
                None,
                f"uses the YAML alias *{event.anchor}: write the value out instead (the grader "
                f"does not expand aliases in contract files)",
                mark,
            )
        self.composed += 1
        if self.composed > MAX_NODES:
            raise ComposerError(
                None,
                None,
                f"holds more than {MAX_NODES} values: a contract file is a short table; "
                f"remove what it does not need",
                mark,
            )
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise ComposerError(
                    None,
                    None,
                    f"nests values more than {MAX_DEPTH} levels deep: the contract is three "
                    f"levels deep; remove the extra nesting",
                    mark,
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _compose(text: str) -> tuple[yaml.Node | None, Any]:
    """The file's one document as a node and as data, composed once."""
    loader = _ContractLoader(text)
    try:
        loader.get_event()  # type: ignore[no-untyped-call]  # STREAM-START
        node: yaml.Node | None = None
        if not loader.check_event(yaml.StreamEndEvent):
            node = loader.compose_document()
        if not loader.check_event(yaml.StreamEndEvent):
            event: Any = loader.get_event()  # type: ignore[no-untyped-call]
            raise ComposerError(
                None,
                None,
                "holds more than one YAML document (a second `---`): keep only one",
                event.start_mark,
            )
        data = None if node is None else loader.construct_document(node)
        return node, data
    finally:
        loader.dispose()


def load(path: Path, schema_name: str, *, root: Path | None = None) -> Loaded:
    """Parse ``path`` and validate it; a missing file or bad YAML is a problem, not an exception.

    ``root`` is the learner's repo (by default the file's directory): the file is read through
    :mod:`grader.learner.learnerfile`, a regular file inside it of at most 256 KiB.
    """
    root = path.parent if root is None else root
    name = Path(os.path.relpath(path, root)).as_posix()
    try:
        text = learnerfile.read_text(root, name, learnerfile.CONTRACT_MAX_BYTES)
    except learnerfile.LearnerFileError as error:
        # "budgets.yaml was not found" reads best whole; other problems follow the file's name.
        message = f"{name} {error.problem}" if error.problem == "was not found" else error.reason
        return Loaded(None, (Problem(name, None, "", message),), None, name)
    try:
        node, data = _compose(text)
    except yaml.YAMLError as exc:
        return Loaded(None, (_yaml_problem(name, text, exc),), None, name)
    contract = schema(schema_name)
    if data is None:
        required = contract.get("required", [])
        if required:
            wanted = " and ".join(f"`{key}:`" for key in required)
            problem = Problem(name, None, "", f"is empty: it needs {wanted} (see the README)")
            return Loaded(None, (problem,), None, name)
        data = {}
    if not isinstance(data, dict):
        problem = Problem(
            name,
            _line_of(node, ()),
            "",
            f"must be a mapping of keys to values (`key: value` lines), not {_kind(data)}",
        )
        return Loaded(None, (problem,), node, name)
    validator = jsonschema.Draft202012Validator(contract)
    errors = list(validator.iter_errors(data))
    # A non-finite number the schema refused too (.inf above a maximum) is said once, by it.
    refused = {tuple(error.absolute_path) for error in errors}
    non_finite = [p for path, p in _non_finite(name, node, data) if path not in refused]
    explained = [_explain(name, node, error) for error in errors]
    found = [*_duplicate_keys(name, node), *non_finite, *explained]
    problems = tuple(sorted(found, key=lambda p: (p.line or 0, p.field)))
    return Loaded(data, problems, node, name)


def _yaml_problem(file: str, text: str, exc: yaml.YAMLError) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):  # a control character, such as a NUL byte
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return Problem(
            file,
            text.count("\n", 0, exc.position) + 1,
            "",
            f"is not valid YAML: it contains the control character #x{code:04x}, which YAML "
            f"does not allow; remove it",
        )
    mark = getattr(exc, "problem_mark", None)
    line: int | None = mark.line + 1 if mark is not None else None
    reason = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if isinstance(exc, ComposerError) and context is None:
        return Problem(file, line, "", reason)  # the loader's own refusals, worded for a learner
    if context:
        reason = f"{context}: {reason}"
    return Problem(file, line, "", f"is not valid YAML: {reason}")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    return f"the single value {_show(value)}"


def _duplicate_keys(file: str, root: yaml.Node | None) -> list[Problem]:
    """Every key given twice in one mapping: YAML keeps the last silently."""
    found: list[Problem] = []

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, Any], int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                line = key_node.start_mark.line + 1
                if key is not None and (key_node.tag, key) in first:
                    field = ".".join(str(p) for p in (*path, key))
                    message = (
                        f"{field} is given twice, on lines {first[(key_node.tag, key)]} and "
                        f"{line}: YAML keeps only the last one; delete the other"
                    )
                    found.append(Problem(file, line, field, message))
                elif key is not None:
                    first[(key_node.tag, key)] = line
                walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    if root is not None:
        walk(root, ())
    return found


def _non_finite(
    file: str, root: yaml.Node | None, data: Any
) -> list[tuple[tuple[Any, ...], Problem]]:
    """Every .nan, .inf and -.inf, with its path: JSON Schema has no word for "finite"."""
    found: list[tuple[tuple[Any, ...], Problem]] = []

    def walk(value: Any, path: tuple[Any, ...]) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*path, index))
        elif isinstance(value, float) and not math.isfinite(value):
            field = ".".join(str(p) for p in path)
            message = f"{field} must be a finite number, not {_show(value)}"
            found.append((path, Problem(file, _line_of(root, path), field, message)))

    walk(data, ())
    return found


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
        extra = sorted(set(value) - set(schema_part.get("properties", {})), key=str)
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
    """A value as the learner wrote it, in short: ``null``, ``"2s"``, ``.inf``."""
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    try:
        shown = json.dumps(value, default=str)
    except (TypeError, ValueError):  # e.g. a mapping whose keys JSON cannot spell
        shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _line_of(node: yaml.Node | None, path: Sequence[Any]) -> int | None:
    """The 1-based line of the YAML node at ``path``, or of its deepest existing ancestor."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for key in path:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            # The last key of that name: a duplicate key is a problem of its own, and the data
            # holds the last one's value, so messages about the value point at it.
            for key_node, value_node in node.value:
                if key_node.value == str(key):
                    child = value_node
                    # A key's own line is clearer than its value's (flow mappings share it).
                    line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
