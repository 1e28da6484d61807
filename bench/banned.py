"""What the banned-attachment engine costs per message, on both corpora: the engine as the
av pool runs it (libmagic, archives opened), against a baseline measured in the same run on
the same messages, taking turns: parsing the message into its MIME parts with the standard
library, which any engine that looks at attachments pays. One process, warm, no daemon.

    .venv/bin/python -m bench.banned [--generated 600] [--rounds 3]
"""

from __future__ import annotations

import argparse
import email
import email.policy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench import corpus
from bench.suite import DEFAULT_CORPUS
from tasks.plugins.banned import BannedPlugin
from tasks.settings import load_settings


def _timed(work: Callable[[bytes], object], messages: list[bytes]) -> list[float]:
    took = []
    for message in messages:
        started = time.perf_counter()
        work(message)
        took.append((time.perf_counter() - started) * 1000)
    return took


def _parse(message: bytes) -> None:
    for _ in email.message_from_bytes(message, policy=email.policy.compat32).walk():
        pass


def measure(name: str, messages: list[bytes], rounds: int) -> str:
    engine = BannedPlugin(load_settings({}), "av")
    banned = sum(engine.scan(m).status == "banned" for m in messages)  # warms libmagic too
    own, base = [], []
    for _ in range(rounds):  # in turns, so the machine's drift hits both alike
        own += _timed(engine.scan, messages)
        base += _timed(_parse, messages)
    mean_own, mean_base = statistics.fmean(own), statistics.fmean(base)
    p99 = statistics.quantiles(own, n=100)[98]
    return (f"{name}: {len(messages)} messages ({banned} banned), engine {mean_own:.3f} ms "
            f"mean, p99 {p99:.2f} ms; MIME parse {mean_base:.3f} ms; engine / parse "
            f"{mean_own / mean_base:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.banned", description=__doc__)
    parser.add_argument("--generated", type=int, default=600, help="generated messages")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=Path(DEFAULT_CORPUS))
    args = parser.parse_args()
    sets = {
        "sa-public": corpus.real(args.corpus),
        "generated": corpus.generated(args.generated, seed=1),
    }
    for name, samples in sets.items():
        messages = [s.render(f"{name}-{n}") for n, s in enumerate(samples)]
        print(measure(name, messages, args.rounds), flush=True)


if __name__ == "__main__":
    main()
