"""The latency target's p99 gap, and the throughput ratios, read over several runs of the
suite; and why one run cannot decide the p99 target.

At 80 % load a p99 rests on the few slowest messages of the run's worst spells of queueing,
and those differ from run to run far more than the target's 50 ms. ``--simulate`` shows it
on a model with nothing of mailscan in it: two servers fed Poisson arrivals at 80 % of their
capacity, service times lognormal (mean 200 ms), 1000 messages a run, as the full profile
sends per path. The p99 of such runs, and the gap between two of them, spread by hundreds of
milliseconds though every run is the same queue. ``--load-share`` puts the model at another
share of its capacity: with the same arrivals, a path with less capacity runs at a higher
share, and what that alone does to its p99 is the gap to expect.

    .venv/bin/python -m bench.spread bench/results/*/results.json
    .venv/bin/python -m bench.spread --simulate 400 [--load-share 0.86]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
from pathlib import Path
from typing import Any

from bench.arguments import whole
from bench.phases import percentile
from bench.targets import p99_gap, sweep_ratios

SERVERS, LOAD_SHARE, MEAN_SERVICE_S, SERVICE_SIGMA = 2, 0.8, 0.2, 0.8


# How the baseline was loaded in each comparison: the same arrivals as mailscan (the target),
# and 80 % of its own capacity (each path at the same share of what it can do).
COMPARISONS = {"latency": "same arrivals", "latency-own": "each at 80 % of its own capacity"}


def gaps_over_runs(gaps: list[float]) -> str:
    if not gaps:
        return "no run had it"
    return (
        f"{_runs(len(gaps))}: p99 gap median {statistics.median(gaps):+.0f} ms, "
        f"from {min(gaps):+.0f} to {max(gaps):+.0f} ms"
    )


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """The sweep's msg/s of mailscan over the baseline's, by "corpus, c=C"."""
    return {
        f"{mine['corpus']}, c={mine['concurrency']}": ratio
        for mine, _, ratio in sweep_ratios(results["phases"])
    }


def ratios_over_runs(runs: list[dict[str, Any]]) -> list[str]:
    """One line per corpus and concurrency: the ratio's median and range over the runs."""
    by_key: dict[str, list[float]] = {}
    for results in runs:
        for key, ratio in ratios(results).items():
            by_key.setdefault(key, []).append(ratio)
    return [
        f"{key}: {_runs(len(found))}, median {statistics.median(found):.2f}, "
        f"from {min(found):.2f} to {max(found):.2f}"
        for key, found in sorted(by_key.items())
    ]


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def simulated_p99_s(seed: int, share: float = LOAD_SHARE, messages: int = 1000) -> float:
    """The p99 latency of one run of the model queue at ``share`` of its capacity (first free
    server, in arrival order)."""
    draw = random.Random(seed)
    # The lognormal's mean is exp(sigma^2 / 2) times its median.
    median_s = MEAN_SERVICE_S / math.exp(SERVICE_SIGMA**2 / 2)
    rate = share * SERVERS / MEAN_SERVICE_S
    now, free_at, latencies = 0.0, [0.0] * SERVERS, []
    for _ in range(messages):
        now += draw.expovariate(rate)
        server = min(range(SERVERS), key=free_at.__getitem__)
        free_at[server] = max(now, free_at[server]) + median_s * draw.lognormvariate(
            0, SERVICE_SIGMA
        )
        latencies.append(free_at[server] - now)
    return percentile(latencies, 99)


def simulate(runs: int, share: float) -> str:
    p99s = [simulated_p99_s(seed, share) * 1000 for seed in range(runs)]
    gaps = [a - b for a, b in zip(p99s[::2], p99s[1::2], strict=False)]
    p99_text = (
        f"p99 median {statistics.median(p99s):.0f} ms, standard deviation "
        f"{statistics.stdev(p99s):.0f} ms, from {min(p99s):.0f} to {max(p99s):.0f} ms"
    )
    gap_text = (
        f"gap between two runs: standard deviation {statistics.stdev(gaps):.0f} ms, "
        f"from {min(gaps):+.0f} to {max(gaps):+.0f} ms"
    )
    return f"model queue at {share:.0%} load, {runs} runs of 1000 messages: {p99_text}; {gap_text}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", type=Path, help="a suite run's results.json")
    parser.add_argument(
        "--simulate", type=whole(4), metavar="RUNS", help="runs of the model queue (4 or more)"
    )
    parser.add_argument(
        "--load-share", type=float, default=LOAD_SHARE, help="of the model's capacity (0-1)"
    )
    args = parser.parse_args()
    if args.simulate:
        if not 0 < args.load_share < 1:
            parser.error("--load-share must be between 0 and 1")
        print(simulate(args.simulate, args.load_share))
    if not args.simulate and not args.results:
        parser.error("name a suite run's results.json, or --simulate")
    try:
        runs = [(path.parent.name, _results(path)) for path in args.results]
    except ValueError as err:
        parser.error(str(err))
    if runs:
        print(_over(runs))


def _results(path: Path) -> dict[str, Any]:
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a suite run's results ({err})") from err
    if not isinstance(results, dict) or not isinstance(results.get("phases"), list):
        raise ValueError(f"{path}: not a suite run's results (no phases)")
    return results


def _over(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """Each run's p99 gaps, then the gaps and the ratios over all of them."""
    lines = []
    for scenario, how in COMPARISONS.items():
        lines.append(f"p99 of mailscan less the baseline's, {how}:")
        gaps = []
        for name, results in runs:
            found = p99_gap(results["phases"], scenario)
            if found:
                gaps.append(found[0])
                lines.append(f"  {name}: {found[0]:+.0f} ms ({found[1]:.0f} vs {found[2]:.0f})")
        lines.append(f"  {gaps_over_runs(gaps)}")
    lines.append("msg/s of mailscan over the baseline's (the sweep):")
    lines += [f"  {line}" for line in ratios_over_runs([results for _, results in runs])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
