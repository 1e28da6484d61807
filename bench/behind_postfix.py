"""Mail through a private Postfix, scanned two ways that take turns on one stack: mailscan's
milter front (``smtpd_milters``) and Debian's amavisd-new as Postfix's ``content_filter``.

    apt-get install --no-install-recommends amavisd-new      # once
    .venv/bin/python -m bench.behind_postfix [--corpora generated,sa-public]
        [--concurrency 2,4] [--messages 100] [--rounds 4] [--keep-var]

One Postfix (tests/postfix_instance.py: its own folder, loopback ports, never the machine's
own) has two smtpds for clients: one with the README's milter lines, handing each message to
``mailscan milter``; one with ``content_filter`` to amavisd (as bench.classic runs it, but
discarding viruses, as it must after the queue), which hands mail back to Postfix's
reinjection smtpd (the README's recipe). Both deliver to the same next hop, which keeps
nothing and counts what it takes: a path's msg/s is messages at the next hop per second, from
the first one sent to the last one there. Each round is a block of each path (AB, BA, ...),
the same messages, on the same clamd and spamd. At each client count the stack is started
anew with that many spamd children, pool processes and amavisd children.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import cpu
from bench.amavisd import amavisd_service
from bench.arguments import listed, whole
from bench.classic import check_corpora, samples_of
from bench.load import closed_loop, say
from bench.nexthop import read_count
from bench.phases import smtp_work
from bench.postfix_paths import MILTER, PATHS, PostfixPaths, start_paths
from bench.stacks import BenchStack, Plan, running
from bench.suite import CORPORA, RESULTS_DIR
from mailserver.supervisor.services import Service, binary
from tasks.errors import StackError

WARMUP_MESSAGES = 4
QUIET_S = 10.0  # no new mail at the next hop for this long: the rest is not coming
POLL_S = 0.02


def main() -> None:
    args = _arguments()
    try:
        amavisd = binary("amavisd", "amavisd-new")
    except StackError:
        sys.exit("amavisd not found: apt-get install --no-install-recommends amavisd-new")
    command = shlex.join(["python", "-m", "bench.behind_postfix", *sys.argv[1:]])
    results: dict[str, Any] = {"command": command, "blocks": []}
    for clients in args.concurrency:
        with running(Plan(f"real c={clients}", clients), keep_var=args.keep_var) as bench:
            paths = start_paths(bench, clients, lambda *a: _amavisd(bench, amavisd, *a))
            try:
                for name in args.corpora:
                    results["blocks"] += _turns(bench, paths, name, clients, args)
            finally:
                paths.postfix.stop()
                if args.keep_var:
                    say(f"kept {paths.postfix.root}")
                else:
                    paths.postfix.remove()
    text = report(results["blocks"])
    folder = RESULTS_DIR / f"behind-postfix-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    (folder / "report.md").write_text(text + "\n")
    print(text)
    say(f"written to {folder}")


def _amavisd(bench: BenchStack, amavisd: str, *args: Any) -> Service:
    """amavisd with as many children as clients and mailscan's SpamAssassin size limit: this
    bench compares the ways into Postfix, not the defaults (bench/classic.py does)."""
    return amavisd_service(bench, amavisd, *args, sa_body_limit=bench.settings.spam_max_bytes)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=listed(whole(1, 32)), default=[2, 4])
    parser.add_argument("--corpora", type=listed(str), default=list(CORPORA))
    parser.add_argument("--messages", type=whole(1), default=100, help="per block")
    parser.add_argument("--rounds", type=whole(1), default=4, help="blocks of each path")
    parser.add_argument("--keep-var", action="store_true", help="keep the stack's folder and logs")
    args = parser.parse_args()
    check_corpora(parser, args.corpora)
    return args


def _turns(
    bench: BenchStack, paths: PostfixPaths, name: str, clients: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """A warm-up of each path, then ``args.rounds`` rounds of one block per path."""
    samples = samples_of(name, args.messages * args.rounds + WARMUP_MESSAGES)
    warm, samples = samples[:WARMUP_MESSAGES], samples[WARMUP_MESSAGES:]
    for path in PATHS:
        _block(bench, paths, path, warm, clients, f"w{path[0]}{clients}{name[0]}")
    say(f"{name}: {args.messages} messages per block, {clients} clients, {args.rounds} rounds")
    blocks = []
    for number in range(args.rounds):
        chosen = samples[number * args.messages : (number + 1) * args.messages]
        order = PATHS if number % 2 == 0 else PATHS[::-1]
        for path in order:
            prefix = f"b{path[0]}{clients}{name[0]}{number}"
            block = _block(bench, paths, path, chosen, clients, prefix)
            blocks.append(block | {"corpus": name, "clients": clients, "round": number})
    return blocks


def _block(
    bench: BenchStack,
    paths: PostfixPaths,
    path: str,
    samples: list[Any],
    clients: int,
    prefix: str,
) -> dict[str, Any]:
    """``samples`` sent to ``path``'s smtpd on ``clients`` clients; done when the last one
    that should reach the next hop has (viruses are refused or discarded on either path)."""
    messages = [s.render(f"{prefix}-{i}") for i, s in enumerate(samples)]
    work = smtp_work(bench, messages, paths.ports[path])
    taken_before, _ = read_count(paths.count_file)
    cpu_before = cpu.cpu_by_service(bench.stack, bench.other_groups)
    others = cpu.foreign_scanners(bench.stack)
    started = time.time()
    run = asyncio.run(closed_loop(prefix, work, len(messages), clients, len(messages) * 10.0))
    due = taken_before + sum(
        r.answer.outcome == "250" and samples[r.index].kind != "virus" for r in run.records
    )
    taken, last_at = _await_next_hop(paths.count_file, due)
    used = cpu.cpu_delta(cpu_before, cpu.cpu_by_service(bench.stack, bench.other_groups))
    others = max(others, cpu.foreign_scanners(bench.stack))
    left = paths.await_empty_queue()
    arrived = taken - taken_before
    wall_s = max(last_at - started, run.wall_s) if arrived else run.wall_s
    sent = len(run.records)
    say(f"  {path}: {arrived} of {sent} at the next hop, {arrived / wall_s:.2f} msg/s")
    return {
        "path": path,
        "sent": sent,
        "due": due - taken_before,
        "arrived": arrived,
        "left_in_queue": left,
        "wall_s": wall_s,
        "msg_per_s": arrived / wall_s,
        "replies": dict(Counter(r.answer.reply for r in run.records).most_common(6)),
        "cpu_ms_per_msg": {group: s * 1000 / sent for group, s in used.items()},
        "others": others,
        "load_1m": os.getloadavg()[0],
    }


def _await_next_hop(count_file: Path, due: int) -> tuple[int, float]:
    """The next hop's count and last arrival once it has ``due`` messages, or once no more
    came for QUIET_S."""
    taken, last_at = read_count(count_file)
    quiet_since = time.monotonic()
    while taken < due and time.monotonic() - quiet_since < QUIET_S:
        time.sleep(POLL_S)
        now_taken, last_at = read_count(count_file)
        if now_taken != taken:
            taken, quiet_since = now_taken, time.monotonic()
    return taken, last_at


SCANNING = {MILTER: ("mailscan's own", "postfix"), "amavisd": ("amavisd", "postfix")}
COMMON = ("clamd", "spamd", "next hop", cpu.CLIENT)


def report(blocks: list[dict[str, Any]]) -> str:
    """Per corpus and client count: each path's msg/s over the rounds, the ratio milter ÷
    amavisd per round, and CPU per message by process group."""
    lines = [
        "| corpus | clients | milter msg/s | amavisd msg/s | milter ÷ amavisd (rounds) | "
        "after the other path | CPU ms/msg, milter path | CPU ms/msg, amavisd path |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    cases = sorted({(b["corpus"], b["clients"]) for b in blocks}, key=lambda c: (c[0], c[1]))
    for name, clients in cases:
        mine = [b for b in blocks if (b["corpus"], b["clients"]) == (name, clients)]
        lines.append(_row(name, clients, mine))
    missing = [b for b in blocks if b["arrived"] != b["due"] or b["left_in_queue"]]
    loads = [b["load_1m"] for b in blocks]
    lines += [
        "",
        f"Blocks with mail missing at the next hop or left queued: {len(missing)}. "
        f"Foreign scanners (spamd, clamd, Celery of other stacks): at most "
        f"{max(b['others'] for b in blocks)}; load average at block ends "
        f"{min(loads):.1f}-{max(loads):.1f}.",
    ]
    return "\n".join(lines)


def _row(name: str, clients: int, blocks: list[dict[str, Any]]) -> str:
    rates = {p: [b["msg_per_s"] for b in blocks if b["path"] == p] for p in PATHS}
    ratios = [m / a for m, a in zip(rates[MILTER], rates["amavisd"], strict=True)]
    mean = sum(ratios) / len(ratios)
    spread = ", ".join(f"{r:.2f}" for r in ratios)
    cells = [
        name,
        str(clients),
        f"{_mean(rates[MILTER]):.2f}",
        f"{_mean(rates['amavisd']):.2f}",
        f"**{mean:.2f}** ({spread})",
        f"{_after_other(blocks):.2f}",
        _cpu_cell(blocks, MILTER),
        _cpu_cell(blocks, "amavisd"),
    ]
    return "| " + " | ".join(cells) + " |"


def _after_other(blocks: list[dict[str, Any]]) -> float:
    """milter ÷ amavisd msg/s over only the blocks that follow one of the other path (the
    warm-up ends with amavisd): a path may run slower right after its own block."""
    rates: dict[str, list[float]] = {path: [] for path in PATHS}
    last = PATHS[-1]
    for block in blocks:
        if block["path"] != last:
            rates[block["path"]].append(block["msg_per_s"])
        last = block["path"]
    return _mean(rates[MILTER]) / _mean(rates["amavisd"]) if rates["amavisd"] else 0.0


def _cpu_cell(blocks: list[dict[str, Any]], path: str) -> str:
    """Mean CPU ms per message of each group, over the path's blocks."""
    mine = [b["cpu_ms_per_msg"] for b in blocks if b["path"] == path]
    groups = (*SCANNING[path], *COMMON)
    means = {g: _mean([_group_ms(cpu_ms, g) for cpu_ms in mine]) for g in groups}
    total = sum(means.values())
    return f"total {total:.0f}: " + ", ".join(f"{g} {ms:.1f}" for g, ms in means.items())


def _group_ms(cpu_ms: dict[str, float], group: str) -> float:
    if group == "mailscan's own":
        return sum(cpu_ms.get(g, 0.0) for g in (*cpu.MAILSCAN_GROUPS, MILTER))
    return cpu_ms.get(group, 0.0)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


if __name__ == "__main__":
    main()
