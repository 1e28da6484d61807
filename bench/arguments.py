"""Checked command-line values for the benchmarks: a count, a duration or a list of rates
out of range is refused by argparse before any stack starts, with the option's name in the
message (a negative size would otherwise start a stack for a traceback, and a negative rate
generate arrival times without end)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", int, float)


def whole(low: int = 1, high: int | None = None) -> Callable[[str], int]:
    """An integer from ``low`` to ``high`` (no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        _check_within(value, low, high)
        return value

    return parse


def number(
    low: float = 0.0, high: float | None = None, above: bool = True
) -> Callable[[str], float]:
    """A finite number above ``low`` (or from ``low`` when ``above`` is False), at most
    ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if above and value <= low:
            raise argparse.ArgumentTypeError(f"{value:g} must be above {low:g}")
        _check_within(value, low, high)
        return value

    return parse


def listed(item: Callable[[str], T]) -> Callable[[str], list[T]]:
    """Comma-separated values, each checked by ``item``; at least one."""

    def parse(text: str) -> list[T]:
        values = [item(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError("at least one value, comma-separated")
        return values

    return parse


def _check_within(value: float, low: float, high: float | None) -> None:
    if value < low or (high is not None and value > high):
        bounds = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
        raise argparse.ArgumentTypeError(f"{value:g} is out of range: {bounds}")
