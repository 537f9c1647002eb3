"""The admin port: program fault rules, read the journal and the ledger, reset, describe the stub.

POST   /faults          one rule (see faults.py)  -> 201 {"id": n}
GET    /faults          -> {"faults": [rule + "matched", "fired"]}
DELETE /faults          -> {"deleted": n}
DELETE /faults/{id}     -> {"deleted": 1}, or 404
GET    /journal?amount_min=&amount_max=&since_seq=   -> {"now": t, "attempts": [...]}
GET    /ledger?amount_min=&amount_max=               -> {"now": t, "charges": [...]}
POST   /reset           forget rules, journal, ledger, idempotency keys -> {"reset": true}
GET    /info            ports, knobs, pid, now
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from reference.stub.channel import Channel, Incoming
from reference.stub.faults import Match, RuleError, parse_rule
from reference.stub.state import StubState


class _HttpError(Exception):
    """An admin request the stub refuses; becomes a JSON error response."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


class Admin:
    """Serves the admin port against the shared stub state."""

    def __init__(self, state: StubState, info: Callable[[], dict[str, Any]]) -> None:
        self._state = state
        self._info = info

    async def handle(self, channel: Channel, request: Incoming) -> None:
        """Serve one admin request."""
        try:
            status, payload = self._route(request)
        except _HttpError as exc:
            status, payload = exc.status, {"error": exc.error, "message": exc.message}
        await channel.send_json(status, payload)

    def _route(self, request: Incoming) -> tuple[int, Any]:
        """Dispatch on method and path; returns the status and JSON payload to send."""
        method, path = request.method, request.path.rstrip("/") or "/"
        query = parse_qs(request.query)
        if path == "/faults":
            if method == "POST":
                try:
                    rule = self._state.rules.add(parse_rule(_json_body(request)))
                except RuleError as exc:
                    raise _HttpError(400, "invalid_rule", str(exc)) from exc
                return 201, {"id": rule.id}
            if method == "GET":
                return 200, {"faults": self._state.rules.rules()}
            if method == "DELETE":
                return 200, {"deleted": self._state.rules.clear()}
            raise _not_allowed(method, path)
        if path.startswith("/faults/"):
            if method != "DELETE":
                raise _not_allowed(method, path)
            try:
                rule_id = int(path.removeprefix("/faults/"))
            except ValueError as exc:
                raise _HttpError(404, "not_found", f"no fault rule {path}") from exc
            if not self._state.rules.remove(rule_id):
                raise _HttpError(404, "not_found", f"no fault rule with id {rule_id}")
            return 200, {"deleted": 1}
        if path == "/journal":
            _only(method, "GET", path)
            attempts = self._state.journal.query(
                _amount_match(query), since_seq=_int_param(query, "since_seq")
            )
            return 200, {"now": time.monotonic(), "attempts": attempts}
        if path == "/ledger":
            _only(method, "GET", path)
            charges = self._state.ledger.query(_amount_match(query))
            return 200, {"now": time.monotonic(), "charges": [c.to_dict() for c in charges]}
        if path == "/reset":
            _only(method, "POST", path)
            self._state.reset()
            return 200, {"reset": True}
        if path == "/info":
            _only(method, "GET", path)
            return 200, self._info()
        raise _HttpError(404, "not_found", f"no admin route {path}")


def _only(method: str, allowed: str, path: str) -> None:
    """Refuse any method but ``allowed`` on ``path``."""
    if method != allowed:
        raise _not_allowed(method, path)


def _not_allowed(method: str, path: str) -> _HttpError:
    """Build the error for a method that ``path`` does not take."""
    return _HttpError(405, "method_not_allowed", f"{method} is not allowed on {path}")


def _json_body(request: Incoming) -> Any:
    """Parse the request body as JSON."""
    try:
        return json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _HttpError(400, "invalid_json", f"the body is not JSON: {exc}") from exc


def _amount_match(query: dict[str, list[str]]) -> Match:
    """Read the journal's and ledger's amount bounds, matched as a fault rule's are."""
    return Match(
        amount_min=_int_param(query, "amount_min"), amount_max=_int_param(query, "amount_max")
    )


def _int_param(query: dict[str, list[str]], name: str) -> int | None:
    """Read an optional integer query parameter (the last one wins, empty means absent)."""
    values = query.get(name)
    if not values or not values[-1]:
        return None
    try:
        return int(values[-1])
    except ValueError as exc:
        raise _HttpError(400, "invalid_query", f"{name!r} must be an integer") from exc
