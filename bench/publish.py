"""CPU per message of enqueueing one message's two scan jobs: ``tasks.submit`` (one pipelined
round trip) against Celery's ``send_task`` with a task-sent event per job (what the front did
before), in alternating rounds on one Redis so both see the same machine.

    .venv/bin/python -m bench.publish [--messages 2000] [--rounds 5]

Starts its own Redis on a free loopback port; nothing consumes the queues, which are
emptied after every round.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

from bench.arguments import whole
from bench.cpu import own_cpu_s
from bench.load import say
from bench.stacks import scratch
from tasks import blobs
from tasks.constants import POOLS, SCAN_TASKS
from tasks.submit import submit

MESSAGE = b"Subject: publish bench\r\n\r\n" + b"a line of an ordinary message\r\n" * 200


def through_send_task(app, redis, blob_id: str) -> None:
    ref = blobs.put(redis, blob_id, MESSAGE, 60)
    with app.producer_or_acquire() as producer:
        for pool in POOLS:
            app.send_task(
                SCAN_TASKS[pool], args=[ref], task_id=f"{blob_id}-{pool}", producer=producer
            )


def through_submit(app, redis, blob_id: str) -> None:
    submit(app, redis, blob_id, MESSAGE, 60)


def ms_per_message(publish: Callable[..., None], app, redis, count: int, tag: str) -> float:
    started = own_cpu_s()
    for n in range(count):
        publish(app, redis, f"{tag}{n}")
    spent = own_cpu_s() - started
    redis.delete(*POOLS)
    return 1000 * spent / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=whole(1), default=2000)
    parser.add_argument("--rounds", type=whole(1), default=5)
    args = parser.parse_args()
    with scratch(["redis"]):
        run(args.messages, args.rounds)


def run(count: int, rounds: int) -> None:
    import redis as redis_py

    from tasks.celeryapp import app

    app.loader.import_default_modules()
    app.conf.task_send_sent_event = True  # the configuration the front had before
    client = redis_py.Redis.from_url(app.conf.broker_url)
    paths = {"send_task + sent events": through_send_task, "tasks.submit": through_submit}
    figures: dict[str, list[float]] = {name: [] for name in paths}
    for round_no in range(rounds):
        for name, publish in paths.items():
            ms_per_message(publish, app, client, 50, "warm")
            figures[name].append(ms_per_message(publish, app, client, count, f"r{round_no}"))
        say(
            f"round {round_no + 1}/{rounds}: "
            + ", ".join(f"{n} {v[-1]:.3f} ms" for n, v in figures.items())
        )
    medians = {name: statistics.median(values) for name, values in figures.items()}
    print("| path | CPU ms per message (median of rounds) |\n|---|---:|")
    for name, value in medians.items():
        print(f"| {name} | {value:.3f} |")
    base, ours = medians.values()
    print(f"\ntasks.submit / send_task: {ours / base:.2f}")


if __name__ == "__main__":
    main()
