"""The benchmark suite of issue #6: mailscan end to end against calling clamd and spamd
directly, glue only (stub plugins), latency at 80% load, overload, and message size.

Run from the repository root (see bench/README.md):

    .venv/bin/python -m bench.suite --quick     # about 8 minutes
    .venv/bin/python -m bench.suite             # the full suite, about 20 minutes

Each stack is started and stopped by the suite on loopback ports of its own. The report
(Markdown), results.json and the plots go to bench/results/suite-<profile>-<time>/.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import corpus, latency, plots, report, sizes, throughput
from bench.arguments import listed, number, whole
from bench.load import say
from bench.machine import REPO, at_start, machine_info
from bench.stacks import BenchStack, Plan, running
from tasks.errors import StackError

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_CORPUS = "../shared/corpus/sa-public"
SCENARIOS = ("glue", "sweep", "latency", "size", "overload")
CORPORA = ("generated", "sa-public")
GLUE_POOL_PROCESSES = 2  # the product's default pool size


@dataclass(frozen=True)
class Profile:
    name: str
    concurrencies: tuple[int, ...]  # sweep; latency, size and overload run at the first
    messages: int  # per path, corpus and concurrency
    glue_levels: tuple[int, ...]  # clients
    glue_messages: int
    load_s: float  # each fixed-rate phase at 80%
    overload_s: tuple[float, float]  # at 150%, then at 50%
    sizes: tuple[tuple[int, int], ...]  # (bytes, messages per path)
    time_limit_s: float  # no message is started later in a phase


QUICK = Profile(
    name="quick",
    concurrencies=(2, 4, 8),
    messages=200,
    glue_levels=(4, 16),
    glue_messages=1500,
    load_s=30.0,
    overload_s=(60.0, 90.0),
    sizes=((10_000, 8), (100_000, 8), (1_000_000, 5), (5_000_000, 3), (25_000_000, 3)),
    time_limit_s=300.0,
)
FULL = Profile(
    name="full",
    concurrencies=(2, 4, 8),
    messages=600,
    glue_levels=(1, 4, 16, 64),
    glue_messages=4000,
    load_s=120.0,
    overload_s=(60.0, 120.0),
    sizes=((10_000, 20), (100_000, 20), (1_000_000, 10), (5_000_000, 6), (25_000_000, 4)),
    time_limit_s=900.0,
)


def run(args: argparse.Namespace, profile: Profile) -> dict[str, Any]:
    started = at_start()
    generated = corpus.generated(max(profile.messages, profile.glue_messages), args.seed)
    results: dict[str, Any] = {
        "command": args.command,
        "profile": profile.__dict__,
        "seed": args.seed,
        "corpus": {"generated": report.corpus_stats(generated, args.seed)},
        "phases": [],
    }
    real_mail = corpus.real(REPO / args.corpus) if "sa-public" in args.corpora else []
    if real_mail:
        results["corpus"]["sa-public"] = report.corpus_stats(real_mail, args.seed)
    if "glue" in args.scenarios:
        with running(Plan("glue", GLUE_POOL_PROCESSES, glue=True), args.keep_var) as bench:
            samples = generated[: profile.glue_messages]
            results.setdefault("machine", machine_info(bench.settings, started))
            results["phases"] += throughput.glue(
                bench, samples, profile.glue_levels, profile.time_limit_s
            )
            results.setdefault("logs", {})[bench.plan.name] = _log_summary(bench)
    at_first = {"latency", "size", "overload"} & set(args.scenarios)
    for clients in profile.concurrencies:
        if "sweep" not in args.scenarios and (clients != profile.concurrencies[0] or not at_first):
            continue  # no scenario of this stack was asked for
        with running(Plan(f"real c={clients}", clients), args.keep_var) as bench:
            if clients == profile.concurrencies[0]:
                results["machine"] = machine_info(bench.settings, started)  # with clamd's version
            corpora = {"generated": generated[: profile.messages], "sa-public": real_mail}
            corpora = {name: corpora[name] for name in args.corpora}
            if "sweep" in args.scenarios:
                results["phases"] += throughput.sweep(
                    bench, corpora, profile.messages, profile.time_limit_s
                )
            if clients == profile.concurrencies[0]:
                _at_first_concurrency(args, profile, bench, generated, results)
            results.setdefault("logs", {})[bench.plan.name] = _log_summary(bench)
    return results


def _at_first_concurrency(
    args: argparse.Namespace,
    profile: Profile,
    bench: BenchStack,
    generated: list[corpus.Sample],
    results: dict[str, Any],
) -> None:
    """Latency at 80%, sizes and overload, on the stack at the first concurrency, with the
    capacity measured there (mailscan, generated corpus, closed loop)."""
    wanted = {"latency", "size", "overload"} & set(args.scenarios)
    if not wanted:
        return
    capacity = _capacity(bench, results["phases"], generated[: profile.messages], profile)
    results["capacity_msg_per_s"] = capacity
    if "latency" in wanted:
        results["phases"] += latency.at_load(bench, generated, capacity, profile.load_s, args.seed)
        own = _measured_capacity(bench, results["phases"], "baseline")
        if own:
            results["baseline_capacity_msg_per_s"] = own
            results["phases"] += latency.at_load(
                bench, generated, own, profile.load_s, args.seed, ("baseline",), "latency-own"
            )
    if "size" in wanted:
        results["sizes"] = sizes.size_steps(bench, profile.sizes, args.seed, profile.time_limit_s)
    if "overload" in wanted:
        bench.set_scan_deadline(args.overload_deadline)
        results["overload"] = latency.overload(
            bench, generated, capacity, profile.overload_s, args.seed
        )


def _capacity(
    bench: BenchStack, phases: list[dict[str, Any]], samples: list[corpus.Sample], profile: Profile
) -> float:
    measured = _measured_capacity(bench, phases, "mailscan")
    if measured:
        return measured
    only_mailscan = throughput.sweep(
        bench, {"generated": samples}, profile.messages, profile.time_limit_s
    )
    return only_mailscan[-1]["msg_per_s"]


def _measured_capacity(bench: BenchStack, phases: list[dict[str, Any]], path: str) -> float | None:
    """``path``'s closed-loop msg/s on generated mail at the stack's concurrency, if the
    sweep measured it."""
    for phase in phases:
        if (
            phase["scenario"] == "sweep"
            and phase["path"] == path
            and phase["corpus"] == "generated"
            and phase["concurrency"] == bench.plan.concurrency
        ):
            return phase["msg_per_s"]
    return None


def _log_summary(bench: BenchStack) -> dict[str, Any]:
    from bench.checks import log_trouble

    trouble = log_trouble(bench.stack.log_dir)
    return {
        "died": bench.stack.exited(),
        "trouble": {
            name: dict(c.most_common(3)) | {"total": sum(c.values())} for name, c in trouble.items()
        },
    }


def write(results: dict[str, Any], profile: Profile, no_plots: bool) -> Path:
    out = RESULTS_DIR / f"suite-{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    images = [] if no_plots else plots.draw_all(results, out)
    text = report.render(results, [p.name for p in images])
    (out / "report.md").write_text(text)
    print(text)
    return out


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Profile]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.suite", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="the short profile (about 8 minutes)")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--concurrency",
        type=listed(whole(1, 32)),
        help="sweep concurrencies, e.g. 2,4 (default 2,4,8)",
    )
    parser.add_argument(
        "--messages", type=whole(10, 20_000), help="per path, corpus and concurrency"
    )
    parser.add_argument(
        "--corpora", default=",".join(CORPORA), help="of the sweep: generated, sa-public or both"
    )
    parser.add_argument("--seed", type=int, default=6, help="corpus and arrival seed (default 6)")
    parser.add_argument(
        "--corpus", default=DEFAULT_CORPUS, help="real mail: folder with nice/ and spam/"
    )
    parser.add_argument(
        "--overload-deadline",
        type=number(1.0, 600.0, above=False),
        default=20.0,
        help="MAILSCAN_SCAN_DEADLINE_S in the overload phase (default 20)",
    )
    parser.add_argument("--keep-var", action="store_true", help="keep the stacks' folders and logs")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    args = parser.parse_args(argv)
    args.command = "python -m bench.suite " + shlex.join(sys.argv[1:] if argv is None else argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.corpora = [s.strip() for s in args.corpora.split(",") if s.strip()]
    return args, _profile(parser, args)


def _profile(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Profile:
    profile = QUICK if args.quick else FULL
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if not args.corpora or set(args.corpora) - set(CORPORA):
        parser.error(f"--corpora: one or both of {', '.join(CORPORA)}")
    if args.concurrency:
        profile = replace(profile, concurrencies=tuple(args.concurrency))
    if args.messages is not None:
        profile = replace(profile, messages=args.messages)
    return profile


def main(argv: list[str] | None = None) -> int:
    args, profile = parse_args(argv)
    started = time.monotonic()
    try:
        results = run(args, profile)
    except StackError as err:
        say(f"bench.suite: {err}\n(--keep-var keeps the services' logs)")
        return 2
    except KeyboardInterrupt:
        say("bench.suite: interrupted")
        return 130
    results["duration_s"] = time.monotonic() - started
    out = write(results, profile, args.no_plots)
    say(f"written to {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
