"""The floor under mailscan's own cost, and what it leaves of the ratio to the scanners.

At each arrival rate, in turns, the same kind of generated mail goes through:

- **mailscan's glue stack**: the SMTP front, both pools with the stub plugin, Redis;
- **the floor**: ``bench.floorfront`` (the steps the design asks of any front, done with
  mailscan's own spool, submit, verdict subscriber and Maildir, nothing more) in front of
  two prefork pools of ``bench.floorapp`` (mailscan's Celery configuration, transport and
  task base; each job only publishes a fixed verdict), on a Redis of their own.

The floor is what a system of this shape pays per message however lean its code: an
aiosmtpd session, a durable spool entry and a durable delivery (five fsyncs), one enqueue,
two jobs through Celery's prefork workers with mailscan's safety settings (late acks, one
job prefetched, msgpack), two verdicts published and awaited. What mailscan costs above it
is its own: admission, scan headers, policy, outcome log, guards, the blob fetch.

spamd's CPU per message is measured once in the same run (the generated corpus and the
real mail, two clients calling it directly), and the report gives the ratio to the
scanners each allows at the scanners' rate, S / (S + cost): no implementation of this
architecture gets above the floor's.

    .venv/bin/python -m bench.floor [--rates 10,100] [--seconds 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import statistics
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import corpus, smtpclient
from bench.baseline import spamd_status
from bench.cpu import CLIENT, cpu_by_service, cpu_delta, process_cpu_s
from bench.load import Answer, arrival_times, closed_loop, open_loop, say
from bench.rates import FLAT_OUT_MSG_PER_S, at_rate, flat_out
from bench.smtp_floor import FLOOR_PORT, server_process
from bench.stacks import LOOPBACK, BenchStack, Plan, pick_ports, running, scratch
from mailserver.services import FRONT_MALLOC, Service
from mailserver.stack import Stack
from tasks.constants import POOLS

REPO = Path(__file__).resolve().parent.parent
SA_PUBLIC = REPO.parent / "shared" / "corpus" / "sa-public"
FLOOR_POOLS = tuple(f"{pool}-floor" for pool in POOLS)
PARTS = {  # mailscan's process group -> the floor's
    "mailserver": "front-floor",
    "av-worker": "av-floor",
    "spam-worker": "spam-floor",
    "redis": "redis",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,100", help="msg/s, comma-separated")
    parser.add_argument("--clients", type=int, default=16, help="of the flat-out phase; 0: none")
    parser.add_argument("--seconds", type=float, default=20.0, help="per rate, path and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--spamd-messages", type=int, default=80, help="per corpus; 0: skip")
    args = parser.parse_args()
    loads = [Load(float(r)) for r in args.rates.split(",")]
    loads += [Load(clients=args.clients)] if args.clients else []
    spamd_ms = _spamd_cost(args.spamd_messages) if args.spamd_messages else {}
    figures: dict[tuple[str, Load], list[dict[str, float]]] = {}
    with running(Plan("glue", 2, glue=True)) as glue, _floor_stack() as floor:
        for round_ in range(args.rounds):
            for load in loads:
                mine = _mailscan(glue, load, args.seconds, round_)
                figures.setdefault(("mailscan", load), []).append(mine)
                least = _floor(floor, load, args.seconds, round_)
                figures.setdefault(("floor", load), []).append(least)
            say(f"round {round_ + 1}/{args.rounds} done")
    print(report(figures, loads, spamd_ms, args))


@dataclasses.dataclass(frozen=True)
class Load:
    """Poisson arrivals at ``rate`` msg/s, or ``clients`` sending flat out."""

    rate: float = 0.0
    clients: int = 0

    def __str__(self) -> str:
        return f"{self.rate:g} msg/s" if self.rate else f"{self.clients} clients"


def _mailscan(glue: BenchStack, load: Load, seconds: float, round_: int) -> dict[str, float]:
    if load.rate:
        return at_rate(glue, load.rate, seconds, round_)
    return flat_out(glue, load.clients, seconds, round_)


# --- the floor stack -------------------------------------------------------------------


class FloorStack:
    """Redis and the two floor pools (a ``Stack``), and the essential front's pid."""

    def __init__(self, stack: Stack, front_pid: int) -> None:
        self.stack, self.front_pid = stack, front_pid

    def cpu(self) -> dict[str, float]:
        used = cpu_by_service(self.stack)
        used["front-floor"] = process_cpu_s(self.front_pid)
        return used


@contextlib.contextmanager
def _floor_stack() -> Iterator[FloorStack]:
    """Redis, the floor pools and the essential front, in a scratch folder."""
    with scratch(["redis"]) as stack:
        for pool in POOLS:
            service = _floor_pool(stack.services[f"{pool}-worker"])
            stack.services[service.name] = service
        stack.start(FLOOR_POOLS, progress=say)
        folder = stack.settings.var_dir / "floor-front"
        argv = [sys.executable, "-m", "bench.floorfront", str(FLOOR_PORT), str(folder)]
        with server_process(argv, FLOOR_PORT, FRONT_MALLOC) as front:
            yield FloorStack(stack, front.pid)


def _floor_pool(service: Service) -> Service:
    """The pool's worker as mailscan starts it (flags, malloc settings, node name), with
    the floor's app instead of mailscan's."""
    argv = list(service.argv)
    argv[argv.index("-A") + 1] = "bench.floorapp"
    return dataclasses.replace(service, name=service.name.replace("worker", "floor"), argv=argv)


# --- one measured phase on the floor ---------------------------------------------------


def _floor(floor: FloorStack, load: Load, seconds: float, round_: int) -> dict[str, float]:
    label = f"floor {load}-{round_}"
    if load.rate:
        arrivals = arrival_times([(load.rate, seconds)], seed=round_)
        count = len(arrivals)
    else:
        count = int(seconds * FLAT_OUT_MSG_PER_S)
    messages = [s.render(f"{label}-{n}") for n, s in enumerate(corpus.generated(count, 6))]

    async def session(index: int) -> Answer:
        reply = await smtpclient.send(LOOPBACK, FLOOR_PORT, messages[index], 120)
        return Answer(reply.outcome, reply.short, reply.stage)

    if load.rate:
        sending = open_loop(label, session, arrivals, 2000)
    else:
        sending = closed_loop(label, session, count, load.clients, seconds * 5)
    before = floor.cpu()
    run = asyncio.run(sending)
    spent = cpu_delta(before, floor.cpu())
    replied = sum(r.answer.outcome == "250" for r in run.records)
    if replied < len(run.records):
        raise RuntimeError(f"{label}: {replied} of {len(run.records)} messages answered 250")
    figures = {part: 1000 * spent[part] / replied for part in [*PARTS.values(), CLIENT]}
    figures["own"] = sum(figures[part] for part in PARTS.values())
    figures["msg/s"] = replied / run.wall_s
    say(f"  {label}: {figures['own']:.2f} ms/msg")
    return figures


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
    figures: dict[tuple[str, Load], list[dict[str, float]]],
    loads: list[Load],
    spamd_ms: dict[str, float],
    args: argparse.Namespace,
) -> str:
    median = {
        key: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        for key, rounds in figures.items()
    }
    lines = [
        f"CPU ms per message, medians of {args.rounds} rounds of {args.seconds:g} s per load "
        "and path (generated mail)",
        "",
        "| load | part | mailscan | floor | mailscan - floor | mailscan / floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for load in loads:
        mine, least = median[("mailscan", load)], median[("floor", load)]
        for part, floor_part in [*PARTS.items(), ("own", "own"), ("msg/s", "msg/s")]:
            ours, theirs = mine[part], least[floor_part]
            cells = f"{ours:.2f} | {theirs:.2f} | {ours - theirs:.2f} | {ours / theirs:.2f}"
            lines.append(f"| {load} | {_label(part)} | {cells} |")
    rates = [load for load in loads if load.rate]
    if rates:
        lines += _ratio_lines(median, min(rates, key=lambda load: load.rate), spamd_ms)
    return "\n".join(lines)


def _label(part: str) -> str:
    names = {"mailserver": "SMTP front", "own": "**all of it**", "msg/s": "throughput, msg/s"}
    return names.get(part, part)


def _ratio_lines(median: dict, load: Load, spamd_ms: dict[str, float]) -> list[str]:
    if not spamd_ms:
        return []
    floor, own = median[("floor", load)]["own"], median[("mailscan", load)]["own"]
    lines = [
        "",
        f"At {load} (the scanners' rate), the ratio to spamd alone that each allows at best, "
        "S / (S + cost), with S spamd's CPU per message:",
        "",
        "| corpus | S ms/msg | the floor allows | mailscan allows | 0.95 needs a cost ≤ |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, spamd in spamd_ms.items():
        needs = spamd / 0.95 - spamd
        row = f"| {name} | {spamd:.1f} | {spamd / (spamd + floor):.3f} | "
        lines.append(row + f"{spamd / (spamd + own):.3f} | {needs:.1f} ms |")
    return lines


if __name__ == "__main__":
    main()
