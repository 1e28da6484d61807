"""The first benchmark's command, kept for the figures in bench/README.md that name it: one
stack at one concurrency, mailscan against clamd and spamd called directly, on the real mail
of the SpamAssassin public corpus. It is now the ``sweep`` scenario of ``bench.suite``:

    .venv/bin/python -m bench.smtp_bench --messages 200 --concurrency 2
    # is
    .venv/bin/python -m bench.suite --scenarios sweep --corpora sa-public \\
        --concurrency 2 --messages 200
"""

from __future__ import annotations

import argparse
import sys

from bench import suite
from bench.arguments import whole


def translate(argv: list[str] | None) -> list[str]:
    parser = argparse.ArgumentParser(prog="python -m bench.smtp_bench", description=__doc__)
    parser.add_argument("--messages", type=whole(10, 20_000), default=200)
    parser.add_argument("--concurrency", type=whole(1, 32), default=2)
    parser.add_argument("--corpus", default=suite.DEFAULT_CORPUS)
    parser.add_argument("--keep-var", action="store_true")
    args = parser.parse_args(argv)
    translated = [
        "--scenarios", "sweep", "--corpora", "sa-public", "--corpus", args.corpus,
        "--concurrency", str(args.concurrency), "--messages", str(args.messages),
    ]  # fmt: skip
    return translated + (["--keep-var"] if args.keep_var else [])


if __name__ == "__main__":
    sys.exit(suite.main(translate(None)))
