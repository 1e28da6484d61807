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

``--one-job`` adds a third path in the turns: the floor with one job per message instead of
one per pool (the av pool alone, its job publishing both verdicts), the floor of a design
that would scan a message with both engines in one job.

    .venv/bin/python -m bench.floor [--corpus generated|sa-public] [--rates 10,100]
                                    [--clients 16] [--seconds 20] [--rounds 2] [--one-job]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import corpus
from bench.arguments import listed, number, whole
from bench.baseline import spamd_status
from bench.cpu import MAILSCAN_GROUPS, cpu_by_service
from bench.load import arrival_times, say
from bench.machine import REPO
from bench.phases import PhaseInfo, closed, opened
from bench.rates import figures_of
from bench.smtp_floor import FLOOR_PORT
from bench.stacks import LOOPBACK, BenchStack, Plan, listening, pick_ports, running, scratch
from bench.suite import CORPORA, DEFAULT_CORPUS
from mailserver.services import FRONT_MALLOC, Service
from tasks.constants import AV_POOL, POOLS

ONE_JOB = "one job"  # the path, and the stack, of the one-job floor

SA_PUBLIC = REPO / DEFAULT_CORPUS
FLAT_OUT_MSG_PER_S = 150  # messages planned per second of a flat-out phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates", type=listed(number(0.0)), default="10,100", help="msg/s, comma-separated"
    )
    parser.add_argument(
        "--clients", type=whole(0, 256), default=16, help="of the flat-out phase; 0: none"
    )
    parser.add_argument(
        "--seconds", type=number(0.0), default=20.0, help="per rate, path and round"
    )
    parser.add_argument("--rounds", type=whole(1), default=2)
    parser.add_argument("--spamd-messages", type=whole(0), default=80, help="0: skip spamd")
    parser.add_argument("--one-job", action="store_true", help="also the one-job floor")
    args = parse_with_corpus(parser, default="generated")
    loads = [Load(rate) for rate in args.rates]
    loads += [Load(clients=args.clients)] if args.clients else []
    spamd_ms = _spamd_cost(args.corpus, args.spamd_messages) if args.spamd_messages else None
    figures: dict[tuple[str, Load], list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stacks:
        paths = {
            "mailscan": stacks.enter_context(running(Plan("glue", 2, glue=True))),
            "floor": stacks.enter_context(_floor_stack()),
        }
        if args.one_job:
            paths[ONE_JOB] = stacks.enter_context(_floor_stack(one_job=True))
        for round_ in range(args.rounds):
            for load in loads:
                for path, bench in paths.items():
                    measured = _measure(bench, load, _phase(args, load, round_, path))
                    figures.setdefault((path, load), []).append(figures_of(measured))
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
    samples = samples_of(args.corpus, count)
    messages = [s.render(f"{label}-{n}") for n, s in enumerate(samples)]
    return Phase(label, args.corpus, messages, arrivals, args.seconds * 5)


def parse_turns(description: str, paths: str) -> argparse.Namespace:
    """The arguments of a bench whose ``paths`` take turns in blocks on one real stack:
    clients, messages per path, blocks, --keep-var and the corpus, checked."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--concurrency", type=whole(1, 32), default=2, help="clients, children, pools"
    )
    parser.add_argument("--messages", type=whole(1), default=200, help="per path")
    parser.add_argument("--blocks", type=whole(1), default=4, help=f"turns of the {paths}")
    parser.add_argument("--keep-var", action="store_true", help="keep the stack's folder and logs")
    return parse_with_corpus(parser, default="sa-public")


def parse_with_corpus(parser: argparse.ArgumentParser, default: str) -> argparse.Namespace:
    """``parser``'s arguments with ``--corpus`` added, the sa-public folder checked."""
    parser.add_argument("--corpus", choices=CORPORA, default=default)
    args = parser.parse_args()
    if args.corpus == "sa-public" and not SA_PUBLIC.is_dir():
        parser.error(f"no sa-public corpus at {SA_PUBLIC}")
    return args


def samples_of(name: str, count: int) -> list[corpus.Sample]:
    """``count`` messages of a corpus: generated mail (seed 6), or sa-public's repeated."""
    if name == "sa-public":
        return corpus.repeated(corpus.real(SA_PUBLIC), count)
    return corpus.generated(count, 6)


def _measure(bench: BenchStack, load: Load, phase: Phase) -> dict[str, Any]:
    """The phase through ``bench``'s SMTP port (path "mailscan": SMTP, not direct calls)."""
    info = PhaseInfo(phase.label, "floor", "mailscan", phase.corpus)
    if load.rate:
        info = dataclasses.replace(info, rate=load.rate)
        measured = opened(bench, info, phase.messages, phase.arrivals)
    else:
        info = dataclasses.replace(info, concurrency=load.clients)
        measured = closed(bench, info, phase.messages, phase.limit_s)
    floors = ("floor", ONE_JOB)
    if bench.plan.name in floors and measured["outcomes"] != {"250": measured["answered"]}:
        raise RuntimeError(f"{phase.label}: the floor answered {measured['outcomes']}")
    return measured


# --- the floor stack -------------------------------------------------------------------


@contextlib.contextmanager
def _floor_stack(one_job: bool = False) -> Iterator[BenchStack]:
    """Redis, the floor pools and the essential front in a scratch folder, under the names
    of mailscan's services: the CPU of each is read, and reported, as mailscan's is. With
    ``one_job``, the av pool alone, answering for both (bench/floorapp.py)."""
    port = pick_ports()["smtp"] if one_job else FLOOR_PORT
    env = {"BENCH_FLOOR_ONE_JOB": "yes"} if one_job else {}
    pools = [AV_POOL] if one_job else list(POOLS)
    with scratch(["redis"], smtp_port=str(port)) as stack:
        for pool in pools:
            name = f"{pool}-worker"
            stack.services[name] = _with_floor_app(stack.services[name], env)
        stack.services["mailserver"] = _essential_front(port, env)
        stack.start([*(f"{pool}-worker" for pool in pools), "mailserver"], progress=say)
        yield BenchStack(Plan(ONE_JOB if one_job else "floor", 2), stack, stack.settings)


def _with_floor_app(service: Service, env: dict[str, str]) -> Service:
    """The pool's worker as mailscan starts it (flags, malloc settings, node name), with
    the floor's app instead of mailscan's."""
    argv = list(service.argv)
    argv[argv.index("-A") + 1] = "bench.floorapp"
    return dataclasses.replace(service, argv=argv, env={**service.env, **env})


def _essential_front(port: int, env: dict[str, str]) -> Service:
    argv = [sys.executable, "-m", "bench.floorfront"]
    return Service("mailserver", argv, listening(port), port=port, env={**FRONT_MALLOC, **env})


# --- spamd's own cost ------------------------------------------------------------------


def _spamd_cost(name: str, count: int) -> float:
    """spamd's CPU ms per message of the corpus, two clients calling it directly."""
    messages = [s.render(f"spamd-{n}") for n, s in enumerate(samples_of(name, count))]
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
        for part in [*MAILSCAN_GROUPS, "own", "msg/s"]:
            ours, theirs = mine[part], least[part]
            cells = f"{ours:.2f} | {theirs:.2f} | {ours - theirs:.2f} | {ours / theirs:.2f}"
            lines.append(f"| {load} | {_label(part)} | {cells} |")
    rates = [load for load in loads if load.rate]
    slowest = min(rates, key=lambda load: load.rate) if rates else None
    if slowest and spamd_ms:
        lines += _ratio_lines(median, slowest, args.corpus, spamd_ms)
    if args.one_job:
        lines += _one_job_lines(median, loads, slowest, spamd_ms)
    return "\n".join(lines)


def _one_job_lines(
    median: dict, loads: list[Load], slowest: Load | None, spamd: float | None
) -> list[str]:
    lines = [
        "",
        "The floor with one job per message (the av pool alone, answering for both) against "
        "the floor with one job per pool:",
        "",
        "| load | one job per pool: CPU ms/msg | one job per message | one ÷ two | "
        "msg/s, one per pool | msg/s, one per message |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for load in loads:
        two, one = median[("floor", load)], median[(ONE_JOB, load)]
        lines.append(
            f"| {load} | {two['own']:.2f} | {one['own']:.2f} | {one['own'] / two['own']:.2f} "
            f"| {two['msg/s']:.1f} | {one['msg/s']:.1f} |"
        )
    if slowest and spamd:
        cost = median[(ONE_JOB, slowest)]["own"]
        lines += ["", f"At {slowest}, one job per message allows {spamd / (spamd + cost):.3f}."]
    return lines


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
