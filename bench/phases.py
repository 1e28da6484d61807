"""One measured phase: a load run on one path (baseline or mailscan) with the CPU each service
used meanwhile, summed up as a plain dict that goes into results.json and the report."""

from __future__ import annotations

import asyncio
import bisect
import functools
import itertools
import math
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from bench import cpu, smtpclient
from bench.baseline import direct_work
from bench.load import Answer, Record, Run, Sampler, Work, closed_loop, open_loop
from bench.stacks import BenchStack

PERCENTILES = (50, 90, 99)
MAX_OPEN_SMTP = 2000  # open sessions the client allows itself in the fixed-rate mode
MAX_OPEN_DIRECT = 64  # threads calling clamd and spamd in the fixed-rate mode
CLIENT_TIMEOUT_MARGIN_S = 30.0  # beyond the scan deadline, so the server always answers first


@dataclass(frozen=True)
class PhaseInfo:
    label: str  # "c=2 generated mailscan"
    scenario: str  # sweep, glue, latency, overload, size
    path: str  # baseline or mailscan
    corpus: str
    concurrency: int | None = None  # clients, closed loop
    rate: float | None = None  # msg/s, open loop


def smtp_work(bench: BenchStack, messages: list[bytes], port: int | None = None) -> Work:
    """Each message sent to mailscan's front, or to another SMTP server on ``port``."""
    host, front_port = bench.smtp
    port = port or front_port
    timeout_s = bench.settings.scan_deadline_s + CLIENT_TIMEOUT_MARGIN_S

    async def work(index: int) -> Answer:
        reply = await smtpclient.send(host, port, messages[index], timeout_s)
        return Answer(reply.outcome, reply.short, reply.stage)

    return work


def closed(
    bench: BenchStack, info: PhaseInfo, messages: list[bytes], limit_s: float
) -> dict[str, Any]:
    """``messages`` sent on ``info.concurrency`` clients, one after the other on each."""
    clients = info.concurrency or 1
    work, done = _work(bench, info.path, messages, clients)
    try:
        load = functools.partial(closed_loop, info.label, work, len(messages), clients, limit_s)
        return measure(bench, info, load, sum(map(len, messages)))
    finally:
        done()


def opened(
    bench: BenchStack,
    info: PhaseInfo,
    messages: list[bytes],
    arrivals: list[float],
    sampler: Sampler | None = None,
) -> dict[str, Any]:
    """Message i sent at ``arrivals[i]`` s, whether or not earlier ones were answered."""
    limit = MAX_OPEN_SMTP if info.path == "mailscan" else MAX_OPEN_DIRECT
    work, done = _work(bench, info.path, messages, limit)
    try:
        load = functools.partial(open_loop, info.label, work, arrivals, limit, sampler)
        return measure(bench, info, load, sum(map(len, messages)))
    finally:
        done()


def _work(
    bench: BenchStack, path: str, messages: list[bytes], threads: int
) -> tuple[Work, Callable[[], None]]:
    if path == "mailscan":
        return smtp_work(bench, messages), lambda: None
    if path in bench.other_smtp:
        return smtp_work(bench, messages, bench.other_smtp[path]), lambda: None
    work, pool = direct_work(bench.settings, messages, threads)
    return work, pool.shutdown


def closed_blocks(
    bench: BenchStack,
    infos: list[PhaseInfo],
    messages: list[list[bytes]],
    blocks: int,
    limit_s: float,
) -> list[dict[str, Any]]:
    """Each path's messages (``messages[i]`` for ``infos[i]``) in ``blocks`` blocks, the paths
    taking turns block by block in alternating order (AB, BA, AB, ...): a machine that slows
    down or speeds up during the run weighs on every path alike, which one path after the
    other would not give. Latency, throughput and CPU are summed over each path's blocks."""
    count = len(messages[0])
    bounds = [(count * b // blocks, count * (b + 1) // blocks) for b in range(blocks)]
    clients = infos[0].concurrency or 1

    def load(path: int, work: Work, block: int) -> Coroutine[Any, Any, Run]:
        first, end = bounds[block]
        return closed_loop(infos[path].label, work, end - first, clients, limit_s / blocks)

    return _in_turns(bench, infos, messages, bounds, [clients] * len(infos), load)


def open_blocks(
    bench: BenchStack,
    infos: list[PhaseInfo],
    messages: list[list[bytes]],
    arrivals: list[float],
    blocks: int,
) -> list[dict[str, Any]]:
    """The same ``arrivals`` (sorted, s) on every path, cut into ``blocks`` spans of equal
    time that the paths take in turns as in ``closed_blocks``. Each span starts on an idle
    stack and ends when its last message is answered."""
    span_s = (arrivals[-1] if arrivals else 0.0) / blocks
    edges = [bisect.bisect_left(arrivals, span_s * b) for b in range(blocks)] + [len(arrivals)]
    bounds = list(itertools.pairwise(edges))
    limits = [MAX_OPEN_SMTP if info.path == "mailscan" else MAX_OPEN_DIRECT for info in infos]

    def load(path: int, work: Work, block: int) -> Coroutine[Any, Any, Run]:
        first, end = bounds[block]
        times = [at - span_s * block for at in arrivals[first:end]]
        return open_loop(infos[path].label, work, times, limits[path])

    return _in_turns(bench, infos, messages, bounds, limits, load)


def _in_turns(
    bench: BenchStack,
    infos: list[PhaseInfo],
    messages: list[list[bytes]],
    bounds: list[tuple[int, int]],
    threads: list[int],
    load: Callable[[int, Work, int], Coroutine[Any, Any, Run]],
) -> list[dict[str, Any]]:
    """``load(path, work, block)`` of each block (messages ``bounds[block]``) on each path
    (``infos[path]``), in turns; ``threads``: each path's client threads."""
    totals = [_Total() for _ in infos]
    works = [
        _work(bench, info.path, msgs, count)
        for info, msgs, count in zip(infos, messages, threads, strict=True)
    ]
    try:
        for number, (first, _) in enumerate(bounds):
            order = range(len(infos)) if number % 2 == 0 else reversed(range(len(infos)))
            for path in order:
                work = _shifted(works[path][0], first)
                totals[path].add(bench, load(path, work, number), first)
    finally:
        for _, done in works:
            done()
    return [
        total.summary(info, bench, sum(map(len, msgs)))
        for total, info, msgs in zip(totals, infos, messages, strict=True)
    ]


def _shifted(work: Work, first: int) -> Work:
    async def shifted(index: int) -> Answer:
        return await work(first + index)

    return shifted


class _Total:
    """One path's blocks added up: their records, active time and CPU."""

    def __init__(self) -> None:
        self.run = Run(0, [], 0.0)
        self.cpu_s: dict[str, float] = {}
        self.others = self.blocks = 0

    def add(self, bench: BenchStack, load: Coroutine[Any, Any, Run], first: int) -> None:
        block, used, others = run_measured(bench, load)
        self.others = max(self.others, others)
        for group, seconds in used.items():
            self.cpu_s[group] = self.cpu_s.get(group, 0.0) + seconds
        offset = self.run.wall_s
        self.run.records += [
            Record(r.index + first, r.sent_at + offset, r.latency_s, r.answer)
            for r in block.records
        ]
        self.run.planned += block.planned
        self.run.wall_s += block.wall_s
        self.blocks += 1

    def summary(self, info: PhaseInfo, bench: BenchStack, size: int) -> dict[str, Any]:
        self.run.records.sort(key=lambda r: r.index)
        summed = summarise(info, self.run, self.cpu_s, self.others)
        return summed | {"stack": bench.plan.name, "bytes": size, "blocks": self.blocks}


def measure(
    bench: BenchStack, info: PhaseInfo, load: Callable[[], Coroutine[Any, Any, Run]], size: int
) -> dict[str, Any]:
    """Run ``load`` on a fresh event loop; the CPU of every service is read before and after."""
    run, used, others = run_measured(bench, load())
    return summarise(info, run, used, others) | {"stack": bench.plan.name, "bytes": size}


def run_measured(
    bench: BenchStack, load: Coroutine[Any, Any, Run]
) -> tuple[Run, dict[str, float], int]:
    """The run, the CPU seconds each service used meanwhile, and the most foreign scanners
    seen before or after."""
    before = cpu.cpu_by_service(bench.stack, bench.other_groups)
    others = cpu.foreign_scanners(bench.stack)
    run = asyncio.run(load)
    used = cpu.cpu_delta(before, cpu.cpu_by_service(bench.stack, bench.other_groups))
    return run, used, max(others, cpu.foreign_scanners(bench.stack))


def summarise(info: PhaseInfo, run: Run, cpu_s: dict[str, float], others: int) -> dict[str, Any]:
    answered = len(run.records)
    latencies = [r.latency_s for r in run.records]
    per_message = {k: v * 1000 / answered for k, v in cpu_s.items()} if answered else {}
    return {
        **info.__dict__,
        "planned": run.planned,
        "answered": answered,
        "shed": run.shed,
        "wall_s": run.wall_s,
        "msg_per_s": answered / run.wall_s if run.wall_s > 0 else 0.0,
        "latency_ms": latency_ms(latencies),
        "outcomes": dict(Counter(r.answer.outcome for r in run.records)),
        "replies": dict(Counter(r.answer.reply for r in run.records).most_common(6)),
        "stages": dict(Counter(r.answer.stage for r in run.records if r.answer.stage)),
        "cpu_ms_per_msg": per_message,
        "mailscan_cpu_ms_per_msg": sum(per_message.get(g, 0.0) for g in cpu.MAILSCAN_GROUPS),
        "others": others,
        "records": [
            [r.index, round(r.sent_at, 4), round(r.latency_s, 4), r.answer.outcome]
            for r in run.records
        ],
        "samples": run.samples,
    }


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_ms(latencies: list[float]) -> dict[str, float]:
    figures = {f"p{p}": percentile(latencies, p) * 1000 for p in PERCENTILES}
    return figures | {"max": max(latencies, default=math.nan) * 1000}


def outcome_by_kind(phase: dict[str, Any], kinds: list[str]) -> dict[str, dict[str, int]]:
    """For each kind of message, how many got each outcome."""
    table: dict[str, Counter[str]] = {}
    for index, _, _, outcome in phase["records"]:
        table.setdefault(kinds[index], Counter())[outcome] += 1
    return {kind: dict(counts) for kind, counts in sorted(table.items())}
