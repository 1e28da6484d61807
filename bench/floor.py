"""The floor under mailscan's own cost, and what it leaves of the ratio to the scanners.

At each load (Poisson arrivals at fixed rates, then clients flat out), in turns, the same
kind of mail (``--corpus``: generated, or the real mail of sa-public) goes through:

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

spamd's CPU per message of the same corpus is measured once in the same run (two clients
calling it directly), and the report gives the ratio to the scanners that each allows at
the scanners' rate, S / (S + cost): no implementation of this architecture gets above the
floor's.

    .venv/bin/python -m bench.floor [--corpus generated|sa-public] [--rates 10,100]
                                    [--clients 16] [--seconds 20] [--rounds 2]
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
from bench.phases import PhaseInfo, closed, opened
from bench.rates import figures_of
from bench.smtp_floor import FLOOR_PORT, server_process
from bench.stacks import LOOPBACK, BenchStack, Plan, pick_ports, running, scratch
from mailserver.services import FRONT_MALLOC, Service
from mailserver.stack import Stack
from tasks.constants import POOLS

REPO = Path(__file__).resolve().parent.parent
SA_PUBLIC = REPO.parent / "shared" / "corpus" / "sa-public"
CORPORA = ("generated", "sa-public")
FLAT_OUT_MSG_PER_S = 150  # messages planned per second of a flat-out phase
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
    parser.add_argument("--spamd-messages", type=int, default=80, help="0: skip spamd")
    parser.add_argument("--corpus", choices=CORPORA, default="generated")
    args = parser.parse_args()
    if args.corpus == "sa-public" and not SA_PUBLIC.is_dir():
        parser.error(f"no sa-public corpus at {SA_PUBLIC}")
    loads = [Load(float(r)) for r in args.rates.split(",")]
    loads += [Load(clients=args.clients)] if args.clients else []
    spamd_ms = _spamd_cost(args.corpus, args.spamd_messages) if args.spamd_messages else None
    figures: dict[tuple[str, Load], list[dict[str, float]]] = {}
    with running(Plan("glue", 2, glue=True)) as glue, _floor_stack() as floor:
        for round_ in range(args.rounds):
            for load in loads:
                for path, measure in (("mailscan", _mailscan), ("floor", _floor)):
                    where = glue if path == "mailscan" else floor
                    mine = measure(where, load, _phase(args, load, round_, path))
                    figures.setdefault((path, load), []).append(mine)
            say(f"round {round_ + 1}/{args.rounds} done")
    print(report(figures, loads, spamd_ms, args))


@dataclasses.dataclass(frozen=True)
class Load:
    """Poisson arrivals at ``rate`` msg/s, or ``clients`` sending flat out."""

    rate: float = 0.0
    clients: int = 0

    def __str__(self) -> str:
        return f"{self.rate:g} msg/s" if self.rate else f"{self.clients} clients"


@dataclasses.dataclass(frozen=True)
class Phase:
    """One path's messages (every one new content) and schedule under one load."""

    label: str
    corpus: str
    messages: list[bytes]
    arrivals: list[float]  # empty: flat out
    limit_s: float


def _phase(args: argparse.Namespace, load: Load, round_: int, path: str) -> Phase:
    label = f"{path} {load} {round_}"
    if load.rate:
        arrivals = arrival_times([(load.rate, args.seconds)], seed=round_)
        count = len(arrivals)
    else:
        arrivals, count = [], int(args.seconds * FLAT_OUT_MSG_PER_S)
    samples = _samples(args.corpus, count)
    messages = [s.render(f"{label}-{n}") for n, s in enumerate(samples)]
    return Phase(label, args.corpus, messages, arrivals, args.seconds * 5)


def _samples(name: str, count: int) -> list[corpus.Sample]:
    if name == "sa-public":
        return corpus.repeated(corpus.real(SA_PUBLIC), count)
    return corpus.generated(count, 6)


def _mailscan(glue: BenchStack, load: Load, phase: Phase) -> dict[str, float]:
    info = PhaseInfo(phase.label, "floor", "mailscan", phase.corpus)
    if load.rate:
        info = dataclasses.replace(info, rate=load.rate)
        return figures_of(opened(glue, info, phase.messages, phase.arrivals))
    info = dataclasses.replace(info, concurrency=load.clients)
    return figures_of(closed(glue, info, phase.messages, phase.limit_s))


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


def _floor(floor: FloorStack, load: Load, phase: Phase) -> dict[str, float]:
    messages = phase.messages

    async def session(index: int) -> Answer:
        reply = await smtpclient.send(LOOPBACK, FLOOR_PORT, messages[index], 120)
        return Answer(reply.outcome, reply.short, reply.stage)

    if load.rate:
        sending = open_loop(phase.label, session, phase.arrivals, 2000)
    else:
        sending = closed_loop(phase.label, session, len(messages), load.clients, phase.limit_s)
    before = floor.cpu()
    run = asyncio.run(sending)
    spent = cpu_delta(before, floor.cpu())
    replied = sum(r.answer.outcome == "250" for r in run.records)
    if replied < len(run.records):
        raise RuntimeError(f"{phase.label}: {replied} of {len(run.records)} answered 250")
    figures = {part: 1000 * spent[part] / replied for part in [*PARTS.values(), CLIENT]}
    figures["own"] = sum(figures[part] for part in PARTS.values())
    figures["msg/s"] = replied / run.wall_s
    say(f"  {phase.label}: {figures['own']:.2f} ms/msg")
    return figures


# --- spamd's own cost ------------------------------------------------------------------


def _spamd_cost(name: str, count: int) -> float:
    """spamd's CPU ms per message of the corpus, two clients calling it directly."""
    messages = [s.render(f"spamd-{n}") for n, s in enumerate(_samples(name, count))]
    spamd = f"{LOOPBACK}:{pick_ports()['spamd']}"
    with scratch(["spamd"], spamd=spamd, spam_concurrency="2") as stack:
        before = cpu_by_service(stack)["spamd"]
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda m: spamd_status(stack.settings, m), messages))
        cost = 1000 * (cpu_by_service(stack)["spamd"] - before) / len(messages)
    say(f"spamd, {name}: {cost:.1f} ms/msg ({answers.count('error')} errors)")
    return cost


# --- the report ------------------------------------------------------------------------


def report(
    figures: dict[tuple[str, Load], list[dict[str, float]]],
    loads: list[Load],
    spamd_ms: float | None,
    args: argparse.Namespace,
) -> str:
    median = {
        key: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        for key, rounds in figures.items()
    }
    lines = [
        f"CPU ms per message, medians of {args.rounds} rounds of {args.seconds:g} s per load "
        f"and path ({args.corpus} mail)",
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
    if rates and spamd_ms:
        slowest = min(rates, key=lambda load: load.rate)
        lines += _ratio_lines(median, slowest, args.corpus, spamd_ms)
    return "\n".join(lines)


def _label(part: str) -> str:
    names = {"mailserver": "SMTP front", "own": "**all of it**", "msg/s": "throughput, msg/s"}
    return names.get(part, part)


def _ratio_lines(median: dict, load: Load, name: str, spamd: float) -> list[str]:
    floor, own = median[("floor", load)]["own"], median[("mailscan", load)]["own"]
    return [
        "",
        f"At {load} (the scanners' rate), the ratio to spamd alone that each allows at best, "
        "S / (S + cost), with S spamd's CPU per message:",
        "",
        "| corpus | S ms/msg | the floor allows | mailscan allows | 0.95 needs a cost ≤ |",
        "|---|---:|---:|---:|---:|",
        f"| {name} | {spamd:.1f} | {spamd / (spamd + floor):.3f} | "
        f"{spamd / (spamd + own):.3f} | {spamd / 0.95 - spamd:.1f} ms |",
    ]


if __name__ == "__main__":
    main()
