"""The floor under mailscan's own cost, and what it leaves of the ratio to the scanners.

At each arrival rate, in turns, the same generated mail goes through:

- **mailscan's glue stack** (the real SMTP front, both pools with the stub plugin, Redis);
- **the floor**: an SMTP server of the front's own class answering 250 at once
  (``bench.smtp_floor``), and beside it, fed on the same schedule, two prefork pools of
  ``bench.floorapp`` (mailscan's Celery configuration, transport and task base; each job
  only publishes a fixed verdict) on a Redis of their own.

The floor is what any system of this shape pays per message: an aiosmtpd session, two jobs
through Celery's prefork workers with mailscan's safety settings (late acks, one job
prefetched, msgpack), a verdict published on Redis. Everything above it is mailscan's own
work: spool, digests, guards, delivery.

spamd's CPU per message is measured once in the same run (the generated corpus and the
real mail, at two clients), and the report gives the ratio to the scanners that the floor
allows at best, S / (S + floor) at the scanners' rate: mailscan loses at least that much to
any plumbing of this architecture, however lean.

    .venv/bin/python -m bench.floor [--rates 10,100] [--seconds 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis as redis_py

from bench import corpus, smtpclient
from bench.baseline import spamd_status
from bench.cpu import CLIENT, cpu_by_service, cpu_delta, process_cpu_s
from bench.load import Answer, arrival_times, open_loop, say
from bench.rates import at_rate
from bench.smtp_floor import FLOOR_PORT, floor_server
from bench.stacks import LOOPBACK, Plan, pick_ports, running, scratch
from mailserver.services import Service
from mailserver.stack import Stack
from tasks import blobs
from tasks.constants import POOLS, RESULT_KEY_PREFIX
from tasks.submit import job_ids, task_envelope

REPO = Path(__file__).resolve().parent.parent
SA_PUBLIC = REPO.parent / "shared" / "corpus" / "sa-public"
FLOOR_POOLS = tuple(f"{pool}-floor" for pool in POOLS)
PARTS = {  # mailscan's process group -> the floor's
    "mailserver": "smtp-floor",
    "av-worker": "av-floor",
    "spam-worker": "spam-floor",
    "redis": "redis",
}
RESULT_WAIT_S = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,100", help="msg/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="per rate, path and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--spamd-messages", type=int, default=80, help="per corpus; 0: skip")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    spamd_ms = _spamd_cost(args.spamd_messages) if args.spamd_messages else {}
    figures: dict[tuple[str, float], list[dict[str, float]]] = {}
    with running(Plan("glue", 2, glue=True)) as glue, _floor_stack() as floor:
        for round_ in range(args.rounds):
            for rate in rates:
                mine = at_rate(glue, rate, args.seconds, round_)
                figures.setdefault(("mailscan", rate), []).append(mine)
                least = _floor_at_rate(floor, rate, args.seconds, round_)
                figures.setdefault(("floor", rate), []).append(least)
            say(f"round {round_ + 1}/{args.rounds} done")
    print(report(figures, rates, spamd_ms, args))


# --- the floor stack -------------------------------------------------------------------


class FloorStack:
    """Redis and the two floor pools (a ``Stack``), and the SMTP floor server's pid."""

    def __init__(self, stack: Stack, smtp_pid: int) -> None:
        self.stack, self.smtp_pid = stack, smtp_pid

    def cpu(self) -> dict[str, float]:
        used = cpu_by_service(self.stack)
        used["smtp-floor"] = process_cpu_s(self.smtp_pid)
        return used


@contextlib.contextmanager
def _floor_stack() -> Iterator[FloorStack]:
    """Redis and the floor pools in a scratch folder, and the SMTP floor server."""
    with scratch(["redis"]) as stack, floor_server() as smtp:
        for pool in POOLS:
            service = _floor_pool(stack.services[f"{pool}-worker"])
            stack.services[service.name] = service
        stack.start(FLOOR_POOLS, progress=say)
        yield FloorStack(stack, smtp.pid)


def _floor_pool(service: Service) -> Service:
    """The pool's worker as mailscan starts it (flags, malloc settings, node name), with
    the floor's app instead of mailscan's."""
    argv = list(service.argv)
    argv[argv.index("-A") + 1] = "bench.floorapp"
    return dataclasses.replace(service, name=service.name.replace("worker", "floor"), argv=argv)


# --- one measured phase on the floor ---------------------------------------------------


def _floor_at_rate(floor: FloorStack, rate: float, seconds: float, round_: int) -> dict:
    arrivals = arrival_times([(rate, seconds)], seed=round_)
    label = f"floor r{rate:g}-{round_}"
    messages = [s.render(f"{label}-{n}") for n, s in enumerate(corpus.generated(len(arrivals), 6))]
    before, started = floor.cpu(), time.perf_counter()
    answered = asyncio.run(_both(floor, messages, arrivals, label))
    elapsed, spent = time.perf_counter() - started, cpu_delta(before, floor.cpu())
    figures = {part: 1000 * spent[part] / answered for part in PARTS.values()}
    figures[CLIENT] = 1000 * spent[CLIENT] / answered
    figures["own"] = sum(figures[part] for part in PARTS.values())
    figures["msg/s"] = answered / elapsed
    say(f"  {label}: {figures['own']:.2f} ms/msg")
    return figures


async def _both(floor: FloorStack, messages: list[bytes], arrivals: list[float], label: str):
    """The SMTP sessions and the scan jobs of the same messages, on the same schedule; the
    number of messages that got both their 250 and both verdicts."""

    async def session(index: int) -> Answer:
        reply = await smtpclient.send(LOOPBACK, FLOOR_PORT, messages[index], 60)
        return Answer(reply.outcome, reply.short, reply.stage)

    url = floor.stack.settings.redis_url
    smtp, jobs = await asyncio.gather(
        open_loop(label, session, arrivals, 2000),
        asyncio.to_thread(_drive_jobs, url, messages, arrivals, label),
    )
    replied = sum(r.answer.outcome == "250" for r in smtp.records)
    if replied < len(messages) or jobs < len(messages):
        missing = f"{replied} replies, {jobs} verdict pairs of {len(messages)} messages"
        raise RuntimeError(f"{label}: {missing}")
    return len(messages)


def _drive_jobs(url: str, messages: list[bytes], arrivals: list[float], label: str) -> int:
    """Enqueue both jobs of message i at ``arrivals[i]``, as the front writes them, and
    wait for every verdict; the number of messages with both."""
    from tasks.celeryapp import app

    client = redis_py.Redis.from_url(url)
    refs = [blobs.reference(f"{label}-{n}", m) for n, m in enumerate(messages)]
    with client.pubsub() as verdicts:
        verdicts.psubscribe(RESULT_KEY_PREFIX + "*")
        verdicts.get_message(timeout=5)  # the subscription's confirmation
        started, sent, done = time.perf_counter(), 0, 0
        while done < 2 * len(messages):
            now = time.perf_counter() - started
            if sent < len(messages) and arrivals[sent] <= now:
                _enqueue(app, client, refs[sent])
                sent += 1
                continue
            due = arrivals[sent] - now if sent < len(messages) else RESULT_WAIT_S
            message = verdicts.get_message(timeout=max(0.0, due))
            if message is None and sent == len(messages):
                break  # nothing for RESULT_WAIT_S: the count tells
            done += message is not None and message["type"] == "pmessage"
    client.close()
    return done // 2


def _enqueue(app, client: redis_py.Redis, ref: blobs.BlobRef) -> None:
    ids = job_ids(ref["blob"])
    with client.pipeline(transaction=False) as pipe:
        for pool in POOLS:
            pipe.lpush(pool, task_envelope(app, pool, ids[pool], ref))
        pipe.execute()


# --- spamd's own cost ------------------------------------------------------------------


def _spamd_cost(count: int) -> dict[str, float]:
    """spamd's CPU ms per message, per corpus, two clients calling it directly."""
    sets = {"generated": corpus.generated(count, 6)}
    if SA_PUBLIC.is_dir():
        sets["sa-public"] = corpus.repeated(corpus.real(SA_PUBLIC), count)
    spamd = f"{LOOPBACK}:{pick_ports()['spamd']}"
    costs = {}
    with scratch(["spamd"], spamd=spamd, spam_concurrency="2") as stack:
        for name, samples in sets.items():
            messages = [s.render(f"spamd-{n}") for n, s in enumerate(samples)]
            before = cpu_by_service(stack)["spamd"]
            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(lambda m: spamd_status(stack.settings, m), messages))
            costs[name] = 1000 * (cpu_by_service(stack)["spamd"] - before) / len(messages)
            failed = answers.count("error")
            say(f"spamd, {name}: {costs[name]:.1f} ms/msg ({failed} errors)")
    return costs


# --- the report ------------------------------------------------------------------------


def report(
    figures: dict[tuple[str, float], list[dict[str, float]]],
    rates: list[float],
    spamd_ms: dict[str, float],
    args: argparse.Namespace,
) -> str:
    median = {
        key: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        for key, rounds in figures.items()
    }
    lines = [
        f"CPU ms per message, medians of {args.rounds} rounds of {args.seconds:g} s per rate "
        "and path (generated mail)",
        "",
        "| rate | part | mailscan | floor | mailscan - floor |",
        "|---:|---|---:|---:|---:|",
    ]
    for rate in rates:
        mine, least = median[("mailscan", rate)], median[("floor", rate)]
        for part, floor_part in [*PARTS.items(), ("own", "own")]:
            above = mine[part] - least[floor_part]
            cells = f"{mine[part]:.2f} | {least[floor_part]:.2f} | {above:.2f}"
            lines.append(f"| {rate:g} msg/s | {_label(part)} | {cells} |")
    lines += _ratio_lines(median, min(rates), spamd_ms)
    return "\n".join(lines)


def _label(part: str) -> str:
    return {"mailserver": "SMTP front", "own": "**all**"}.get(part, part)


def _ratio_lines(median: dict, rate: float, spamd_ms: dict[str, float]) -> list[str]:
    if not spamd_ms:
        return []
    floor, own = median[("floor", rate)]["own"], median[("mailscan", rate)]["own"]
    lines = [
        "",
        f"At {rate:g} msg/s (the scanners' rate), the ratio to spamd alone that each allows, "
        "S / (S + cost), with S spamd's CPU per message:",
        "",
        "| corpus | S ms/msg | floor allows | mailscan's glue allows | 0.95 needs cost ≤ |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, spamd in spamd_ms.items():
        needs = spamd / 0.95 - spamd
        row = f"| {name} | {spamd:.1f} | {spamd / (spamd + floor):.3f} | "
        lines.append(row + f"{spamd / (spamd + own):.3f} | {needs:.1f} ms |")
    return lines


if __name__ == "__main__":
    main()
