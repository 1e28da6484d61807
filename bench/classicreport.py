"""The report of bench/classic.py: per corpus and client count, mailscan ÷ amavisd-new (the
mean of the rounds' ratios and their range), each path's p50/p99 over all rounds, the
replies that were not 250, and CPU per message by process group."""

from __future__ import annotations

import statistics
from typing import Any

from bench.cpu import CLIENT, MAILSCAN_GROUPS
from bench.phases import latency_ms

CLASSIC, MAILSCAN, BASELINE = "amavisd", "mailscan", "baseline"
CPU_SHOWN = (
    ("mailscan's own", "mailscan's own"),
    ("front", "mailserver"),
    ("av pool", "av-worker"),
    ("spam pool", "spam-worker"),
    ("Redis", "redis"),
    ("amavisd", CLASSIC),
    ("clamd", "clamd"),
    ("spamd", "spamd"),
    ("next hop", "next hop"),
    ("client", CLIENT),
)


def report(results: dict[str, Any]) -> str:
    phases = results["phases"]
    cases = sorted({(p["corpus"], p["concurrency"]) for p in phases})
    rounds = 1 + max((p["round"] for p in phases), default=0)
    lines = [
        f"`{results['command']}`: {rounds} rounds, the paths in turns. "
        f"mailscan as sized: {'; '.join(results['sizing'])}. amavisd-new: its defaults "
        "($max_servers 2, $max_requests 20), Debian's 200 KiB SpamAssassin limit.",
        "",
        "| corpus | clients | amavisd msg/s | mailscan msg/s | mailscan ÷ amavisd, mean (range) "
        "| scanners alone ÷ amavisd | p50 / p99 ms, amavisd | p50 / p99 ms, mailscan "
        "| not 250 (amavisd / mailscan) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [_ratio_row(phases, name, clients) for name, clients in cases]
    lines += ["", "CPU ms per message, means over the rounds:", ""]
    lines += [
        "| corpus | clients | path | " + " | ".join(label for label, _ in CPU_SHOWN) + " |",
        "| --- | ---: | --- |" + " ---: |" * len(CPU_SHOWN),
    ]
    for name, clients in cases:
        lines += [_cpu_row(phases, name, clients, path) for path in (BASELINE, CLASSIC, MAILSCAN)]
    others = max((p["others"] for p in phases), default=0)
    lines += ["", f"Foreign scanners seen beside the stack (other stacks, a test run): {others}."]
    return "\n".join(lines)


def _of(phases: list[dict[str, Any]], name: str, clients: int, path: str) -> list[dict[str, Any]]:
    case = (name, clients, path)
    chosen = [p for p in phases if (p["corpus"], p["concurrency"], p["path"]) == case]
    return sorted(chosen, key=lambda p: p["round"])


def _ratios(phases: list[dict[str, Any]], name: str, clients: int, path: str) -> list[float]:
    """``path`` ÷ amavisd per round."""
    mine, theirs = _of(phases, name, clients, path), _of(phases, name, clients, CLASSIC)
    return [m["msg_per_s"] / t["msg_per_s"] for m, t in zip(mine, theirs, strict=True)]


def _ratio_row(phases: list[dict[str, Any]], name: str, clients: int) -> str:
    ratios = _ratios(phases, name, clients, MAILSCAN)
    alone = _ratios(phases, name, clients, BASELINE)
    cells = [
        name,
        str(clients),
        _mean_rate(_of(phases, name, clients, CLASSIC)),
        _mean_rate(_of(phases, name, clients, MAILSCAN)),
        f"**{statistics.mean(ratios):.2f}** ({min(ratios):.2f}-{max(ratios):.2f})",
        f"{statistics.mean(alone):.2f}",
        _percentiles(_of(phases, name, clients, CLASSIC)),
        _percentiles(_of(phases, name, clients, MAILSCAN)),
        f"{_not_250(_of(phases, name, clients, CLASSIC))} / "
        f"{_not_250(_of(phases, name, clients, MAILSCAN))}",
    ]
    return "| " + " | ".join(cells) + " |"


def _mean_rate(rounds: list[dict[str, Any]]) -> str:
    return f"{statistics.mean(p['msg_per_s'] for p in rounds):.1f}"


def _percentiles(rounds: list[dict[str, Any]]) -> str:
    """p50 / p99 over every message of every round."""
    figures = latency_ms([record[2] for p in rounds for record in p["records"]])
    return f"{figures['p50']:.0f} / {figures['p99']:.0f}"


def _not_250(rounds: list[dict[str, Any]]) -> str:
    """How many replies were not 250, by kind (4xx, 5xx, error), or 0."""
    counts: dict[str, int] = {}
    for phase in rounds:
        for outcome, count in phase["outcomes"].items():
            if outcome != "250":
                counts[outcome] = counts.get(outcome, 0) + count
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "0"


def _cpu_row(phases: list[dict[str, Any]], name: str, clients: int, path: str) -> str:
    rounds = _of(phases, name, clients, path)
    cells = [name, str(clients), path]
    for _, group in CPU_SHOWN:
        cells.append(f"{statistics.mean(_cpu(p, group) for p in rounds):.1f}")
    return "| " + " | ".join(cells) + " |"


def _cpu(phase: dict[str, Any], group: str) -> float:
    cpu = phase["cpu_ms_per_msg"]
    if group == "mailscan's own":
        return sum(cpu.get(g, 0.0) for g in MAILSCAN_GROUPS)
    return cpu.get(group, 0.0)
