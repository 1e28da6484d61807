"""The SMTP front's CPU per message against its floor: the same sessions, from the same
client, to the front's own SMTP class (aiosmtpd with mailscan's DATA reader) whose handler
answers 250 at once (no spool, no scan, no delivery). The two take turns in blocks, so
both see the same machine; the front runs in the glue stack (stub plugins), and the
difference is what it does around the sessions.

    .venv/bin/python -m bench.smtp_floor [--messages 600] [--blocks 4] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import corpus, smtpclient
from bench.arguments import whole
from bench.cpu import cpu_by_service, process_cpu_s
from bench.load import Answer, closed_loop, say
from bench.stacks import LOOPBACK, Plan, port_free, running

FLOOR_PORT = 22625


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=whole(1), default=600, help="per block")
    parser.add_argument("--blocks", type=whole(1), default=4, help="per path")
    parser.add_argument("--clients", type=whole(1, 256), default=8)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the floor server
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve_floor(args.serve))
        return
    samples = corpus.generated(args.messages, 6)
    figures: dict[str, list[float]] = {"SMTP floor": [], "mailscan front": []}
    with running(Plan("glue", 2, glue=True)) as bench, _floor_server() as floor:
        servers = {  # where each listens, and its CPU seconds so far
            "SMTP floor": ((LOOPBACK, FLOOR_PORT), lambda: process_cpu_s(floor.pid)),
            "mailscan front": (bench.smtp, lambda: cpu_by_service(bench.stack)["mailserver"]),
        }
        for block in range(args.blocks):
            for name, (address, cpu_s) in servers.items():
                messages = [s.render(f"{name[:5]}-{block}-{n}") for n, s in enumerate(samples)]
                figures[name].append(_block(address, messages, args.clients, cpu_s))
            say(f"block {block + 1}/{args.blocks}: " + _line(figures, -1))
    print(report(figures, args))


def _block(
    address: tuple[str, int], messages: list[bytes], clients: int, cpu_s: Callable[[], float]
) -> float:
    """CPU ms per message of the server while ``clients`` send ``messages``."""
    host, port = address

    async def work(index: int) -> Answer:
        reply = await smtpclient.send(host, port, messages[index], 60)
        return Answer(reply.outcome, reply.short, reply.stage)

    before = cpu_s()
    run = asyncio.run(closed_loop(f"{host}:{port}", work, len(messages), clients, 300))
    spent = cpu_s() - before
    refused = [r for r in run.records if r.answer.outcome != "250"]
    if len(refused) > len(messages) // 10:
        raise RuntimeError(f"{len(refused)} of {len(messages)} not answered 250 on port {port}")
    return 1000 * spent / len(run.records)


@contextlib.contextmanager
def _floor_server() -> Iterator[subprocess.Popen[bytes]]:
    if not port_free(FLOOR_PORT):
        raise SystemExit(f"port {FLOOR_PORT} on {LOOPBACK} is taken")
    argv = [sys.executable, "-m", "bench.smtp_floor", "--serve", str(FLOOR_PORT)]
    process = subprocess.Popen(argv, cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.monotonic() + 20
        while port_free(FLOOR_PORT):
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the floor server did not start")
            time.sleep(0.1)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


async def _serve_floor(port: int) -> None:
    class Accept:
        async def handle_DATA(self, server, session, envelope) -> str:
            return "250 OK"

    await serve_smtp(Accept(), port)
    os._exit(0)


async def serve_smtp(handler: object, port: int) -> None:
    """Serve ``handler`` with the front's own SMTP class on loopback until SIGTERM."""
    from mailserver.server import LenientSMTP

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: LenientSMTP(handler, data_size_limit=30 * 2**20, enable_SMTPUTF8=True),
        LOOPBACK,
        port,
    )
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    async with server:
        await stopped.wait()


def _line(figures: dict[str, list[float]], index: int) -> str:
    return ", ".join(f"{name} {values[index]:.2f} ms/msg" for name, values in figures.items())


def report(figures: dict[str, list[float]], args: argparse.Namespace) -> str:
    medians = {name: statistics.median(values) for name, values in figures.items()}
    floor, front = medians.values()
    lines = [
        f"{args.blocks} blocks of {args.messages} generated messages per server, "
        f"{args.clients} clients",
        "",
        "| server | CPU ms per message (median of blocks) |",
        "|---|---:|",
        *(f"| {name} | {value:.2f} |" for name, value in medians.items()),
        "",
        f"front / floor: {front / floor:.2f}; the front adds {front - floor:.2f} ms per message",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
