"""CPU per scan job of the two pools, through the real queue: jobs written by
``tasks.submit`` onto Redis, taken by the prefork workers (stub plugins), their verdicts
stored and published as the SMTP front awaits them. No SMTP front: this is the pools' share of
mailscan's own cost, measured alone so a change to the worker configuration shows in
seconds rather than in a suite run.

    .venv/bin/python -m bench.pools [--messages 1000] [--rounds 3] [--variants a,b]

Variants are worker configurations that take turns on one Redis (the workers restart between
them), so all of them see the same machine; the first is the baseline of the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

from bench.arguments import whole
from bench.cpu import cpu_by_service, cpu_delta
from bench.load import say
from bench.stacks import scratch
from mailserver.stack import Stack
from tasks import redisauth
from tasks.constants import RESULT_KEY_PREFIX
from tasks.submit import submit

MESSAGE = b"Subject: pool bench\r\n\r\n" + b"a line of an ordinary message\r\n" * 200
WORKERS = ("av-worker", "spam-worker")
MEASURED = (*WORKERS, "redis")
IN_FLIGHT = 16  # messages submitted ahead: both pools always have work, queues stay short
# Each variant: the environment the workers restart with on top of the stack's.
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "task-events": {"MAILSCAN_TASK_EVENTS": "true"},
    "no-task-events": {"MAILSCAN_TASK_EVENTS": "false"},
}


@dataclass
class Round:
    variant: str
    jobs_per_s: float
    cpu_ms_per_job: dict[str, float]  # per measured group, per job of that pool (Redis: per job)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=whole(1), default=1000, help="per round and variant")
    parser.add_argument("--rounds", type=whole(1), default=3)
    parser.add_argument("--variants", default="no-task-events,task-events")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    with scratch(["redis", *WORKERS], av_plugins="stub", spam_plugins="stub") as stack:
        base_env = dict(stack.env)
        rounds = [
            _measure(stack, base_env, variant, args.messages)
            for _ in range(args.rounds)
            for variant in variants
        ]
    print(report(rounds, variants))


def _measure(stack: Stack, base_env: dict[str, str], variant: str, count: int) -> Round:
    stack.env = base_env | VARIANTS[variant]
    for name in WORKERS:
        stack.restart(name)
    tag = f"{variant}-{time.time_ns():x}"
    _run(stack, 50, f"warm-{tag}")
    before, started = cpu_by_service(stack), time.perf_counter()
    _run(stack, count, tag)
    elapsed, spent = time.perf_counter() - started, cpu_delta(before, cpu_by_service(stack))
    figures = {name: 1000 * spent[name] / count for name in MEASURED}
    figures["redis"] /= 2  # two jobs per message
    say(f"{variant:>16}: {count / elapsed:6.0f} messages/s, " + _cells(figures, " ms/job, "))
    return Round(variant, count / elapsed, figures)


def _run(stack: Stack, count: int, tag: str) -> None:
    """Submit ``count`` messages, IN_FLIGHT ahead, and wait for both results of each."""
    from tasks.celeryapp import app

    client = redisauth.connect(stack.settings)
    with client.pubsub() as results:
        results.psubscribe(RESULT_KEY_PREFIX + "*")
        results.get_message(timeout=5)  # the subscription's confirmation
        sent = done = 0
        while done < 2 * count:
            while sent < count and sent - done // 2 < IN_FLIGHT:
                submit(app, client, f"{tag}-{sent}", MESSAGE, 300)
                sent += 1
            message = results.get_message(timeout=30)
            if message is None:
                raise RuntimeError(f"no result for 30 s ({done} of {2 * count} jobs done)")
            if message["type"] == "pmessage" and _final(message):
                done += 1
    client.close()


def _final(message: dict) -> bool:
    from celery import states

    from tasks.celeryapp import app

    meta = app.backend.decode(message["data"])
    return meta.get("status") in states.READY_STATES


def report(rounds: list[Round], variants: list[str]) -> str:
    lines = [
        "| variant | messages/s | " + " | ".join(f"{g} ms/job" for g in MEASURED) + " |",
        "|---|---:|" + "---:|" * len(MEASURED),
    ]
    medians = {}
    for variant in variants:
        mine = [r for r in rounds if r.variant == variant]
        medians[variant] = {
            g: statistics.median(r.cpu_ms_per_job[g] for r in mine) for g in MEASURED
        }
        rate = statistics.median(r.jobs_per_s for r in mine)
        lines.append(f"| {variant} | {rate:.0f} | " + _cells(medians[variant], " | ") + " |")
    base = variants[0]
    for variant in variants[1:]:
        ratios = {g: medians[variant][g] / medians[base][g] for g in WORKERS}
        lines.append(f"\n{variant} / {base}, CPU per job: " + _cells(ratios, ", "))
    return "\n".join(lines) + f"\n\nmedians of {len(rounds) // len(variants)} rounds"


def _cells(figures: dict[str, float], sep: str) -> str:
    return sep.join(f"{figures[g]:.2f}" for g in figures)


if __name__ == "__main__":
    main()
