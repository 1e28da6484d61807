"""Latency and overload at a fixed arrival rate (open loop), relative to a measured capacity.

- At 80% of capacity: the same Poisson arrivals on each path; p99 of mailscan against p99 of
  the baseline. Since the baseline's capacity is higher, those arrivals load it less; so the
  baseline also runs at 80% of its own capacity, and the two p99 at the same share of each
  path's capacity are reported beside the target.
- Overload: 150% of capacity for a while, then 50% to see whether mailscan recovers by
  itself; every message must end 250-and-delivered-once, or with a 4xx or 5xx the sender saw.
"""

from __future__ import annotations

import time
from typing import Any

from bench import checks
from bench.corpus import Sample, repeated
from bench.load import arrival_times, say
from bench.phases import PhaseInfo, open_blocks, opened, percentile
from bench.stacks import BenchStack
from bench.throughput import PATHS, after_phase, copy_prefix

LOAD_SHARE = 0.8
# The paths take turns in spans of the arrivals, as the sweep's paths do in blocks: a host
# that slows down during the scenario then weighs on both p99 alike.
LATENCY_BLOCKS = 4
OVERLOAD_SHARE, RECOVERY_SHARE = 1.5, 0.5
RECOVERY_WINDOW_S = 5.0
DRAIN_LIMIT_S = 180.0


def at_load(
    bench: BenchStack,
    samples: list[Sample],
    capacity: float,
    duration_s: float,
    seed: int,
    paths: tuple[str, ...] = PATHS,
    scenario: str = "latency",
) -> list[dict[str, Any]]:
    """``paths`` at 80% of ``capacity``; ``scenario`` "latency-own" for the baseline at 80%
    of its own capacity."""
    rate = LOAD_SHARE * capacity
    arrivals = arrival_times([(rate, duration_s)], seed)
    chosen = repeated(samples, len(arrivals))
    load = "load" if scenario == "latency" else "of own capacity"
    infos = [
        PhaseInfo(f"{LOAD_SHARE:.0%} {load} {path}", scenario, path, "generated", rate=rate)
        for path in paths
    ]
    say(f"{LOAD_SHARE:.0%} {load}, {' and '.join(paths)}: {len(arrivals)} messages each at "
        f"{rate:.1f} msg/s for {duration_s:.0f} s, in {LATENCY_BLOCKS} spans in turns")  # fmt: skip
    prefixes = [copy_prefix(info) for info in infos]
    messages = [[s.render(f"{prefix}-{i}") for i, s in enumerate(chosen)] for prefix in prefixes]
    phases = open_blocks(bench, infos, messages, arrivals, LATENCY_BLOCKS)
    return [
        phase | after_phase(bench, phase, prefix, chosen)
        for phase, prefix in zip(phases, prefixes, strict=True)
    ]


def overload(
    bench: BenchStack,
    samples: list[Sample],
    capacity: float,
    durations: tuple[float, float],
    seed: int,
) -> dict[str, Any]:
    """``durations``: seconds at 150%, then at 50% of ``capacity``."""
    segments = [
        (OVERLOAD_SHARE * capacity, durations[0]),
        (RECOVERY_SHARE * capacity, durations[1]),
    ]
    arrivals = arrival_times(segments, seed)
    chosen = repeated(samples, len(arrivals))
    info = PhaseInfo("overload", "overload", "mailscan", "generated", rate=segments[0][0])
    say(
        f"overload: {segments[0][0]:.1f} msg/s for {durations[0]:.0f} s, then "
        f"{segments[1][0]:.1f} msg/s for {durations[1]:.0f} s ({len(arrivals)} messages, scan "
        f"deadline {bench.settings.scan_deadline_s:g} s)"
    )
    prefix = copy_prefix(info)
    messages = [s.render(f"{prefix}-{i}") for i, s in enumerate(chosen)]
    phase = opened(bench, info, messages, arrivals, lambda: checks.queue_depths(bench.settings))
    drained_s = drain(bench)
    return (
        phase
        | after_phase(bench, phase, prefix, chosen)
        | {
            "segments": segments,
            "scan_deadline_s": bench.settings.scan_deadline_s,
            "drained_after_s": drained_s,
        }
    )


def drain(bench: BenchStack) -> float | None:
    """Seconds until both queues are empty (jobs of messages already answered 451 may still
    be there), or None if they are not within DRAIN_LIMIT_S."""
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_LIMIT_S:
        if not any(checks.queue_depths(bench.settings).values()):
            return time.monotonic() - started
        time.sleep(1.0)
    return None


def recovery(phase: dict[str, Any], reference_p50_s: float) -> float | None:
    """Seconds after the load dropped until every later window of RECOVERY_WINDOW_S has no
    4xx and no error and a p50 latency within 2x the reference (at 80% load); None if the
    last window still fails."""
    drop = phase["segments"][0][1]
    later = [r for r in phase["records"] if r[1] >= drop]
    windows: dict[int, list[list[Any]]] = {}
    for record in later:
        windows.setdefault(int((record[1] - drop) // RECOVERY_WINDOW_S), []).append(record)
    recovered_from = None
    for number in sorted(windows):
        if _healthy(windows[number], reference_p50_s):
            recovered_from = number if recovered_from is None else recovered_from
        else:
            recovered_from = None
    return None if recovered_from is None else recovered_from * RECOVERY_WINDOW_S


def _healthy(records: list[list[Any]], reference_p50_s: float) -> bool:
    if any(outcome in ("4xx", "error", "other") for *_, outcome in records):
        return False
    return percentile([r[2] for r in records], 50) <= 2 * reference_p50_s
