"""Where a message's time goes on the real stack, against the scanners called alone.

For each message mailscan answered with 250, the client's time from connect to the final reply,
split at the moments the front itself writes into the ids it hands out (the spool entry's id
starts with its clock in ms, a job's id ends with its clock in ns just before the enqueue)
and at each pool's verdict, as a subscriber of the bench's own on the front's verdict
channel sees it publish, less the job's own time (``elapsed_ms``):

- *SMTP session, admission*: connect to the end of DATA, and the front's backlog read;
- *spool, to enqueue*: the spool entry written and the jobs' reference made;
- *enqueue to spam job*: the enqueue, the queue, the hand-off to a pool process;
- *spam job*, *av job*: the jobs' own times (blob fetch, engine exchange, guards);
- *after verdicts*: the last verdict's way to the front, policy, delivery, spool removal
  and the reply.

The clocks are one machine's wall clock, read in different processes.

The scanners alone (the suite's baseline: clamd, then spamd, called directly) take turns
with mailscan in blocks on one stack, at the same concurrency.

    .venv/bin/python -m bench.timeline [--corpus sa-public|generated] [--concurrency 2]
        [--messages 200] [--blocks 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from bench.baseline import direct_work
from bench.floor import parse_turns, samples_of
from bench.load import Answer, closed_loop, say
from bench.phases import CLIENT_TIMEOUT_MARGIN_S, percentile
from bench.smtpclient import QUEUE_ID, send
from bench.stacks import BenchStack, Plan, running
from bench.throughput import warm_up
from mailserver.spool import spooled_at
from tasks import redisauth
from tasks.celeryapp import app
from tasks.constants import AV_POOL, POOLS, RESULT_KEY_PREFIX, SPAM_POOL
from tasks.submit import enqueued_at, split_job_id

PARTS = (
    "client",
    "SMTP session, admission",
    "spool, to enqueue",
    "enqueue to spam job",
    "spam job",
    "av job",
    "after verdicts",
)


@dataclass
class Published:
    """Each job's verdict as the bench's subscriber saw it, by (spool id, pool): the wall
    clock of the publish, the job's own ms, and the front's clock just before the enqueue
    (a job id ends with it in ns: tasks/submit.py)."""

    seen: dict[tuple[str, str], tuple[float, float, float]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def listen(self, url: str) -> None:
        pubsub = redis.Redis.from_url(url).pubsub()
        pubsub.psubscribe(RESULT_KEY_PREFIX + "*")
        while not self.stop.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                self._note(time.time(), message["channel"].decode(), message["data"])
        pubsub.close()

    def _note(self, at: float, channel: str, payload: bytes) -> None:
        job_id = channel.removeprefix(RESULT_KEY_PREFIX)
        try:
            entry_id, pool, _ = split_job_id(job_id)
        except ValueError:
            return  # not a scan job's
        result = app.backend.decode_result(payload).get("result") or {}
        # A failed job's result is its exception, not a dict.
        if pool in POOLS and isinstance(result, dict):
            job_ms = float(result.get("elapsed_ms", 0.0))
            self.seen[entry_id, pool] = (at, job_ms, enqueued_at(job_id))

    def of(self, entry_id: str, pool: str) -> tuple[float, float, float] | None:
        return self.seen.get((entry_id, pool))


def main() -> None:
    args = _arguments()
    plan = Plan(f"real c={args.concurrency}", args.concurrency)
    with running(plan, keep_var=args.keep_var) as bench:
        published = Published()
        listener = threading.Thread(
            target=published.listen, args=(redisauth.client_url(bench.settings),)
        )
        listener.start()
        try:
            parts = _turns(bench, args, published)
        finally:
            published.stop.set()
            listener.join()
    print(report(parts, args))


def _arguments() -> argparse.Namespace:
    return parse_turns(__doc__.split("\n\n")[0], "two paths")


def _turns(
    bench: BenchStack, args: argparse.Namespace, published: Published
) -> dict[str, dict[str, list[float]]]:
    samples = samples_of(args.corpus, args.messages)
    warm_up(bench, samples, args.concurrency, "tw")
    per_block = max(1, args.messages // args.blocks)
    parts: dict[str, dict[str, list[float]]] = {"baseline": {}, "mailscan": {}}
    for block in range(args.blocks):
        chunk = samples[block * per_block : (block + 1) * per_block]
        say(f"block {block + 1}/{args.blocks}: {len(chunk)} messages per path")
        for name, values in _baseline(bench, chunk, block, args.concurrency).items():
            parts["baseline"].setdefault(name, []).extend(values)
        for name, values in _mailscan(bench, chunk, block, args.concurrency, published).items():
            parts["mailscan"].setdefault(name, []).extend(values)
    return parts


def _baseline(bench: BenchStack, chunk: list, block: int, clients: int) -> dict[str, list]:
    messages = [s.render(f"tlb{block}-{i}") for i, s in enumerate(chunk)]
    work, pool = direct_work(bench.settings, messages, clients)
    try:
        run = asyncio.run(closed_loop("baseline", work, len(messages), clients, 600.0))
    finally:
        pool.shutdown()
    done = [r for r in run.records if r.answer.outcome == "ok"]
    return {
        "client": [r.latency_s * 1000 for r in done],
        "clamd": [r.answer.detail["clamd_s"] * 1000 for r in done],
        "spamd": [r.answer.detail["spamd_s"] * 1000 for r in done],
    }


def _mailscan(
    bench: BenchStack, chunk: list, block: int, clients: int, published: Published
) -> dict[str, list[float]]:
    messages = [s.render(f"tlm{block}-{i}") for i, s in enumerate(chunk)]
    host, port = bench.smtp
    timeout_s = bench.settings.scan_deadline_s + CLIENT_TIMEOUT_MARGIN_S
    times: list[tuple[float, float, str]] = []

    async def work(index: int) -> Answer:
        started = time.time()  # wall clock: the ids carry the front's
        reply = await send(host, port, messages[index], timeout_s)
        ids = QUEUE_ID.findall(reply.text)
        if reply.code == 250 and ids:
            times.append((started, time.time(), ids[-1]))
        return Answer(reply.outcome, reply.short, reply.stage)

    asyncio.run(closed_loop("mailscan", work, len(messages), clients, 600.0))
    time.sleep(0.5)  # the subscriber's last messages
    return _split(times, published)


def _split(times: list[tuple[float, float, str]], published: Published) -> dict[str, list]:
    parts: dict[str, list[float]] = {name: [] for name in PARTS}
    for started, ended, entry_id in times:
        spam, av = published.of(entry_id, SPAM_POOL), published.of(entry_id, AV_POOL)
        if spam is None or av is None:
            continue
        spooled = spooled_at(entry_id)
        enqueued, spam_started = spam[2], spam[0] - spam[1] / 1000
        steps = (
            ended - started,
            spooled - started,
            enqueued - spooled,
            spam_started - enqueued,
            spam[1] / 1000,
            av[1] / 1000,
            ended - max(spam[0], av[0]),
        )
        for name, value in zip(PARTS, steps, strict=True):
            parts[name].append(value * 1000)
    return parts


def report(parts: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> str:
    lines = [
        f"{args.corpus} mail, {args.concurrency} clients, {args.messages} messages per path "
        f"in {args.blocks} turns; ms per message",
        "",
        "| path | part | n | mean | p50 | p90 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for path, named in parts.items():
        for name, values in named.items():
            if values:
                lines.append(_row(path, name, values))
    return "\n".join(lines)


def _row(path: str, name: str, values: list[float]) -> str:
    stats: list[Any] = [statistics.fmean(values), percentile(values, 50), percentile(values, 90)]
    return f"| {path} | {name} | {len(values)} | " + " | ".join(f"{v:.1f}" for v in stats) + " |"


if __name__ == "__main__":
    main()
