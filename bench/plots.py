"""PNG plots of one suite run, drawn with matplotlib when it is installed (it is not a
dependency of mailscan: `.venv/bin/pip install -e '.[bench]'`). Also runs on its own, to draw
the plots of an earlier run again:

    .venv/bin/python -m bench.plots bench/results/suite-quick-<time>/results.json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cpu import CLIENT
from bench.load import say
from bench.targets import GLUE_RATE_GOAL, pick

COMPONENTS = ("mailserver", "av-worker", "spam-worker", "redis", "clamd", "spamd", CLIENT)
OUTCOME_COLOURS = {"250": "tab:green", "4xx": "tab:orange", "5xx": "tab:purple", "error": "tab:red"}


def draw_all(results: dict[str, Any], out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("plots skipped: matplotlib is not installed (.venv/bin/pip install -e '.[bench]')")
        return []
    drawn = []
    for name, draw in PLOTS.items():
        figure = draw(plt, results)
        if figure is None:
            continue
        figure.tight_layout()
        figure.savefig(out / name, dpi=110)
        plt.close(figure)
        drawn.append(out / name)
    return drawn


def throughput(plt: Any, results: dict[str, Any]) -> Any:
    sweep = pick(results["phases"], scenario="sweep")
    glue = pick(results["phases"], scenario="glue")
    if not sweep and not glue:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for corpus in sorted({p["corpus"] for p in sweep}):
        for path, style in (("baseline", "--"), ("mailscan", "-")):
            points = sorted(
                (p["concurrency"], p["msg_per_s"]) for p in pick(sweep, corpus=corpus, path=path)
            )
            left.plot(*zip(*points, strict=True), style, marker="o", label=f"{path}, {corpus}")
    left.set(
        title="clamd + spamd: throughput",
        xlabel="concurrency (clients = pool size)",
        ylabel="msg/s",
    )
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    if glue:
        points = sorted((p["concurrency"], p["msg_per_s"]) for p in glue)
        right.plot(
            *zip(*points, strict=True),
            "-",
            marker="o",
            color="tab:green",
            label="glue only (stub plugins)",
        )
        right.axhline(
            GLUE_RATE_GOAL, color="grey", linestyle=":", label=f"target {GLUE_RATE_GOAL:.0f} msg/s"
        )
        right.set_xscale("log", base=2)
        right.legend(fontsize=8)
    right.set(
        title="glue only: throughput", xlabel="clients (pools: 2 processes each)", ylabel="msg/s"
    )
    right.set_ylim(bottom=0)
    return figure


def latency(plt: Any, results: dict[str, Any]) -> Any:
    phases = [
        p
        for p in results["phases"]
        if p["scenario"] in ("sweep", "latency") and p["corpus"] == "generated"
    ]
    if not phases:
        return None
    figure, axis = plt.subplots(figsize=(11, 4.2))
    width = 0.27
    for offset, key in enumerate(("p50", "p90", "p99")):
        xs = [i + (offset - 1) * width for i in range(len(phases))]
        axis.bar(xs, [p["latency_ms"][key] for p in phases], width, label=key)
    axis.set_xticks(
        range(len(phases)), [_short(p) for p in phases], rotation=30, ha="right", fontsize=8
    )
    axis.set(title="latency percentiles, generated corpus", ylabel="ms")
    axis.legend(fontsize=8)
    return figure


def _short(phase: dict[str, Any]) -> str:
    return phase["label"].replace(" generated", "")


def cpu(plt: Any, results: dict[str, Any]) -> Any:
    phases = [
        p
        for p in results["phases"]
        if p["scenario"] in ("sweep", "glue") and p["corpus"] == "generated"
    ]
    if not phases:
        return None
    figure, axis = plt.subplots(figsize=(11, 4.6))
    bottoms = [0.0] * len(phases)
    for component in COMPONENTS:
        values = [p["cpu_ms_per_msg"].get(component, 0.0) for p in phases]
        axis.bar(range(len(phases)), values, 0.6, bottom=bottoms, label=component)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    axis.set_xticks(
        range(len(phases)), [_short(p) for p in phases], rotation=30, ha="right", fontsize=8
    )
    axis.set(
        title="CPU ms per message per process group, generated corpus", ylabel="CPU ms / message"
    )
    axis.legend(fontsize=8, ncol=4)
    return figure


def overload(plt: Any, results: dict[str, Any]) -> Any:
    phase = results.get("overload")
    if not phase:
        return None
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    for outcome, colour in OUTCOME_COLOURS.items():
        mine = [r for r in phase["records"] if r[3] == outcome]
        if mine:
            top.hist(
                [r[1] for r in mine],
                bins=range(0, int(max(r[1] for r in phase["records"])) + 2),
                color=colour,
                alpha=0.7,
                label=outcome,
            )
            middle.scatter(
                [r[1] for r in mine], [r[2] for r in mine], s=4, color=colour, label=outcome
            )
    unscanned = set(phase.get("spam_unscanned", []))
    marked = [r for r in phase["records"] if r[0] in unscanned]
    if marked:
        label = "250 without spam verdict"
        middle.scatter(
            [r[1] for r in marked], [r[2] for r in marked], s=4, color="tab:brown", label=label
        )
    middle.legend(fontsize=8)
    drop = phase["segments"][0][1]
    for axis in (top, middle, bottom):
        axis.axvline(drop, color="grey", linestyle=":")
    top.set(title="overload: 150% of capacity, then 50% (dotted line)", ylabel="messages sent / s")
    top.legend(fontsize=8)
    middle.set(ylabel="latency s (by send time)")
    times = [s["t"] for s in phase["samples"]]
    for key in ("queue av", "queue spam", "open"):
        bottom.plot(
            times,
            [s.get(key, 0) for s in phase["samples"]],
            label=key.replace("open", "open SMTP sessions"),
        )
    bottom.set(xlabel="seconds from the start", ylabel="count")
    bottom.legend(fontsize=8)
    return figure


def sizes(plt: Any, results: dict[str, Any]) -> Any:
    steps = results.get("sizes", [])
    if not steps:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    mb = [s["bytes"] / 1e6 for s in steps]
    for path in ("baseline", "mailscan"):
        left.plot(mb, [s[path]["latency_ms"]["p50"] for s in steps], marker="o", label=path)
    first = steps[0]["mailscan"]["latency_ms"]["p50"]
    left.plot(mb, [first * m / mb[0] for m in mb], ":", color="grey", label="∝ size from the first")
    left.set(
        xscale="log",
        yscale="log",
        title="time per message (p50, one client)",
        xlabel="message MB",
        ylabel="ms",
    )
    left.legend(fontsize=8)
    for name in ("mailserver", "av-worker", "spam-worker", "redis", "clamd"):
        for role in ("leader", "child"):
            values = [s["memory_mb"].get(name, {}).get(role) for s in steps]
            if any(values):
                label = name if role == "leader" else f"{name} (largest child)"
                right.plot(mb, [v or 0 for v in values], marker=".", label=label)
    right.set(
        xscale="log", title="peak memory (VmHWM) after each size", xlabel="message MB", ylabel="MiB"
    )
    right.legend(fontsize=7)
    return figure


PLOTS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "throughput.png": throughput,
    "latency.png": latency,
    "cpu.png": cpu,
    "overload.png": overload,
    "sizes.png": sizes,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        say("usage: python -m bench.plots RESULTS.json")
        return 2
    path = Path(argv[0])
    drawn = draw_all(json.loads(path.read_text()), path.parent)
    for image in drawn:
        say(f"drew {image}")
    return 0 if drawn else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
