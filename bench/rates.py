"""mailscan's own CPU per message against the arrival rate: the glue stack (stub plugins)
fed at fixed rates (open loop, Poisson arrivals) and flat out (closed loop).

Beside spamd, mailscan passes about ten messages a second, far below the glue's capacity;
what a message costs at that rate, not at the glue's best, is what the scanners lose to
mailscan. The rates take turns in rounds, so all of them see the same machine.

    .venv/bin/python -m bench.rates [--rates 10,40] [--seconds 20] [--rounds 2] [--clients 16]

With ``--front-env NAME=VALUE`` every load runs twice a round, the SMTP front restarted
between them as configured and with that variable: an experiment on the front measured in
turns within one run. Runs apart differed by up to a third on the same code here.
"""

from __future__ import annotations

import argparse
import statistics

from bench import corpus
from bench.arguments import listed, number, whole
from bench.cpu import MAILSCAN_GROUPS
from bench.load import arrival_times, say
from bench.phases import PhaseInfo, closed, opened
from bench.stacks import BenchStack, Plan, running

SHOWN = (*MAILSCAN_GROUPS, "bench client")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates", type=listed(number(0.0)), default="10,40", help="msg/s, comma-separated"
    )
    parser.add_argument("--seconds", type=number(0.0), default=20.0, help="per rate and round")
    parser.add_argument("--rounds", type=whole(1), default=2)
    parser.add_argument("--clients", type=whole(1, 256), default=16, help="of the closed loop")
    parser.add_argument(
        "--front-env", type=_variable, help="NAME=VALUE: the front also with it, in turns"
    )
    args = parser.parse_args()
    figures: dict[str, list[dict[str, float]]] = {}
    with running(Plan("glue", 2, glue=True)) as bench:
        fronts = _fronts(bench, args.front_env)
        for round_ in range(args.rounds):
            for way in _turn(len(fronts), round_):
                label, env = fronts[way]
                if env is not None:
                    _restart_front(bench, env)
                for name, figure in _one_round(bench, args, round_, tag=f"{round_}-{way}"):
                    figures.setdefault(f"{name}{label}", []).append(figure)
            say(f"round {round_ + 1}/{args.rounds} done")
    print(report(figures, args))


def _turn(ways: int, round_: int) -> list[int]:
    """The ways in this round's order: each goes first in turn."""
    return [(round_ + i) % ways for i in range(ways)]


def _variable(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not name or not equals:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _fronts(
    bench: BenchStack, variable: tuple[str, str] | None
) -> list[tuple[str, dict[str, str] | None]]:
    """(label, the front's environment to restart it with, or None to leave it) for each way
    the front runs."""
    if variable is None:
        return [("", None)]
    as_is = dict(bench.stack.services["mailserver"].env)
    name, value = variable
    return [(", front as is", as_is), (f", front with {name}={value}", as_is | {name: value})]


def _restart_front(bench: BenchStack, env: dict[str, str]) -> None:
    bench.stack.services["mailserver"].env = env
    bench.stack.restart("mailserver")


def _one_round(
    bench: BenchStack, args: argparse.Namespace, round_: int, tag: str
) -> list[tuple[str, dict[str, float]]]:
    """Each load once; ``tag`` makes the messages new (the av verdict cache would know them)
    while the arrivals stay those of the round."""
    found = [
        (f"{rate:g} msg/s", _at_rate(bench, rate, args.seconds, round_, tag)) for rate in args.rates
    ]
    return [*found, (f"closed, {args.clients} clients", _flat_out(bench, args, tag))]


def _at_rate(
    bench: BenchStack, rate: float, seconds: float, round_: int, tag: str
) -> dict[str, float]:
    arrivals = arrival_times([(rate, seconds)], seed=round_)
    label = f"r{rate:g}-{tag}"
    messages = _messages(len(arrivals), label)
    info = PhaseInfo(label, "rates", "mailscan", "generated", rate=rate)
    return figures_of(opened(bench, info, messages, arrivals))


def _flat_out(bench: BenchStack, args: argparse.Namespace, tag: str) -> dict[str, float]:
    label = f"c{args.clients}-{tag}"
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
        "| load | " + " | ".join(columns) + " | own, each round |",
        "| --- |" + " ---: |" * (len(columns) + 1),
    ]
    for name, rounds in figures.items():
        cells = [statistics.median(r[c] for r in rounds) for c in columns]
        each = " / ".join(f"{r['own']:.2f}" for r in rounds)
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in cells) + f" | {each} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
