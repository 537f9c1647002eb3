"""How noisy the machine is right now, measured while checks run.

A timing check may FAIL only when what it measured is off by more than the machine's own noise
could explain. This module measures that noise the cheapest way there is: a task of the grader's
sleeps a known short time, over and over, and records how late it wakes. On a quiet machine that
is under a millisecond; with every core busy, tens of milliseconds, and the learner's API,
competing for the same cores, wakes about as late (benchmarks/measure_lateness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

SAMPLE_EVERY_S = 0.02


class LagMeter:
    """Samples how late the grader's event loop wakes, for as long as a grading run lasts."""

    def __init__(self) -> None:
        self._samples: list[tuple[float, float]] = []  # (when, how late), oldest first

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls) -> AsyncIterator[LagMeter]:
        """A meter sampling in the background until the block ends."""
        meter = cls()
        task = asyncio.create_task(meter._sample())
        try:
            yield meter
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sample(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(SAMPLE_EVERY_S)
            self.record(before, time.monotonic() - before - SAMPLE_EVERY_S)

    def record(self, when: float, lag: float) -> None:
        """Note that the loop, asleep from ``when``, woke ``lag`` seconds late."""
        self._samples.append((when, lag))

    def worst_since(self, since: float) -> float:
        """The latest the loop woke since monotonic time ``since`` (0 before any sample)."""
        return max((lag for when, lag in self._samples if when >= since), default=0.0)
