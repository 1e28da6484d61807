"""What each service costs while no mail flows: CPU milliseconds per second of the real
stack (Redis, clamd, spamd, both pools, SMTP front) left alone after it started.

Beside spamd, mailscan passes about ten messages a second, so every millisecond a
service spends per second on its own (polling, heartbeats, timers) weighs a tenth of a
millisecond on each message.

    .venv/bin/python -m bench.idle [--seconds 30] [--settle 5] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import time

from bench.arguments import number, whole
from bench.cpu import MAILSCAN_GROUPS, cpu_by_service, cpu_delta
from bench.load import say
from bench.stacks import Plan, running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=number(0.0), default=30.0, help="the measured window")
    parser.add_argument(
        "--settle", type=number(0.0, above=False), default=5.0, help="wait after the start"
    )
    parser.add_argument(
        "--concurrency", type=whole(1, 32), default=2, help="pool processes per pool"
    )
    args = parser.parse_args()
    with running(Plan(f"real c={args.concurrency}", args.concurrency)) as bench:
        say(f"settling for {args.settle:g} s, then measuring {args.seconds:g} s of no mail")
        time.sleep(args.settle)
        before = cpu_by_service(bench.stack)
        time.sleep(args.seconds)
        used = cpu_delta(before, cpu_by_service(bench.stack))
    print(report(used, args.seconds))


def report(used: dict[str, float], seconds: float) -> str:
    """A markdown table: CPU ms per second of each service, and mailscan's own sum."""
    per_s = {name: 1000 * cpu_s / seconds for name, cpu_s in used.items()}
    own = sum(per_s.get(name, 0.0) for name in MAILSCAN_GROUPS)
    rows = [f"| {name} | {ms:.2f} |" for name, ms in sorted(per_s.items())]
    return "\n".join(
        [
            f"CPU ms per second over {seconds:g} s without mail",
            "",
            "| service | CPU ms/s |",
            "| --- | ---: |",
            *rows,
            f"| mailscan's own ({' + '.join(MAILSCAN_GROUPS)}) | {own:.2f} |",
        ]
    )


if __name__ == "__main__":
    main()
