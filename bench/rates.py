"""mailscan's own CPU per message against the arrival rate: the glue stack (stub plugins)
fed at fixed rates (open loop, Poisson arrivals) and flat out (closed loop).

Beside spamd, mailscan passes about ten messages a second, far below the glue's capacity;
what a message costs at that rate, not at the glue's best, is what the scanners lose to
mailscan. The rates take turns in rounds, so all of them see the same machine.

    .venv/bin/python -m bench.rates [--rates 10,40] [--seconds 20] [--rounds 2] [--clients 16]
"""

from __future__ import annotations

import argparse
import statistics

from bench import corpus
from bench.cpu import MAILSCAN_GROUPS
from bench.load import arrival_times, say
from bench.phases import PhaseInfo, closed, opened
from bench.stacks import BenchStack, Plan, running

SHOWN = (*MAILSCAN_GROUPS, "bench client")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,40", help="msg/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="per rate and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16, help="of the closed loop")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    figures: dict[str, list[dict[str, float]]] = {}
    with running(Plan("glue", 2, glue=True)) as bench:
        for round_ in range(args.rounds):
            for rate in rates:
                name = f"{rate:g} msg/s"
                figures.setdefault(name, []).append(_at_rate(bench, rate, args.seconds, round_))
            name = f"closed, {args.clients} clients"
            figures.setdefault(name, []).append(_flat_out(bench, args, round_))
            say(f"round {round_ + 1}/{args.rounds} done")
    print(report(figures, args))


def _at_rate(bench: BenchStack, rate: float, seconds: float, round_: int) -> dict[str, float]:
    arrivals = arrival_times([(rate, seconds)], seed=round_)
    label = f"r{rate:g}-{round_}"
    messages = _messages(len(arrivals), label)
    info = PhaseInfo(label, "rates", "mailscan", "generated", rate=rate)
    return figures_of(opened(bench, info, messages, arrivals))


def _flat_out(bench: BenchStack, args: argparse.Namespace, round_: int) -> dict[str, float]:
    label = f"c{args.clients}-{round_}"
    messages = _messages(int(args.seconds * 150), label)
    info = PhaseInfo(label, "rates", "mailscan", "generated", concurrency=args.clients)
    return figures_of(closed(bench, info, messages, limit_s=args.seconds * 5))


def _messages(count: int, label: str) -> list[bytes]:
    return [s.render(f"{label}-{n}") for n, s in enumerate(corpus.generated(count, 6))]


def figures_of(phase: dict) -> dict[str, float]:
    per_message = phase["cpu_ms_per_msg"]
    return {
        "msg/s": phase["msg_per_s"],
        **{group: per_message.get(group, 0.0) for group in SHOWN},
        "own": phase["mailscan_cpu_ms_per_msg"],
    }


def report(figures: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    columns = ["msg/s", *SHOWN, "own"]
    lines = [
        f"Glue stack, CPU ms per message; medians of {args.rounds} rounds of "
        f"{args.seconds:g} s per rate",
        "",
        "| load | " + " | ".join(columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for name, rounds in figures.items():
        cells = [statistics.median(r[c] for r in rounds) for c in columns]
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
