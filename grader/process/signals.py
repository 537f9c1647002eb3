"""Ctrl-C and SIGTERM deferred while something must not be cut short (reports being written)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_signals(
    on_signal: Callable[[int], object] | None = None,
) -> Iterator[list[int]]:
    """Defer SIGINT and SIGTERM for the block: the list of those received, to honour after.

    Each signal received in the block is appended to the list (and handed to ``on_signal``, if
    given) instead of interrupting; the previous handlers are back after the block. Outside the
    main thread no handler can be set: nothing is deferred, and the list stays empty.
    """
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        if on_signal is not None:
            on_signal(signum)

    previous = {}
    with contextlib.suppress(ValueError):  # not the main thread: nothing to defer
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
