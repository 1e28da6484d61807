"""Message size from about 10 KB to 25 MB: time per message on each path, one client, and the
peak memory (VmHWM) of the SMTP front, each pool process, Redis and clamd after each size."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

from bench import cpu
from bench.corpus import sized
from bench.load import say
from bench.phases import PhaseInfo, closed
from bench.stacks import BenchStack
from bench.throughput import PATHS, copy_prefix


def size_steps(
    bench: BenchStack, steps: tuple[tuple[int, int], ...], seed: int, limit_s: float
) -> list[dict[str, Any]]:
    """``steps``: (target bytes, messages per path), smallest first."""
    results = []
    for target, count in steps:
        sample = sized(target, seed)
        step: dict[str, Any] = {"target_bytes": target}
        for path in PATHS:
            info = PhaseInfo(f"size {target} {path}", "size", path, "sized", 1)
            messages = [sample.render(f"{copy_prefix(info)}-{i}") for i in range(count)]
            say(f"{info.label}: {count} messages of {len(messages[0]) / 1e6:.2f} MB, 1 client")
            step[path] = closed(bench, info, messages, limit_s)
            step["bytes"] = len(messages[0])
        step["memory_mb"] = cpu.peak_memory_mb(bench.stack)
        results.append(step)
    return results


def growth_exponent(steps: list[dict[str, Any]], path: str) -> float:
    """The largest k in time ~ size^k between two neighbouring sizes (p50 times): 1 is time
    growing as fast as size, below 1 slower. Over the whole range fixed costs would hide it."""
    return _largest_exponent(steps, lambda step: _p50(step, path))


def added_growth_exponent(steps: list[dict[str, Any]]) -> float:
    """The same k for the time mailscan adds to the scanners' own (its p50 less the
    baseline's), between neighbouring sizes where it adds any. mailscan's time holds clamd's
    and spamd's, whose own k is above 1 for the largest mail; this is what mailscan's own
    work (the SMTP transfer, spool, Redis, delivery) does with size."""
    return _largest_exponent(steps, lambda step: _p50(step, "mailscan") - _p50(step, "baseline"))


def _p50(step: dict[str, Any], path: str) -> float:
    return step[path]["latency_ms"]["p50"]


def _largest_exponent(steps: list[dict[str, Any]], time_ms: Callable[[dict], float]) -> float:
    exponents = [_exponent(a, b, time_ms) for a, b in itertools.pairwise(steps)]
    return max((k for k in exponents if not math.isnan(k)), default=math.nan)


def _exponent(
    small: dict[str, Any], large: dict[str, Any], time_ms: Callable[[dict], float]
) -> float:
    t0, t1 = time_ms(small), time_ms(large)
    if not (t0 > 0 and t1 > 0) or large["bytes"] <= small["bytes"]:
        return math.nan
    return math.log(t1 / t0) / math.log(large["bytes"] / small["bytes"])
