"""The targets read over runs, the model queue, and a file that is not a run (bench/spread.py)."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from bench.spread import gaps_over_runs, ratios_over_runs, simulated_p99_s
from bench.targets import p99_gap


def run_with(mailscan_p99: float, baseline_p99: float, own_p99: float) -> dict[str, object]:
    return {
        "phases": [
            {"scenario": "sweep", "path": "mailscan", "latency_ms": {"p99": 1.0}},
            {"scenario": "latency", "path": "mailscan", "latency_ms": {"p99": mailscan_p99}},
            {"scenario": "latency", "path": "baseline", "latency_ms": {"p99": baseline_p99}},
            {"scenario": "latency-own", "path": "baseline", "latency_ms": {"p99": own_p99}},
        ]
    }


def test_a_runs_gap_is_mailscans_p99_less_the_baselines() -> None:
    run = run_with(1264, 873, 1113)
    assert p99_gap(run["phases"], "latency") == (391, 1264, 873)  # the same arrivals
    assert p99_gap(run["phases"], "latency-own") == (151, 1264, 1113)  # each at 80 % of its own
    assert p99_gap([{"scenario": "sweep", "path": "mailscan"}], "latency") is None


def test_runs_are_summed_up_by_median_and_range() -> None:
    assert gaps_over_runs([391, -125, 473, 460]) == (
        "4 runs: p99 gap median +426 ms, from -125 to +473 ms"
    )
    assert gaps_over_runs([]) == "no run had it"


def test_the_model_queue_waits_longer_at_a_higher_load() -> None:
    p99 = {share: [simulated_p99_s(seed, share) for seed in range(40)] for share in (0.5, 0.9)}
    assert statistics.median(p99[0.9]) > 1.5 * statistics.median(p99[0.5])
    # One run's p99 varies by hundreds of ms though the queue does not: the reason one run
    # cannot decide a goal of 50 ms.
    assert statistics.stdev(p99[0.9]) > 0.2


def sweep(corpus: str, clients: int, mailscan: float, baseline: float) -> list[dict[str, object]]:
    same = {"scenario": "sweep", "corpus": corpus, "concurrency": clients}
    return [
        same | {"path": "mailscan", "msg_per_s": mailscan},
        same | {"path": "baseline", "msg_per_s": baseline},
    ]


def test_the_ratio_of_each_corpus_and_concurrency_is_read_over_runs() -> None:
    runs = [
        {"phases": sweep("sa-public", 2, 16.6, 20.0) + sweep("generated", 2, 9.3, 10.0)},
        {"phases": sweep("sa-public", 2, 17.0, 20.0)},
        {"phases": sweep("sa-public", 2, 18.0, 20.0) + sweep("generated", 4, 1.0, 0.0)},
    ]
    assert ratios_over_runs(runs) == [
        "generated, c=2: 1 run, median 0.93, from 0.93 to 0.93",
        "sa-public, c=2: 3 runs, median 0.85, from 0.83 to 0.90",
    ]


def test_a_file_that_is_not_a_suites_results_is_named_in_a_clear_error(tmp_path: Path) -> None:
    not_results = tmp_path / "report.md"
    not_results.write_text("| load | msg/s |\n")
    done = subprocess.run(
        [sys.executable, "-m", "bench.spread", str(not_results)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert f"{not_results}: not a suite run's results" in done.stderr
