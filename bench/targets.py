"""The targets of issue #6, each a figure measured in one run of the suite."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench.checks import GOOD_FATES
from bench.latency import recovery
from bench.sizes import added_growth_exponent, growth_exponent

RATIO_GOAL = 0.95
GLUE_RATE_GOAL = 300.0
GLUE_CPU_GOAL_MS = 5.0
P99_EXTRA_GOAL_MS = 50.0


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    goal: str
    met: bool | None  # None: reported, no pass/fail


def all_targets(results: dict[str, Any]) -> list[Target]:
    return [
        *ratio_targets(results["phases"]),
        *glue_targets(results["phases"]),
        *latency_targets(results["phases"]),
        *overload_targets(results),
        *size_targets(results.get("sizes", [])),
    ]


def pick(phases: list[dict[str, Any]], **wanted: Any) -> list[dict[str, Any]]:
    return [p for p in phases if all(p.get(k) == v for k, v in wanted.items())]


def sweep_ratios(
    phases: list[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], dict[str, Any], float]]:
    """(mailscan's sweep phase, the baseline's at the same corpus and concurrency, the msg/s
    of the first over the second), where the baseline passed any mail."""
    for mailscan in pick(phases, scenario="sweep", path="mailscan"):
        same = dict(
            scenario="sweep", corpus=mailscan["corpus"], concurrency=mailscan["concurrency"]
        )
        baseline = pick(phases, path="baseline", **same)
        if baseline and baseline[0]["msg_per_s"]:
            yield mailscan, baseline[0], mailscan["msg_per_s"] / baseline[0]["msg_per_s"]


def ratio_targets(phases: list[dict[str, Any]]) -> list[Target]:
    found = []
    for mailscan, baseline, ratio in sweep_ratios(phases):
        name = f"msg/s mailscan / baseline, c={mailscan['concurrency']}, {mailscan['corpus']}"
        measured = f"{ratio:.2f} ({mailscan['msg_per_s']:.1f} / {baseline['msg_per_s']:.1f})"
        found.append(Target(name, measured, f"≥ {RATIO_GOAL}", ratio >= RATIO_GOAL))
    return found


def glue_targets(phases: list[dict[str, Any]]) -> list[Target]:
    glue = pick(phases, scenario="glue")
    if not glue:
        return []
    best = max(glue, key=lambda p: p["msg_per_s"])
    cpu = best["mailscan_cpu_ms_per_msg"]
    where = f"c={best['concurrency']}"
    return [
        Target(
            "glue only: msg/s (best of the client counts)",
            f"{best['msg_per_s']:.0f} ({where})",
            f"≥ {GLUE_RATE_GOAL:.0f}",
            best["msg_per_s"] >= GLUE_RATE_GOAL,
        ),
        Target(
            "glue only: mailscan's own CPU ms per message",
            f"{cpu:.1f} ({where})",
            f"< {GLUE_CPU_GOAL_MS:.0f}",
            cpu < GLUE_CPU_GOAL_MS,
        ),
    ]


def p99_gap(
    phases: list[dict[str, Any]], baseline_scenario: str = "latency"
) -> tuple[float, float, float] | None:
    """(gap, mailscan's p99, the baseline's p99) in ms, mailscan's from the latency scenario
    and the baseline's from ``baseline_scenario``: "latency" for the same arrivals,
    "latency-own" for 80% of its own capacity; None if the run had either not."""
    mine = pick(phases, scenario="latency", path="mailscan")
    base = pick(phases, scenario=baseline_scenario, path="baseline")
    if not mine or not base:
        return None
    p99s = mine[0]["latency_ms"]["p99"], base[0]["latency_ms"]["p99"]
    return p99s[0] - p99s[1], *p99s


def latency_targets(phases: list[dict[str, Any]]) -> list[Target]:
    found = p99_gap(phases)
    if found is None:
        return []
    extra, mine, base = found
    measured = f"{extra:+.0f} ms ({mine:.0f} vs {base:.0f})"
    rate = pick(phases, scenario="latency", path="mailscan")[0]["rate"]
    name = f"p99 at 80% load ({rate:.1f} msg/s): mailscan - baseline"
    targets = [Target(name, measured, f"≤ +{P99_EXTRA_GOAL_MS:.0f} ms", extra <= P99_EXTRA_GOAL_MS)]
    return targets + _own_capacity_p99(phases)


def _own_capacity_p99(phases: list[dict[str, Any]]) -> list[Target]:
    """Beside the target: the baseline's p99 at 80% of its own capacity, so each path at the
    same share of what it can do (mailscan's 80% is the target's phase)."""
    found = p99_gap(phases, "latency-own")
    if found is None:
        return []
    extra, mine, base = found
    rate = pick(phases, scenario="latency-own", path="baseline")[0]["rate"]
    name = (
        f"p99, each path at 80% of its own capacity (baseline {rate:.1f} msg/s): "
        "mailscan - baseline"
    )
    return [Target(name, f"{extra:+.0f} ms ({mine:.0f} vs {base:.0f})", "reported", None)]


def overload_targets(results: dict[str, Any]) -> list[Target]:
    phase = results.get("overload")
    if not phase:
        return []
    bad = sum(n for fate, n in phase["fates"].items() if fate not in GOOD_FATES)
    tempfails = phase["outcomes"].get("4xx", 0)
    reference = pick(results["phases"], scenario="latency", path="mailscan")
    p50_s = reference[0]["latency_ms"]["p50"] / 1000 if reference else 1.0
    recovered = recovery(phase, p50_s)
    return [
        Target("overload: messages lost, duplicated or unanswered", str(bad), "0", bad == 0),
        Target("overload: 4xx answers (the sender retries)", str(tempfails), "> 0", tempfails > 0),
        Target(
            "overload: 250 without a spam verdict (spam deadline passed)",
            str(len(phase["spam_unscanned"])),
            "reported",
            None,
        ),
        Target(
            "overload: recovered after the load dropped",
            "no" if recovered is None else f"after {recovered:.0f} s",
            "yes",
            recovered is not None,
        ),
    ]


def size_targets(steps: list[dict[str, Any]]) -> list[Target]:
    if len(steps) < 2:
        return []
    k, k_added = growth_exponent(steps, "mailscan"), added_growth_exponent(steps)
    span = f"{steps[0]['bytes'] / 1e3:.0f} KB → {steps[-1]['bytes'] / 1e6:.0f} MB"
    memory = steps[-1]["memory_mb"]
    peak = ", ".join(
        f"{name} {_largest(memory.get(name, {})):.0f}"
        for name in ("mailserver", "av-worker", "spam-worker")
    )
    return [
        Target(
            f"size {span}: k in time ∝ size^k", f"{k:.2f}", "≤ 1", None if math.isnan(k) else k <= 1
        ),
        # Not a target of its own: what the row above is made of beside the scanners' k.
        Target(
            "size: k of the time mailscan adds to the baseline's",
            f"{k_added:.2f}",
            "reported",
            None,
        ),
        Target("size: peak memory MiB (VmHWM) at the largest size", peak, "bounded", None),
    ]


def _largest(roles: dict[str, float]) -> float:
    return max(roles.values(), default=0.0)
