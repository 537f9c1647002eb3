"""The grader's hands on the learner's API: checkouts, fresh instances, crash detection.

One driver per check. It remembers which API instances the check talked to, and where their
output stood when it began, so that a failure shows what those instances printed meanwhile and
nothing else.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from grader.backends.base import ApiInstance, Stack
from grader.errors import CheckFailed
from grader.lines import sanitize

TEXT_CHARS = 200  # of a body, kept to show in evidence
MAX_BODY_BYTES = 1 << 20  # a checkout's answer is a few hundred bytes; past this it is not one


def is_json_type(content_type: str | None) -> bool:
    """Whether a Content-Type labels JSON: ``application/json`` or a ``+json`` type, any params."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    """What one POST /checkout came back with, seen from the client."""

    amount_cents: int
    started_at: float  # grader's time.monotonic(), comparable with the stub's journal
    elapsed_s: float
    status: int | None = None  # None: no complete answer (see ``error``)
    body: Any = None  # parsed JSON, or None when the body is not JSON
    error: str | None = None
    # The body as text: its first TEXT_CHARS characters, control characters removed.
    text: str = ""
    # The Content-Type header as sent, None when there was none (or no answer).
    content_type: str | None = None

    @property
    def body_is_json(self) -> bool:
        """Whether the body parsed as JSON (``null`` included)."""
        return self.body is not None or self.text.strip() == "null"

    @property
    def labelled_json(self) -> bool:
        """Whether the answer's Content-Type says JSON (``application/json``, ``+json``)."""
        return is_json_type(self.content_type)

    def describe(self) -> str:
        """In words, e.g. ``answered 504 after 2.81 s``."""
        if self.status is None:
            return f"{self.error} after {self.elapsed_s:.2f} s"
        json_note = "" if self.body is not None else " (body not JSON)"
        return f"answered {self.status}{json_note} after {self.elapsed_s:.2f} s"

    def describe_body(self) -> str:
        """The body in words, bounded: ``a body that is not JSON: 'Internal Server Error'``.

        A JSON body labelled with another content type says so: ``a JSON body labelled
        text/plain (not application/json): {"error": "x"}``.
        """
        if self.status is None:
            return "no body (no complete answer)"
        if not self.text.strip():
            return "an empty body"
        if not self.body_is_json:
            return f"a body that is not JSON: {self.text!r}"
        shown = sanitize(json.dumps(self.body, default=str), TEXT_CHARS)
        if not self.labelled_json and self.content_type is not None:
            label = sanitize(self.content_type, 60)
            return f"a JSON body labelled {label} (not application/json): {shown}"
        if not self.labelled_json:
            return f"a JSON body with no Content-Type (not application/json): {shown}"
        return f"the JSON body {shown}"


class Driver:
    """Drives the learner's API for one check: checkouts, extra instances, its output."""

    def __init__(self, stack: Stack, http: httpx.AsyncClient) -> None:
        self.stack, self.http = stack, http
        # The instances the check talked to, each with where its output stood at first use.
        self._main_mark = stack.api.output_mark()
        self._used: dict[str, tuple[ApiInstance, int]] = {}

    @property
    def api(self) -> ApiInstance:
        """The learner's API instance started with the stack."""
        return self._use(self.stack.api)

    def watch(self, api: ApiInstance) -> ApiInstance:
        """Show what ``api`` (started by another check) prints from now on, should this fail."""
        if api.name not in self._used:
            self._used[api.name] = (api, api.output_mark())
        return api

    def _use(self, api: ApiInstance) -> ApiInstance:
        if api.name not in self._used:
            mark = self._main_mark if api is self.stack.api else 0
            self._used[api.name] = (api, mark)
        return api

    async def start_api(self, name: str, *, payments_url: str | None = None) -> ApiInstance:
        """Start another instance of the learner's API; its output is shown on failure.

        A fresh instance has fresh state: a full retry budget, whatever earlier checks spent.
        """
        return self._use(await self.stack.start_api(name, payments_url=payments_url))

    def api_output(self, n: int = 12) -> tuple[str, ...]:
        """What the instances this check used printed meanwhile (the last ``n`` lines of each)."""
        shown: list[str] = []
        for name, (api, mark) in self._used.items():
            lines = api.output_since(mark, n)
            if len(self._used) > 1 and lines:
                shown.append(f"[{name}]")
            shown.extend(lines)
        return tuple(shown)

    async def checkout(
        self,
        amount_cents: int,
        *,
        timeout_s: float,
        api: ApiInstance | None = None,
        headers: dict[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
        base_url: str | None = None,
    ) -> CheckoutResult:
        """POST /checkout for ``amount_cents``, waiting at most ``timeout_s`` for the answer.

        ``http`` sends it through another client (another connection pool) than the grader's;
        ``base_url`` to a proxy in front of ``api`` (the learner's nginx) instead of the API.
        """
        target = self._use(api or self.stack.api)
        started = time.monotonic()
        # The whole answer, headers and body, within ``timeout_s``: httpx's own timeout bounds
        # each read, and a body trickled a byte at a time would never end.
        response: httpx.Response | None = None
        try:
            async with (
                asyncio.timeout(timeout_s),
                (http or self.http).stream(
                    "POST",
                    f"{base_url or target.base_url}/checkout",
                    json={"amount_cents": amount_cents},
                    headers=headers,
                    timeout=timeout_s,
                ) as response,
            ):
                raw = await _read_bounded(response)
        except (TimeoutError, httpx.TimeoutException):
            elapsed = time.monotonic() - started
            if response is None:
                return CheckoutResult(amount_cents, started, elapsed, error="no answer")
            return CheckoutResult(
                amount_cents,
                started,
                elapsed,
                error=f"no complete answer (status {response.status_code} came, but its body "
                f"had not ended)",
                content_type=response.headers.get("content-type"),
            )
        except _TooLong:
            assert response is not None
            return CheckoutResult(
                amount_cents,
                started,
                time.monotonic() - started,
                error=f"no complete answer (status {response.status_code}, then a body past "
                f"{MAX_BODY_BYTES // 1024} KiB)",
                content_type=response.headers.get("content-type"),
            )
        except httpx.HTTPError as exc:
            # A connection the API's crash cut comes in before the kernel reports the exit.
            for _ in range(10):
                self.raise_if_dead(target)
                await asyncio.sleep(0.05)
            return CheckoutResult(
                amount_cents,
                started,
                time.monotonic() - started,
                error=f"connection failed ({type(exc).__name__})",
            )
        elapsed = time.monotonic() - started
        try:
            body = json.loads(raw)
        except ValueError:  # UnicodeDecodeError included
            body = None
        text = raw[: TEXT_CHARS * 4].decode("utf-8", errors="replace")
        return CheckoutResult(
            amount_cents,
            started,
            elapsed,
            response.status_code,
            body,
            text=sanitize(text, TEXT_CHARS),
            content_type=response.headers.get("content-type"),
        )

    def raise_if_dead(self, api: ApiInstance | None = None) -> None:
        """Fail the check, with the API's last words, if the instance is no longer running."""
        target = self._use(api or self.stack.api)
        exited = target.exit_description()
        if exited is not None:
            raise CheckFailed(
                f"your API {exited} while this check ran",
                measured=f"the API process {exited}",
                expected="the API keeps running whatever the provider does",
                hint="Read the API's last output lines below: an unhandled error, or a crash "
                "under load, ended the process.",
            )


class _TooLong(Exception):
    """A body past MAX_BODY_BYTES: no checkout answer is that long."""


async def _read_bounded(response: httpx.Response) -> bytes:
    """The whole body, or :class:`_TooLong` once it passes MAX_BODY_BYTES."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLong
    return b"".join(chunks)
