"""spamd with SpamAssassin's body rules compiled to native code (sa-compile) against the same
spamd without them: messages a second and spamd's CPU per message at C clients, the two
taking turns in rounds on the same messages (new copies for each). The uncompiled spamd reads
a copy of the site configuration without the ``.pre`` files that load the Rule2XSBody plugin.
Both are started as mailscan starts spamd, with C children, and called through the
spamassassin plugin's own exchange, one plugin per client thread.

    apt-get install --no-install-recommends sa-compile     # once; scripts/bootstrap does it
    .venv/bin/python -m bench.spamd_rules [--corpus generated|sa-public] [--concurrency 2]
                                          [--messages 80] [--rounds 6]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from bench.arguments import whole
from bench.cpu import cpu_by_service, cpu_delta
from bench.floor import samples_of
from bench.load import say
from bench.stacks import scratch
from mailserver.spamrules import SITE_CONFIG, body_rules_compiled, files_loading_plugin
from mailserver.stack import Stack
from tasks.plugins.spamassassin import SpamassassinPlugin

VARIANTS = ("uncompiled", "compiled")


class Round(NamedTuple):
    msg_per_s: float
    spamd_ms: float  # spamd's CPU per message
    spam: int  # spam verdicts


Figures = dict[str, list[Round]]  # per variant, its rounds in order


def main() -> None:
    args = _arguments()
    if not body_rules_compiled():
        raise SystemExit("bench: the body rules are not compiled here: install sa-compile first")
    samples = samples_of(args.corpus, args.messages * args.rounds)
    figures: Figures = {variant: [] for variant in VARIANTS}
    with _spamds(args.concurrency) as stacks:
        for number in range(args.rounds):
            batch = samples[number * args.messages : (number + 1) * args.messages]
            order = VARIANTS if number % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                messages = [s.render(f"r{number}-{variant}-{n}") for n, s in enumerate(batch)]
                done = _round(stacks[variant], messages, args.concurrency)
                figures[variant].append(done)
                say(f"round {number + 1}/{args.rounds} {variant}: {done.msg_per_s:.2f} msg/s, "
                    f"spamd {done.spamd_ms:.1f} ms per message, {done.spam} spam")  # fmt: skip
    print(report(figures, args))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=("generated", "sa-public"), default="generated")
    parser.add_argument(
        "--concurrency", type=whole(1, 32), default=2, help="clients and spamd children"
    )
    parser.add_argument("--messages", type=whole(1), default=80, help="per round and spamd")
    parser.add_argument("--rounds", type=whole(1), default=6)
    args = parser.parse_args()
    return args


@contextlib.contextmanager
def _spamds(children: int) -> Iterator[dict[str, Stack]]:
    """One spamd per variant, each a scratch stack of its own (the second one's port is the
    one the kernel hands out)."""
    with contextlib.ExitStack() as started:
        yield {
            variant: started.enter_context(
                scratch(
                    ["spamd"],
                    before_start=_without_plugin if variant == "uncompiled" else None,
                    spam_concurrency=str(children),
                )
            )
            for variant in VARIANTS
        }


def _without_plugin(stack: Stack) -> None:
    """spamd reads a copy of the site configuration without the plugin's ``.pre`` files."""
    site = stack.settings.var_dir / "site-uncompiled"
    shutil.copytree(SITE_CONFIG, site)
    for pre in files_loading_plugin(site):
        pre.unlink()
    stack.services["spamd"].argv.insert(1, f"--siteconfigpath={site}")


def _round(stack: Stack, messages: list[bytes], clients: int) -> Round:
    scanners = threading.local()

    def scan(message: bytes) -> bool:
        if not hasattr(scanners, "plugin"):
            scanners.plugin = SpamassassinPlugin(stack.settings)
        return scanners.plugin.scan(message).status == "spam"

    small = [m for m in messages if len(m) <= stack.settings.spam_max_bytes]  # as the plugin
    before, started = cpu_by_service(stack), time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        spam = sum(pool.map(scan, small))
    wall = time.perf_counter() - started
    used = cpu_delta(before, cpu_by_service(stack))
    return Round(len(small) / wall, 1000 * used["spamd"] / len(small), spam)


def report(figures: Figures, args: argparse.Namespace) -> str:
    plain, compiled = figures["uncompiled"], figures["compiled"]
    pairs = list(zip(plain, compiled, strict=True))  # the same messages in each pair
    rate_ratio = [c.msg_per_s / p.msg_per_s for p, c in pairs]
    cpu_ratio = [c.spamd_ms / p.spamd_ms for p, c in pairs]
    lines = [
        f"spamd, {args.corpus} mail, {args.concurrency} clients, {args.rounds} rounds of "
        f"{args.messages} messages per spamd, taking turns",
        "",
        "| body rules | msg/s, median | spamd CPU ms/msg, median | spam verdicts |",
        "|---|---:|---:|---:|",
    ]
    for variant, rounds in figures.items():
        rate = statistics.median(r.msg_per_s for r in rounds)
        cpu = statistics.median(r.spamd_ms for r in rounds)
        lines.append(f"| {variant} | {rate:.2f} | {cpu:.1f} | {sum(r.spam for r in rounds)} |")
    lines += [
        "",
        f"compiled / uncompiled, per round: msg/s {_spread(rate_ratio)}; "
        f"spamd CPU {_spread(cpu_ratio)}",
    ]
    return "\n".join(lines)


def _spread(ratios: list[float]) -> str:
    return f"median {statistics.median(ratios):.2f} (from {min(ratios):.2f} to {max(ratios):.2f})"


if __name__ == "__main__":
    main()
