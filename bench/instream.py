"""clamd's INSTREAM as clamav-client sends it (1 KiB chunks) against the av plugin's large
chunks (``tasks.plugins.clamav``): CPU of the client and of clamd per message, on the
generated corpus and on 25 MB messages, the two taking turns in rounds.

    .venv/bin/python -m bench.instream [--messages 200] [--rounds 3]

Starts its own clamd (the project's signatures) on a free loopback port.
"""

from __future__ import annotations

import argparse
import io
import statistics
from collections.abc import Callable

from clamav_client.clamd import ClamdNetworkSocket

from bench import corpus
from bench.arguments import whole
from bench.cpu import CLIENT, cpu_by_service, cpu_delta
from bench.load import say
from bench.stacks import scratch
from mailserver.stack import Stack
from tasks.plugins.clamav import clamd_client
from tasks.settings import Settings


def library(settings: Settings, message: bytes) -> str:
    endpoint = settings.clamd
    client = ClamdNetworkSocket(endpoint.host, endpoint.port, timeout=60)
    return client.instream(io.BytesIO(message))["stream"][0]


def plugin(settings: Settings, message: bytes) -> str:
    return clamd_client(settings.clamd, 60).instream_bytes(message)["stream"][0]


PATHS: dict[str, Callable[[Settings, bytes], str]] = {
    "clamav-client, 1 KiB chunks": library,
    "plugin, 256 KiB chunks": plugin,
}


def _round(stack: Stack, send, messages: list[bytes]) -> tuple[float, float]:
    """Client and clamd CPU ms per message."""
    before = cpu_by_service(stack)
    statuses = {send(stack.settings, m) for m in messages}
    assert statuses <= {"OK", "FOUND"}, statuses
    used = cpu_delta(before, cpu_by_service(stack))
    return 1000 * used[CLIENT] / len(messages), 1000 * used["clamd"] / len(messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=whole(1), default=200)
    parser.add_argument("--rounds", type=whole(1), default=3)
    args = parser.parse_args()
    # clamd caches clean results by content: every round and path gets new copies.
    sets = {
        "generated": (corpus.generated(args.messages, 6), args.messages),
        "25 MB": ([corpus.sized(25_000_000, 6)], 3),
    }
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with scratch(["clamd"]) as stack:
        for number in range(args.rounds):
            for corpus_name, (samples, count) in sets.items():
                for path, send in PATHS.items():
                    tag = f"{number}-{path[:6]}"
                    messages = [samples[n % len(samples)].render(f"{tag}{n}") for n in range(count)]
                    figures.setdefault((corpus_name, path), []).append(
                        _round(stack, send, messages)
                    )
            say(f"round {number + 1}/{args.rounds} done")
    print(report(figures, args.rounds))


def report(figures: dict[tuple[str, str], list[tuple[float, float]]], rounds: int) -> str:
    lines = [
        f"CPU ms per message, median of {rounds} rounds",
        "",
        "| messages | INSTREAM | client | clamd |",
        "|---|---|---:|---:|",
    ]
    for (corpus_name, path), values in figures.items():
        client = statistics.median(v[0] for v in values)
        clamd = statistics.median(v[1] for v in values)
        lines.append(f"| {corpus_name} | {path} | {client:.2f} | {clamd:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
