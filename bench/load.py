"""The load generator: a fixed number of clients (closed loop: each sends its next message when
the last one is answered) or a fixed arrival rate (open loop: messages arrive on a seeded
Poisson schedule whether or not earlier ones were answered). Each message's latency, outcome
and reply are recorded. Both modes are bounded in count and time."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

PROGRESS_EVERY_S = 5.0
SAMPLE_EVERY_S = 1.0


@dataclass(frozen=True)
class Answer:
    """What one attempt ended with: 250 / 4xx / 5xx / error / other (SMTP), ok / error
    (direct scan)."""

    outcome: str
    reply: str = ""
    stage: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    index: int
    sent_at: float  # seconds from the start of the run
    latency_s: float
    answer: Answer


Work = Callable[[int], Awaitable[Answer]]
Sampler = Callable[[], dict[str, float]]


@dataclass
class Run:
    planned: int
    records: list[Record]
    wall_s: float  # first send to last answer
    shed: int = 0  # arrivals not sent: the client's own limit on open sessions was reached
    samples: list[dict[str, float]] = field(default_factory=list)  # once a second


class _Progress:
    def __init__(self, name: str, planned: int) -> None:
        self.name, self.planned, self.done, self.open = name, planned, 0, 0
        self.started = time.perf_counter()

    async def report(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            elapsed = time.perf_counter() - self.started
            rate = self.done / elapsed
            say(f"  {self.name}: {self.done}/{self.planned}, {rate:.1f} msg/s, {elapsed:.0f} s")


async def _timed(work: Work, index: int, started: float, progress: _Progress) -> Record:
    sent = time.perf_counter()
    progress.open += 1
    try:
        answer = await work(index)
    finally:
        progress.open -= 1
    progress.done += 1
    return Record(index, sent - started, time.perf_counter() - sent, answer)


async def closed_loop(name: str, work: Work, count: int, concurrency: int, limit_s: float) -> Run:
    """``count`` messages on ``concurrency`` clients; none is started after ``limit_s``."""
    progress = _Progress(name, count)
    started = progress.started
    deadline = started + limit_s
    pending = iter(range(count))
    records: list[Record] = []

    async def client() -> None:
        for index in pending:
            if time.perf_counter() > deadline:
                return
            records.append(await _timed(work, index, started, progress))

    reporter = asyncio.create_task(progress.report())
    try:
        await asyncio.gather(*(client() for _ in range(concurrency)))
    finally:
        reporter.cancel()
    return Run(count, records, _wall(records))


def arrival_times(segments: list[tuple[float, float]], seed: int) -> list[float]:
    """Seconds from the start at which messages arrive: Poisson arrivals at ``rate`` msg/s for
    ``duration`` s, for each (rate, duration) in turn."""
    rng = random.Random(f"arrivals:{seed}")
    times, segment_start = [], 0.0
    for rate, duration in segments:
        at = segment_start + rng.expovariate(rate)
        while at < segment_start + duration:
            times.append(at)
            at += rng.expovariate(rate)
        segment_start += duration
    return times


async def open_loop(
    name: str,
    work: Work,
    arrivals: list[float],
    max_open: int,
    sampler: Sampler | None = None,
) -> Run:
    """Message i is sent at ``arrivals[i]`` s unless ``max_open`` sessions are open already
    (then it counts as shed by the client); returns when every sent message is answered."""
    progress = _Progress(name, len(arrivals))
    started = progress.started
    tasks: list[asyncio.Task[Record]] = []
    samples: list[dict[str, float]] = []
    shed = 0
    reporter = asyncio.create_task(progress.report())
    watcher = asyncio.create_task(_sample(sampler, progress, samples))
    try:
        for index, at in enumerate(arrivals):
            await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
            if progress.open >= max_open:
                shed += 1
                continue
            tasks.append(asyncio.create_task(_timed(work, index, started, progress)))
        records = list(await asyncio.gather(*tasks))
    finally:
        reporter.cancel()
        watcher.cancel()
    return Run(len(arrivals), records, _wall(records), shed, samples)


async def _sample(
    sampler: Sampler | None, progress: _Progress, samples: list[dict[str, float]]
) -> None:
    while True:
        now = time.perf_counter() - progress.started
        sample = {"t": now, "open": float(progress.open), "answered": float(progress.done)}
        if sampler:
            sample |= await asyncio.to_thread(sampler)
        samples.append(sample)
        await asyncio.sleep(SAMPLE_EVERY_S)


def _wall(records: list[Record]) -> float:
    return max((r.sent_at + r.latency_s for r in records), default=0.0)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
