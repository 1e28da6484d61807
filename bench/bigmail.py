"""Where the time and CPU of big messages go: one client sends messages of one size through
mailscan and the baseline (or the glue stack alone), the paths taking turns in rounds; per
path the wall time per message and the CPU per message of each process group.

    .venv/bin/python -m bench.bigmail [--megabytes 25] [--messages 3] [--rounds 2] [--glue]

The suite's size scenario gives the p50 time per size and the growth exponent; this shows
which process the time of one size is spent in (the front, Redis, a pool, clamd), and the
peak memory of the front and the pool processes at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench import corpus, smtpclient
from bench.arguments import number, whole
from bench.baseline import direct_scan
from bench.cpu import cpu_by_service, cpu_delta, peak_memory_mb
from bench.load import say
from bench.stacks import BenchStack, Plan, running
from tasks.settings import Settings

# The front refuses a larger message (MAILSCAN_MAX_MESSAGE_BYTES, at its default in a bench).
MAX_MEGABYTES = Settings.max_message_bytes / 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=number(0.0, MAX_MEGABYTES), default=25.0)
    parser.add_argument("--messages", type=whole(1), default=3, help="per path and round")
    parser.add_argument("--rounds", type=whole(1), default=2)
    parser.add_argument("--glue", action="store_true", help="stub plugins, mailscan only")
    args = parser.parse_args()
    sample = corpus.sized(int(args.megabytes * 1_000_000), 6)
    paths = ["mailscan"] if args.glue else ["baseline", "mailscan"]
    plan = Plan("glue", 2, glue=True) if args.glue else Plan("real c=2", 2)
    lines = [
        f"{args.megabytes:g} MB, {args.messages} messages per path and round, one client",
        "",
        "| round | path | ms per message | CPU ms per message by process group |",
        "|---|---|---:|---|",
    ]
    with running(plan) as bench:
        for round_number in range(args.rounds):
            for path in paths:
                wall_ms, cpu_ms = _round(
                    bench, path, sample, f"{round_number}-{path}", args.messages
                )
                cpu = ", ".join(f"{name} {ms:.0f}" for name, ms in cpu_ms.items() if ms >= 1)
                lines.append(f"| {round_number + 1} | {path} | {wall_ms:.0f} | {cpu} |")
                say(lines[-1])
        lines += ["", _peaks(bench)]
    print("\n".join(lines))


def _peaks(bench: BenchStack) -> str:
    """Peak resident memory (VmHWM) of the front and the pool children, after all rounds."""
    peaks = peak_memory_mb(bench.stack)
    shown = [("SMTP front", "mailserver", "leader")]
    shown += [(f"{pool} pool child", f"{pool}-worker", "child") for pool in ("av", "spam")]
    found = [f"{label} {peaks.get(name, {}).get(role, 0):.0f}" for label, name, role in shown]
    return "Peak MiB (VmHWM, the largest process of each kind): " + ", ".join(found)


def _round(
    bench: BenchStack, path: str, sample: corpus.Sample, tag: str, count: int
) -> tuple[float, dict[str, float]]:
    # Every message is new content: clamd caches clean results by content.
    messages = [sample.render(f"{tag}-{n}-{time.time_ns()}") for n in range(count)]
    before, started = cpu_by_service(bench.stack), time.perf_counter()
    for message in messages:
        if path == "mailscan":
            reply = asyncio.run(smtpclient.send(*bench.smtp, message, 300))
            if reply.code != 250:
                raise SystemExit(f"mailscan answered {reply.code} {reply.text}")
        else:
            direct_scan(bench.settings, message)
    wall_ms = (time.perf_counter() - started) * 1000 / count
    used = cpu_delta(before, cpu_by_service(bench.stack))
    return wall_ms, {name: seconds * 1000 / count for name, seconds in used.items()}


if __name__ == "__main__":
    main()
