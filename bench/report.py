"""The Markdown report of one suite run, from its results."""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

from bench.checks import GOOD_FATES
from bench.corpus import Sample
from bench.cpu import CLIENT
from bench.phases import percentile
from bench.sizes import added_growth_exponent, growth_exponent
from bench.targets import all_targets, pick

COMPONENTS = ("mailserver", "av-worker", "spam-worker", "redis", "clamd", "spamd", CLIENT)
SMALL_BYTES = 30_000


def corpus_stats(samples: list[Sample], seed: int) -> dict[str, Any]:
    sizes = [len(s.render(f"stats-{seed}-{i}")) for i, s in enumerate(samples)]
    return {
        "messages": len(samples),
        "kinds": dict(Counter(s.kind for s in samples)),
        "bytes p50/p90/p99/max": [percentile(sizes, p) for p in (50, 90, 99, 100)],
        "share under 30 KB": sum(n < SMALL_BYTES for n in sizes) / len(sizes),
    }


def render(results: dict[str, Any], images: list[str]) -> str:
    sections = (
        _head,
        _targets,
        _throughput,
        _glue,
        _latency,
        _overload,
        _sizes,
        _cpu,
        _checks,
    )
    lines = [line for section in sections for line in section(results)]
    lines += [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---", *["---:"] * (len(header) - 1)]
    return [_row(header), _row(align), *(_row(r) for r in rows), ""]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _ms(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.0f}"


def _head(results: dict[str, Any]) -> list[str]:
    machine = results.get("machine", {})
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        f"# mailscan benchmark suite, {results['profile']['name']}, {when}",
        "",
        f"Command: `{results['command']}` ({results.get('duration_s', 0) / 60:.1f} min)",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()),
        "",
    ]
    for name, stats in results["corpus"].items():
        sizes = "/".join(f"{b / 1024:.0f}" for b in stats["bytes p50/p90/p99/max"])
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats["kinds"].items()))
        lines.append(
            f"- corpus {name}: {stats['messages']} messages ({kinds}); KiB p50/p90/p99/max "
            f"{sizes}; {stats['share under 30 KB']:.0%} under 30 KB"
        )
    return [*lines, ""]


def _targets(results: dict[str, Any]) -> list[str]:
    mark = {True: "yes", False: "**no**", None: "n/a"}
    rows = [[t.name, t.measured, t.goal, mark[t.met]] for t in all_targets(results)]
    return ["## Targets", "", *_table(["target", "measured", "goal", "met"], rows), *OVER_RUNS]


# Said under every run's targets: a reader of one report should not take its p99 for settled.
OVER_RUNS = [
    "One run's figures move from run to run, the p99 gap by hundreds of milliseconds "
    '(bench/README.md, "The p99 target cannot be decided by one run"). Read them over runs: '
    "`python -m bench.spread bench/results/suite-*/results.json`.",
    "",
]


def _latency_cells(phase: dict[str, Any]) -> list[str]:
    figures = phase["latency_ms"]
    return [_ms(figures["p50"]), _ms(figures["p99"])]


def _throughput(results: dict[str, Any]) -> list[str]:
    rows = []
    for mailscan in pick(results["phases"], scenario="sweep", path="mailscan"):
        same = dict(
            scenario="sweep", corpus=mailscan["corpus"], concurrency=mailscan["concurrency"]
        )
        base = pick(results["phases"], path="baseline", **same)[0]
        ratio = mailscan["msg_per_s"] / base["msg_per_s"] if base["msg_per_s"] else math.nan
        rows.append(
            [
                str(mailscan["concurrency"]),
                mailscan["corpus"],
                f"{base['msg_per_s']:.1f}",
                f"{mailscan['msg_per_s']:.1f}",
                f"**{ratio:.2f}**",
                *_latency_cells(base),
                *_latency_cells(mailscan),
                f"{base['answered']}/{base['planned']}",
                _outcomes(mailscan),
            ]
        )
    header = [
        "c",
        "corpus",
        "baseline msg/s",
        "mailscan msg/s",
        "ratio",
        "baseline p50 ms",
        "baseline p99 ms",
        "mailscan p50 ms",
        "mailscan p99 ms",
        "baseline answered",
        "mailscan replies",
    ]
    intro = [
        "## Throughput at fixed concurrency (closed loop)",
        "",
        "c clients; the stack's pools have c processes each and spamd c children.",
    ]
    return [*intro, "", *_table(header, rows)] if rows else []


def _outcomes(phase: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(phase["outcomes"].items()))


def _glue(results: dict[str, Any]) -> list[str]:
    rows = []
    for phase in pick(results["phases"], scenario="glue"):
        cpu = phase["cpu_ms_per_msg"]
        rows.append(
            [
                str(phase["concurrency"]),
                f"{phase['msg_per_s']:.0f}",
                *_latency_cells(phase),
                f"{phase['mailscan_cpu_ms_per_msg']:.2f}",
                *(
                    f"{cpu.get(g, 0):.2f}"
                    for g in ("mailserver", "av-worker", "spam-worker", "redis")
                ),
                f"{cpu.get(CLIENT, 0):.2f}",
                _outcomes(phase),
            ]
        )
    header = [
        "clients",
        "msg/s",
        "p50 ms",
        "p99 ms",
        "mailscan CPU ms/msg",
        "front",
        "av pool",
        "spam pool",
        "redis",
        "bench client",
        "replies",
    ]
    intro = ["## Glue only: stub plugins in both pools (2 processes each)", ""]
    return [*intro, *_table(header, rows)] if rows else []


def _latency(results: dict[str, Any]) -> list[str]:
    phases = pick(results["phases"], scenario="latency")
    phases += pick(results["phases"], scenario="latency-own")
    rows = [
        [
            p["path"] if p["scenario"] == "latency" else f"{p['path']}, 80% of its own capacity",
            f"{p['rate']:.1f}",
            f"{p['answered']}",
            f"{p['msg_per_s']:.1f}",
            *(_ms(p["latency_ms"][k]) for k in ("p50", "p90", "p99", "max")),
            _outcomes(p),
        ]
        for p in phases
    ]
    capacity = results.get("capacity_msg_per_s", math.nan)
    intro = [
        "## Latency at 80% of capacity (fixed arrival rate, Poisson)",
        "",
        f"Capacity: {capacity:.1f} msg/s, mailscan's closed-loop rate at the first "
        "concurrency on the generated corpus; both paths get the same arrivals, cut into "
        "spans of equal time that the paths take in turns (each span starts idle). The "
        "baseline also runs at 80% of its own closed-loop rate (last row).",
        "",
    ]
    header = [
        "path",
        "offered msg/s",
        "answered",
        "msg/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "outcomes",
    ]
    return [*intro, *_table(header, rows)] if rows else []


def _overload(results: dict[str, Any]) -> list[str]:
    phase = results.get("overload")
    if not phase:
        return []
    (high, high_s), (low, low_s) = phase["segments"]
    depth = max(
        (s.get("queue spam", 0) + s.get("queue av", 0) for s in phase["samples"]), default=0
    )
    fates = ", ".join(
        f"{k} {v}" + ("" if k in GOOD_FATES else " (**bad**)")
        for k, v in sorted(phase["fates"].items())
    )
    return [
        "## Overload",
        "",
        f"{high:.1f} msg/s for {high_s:.0f} s (150%), then {low:.1f} msg/s for {low_s:.0f} s "
        f"(50%); scan deadline {phase['scan_deadline_s']:g} s; {phase['planned']} messages "
        f"offered, {phase['shed']} not sent (client limit on open sessions).",
        "",
        f"- replies: {_outcomes(phase)}; at stage: {phase['stages']}",
        f"- most common replies: {phase['replies']}",
        f"- fates (reply and Maildir): {fates}",
        f"- 250 without a spam verdict (X-Spam-Status: Unknown): {len(phase['spam_unscanned'])}",
        f"- latency ms p50/p99/max: {_ms(phase['latency_ms']['p50'])} / "
        f"{_ms(phase['latency_ms']['p99'])} / {_ms(phase['latency_ms']['max'])}",
        f"- deepest queues (av + spam jobs waiting): {depth:.0f}; queues empty "
        + (
            f"{phase['drained_after_s']:.0f} s after the last answer"
            if phase["drained_after_s"] is not None
            else "**not** within the limit"
        ),
        "",
    ]


def _sizes(results: dict[str, Any]) -> list[str]:
    steps = results.get("sizes", [])
    if not steps:
        return []
    rows = []
    for step in steps:
        mb = step["bytes"] / 1e6
        base, mine = (step[p]["latency_ms"]["p50"] for p in ("baseline", "mailscan"))
        memory = step["memory_mb"]
        rows.append(
            [
                f"{mb:.2f}",
                _ms(base),
                _ms(mine),
                f"{mine / mb:.0f}",
                _outcomes(step["mailscan"]),
                *(
                    _memory(memory.get(name, {}))
                    for name in ("mailserver", "av-worker", "spam-worker", "redis", "clamd")
                ),
            ]
        )
    header = [
        "MB",
        "baseline ms",
        "mailscan ms",
        "mailscan ms/MB",
        "replies",
        "front MiB",
        "av pool MiB (main / largest child)",
        "spam pool MiB",
        "redis MiB",
        "clamd MiB",
    ]
    k_base, k_mine = (growth_exponent(steps, p) for p in ("baseline", "mailscan"))
    intro = [
        "## Message size (one client, p50 time per message; peak memory VmHWM after each size)",
        "",
        f"Largest k in time ∝ size^k between neighbouring sizes: baseline {k_base:.2f}, "
        f"mailscan {k_mine:.2f}; of the time mailscan adds to the baseline's "
        f"{added_growth_exponent(steps):.2f}.",
        "",
    ]
    return [*intro, *_table(header, rows)]


def _memory(roles: dict[str, float]) -> str:
    if "child" in roles:
        return f"{roles.get('leader', 0):.0f} / {roles['child']:.0f}"
    return f"{roles.get('leader', 0):.0f}"


def _cpu(results: dict[str, Any]) -> list[str]:
    shown = ("sweep", "glue", "latency", "latency-own")
    phases = [p for p in results["phases"] if p["scenario"] in shown]
    rows = [
        [
            p["label"],
            *(f"{p['cpu_ms_per_msg'].get(c, 0):.1f}" for c in COMPONENTS),
            f"{sum(p['cpu_ms_per_msg'].values()):.1f}",
            f"{p['mailscan_cpu_ms_per_msg']:.1f}",
            str(p["others"]),
        ]
        for p in phases
    ]
    header = [
        "phase",
        "front",
        "av pool",
        "spam pool",
        "redis",
        "clamd",
        "spamd",
        "bench client",
        "total",
        "mailscan's own",
        "foreign scanners",
    ]
    intro = [
        "## CPU ms per message, per process group (from /proc)",
        "",
        "mailscan's own = front + both pools + Redis. On the baseline path the bench client "
        "does the clamd and spamd client work the pools do on the mailscan path. "
        "Foreign scanners: spamd, clamd or Celery processes not of this run (0 = quiet).",
        "",
    ]
    return [*intro, *_table(header, rows)]


def _checks(results: dict[str, Any]) -> list[str]:
    lines = ["## Checks", ""]
    for phase in results["phases"]:
        bad = {k: v for k, v in phase.get("fates", {}).items() if k not in GOOD_FATES}
        if bad:
            lines.append(f"- {phase['label']}: **{bad}**")
        if phase.get("spam_unscanned"):
            lines.append(f"- {phase['label']}: {len(phase['spam_unscanned'])} without spam verdict")
    sweep = pick(results["phases"], scenario="sweep", path="mailscan", corpus="generated")
    if sweep:
        lines.append(f"- outcome per kind ({sweep[0]['label']}): {sweep[0]['by_kind']}")
        lines.append(
            f"- spam flagged in the Maildir ({sweep[0]['label']}): {sweep[0]['spam_flagged']}"
        )
    for stack, logs in results.get("logs", {}).items():
        totals = {name: t["total"] for name, t in logs["trouble"].items() if t["total"]}
        died = ", ".join(logs["died"]) or "none"
        lines.append(
            f"- {stack}: services died: {died}; warning/error log lines: {totals or 'none'}"
        )
    return [*lines, ""]
