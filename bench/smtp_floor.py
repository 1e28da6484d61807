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
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import corpus, smtpclient
from bench.cpu import CLOCK_TICKS, cpu_by_service
from bench.load import Answer, closed_loop, say
from bench.stacks import LOOPBACK, Plan, port_free, running

FLOOR_PORT = 22625


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=600, help="per block")
    parser.add_argument("--blocks", type=int, default=4, help="per path")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the floor server
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve_floor(args.serve))
        return
    samples = corpus.generated(args.messages, 6)
    figures: dict[str, list[float]] = {"SMTP floor": [], "mailscan front": []}
    with running(Plan("glue", 2, glue=True)) as bench, _floor_server() as floor:
        for block in range(args.blocks):
            messages = [s.render(f"floor-{block}-{n}") for n, s in enumerate(samples)]
            figures["SMTP floor"].append(
                _block(LOOPBACK, FLOOR_PORT, messages, args.clients, lambda: _ticks(floor))
            )
            messages = [s.render(f"front-{block}-{n}") for n, s in enumerate(samples)]
            front = lambda: cpu_by_service(bench.stack)["mailserver"]  # noqa: E731
            figures["mailscan front"].append(_block(*bench.smtp, messages, args.clients, front))
            say(f"block {block + 1}/{args.blocks}: " + _line(figures, -1))
    print(report(figures, args))


def _block(host: str, port: int, messages: list[bytes], clients: int, cpu_s) -> float:
    """CPU ms per message of the server while ``clients`` send ``messages``."""

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


class _floor_server:
    def __enter__(self) -> subprocess.Popen[bytes]:
        if not port_free(FLOOR_PORT):
            raise SystemExit(f"port {FLOOR_PORT} on {LOOPBACK} is taken")
        argv = [sys.executable, "-m", "bench.smtp_floor", "--serve", str(FLOOR_PORT)]
        self.process = subprocess.Popen(argv, cwd=Path(__file__).resolve().parent.parent)
        deadline = time.monotonic() + 20
        while port_free(FLOOR_PORT):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("the floor server did not start")
            time.sleep(0.1)
        return self.process

    def __exit__(self, *_: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)


def _ticks(process: subprocess.Popen[bytes]) -> float:
    text = Path(f"/proc/{process.pid}/stat").read_text()
    fields = text[text.rfind(")") + 2 :].split()
    return sum(int(f) for f in fields[11:13]) / CLOCK_TICKS


async def _serve_floor(port: int) -> None:
    from mailserver.server import LenientSMTP

    class Accept:
        async def handle_DATA(self, server, session, envelope) -> str:
            return "250 OK"

    loop = asyncio.get_running_loop()
    handler = Accept()
    server = await loop.create_server(
        lambda: LenientSMTP(handler, data_size_limit=30 * 2**20, enable_SMTPUTF8=True),
        LOOPBACK,
        port,
    )
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    async with server:
        await stopped.wait()
    os._exit(0)


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
