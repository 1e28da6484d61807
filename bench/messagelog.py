"""The message log's searches on SQLite at scale: fill a log with ``--rows`` outcomes spread
over the retention period, then time each search field (a page of 50, newest first) on
values that exist. The goal: each search under 200 ms with a million rows.

    .venv/bin/python -m bench.messagelog --rows 1000000    # fills once, then searches
    .venv/bin/python -m bench.messagelog --rows 1000000 --db bench/results/log.db --keep

A filled database given with ``--db`` and ``--keep`` is searched again without filling.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.arguments import whole
from mailserver.messagelog.database import open_engine
from mailserver.messagelog.query import Criteria
from mailserver.messagelog.record import MessageRecord, RecipientOutcome
from mailserver.messagelog.schema import messages
from mailserver.messagelog.store import MessageStore

BATCH = 5000
DAYS = 30
VERDICTS = ["clean"] * 80 + ["spam"] * 15 + ["virus"] * 3 + ["failed"] * 2


def _recipient(rng: random.Random) -> RecipientOutcome:
    return RecipientOutcome(f"user{rng.randrange(50_000)}@example.test", "delivered", "250 Ok")


def _record(n: int, rows: int, now: float, rng: random.Random) -> MessageRecord:
    """The ``n``-th of ``rows`` outcomes, spread evenly over the retention period."""
    verdict = rng.choice(VERDICTS)
    rcpts = tuple(_recipient(rng) for _ in range(rng.choice((1, 1, 1, 2, 3))))
    spam = {"pool": "spam", "status": "spam" if verdict == "spam" else "ham", "verdicts": [
        {"engine": "spamassassin", "status": "ham", "score": round(rng.uniform(-2, 12), 1),
         "rules": ["BAYES_50", "HTML_MESSAGE", "DKIM_SIGNED"], "elapsed_ms": 80.0}]}  # fmt: skip
    return MessageRecord(
        at=now - DAYS * 86400 * (1 - n / rows),
        spool_id=f"{n:024x}",
        mail_from=f"sender{rng.randrange(20_000)}@example.org",
        recipients=rcpts,
        verdict=verdict,
        action="deliver",
        reason="clean",
        message_id=f"<{n}.{rng.getrandbits(32):x}@example.org>",
        client_ip=f"198.51.{rng.randrange(20)}.{rng.randrange(250)}",
        helo="mail.example.org",
        subject=f"Monthly report {rng.randrange(10_000)}",
        size=rng.randrange(2_000, 200_000),
        verdicts={"av": {"pool": "av", "status": "clean", "verdicts": []}, "spam": spam},
        steps_ms={"spool": 1.2, "queue.av": 3.0, "scan.av": 20.0, "scan.spam": 80.0},
    )


def fill(store: MessageStore, rows: int, seed: int = 7) -> float:
    rng, now, started = random.Random(seed), time.time(), time.monotonic()
    for start in range(0, rows, BATCH):
        batch = range(start, min(rows, start + BATCH))
        store.insert([_record(n, rows, now, rng) for n in batch])
        if start and start % 100_000 == 0:
            print(f"  {start} rows", file=sys.stderr)
    return time.monotonic() - started


def _timed(store: MessageStore, criteria: Criteria) -> tuple[float, int]:
    started = time.perf_counter()
    found = store.search(criteria)
    return (time.perf_counter() - started) * 1000, len(found)


def searches(sample: Callable[[], MessageRecord], now: float) -> dict[str, Callable[[], Criteria]]:
    return {
        "sender": lambda: Criteria(mail_from=sample().mail_from),
        "recipient": lambda: Criteria(rcpt_to=sample().recipients[0].address),
        "message-id": lambda: Criteria(message_id=sample().message_id),
        "client address": lambda: Criteria(client_ip=sample().client_ip),
        "verdict (virus)": lambda: Criteria(verdict="virus"),
        "verdict (spam), last 2 h": lambda: Criteria(verdict="spam", since=now - 7200),
        "time range (1 h, 2 weeks ago)": lambda: Criteria(
            since=now - 14 * 86400, until=now - 14 * 86400 + 3600
        ),
        "sender, last 7 days": lambda: Criteria(
            mail_from=sample().mail_from, since=now - 7 * 86400
        ),
    }


def measure(store: MessageStore, runs: int) -> dict[str, dict[str, float]]:
    with store.engine.connect() as connection:
        count = connection.scalar(select(func.count()).select_from(messages)) or 0
    rng, now = random.Random(11), time.time()

    def sample() -> MessageRecord:
        return store.get(f"{rng.randrange(count):024x}")  # type: ignore[return-value]

    results = {}
    for name, make in searches(sample, now).items():
        timings = [_timed(store, make()) for _ in range(runs)]
        ms = sorted(t for t, _ in timings)
        results[name] = {"median_ms": statistics.median(ms), "max_ms": ms[-1],
                         "found": statistics.mean(n for _, n in timings)}  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=whole(1), default=1_000_000)
    parser.add_argument("--runs", type=whole(1), default=20, help="searches per field")
    parser.add_argument("--db", type=Path, help="the SQLite file (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep a filled --db and reuse it")
    args = parser.parse_args(argv)
    folder = tempfile.TemporaryDirectory(prefix="mailscan-bench-log-")
    path = args.db or Path(folder.name) / "messages.db"
    reuse = args.keep and path.exists()
    store = MessageStore(open_engine(make_url(f"sqlite:///{path}")))
    if not reuse:
        path.unlink(missing_ok=True)
        print(f"filling {args.rows} rows into {path}", file=sys.stderr)
        print(f"filled {args.rows} rows in {fill(store, args.rows):.0f} s "
              f"({path.stat().st_size / 1e6:.0f} MB)")  # fmt: skip
    print(f"{'search':<32}{'median ms':>10}{'max ms':>10}{'rows':>8}")
    for name, figures in measure(store, args.runs).items():
        print(f"{name:<32}{figures['median_ms']:>10.1f}{figures['max_ms']:>10.1f}"
              f"{figures['found']:>8.0f}")  # fmt: skip
    store.close()
    if not args.keep:
        folder.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
