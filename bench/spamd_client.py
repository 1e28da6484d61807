"""spamd's SYMBOLS as aiospamc's client sends it (an asyncio event loop per pool process)
against the spamassassin plugin's blocking exchange (``tasks.plugins.spamassassin``): CPU of
the client and of spamd per message on the generated corpus's mail under 30 KB, the two
taking turns in rounds.

    .venv/bin/python -m bench.spamd_client [--messages 100] [--rounds 3]

Starts its own spamd on a free loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Callable

from aiospamc.client import Client
from aiospamc.connections import TcpConnectionManager, Timeout
from aiospamc.requests import Request

from bench import corpus
from bench.arguments import whole
from bench.cpu import CLIENT, cpu_by_service, cpu_delta
from bench.load import say
from bench.stacks import scratch
from mailserver.stack import Stack
from tasks.plugins.spamassassin import SpamassassinPlugin
from tasks.settings import Settings

SMALL_BYTES = 30_000


def library(settings: Settings) -> Callable[[bytes], bool]:
    """The client as the plugin used it before: one loop and one Client, reused."""
    loop = asyncio.new_event_loop()
    endpoint = settings.spamd
    client = Client(TcpConnectionManager(endpoint.host, endpoint.port, None, Timeout(total=60)))

    def scan(message: bytes) -> bool:
        response = loop.run_until_complete(client.request(Request("SYMBOLS", body=message)))
        return response.headers["Spam"].value

    return scan


def plugin(settings: Settings) -> Callable[[bytes], bool]:
    scanner = SpamassassinPlugin(settings)
    return lambda message: scanner.scan(message).status == "spam"


PATHS = {"aiospamc client": library, "plugin's exchange": plugin}


def _round(
    stack: Stack, scan: Callable[[bytes], bool], messages: list[bytes]
) -> tuple[float, float]:
    """Client and spamd CPU ms per message."""
    before = cpu_by_service(stack)
    for message in messages:
        scan(message)
    used = cpu_delta(before, cpu_by_service(stack))
    return 1000 * used[CLIENT] / len(messages), 1000 * used["spamd"] / len(messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=whole(1), default=100)
    parser.add_argument("--rounds", type=whole(1), default=3)
    args = parser.parse_args()
    generated = corpus.generated(4 * args.messages, 6)
    samples = [s for s in generated if len(s.render("size")) < SMALL_BYTES][: args.messages]
    figures: dict[str, list[tuple[float, float]]] = {}
    with scratch(["spamd"]) as stack:
        scanners = {name: make(stack.settings) for name, make in PATHS.items()}
        for number in range(args.rounds):
            for name, scan in scanners.items():
                messages = [s.render(f"{number}-{name[:5]}-{n}") for n, s in enumerate(samples)]
                figures.setdefault(name, []).append(_round(stack, scan, messages))
            say(f"round {number + 1}/{args.rounds} done")
    print(report(figures, args.rounds, len(samples)))


def report(figures: dict[str, list[tuple[float, float]]], rounds: int, count: int) -> str:
    lines = [
        f"CPU ms per message ({count} messages under 30 KB), median of {rounds} rounds",
        "",
        "| client | client CPU | spamd CPU |",
        "|---|---:|---:|",
    ]
    for name, values in figures.items():
        client = statistics.median(v[0] for v in values)
        spamd = statistics.median(v[1] for v in values)
        lines.append(f"| {name} | {client:.2f} | {spamd:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
