"""Small monospace charts for the report: lines of text, drawn alike in JSON and the terminal."""

from __future__ import annotations

from collections.abc import Sequence

WIDTH = 56  # fits an 80-column terminal under the report's indent


def timeline(rows: Sequence[Sequence[float]], *, label: str = "checkout") -> tuple[str, ...]:
    """One row per checkout: its attempts (1, 2, 3, ...) placed by arrival time, in seconds.

    Each row's times are relative to the row's own first attempt, so rows line up on their
    retries: lockstep retries draw a vertical column, jittered ones a scatter.
    """
    offsets = [[t - row[0] for t in row] for row in rows if row]
    span = max((max(row) for row in offsets), default=0.0) or 0.001
    scale = (WIDTH - 1) / span
    lines = [f"{label:>9} 0 ms{'':{WIDTH - 4 - len(f'{span * 1000:.0f} ms')}}{span * 1000:.0f} ms"]
    for number, row in enumerate(offsets, 1):
        cells = [" "] * WIDTH
        first, last = round(row[0] * scale), round(row[-1] * scale)
        for position in range(first, last + 1):
            cells[position] = "·"
        for attempt, t in enumerate(row, 1):
            # Later attempts win a shared cell: what matters is how far the last retry went.
            cells[round(t * scale)] = str(attempt) if attempt < 10 else "+"
        lines.append(f"{'#' + str(number):>9} {''.join(cells).rstrip()}")
    return tuple(lines)


def bars(
    rows: Sequence[tuple[str, float]], *, limit: float | None = None, unit: str = "ms"
) -> tuple[str, ...]:
    """Horizontal bars, one per (label, value); a ``|`` marks ``limit`` on the same scale."""
    width = WIDTH - 24
    top = max([v for _, v in rows] + ([limit] if limit else [])) or 1.0
    scale = width / top
    lines = []
    for label, value in rows:
        cells = ["█"] * max(1, round(value * scale)) + [" "] * (
            width - max(1, round(value * scale))
        )
        if limit is not None:
            mark = min(width - 1, round(limit * scale))
            cells[mark] = "│" if cells[mark] == " " else "┃"
        lines.append(f"{label:>16} {''.join(cells)} {value:,.0f} {unit}")
    if limit is not None:
        lines.append(
            f"{'':>16} {'│ = limit':>{min(width, round(limit * scale)) + 9}} {limit:,.0f} {unit}"
        )
    return tuple(lines)
