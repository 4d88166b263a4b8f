"""The Overview charts as geometry for inline SVG, drawn on the server.

No chart library and no script: the template turns these shapes into ``<rect>`` and
``<polyline>`` elements, so the charts render without JavaScript and under a strict
Content-Security-Policy, and the live refresh swaps them with the rest of the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from conveyor.dashboard.activity import Minute, failure_rate

__all__ = ["Bar", "Chart", "failure_rate_chart", "throughput_chart"]

WIDTH, HEIGHT = 600.0, 180.0
LEFT, RIGHT, TOP, BOTTOM = 40.0, 8.0, 10.0, 22.0


@dataclass(frozen=True, slots=True)
class Bar:
    """A rectangle; ``kind`` is its CSS class (succeeded, retried, aborted, failed)."""

    x: float
    y: float
    width: float
    height: float
    kind: str
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Shapes in a ``WIDTH`` x ``HEIGHT`` viewBox; ``lines`` are polyline point lists."""

    label: str
    bars: list[Bar] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    points: list[tuple[float, float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    width: float = WIDTH
    height: float = HEIGHT
    left: float = LEFT
    plot_bottom: float = HEIGHT - BOTTOM
    empty: bool = False


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^n at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    power = int(10 ** math.floor(math.log10(value)))
    return next(step * power for step in (1, 2, 5, 10) if value <= step * power)


def _x_ticks(minutes: Sequence[Minute], slot: float) -> list[tuple[float, str]]:
    ticks = []
    for i, minute in enumerate(minutes):
        stamp = datetime.fromtimestamp(minute.start, UTC)
        if stamp.minute % 5 == 0:
            ticks.append((LEFT + slot * (i + 0.5), stamp.strftime("%H:%M")))
    return ticks


def throughput_chart(minutes: Sequence[Minute]) -> Chart:
    """Stacked bars per minute: succeeded, retried, aborted, failed (dead included)."""
    plot_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(minutes), 1)
    top = _nice_ceiling(max((m.total for m in minutes), default=0))
    bars: list[Bar] = []
    for i, minute in enumerate(minutes):
        when = datetime.fromtimestamp(minute.start, UTC).strftime("%H:%M")
        base = HEIGHT - BOTTOM
        for kind, count in (
            ("succeeded", minute.succeeded),
            ("retried", minute.retried),
            ("aborted", minute.aborted),
            ("failed", minute.failed),
        ):
            if not count:
                continue
            height = plot_h * count / top
            base -= height
            bars.append(
                Bar(
                    x=round(LEFT + slot * i + 1, 2),
                    y=round(base, 2),
                    width=round(max(slot - 2, 1), 2),
                    height=round(height, 2),
                    kind=kind,
                    title=f"{when} UTC: {count} {kind}",
                )
            )
    ticks = [(round(HEIGHT - BOTTOM - plot_h * f, 2), f"{top * f:g}") for f in (0, 0.5, 1)]
    return Chart(
        label="Attempts that ended per minute",
        bars=bars,
        y_ticks=ticks,
        x_ticks=_x_ticks(minutes, slot),
        empty=not bars,
    )


def failure_rate_chart(minutes: Sequence[Minute]) -> Chart:
    """Per minute, the share of tasks that ended failed or dead; gaps where none ended."""
    plot_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(minutes), 1)
    lines: list[str] = []
    points: list[tuple[float, float, str]] = []
    segment: list[str] = []
    for i, minute in enumerate(minutes):
        rate = failure_rate(minute)
        if rate is None:
            if len(segment) > 1:
                lines.append(" ".join(segment))
            segment = []
            continue
        x = round(LEFT + slot * (i + 0.5), 2)
        y = round(HEIGHT - BOTTOM - plot_h * rate, 2)
        segment.append(f"{x},{y}")
        when = datetime.fromtimestamp(minute.start, UTC).strftime("%H:%M")
        ended = minute.succeeded + minute.failed + minute.aborted
        points.append((x, y, f"{when} UTC: {rate:.0%} of {ended} failed"))
    if len(segment) > 1:
        lines.append(" ".join(segment))
    ticks = [(round(HEIGHT - BOTTOM - plot_h * f, 2), f"{f:.0%}") for f in (0, 0.5, 1)]
    return Chart(
        label="Failure rate per minute (failed or dead, of tasks that ended)",
        lines=lines,
        points=points,
        y_ticks=ticks,
        x_ticks=_x_ticks(minutes, slot),
        empty=not points,
    )
