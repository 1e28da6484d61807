"""Small SVG charts, laid out here and drawn by the templates: no JavaScript, no library.
A person reads a chart faster than a table of sixty numbers."""

from __future__ import annotations

import time
from dataclasses import dataclass

from mailserver.front.outcomes import VERDICTS

WIDTH, HEIGHT = 720, 160
LEFT, BOTTOM, TOP = 36, 22, 8
BAR_ROW_H = 22


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    verdict: str
    title: str


@dataclass(frozen=True)
class MinuteChart:
    """Messages per minute, stacked by verdict, oldest minute on the left."""

    bars: list[Bar]
    peak: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = BOTTOM
    top: int = TOP


def minute_chart(minutes: list[tuple[int, dict[str, int]]]) -> MinuteChart:
    peak = max([sum(c.values()) for _, c in minutes] + [1])
    slot = (WIDTH - LEFT) / max(len(minutes), 1)
    scale = (HEIGHT - BOTTOM - TOP) / peak
    bars = [
        bar
        for index, (minute, counts) in enumerate(minutes)
        for bar in _stack(LEFT + index * slot, slot, minute, counts, scale)
    ]
    total = sum(sum(c.values()) for _, c in minutes)
    return MinuteChart(bars, peak, total)


def _stack(x: float, slot: float, minute: int, counts: dict[str, int], scale: float) -> list[Bar]:
    """One minute's column: a segment per verdict, bottom up, in the legend's order."""
    when = time.strftime("%H:%M", time.gmtime(minute * 60))
    base, bars = float(HEIGHT - BOTTOM), []
    for verdict in VERDICTS:
        count = counts.get(verdict, 0)
        if count:
            base -= count * scale
            title = f"{when} UTC: {count} {verdict}"
            bars.append(Bar(x + 1, base, slot - 2, count * scale, verdict, title))
    return bars


@dataclass(frozen=True)
class CountRow:
    verdict: str
    count: int
    y: float
    width: float


def verdict_rows(minutes: list[tuple[int, dict[str, int]]], width: int = 420) -> list[CountRow]:
    """One horizontal bar per verdict: the counts of the whole period."""
    totals = {v: sum(c.get(v, 0) for _, c in minutes) for v in VERDICTS}
    most = max([*totals.values(), 1])
    return [
        CountRow(verdict, count, index * BAR_ROW_H, width * count / most)
        for index, (verdict, count) in enumerate(totals.items())
    ]
