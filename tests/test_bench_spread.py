"""The latency target's p99 gap over runs, and the model queue (bench/spread.py)."""

from __future__ import annotations

import statistics

from bench.spread import over_runs, p99_gap, simulated_p99_s


def run_with(mailscan_p99: float, baseline_p99: float) -> dict[str, object]:
    return {
        "phases": [
            {"scenario": "sweep", "path": "mailscan", "latency_ms": {"p99": 1.0}},
            {"scenario": "latency", "path": "mailscan", "latency_ms": {"p99": mailscan_p99}},
            {"scenario": "latency", "path": "baseline", "latency_ms": {"p99": baseline_p99}},
            {"scenario": "latency-own", "path": "baseline", "latency_ms": {"p99": 1.0}},
        ]
    }


def test_a_runs_gap_is_mailscans_p99_less_the_baselines_at_the_same_arrivals() -> None:
    assert p99_gap(run_with(1264, 873)) == (391, 1264, 873)
    assert p99_gap({"phases": [{"scenario": "sweep", "path": "mailscan"}]}) is None


def test_runs_are_summed_up_by_median_and_range() -> None:
    assert over_runs([391, -125, 473, 460]) == (
        "4 runs: p99 gap median +426 ms, from -125 to +473 ms"
    )
    assert over_runs([]) == "no run had the latency scenario"


def test_the_model_queue_waits_longer_at_a_higher_load() -> None:
    p99 = {share: [simulated_p99_s(seed, share) for seed in range(40)] for share in (0.5, 0.9)}
    assert statistics.median(p99[0.9]) > 1.5 * statistics.median(p99[0.5])
    # One run's p99 varies though the queue does not: the reason one run cannot decide 50 ms.
    assert statistics.stdev(p99[0.9]) > 0.05
